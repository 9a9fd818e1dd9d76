"""Transition cost: the generated `VirtualMachine` (specs/virtual_machine.fsm) against
hand-written classes giving the same guarantees, measured in the same run.

    python -m bench.transition [--quick]

The cycle Stopped → Starting → Running → Stopping → Stopped (four transitions) is timed with
`timeit`; figures are ns per transition, min and median of the repeats, and each ratio is
against the baseline named beside it.

Baselines (all as fast as plain Python allows; none is weakened):
- `hand+lock`: one method per event, a `{state: target}` dict, a `threading.Lock` held around
  the lookup (the generated class is thread-safe by default, so this is its fair baseline).
  States are an `Enum` whose hash is the identity hash (a plain `Enum` would hash in Python
  and be slower: the `hand+lock (plain Enum)` row shows by how much).
- `hand`: the same without the lock: the fastest hand-written Python.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import itertools
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import NamedTuple

from fsmc.runtime import InvalidTransition, StateChanged
from fsmc.runtime.bus import EventBus

from generated.virtual_machine import VirtualMachine


class FastState(enum.Enum):
    __hash__ = object.__hash__
    Stopped = "Stopped"
    Starting = "Starting"
    Running = "Running"
    Stopping = "Stopping"


class PlainState(enum.Enum):
    Stopped = "Stopped"
    Starting = "Starting"
    Running = "Running"
    Stopping = "Stopping"


def hand_written(states: type[enum.Enum], locked: bool) -> type:
    s = states
    start = {s.Stopped: s.Starting}  # type: ignore[attr-defined]
    succeed = {s.Starting: s.Running, s.Stopping: s.Stopped}  # type: ignore[attr-defined]
    stop = {s.Running: s.Stopping}  # type: ignore[attr-defined]

    class Locked:
        __slots__ = ("_lock", "state")

        def __init__(self) -> None:
            self.state = s.Stopped  # type: ignore[attr-defined]
            self._lock = threading.Lock()

        def _move(self, table: dict[enum.Enum, enum.Enum], event: str) -> enum.Enum:
            with self._lock:
                try:
                    target = table[self.state]
                except KeyError:
                    raise InvalidTransition(machine="VM", resource_id=1, state=self.state.name,
                                            event=event) from None
                self.state = target
                return target

        def start_requested(self) -> enum.Enum:
            with self._lock:
                try:
                    target = start[self.state]
                except KeyError:
                    raise InvalidTransition(machine="VM", resource_id=1, state=self.state.name,
                                            event="StartRequested") from None
                self.state = target
                return target

        def operation_succeeded(self) -> enum.Enum:
            with self._lock:
                target = succeed[self.state]
                self.state = target
                return target

        def stop_requested(self) -> enum.Enum:
            with self._lock:
                target = stop[self.state]
                self.state = target
                return target

    class Unlocked:
        __slots__ = ("state",)

        def __init__(self) -> None:
            self.state = s.Stopped  # type: ignore[attr-defined]

        def start_requested(self) -> enum.Enum:
            try:
                target = start[self.state]
            except KeyError:
                raise InvalidTransition(machine="VM", resource_id=1, state=self.state.name,
                                        event="StartRequested") from None
            self.state = target
            return target

        def operation_succeeded(self) -> enum.Enum:
            target = succeed[self.state]
            self.state = target
            return target

        def stop_requested(self) -> enum.Enum:
            target = stop[self.state]
            self.state = target
            return target

    return Locked if locked else Unlocked


class Record(NamedTuple):
    id: int
    time: int
    machine: str
    resource_id: object
    event: str
    old_state: str
    new_state: str
    tags: tuple[str, ...]


def hand_written_publishing(locked: bool) -> object:
    """The hand-written equivalent of a transition that publishes: a counter id,
    `time.time_ns()`, a NamedTuple record and one listener call."""
    machine = hand_written(FastState, locked)()
    counter = itertools.count()
    received: list[Record] = []
    listener = received.append
    names = {"start_requested": "StartRequested", "operation_succeeded": "OperationSucceeded",
             "stop_requested": "StopRequested"}

    class Publishing:
        __slots__ = ("operation_succeeded", "start_requested", "stop_requested")

    publishing = Publishing()
    for method, event in names.items():
        move = getattr(machine, method)

        def fire(move: Callable[[], enum.Enum] = move, event: str = event) -> None:
            old = machine.state
            new = move()
            listener(Record(next(counter), time.time_ns(), "VirtualMachine", "vm-1", event,
                            old.name, new.name, ()))
            if len(received) > 1000:
                received.clear()
        setattr(publishing, method, fire)
    return publishing


def subscribed_machine() -> VirtualMachine:
    received: list[object] = []

    def subscriber(event: object) -> None:
        received.append(event)
        if len(received) > 1000:
            received.clear()

    bus = EventBus()
    bus.subscribe(subscriber, StateChanged)
    return VirtualMachine("vm-1", bus=bus)


def cycle(machine: object) -> Callable[[], None]:
    start = machine.start_requested  # type: ignore[attr-defined]
    succeed = machine.operation_succeeded  # type: ignore[attr-defined]
    stop = machine.stop_requested  # type: ignore[attr-defined]

    def run() -> None:
        start()
        succeed()
        stop()
        succeed()
    return run


def by_name(machine: VirtualMachine) -> Callable[[], None]:
    fire = machine.fire

    def run() -> None:
        fire("StartRequested")
        fire("OperationSucceeded")
        fire("StopRequested")
        fire("OperationSucceeded")
    return run


def invalid(machine: object) -> Callable[[], None]:
    """Four rejected transitions (StartRequested while Running)."""
    start = machine.start_requested  # type: ignore[attr-defined]

    def run() -> None:
        for _ in range(4):
            with contextlib.suppress(InvalidTransition):
                start()
    return run


def measure(run: Callable[[], None], number: int, repeat: int) -> tuple[float, float]:
    """(min, median) ns per transition (each call of `run` makes four)."""
    times = timeit.repeat(run, number=number, repeat=repeat)
    per = [t / number / 4 * 1e9 for t in times]
    return min(per), statistics.median(per)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    number, repeat = (20_000, 5) if args.quick else (100_000, 9)

    running_generated = VirtualMachine("vm-1", state="Running")
    running_hand = hand_written(FastState, True)()
    running_hand.state = FastState.Running
    cases: list[tuple[str, Callable[[], None], str]] = [
        ("hand (no lock)", cycle(hand_written(FastState, False)()), ""),
        ("hand+lock", cycle(hand_written(FastState, True)()), ""),
        ("hand+lock (plain Enum)", cycle(hand_written(PlainState, True)()), "hand+lock"),
        ("generated", cycle(VirtualMachine("vm-1")), "hand+lock"),
        ("generated fire(name)", by_name(VirtualMachine("vm-2")), "hand+lock"),
        ("publish: hand", cycle(hand_written_publishing(False)), ""),
        ("publish: hand+lock", cycle(hand_written_publishing(True)), ""),
        ("publish: generated+bus", cycle(subscribed_machine()), "publish: hand+lock"),
        ("invalid: hand+lock", invalid(running_hand), ""),
        ("invalid: generated", invalid(running_generated), "invalid: hand+lock"),
    ]
    results: dict[str, tuple[float, float]] = {}
    print(f"{'case':<26} {'min ns':>8} {'median ns':>10}  ratio (min) vs")
    for name, run, baseline in cases:
        results[name] = measure(run, number, repeat)
        low, middle = results[name]
        ratio = f"{low / results[baseline][0]:.2f}x {baseline}" if baseline else ""
        if name == "publish: generated+bus":
            ratio += f", {low / results['publish: hand'][0]:.2f}x publish: hand"
        print(f"{name:<26} {low:>8.0f} {middle:>10.0f}  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
