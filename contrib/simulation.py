"""A small discrete-event simulator to drive machines through simulated time.

A *process* is a generator that yields delays in simulated seconds (`yield 3600` waits an
hour); `Simulation.spawn` schedules one, and `run` resumes processes in time order (ties in
the order they were scheduled) until none is left or the simulated period is over. Only one
thread drives the machines, so a seeded run is deterministic.

Machines created by a simulation post to `SimulatedTime`, a bus adapter that stamps each
`StateChanged` with the simulated clock (same id, same fields, `time` = simulated now) before
handing it to the real bus: a month of simulated usage fits in seconds of wall time and the
usage meter bills it as a month.

`Simulation.fire` fires an event that the lifecycle expects to be valid (a rejection is a bug
in the lifecycle, counted in `unexpected`); `Simulation.misfire` plays a careless client who
fires an event the resource's state does not allow, and counts the `InvalidTransition` the
machine answers in `rejected`.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import Any

from fsmc.runtime import InvalidTransition, Machine, StateChanged
from fsmc.runtime.dispatch import Bus

__all__ = ["Process", "SimulatedTime", "Simulation"]

Process = Generator[float, None, None]
AnyMachine = Machine[Any, Any]


class SimulatedTime:
    """A bus for machines: re-stamps `StateChanged` events with the simulated time and posts
    them to `bus`. Any other object is passed on unchanged."""

    def __init__(self, bus: Bus, origin: datetime) -> None:
        if origin.tzinfo is None:
            raise ValueError("the simulation's origin must be timezone-aware")
        self.bus = bus
        self.origin = origin
        self.now = 0.0
        self.posted = 0

    def moment(self) -> datetime:
        """The simulated now, as an aware datetime."""
        return self.origin + timedelta(seconds=self.now)

    def post(self, event: object) -> None:
        if isinstance(event, StateChanged):
            event = StateChanged(event.machine, event.resource_id, event.event,
                                 event.old_state, event.new_state, event.tags, event.payload,
                                 id=event.id, time=self.moment())
        self.bus.post(event)
        self.posted += 1


class Simulation:
    """Processes in simulated time over [0, duration] seconds, with one seeded `rng`."""

    def __init__(self, clock: SimulatedTime, duration: float, *, seed: int = 0) -> None:
        if duration <= 0:
            raise ValueError(f"duration must be positive, not {duration!r}")
        self.clock = clock
        self.duration = duration
        self.rng = random.Random(seed)
        self._queue: list[tuple[float, int, Process]] = []
        self._seq = 0
        self.transitions = 0
        self.rejected: Counter[tuple[str, str, str]] = Counter()
        self.rejections = 0  # sum(rejected.values()), safe to read from another thread
        self.unexpected: list[str] = []

    @property
    def now(self) -> float:
        return self.clock.now

    def spawn(self, process: Process, delay: float = 0.0) -> None:
        """Start `process` after `delay` simulated seconds."""
        self._schedule(self.clock.now + max(0.0, delay), process)

    def _schedule(self, when: float, process: Process) -> None:
        if when <= self.duration:
            heapq.heappush(self._queue, (when, self._seq, process))
            self._seq += 1
        else:
            process.close()  # the period ends first: the process stops where it is

    def run(self, before_step: Callable[[float], None] | None = None) -> None:
        """Run until no process is left or the period is over. `before_step(t)` is called
        before the clock moves to `t` (the demo paces wall time with it)."""
        queue = self._queue
        while queue:
            when, _, process = heapq.heappop(queue)
            if before_step is not None and when > self.clock.now:
                before_step(when)
            self.clock.now = when
            try:
                delay = next(process)
            except StopIteration:
                continue
            self._schedule(when + max(1.0, delay), process)

    def fire(self, machine: AnyMachine, event: str, **payload: Any) -> bool:
        """Fire an event the lifecycle expects to be allowed; False (and counted in
        `unexpected`) if the machine rejects it."""
        try:
            machine.fire(event, **payload)
        except InvalidTransition as error:
            self.unexpected.append(str(error))
            return False
        self.transitions += 1
        return True

    def misfire(self, machine: AnyMachine, **payload: Any) -> None:
        """Fire, on purpose, a random event that `machine`'s current state does not allow,
        and count the rejection."""
        allowed = {event.name for event in machine.allowed_events()}
        invalid = [name for name in machine.SPEC.events if name not in allowed]
        if not invalid:
            return
        event = self.rng.choice(invalid)
        state = machine.state.name
        try:
            machine.fire(event, **payload)
        except InvalidTransition:
            self.rejected[machine.SPEC.name, state, event] += 1
            self.rejections += 1
        else:  # pragma: no cover - the spec said it was not allowed
            self.transitions += 1
            self.unexpected.append(f"{machine!r}: {event} from {state} was accepted")

    # -- randomness in simulated units -----------------------------------------------------

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def hours(self, mean: float) -> float:
        """An exponentially distributed duration with the given mean, in seconds."""
        return self.rng.expovariate(1.0 / mean) * 3600.0

    def minutes(self, low: float, high: float) -> float:
        """A uniformly distributed duration between `low` and `high` minutes, in seconds."""
        return self.rng.uniform(low, high) * 60.0
