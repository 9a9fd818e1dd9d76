"""Machines under threads: instances share striped locks (`fsmc.runtime.exclusion`), yet a slow
transition delays only its own instance, machines firing each other never deadlock on a
stripe, waiters always wake, and every resource's events chain without a gap."""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import pickle
import sys
import threading
import time
from typing import Any

import pytest
from fsmc.runtime import EventBus, InvalidTransition, StateChanged, exclusion
from fsmc.runtime.exclusion import STRIPES

from tests.conftest import DESIGN_EXAMPLE
from tests.generation import compile_spec

VM = compile_spec(DESIGN_EXAMPLE, "vm_threads").VirtualMachine


class Gated(VM):  # type: ignore[misc,valid-type]
    """`StopRequested` runs a guard that waits for `gate` (when set) before it says yes."""

    __slots__ = ()
    gate: threading.Event | None = None
    entered = threading.Event()

    def can_stop(self, **payload: Any) -> bool:
        gate = type(self).gate
        if gate is not None and payload.get("wait"):
            type(self).entered.set()
            assert gate.wait(10), "the test never opened the gate"
        return True

    def release_host(self, **payload: Any) -> None:
        pass


def same_stripe_as(machine: Any, **kwargs: Any) -> Any:
    """A new instance that shares `machine`'s stripe lock (stripes are handed out in turn)."""
    for index in range(4 * STRIPES):
        other = type(machine)(f"twin-{index}", state="Stopped", **kwargs)
        other.start_requested()
        if other._stripe is machine._stripe:
            return other
    raise AssertionError("no instance got the same stripe")


def run_in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_instances_share_a_bounded_set_of_locks() -> None:
    machines = [VM(f"vm-{i}", state="Stopped") for i in range(3 * STRIPES)]
    assert all(m._stripe is None for m in machines)  # nothing until the first transition
    for machine in machines:
        machine.start_requested()
    assert len({id(m._stripe) for m in machines}) == STRIPES
    assert all(m._busy is None for m in machines)


def test_a_slow_transition_delays_only_its_own_instance() -> None:
    Gated.gate, Gated.entered = threading.Event(), threading.Event()
    slow = Gated("slow", state="Stopped")
    slow.start_requested()  # its stripe is given on its first transition
    slow.operation_succeeded()
    neighbour = same_stripe_as(slow)
    outcome: list[object] = []
    owner = run_in_thread(lambda: outcome.append(slow.stop_requested(wait=True)))
    assert Gated.entered.wait(10)
    # The guard of `slow` is running (its stripe is free); the neighbour moves on at once.
    started = time.monotonic()
    neighbour.operation_succeeded()
    neighbour.stop_requested()
    assert time.monotonic() - started < 1.0
    # A second thread firing `slow` itself waits for the first to finish.
    second: list[object] = []
    waiter = run_in_thread(lambda: second.append(_outcome(slow.stop_requested)))
    waiter.join(0.3)
    assert waiter.is_alive() and not second
    Gated.gate.set()
    owner.join(10)
    waiter.join(10)
    assert outcome == [VM.State.Stopping]
    assert second == ["InvalidTransition"]  # it ran after the first: Stopping has no StopRequested
    Gated.gate = None


def _outcome(fire: Any) -> object:
    try:
        return fire()
    except InvalidTransition:
        return "InvalidTransition"


def test_machines_firing_each_other_across_stripes_never_deadlock() -> None:
    """A and C share a stripe, B and D another. Thread 1: A's post-listener fires B; thread 2:
    D's post-listener fires C, both at the same moment. A design that held stripe locks while
    listeners run would deadlock here (1 holds A's stripe and wants B's, 2 the reverse)."""
    a = VM("a", state="Stopped")
    a.start_requested()
    c = same_stripe_as(a)
    b = VM("b", state="Stopped")
    b.start_requested()
    d = same_stripe_as(b)
    assert a._stripe is c._stripe and b._stripe is d._stripe and a._stripe is not b._stripe
    both_inside = threading.Barrier(2, timeout=10)

    class FireOther:
        def __init__(self, other: Any) -> None:
            self.other = other

        def post_transition(self, event: StateChanged) -> None:
            both_inside.wait()
            self.other.operation_succeeded()

    a.add_listener(FireOther(b))
    d.add_listener(FireOther(c))
    threads = [run_in_thread(a.operation_succeeded), run_in_thread(d.operation_succeeded)]
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert [m.state for m in (a, b, c, d)] == [VM.State.Running] * 4


def test_eight_threads_on_many_instances_lose_nothing() -> None:
    """8 threads cycle 40 machines (half with a listener, so both the fast path and the full
    one run, and waiters wait) through Stopped → Starting → Running → Stopping → Stopped.
    Every success is one event, and each resource's events chain without a gap."""

    class Always(Gated):
        __slots__ = ()

    bus = EventBus()
    events: list[StateChanged] = []
    bus.subscribe(events.append, StateChanged)
    machines = [Always(f"vm-{i}", state="Stopped", bus=bus) for i in range(40)]

    class Quiet:
        def post_transition(self, event: StateChanged) -> None:
            pass

    for machine in machines[::2]:
        machine.add_listener(Quiet())
    successes = [0] * 8
    next_event = {"Stopped": "start_requested", "Starting": "operation_succeeded",
                  "Running": "stop_requested", "Stopping": "operation_succeeded"}

    def work(index: int) -> None:
        for step in range(3000):
            machine = machines[(step * 7 + index) % len(machines)]
            try:  # the state read may be stale by the time it fires: then it is refused
                getattr(machine, next_event[machine.state.name])()
                successes[index] += 1
            except InvalidTransition:
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython can: races show up
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)
    assert sum(successes) == len(events) > 1000
    per_resource: dict[object, list[StateChanged]] = {}
    for event in events:
        per_resource.setdefault(event.resource_id, []).append(event)
    for chain in per_resource.values():
        assert chain[0].old_state == "Stopped"
        for before, after in itertools.pairwise(chain):
            assert before.new_state == after.old_state
    assert all(m._busy is None for m in machines)


def test_afire_waits_for_a_thread_without_blocking_the_loop() -> None:
    Gated.gate, Gated.entered = threading.Event(), threading.Event()
    machine = Gated("vm", state="Running")
    owner = run_in_thread(lambda: _outcome(lambda: machine.stop_requested(wait=True)))
    assert Gated.entered.wait(10)

    async def main() -> tuple[object, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticker = asyncio.create_task(tick())
        waiting = asyncio.create_task(machine.afire("Crashed"))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # still waiting for the thread's transition
        Gated.gate.set()  # type: ignore[union-attr]
        result = await asyncio.wait_for(waiting, 10)
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    owner.join(10)
    assert ticks > 20  # the loop kept running while afire waited
    assert result is VM.State.Error  # Crashed, fired after Running → Stopping
    Gated.gate = None


def _at_depth(depth: int, fire: Any) -> Any:
    return _at_depth(depth - 1, fire) if depth > 0 else fire()


def test_a_recursion_error_at_any_point_of_a_fire_gives_the_token_back() -> None:
    """A deep chain of machines firing machines hits the recursion limit somewhere inside
    `fire`: whatever the spot, the stripe's token and the instance come back."""
    bus = EventBus()
    seen: list[StateChanged] = []
    bus.subscribe(seen.append, StateChanged)
    limit = sys.getrecursionlimit()
    failures = 0
    for depth in range(limit - 70, limit):
        for machine in (VM(f"plain-{depth}", state="Stopped"),
                        VM(f"bus-{depth}", state="Stopped", bus=bus)):
            try:
                _at_depth(depth, machine.start_requested)
            except RecursionError:
                failures += 1
            assert machine._busy is None
            assert machine._stripe is None or machine._stripe == [None]
    assert failures > 0  # the limit was reached inside fire at some depths
    assert all(stripe == [None] for stripe in exclusion._stripes)
    assert exclusion.waiting[0] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_starts_with_every_stripe_free() -> None:
    """Threads that held a token or waited at fork time do not exist in the child."""
    stripe = exclusion._stripes[7]
    stripe.pop()  # as if another thread were inside a transition at fork time
    exclusion.waiting[0] += 1  # ... and another one waiting
    try:
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            free = all(s == [None] for s in exclusion._stripes) and exclusion.waiting[0] == 0
            machine = VM("child", state="Stopped")
            for _ in range(2 * STRIPES):  # every stripe used at least once
                VM("x", state="Stopped").start_requested()
            machine.start_requested()
            os._exit(0 if free and machine.state is VM.State.Starting else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stripe.append(None)
        exclusion.waiting[0] -= 1


def test_copies_and_pickles_start_idle_with_a_stripe_of_their_own() -> None:
    copies: list[Any] = []

    class CopyMidway:
        def post_transition(self, event: StateChanged) -> None:
            if not copies:  # once: the copies carry this listener too
                copies.extend([copy.copy(machine), copy.deepcopy(machine)])

    machine = Gated("vm", state="Stopped")
    machine.start_requested()
    machine.add_listener(CopyMidway())
    machine.operation_succeeded()  # the copies are taken while it is busy
    plain = Gated("p", state="Stopped")
    plain.start_requested()
    copies.append(pickle.loads(pickle.dumps(plain)))
    assert len(copies) == 3
    for twin in list(copies):
        assert twin._busy is None and twin._stripe is None
        thread = run_in_thread(twin.stop_requested if twin.state is VM.State.Running
                               else twin.operation_succeeded)
        thread.join(5)
        assert not thread.is_alive()
    assert [twin.state.name for twin in copies] == ["Stopping", "Stopping", "Running"]
    assert plain.state is VM.State.Starting
