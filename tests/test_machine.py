"""The machine base: transition order, listeners, vetoes, errors, threads, asyncio."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest
from fsmc.runtime import (
    GuardRejected,
    InvalidTransition,
    ReentrantTransition,
    StateChanged,
    TransitionError,
    UnknownEvent,
)

from tests.conftest import DESIGN_EXAMPLE, ROOT
from tests.generation import compile_spec

GUARDS_SPEC = (ROOT / "tests" / "cases" / "golden" / "guards.fsm").read_text()
VM = compile_spec(DESIGN_EXAMPLE, "vm").VirtualMachine
Approval = compile_spec(GUARDS_SPEC, "approval").Approval


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[StateChanged] = []

    def post(self, event: object) -> None:
        assert isinstance(event, StateChanged)
        self.events.append(event)


class Log:
    """A listener that records what it sees, optionally failing."""

    def __init__(self, log: list[str], name: str, *, veto: bool = False,
                 fail_after: bool = False) -> None:
        self.log, self.name, self.veto, self.fail_after = log, name, veto, fail_after

    def pre_transition(self, event: StateChanged) -> None:
        self.log.append(f"{self.name}.pre {event.old_state}->{event.new_state}")
        if self.veto:
            raise PermissionError(f"{self.name} says no")

    def post_transition(self, event: StateChanged) -> None:
        self.log.append(f"{self.name}.post {event.old_state}->{event.new_state}")
        if self.fail_after:
            raise RuntimeError(f"{self.name} failed after")


class ApprovalImpl(Approval):  # type: ignore[misc,valid-type]
    __slots__ = ()
    log: list[str] = []

    def small(self, **payload: Any) -> bool:
        self.log.append("guard small")
        return bool(payload.get("small"))

    def senior(self, **payload: Any) -> bool:
        self.log.append("guard senior")
        return bool(payload.get("senior"))

    def notify(self, **payload: Any) -> None:
        self.log.append(f"action notify in {self.state.name}")
        if payload.get("fail"):
            raise OSError("mail server down")


@pytest.fixture
def log() -> list[str]:
    ApprovalImpl.log = []
    return ApprovalImpl.log


def test_new_instance_starts_in_initial_state() -> None:
    vm = VM("vm-1")
    assert vm.state is VM.State.Allocated and vm.resource_id == "vm-1"
    assert VM.__doc__ == "Lifecycle of a user virtual machine"


def test_state_and_fire_accept_members_and_names() -> None:
    vm = VM("vm-1", state="Stopped")
    assert vm.state is VM.State.Stopped
    assert vm.fire(VM.Event.StartRequested) is VM.State.Starting
    assert vm.fire("OperationSucceeded") is VM.State.Running
    assert VM("vm-2", state=VM.State.Error).state is VM.State.Error


def test_unknown_state_and_event_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown state 'Runnin'"):
        VM("vm-1", state="Runnin")
    vm = VM("vm-1")
    with pytest.raises(UnknownEvent) as caught:
        vm.fire("Launch")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TransitionError)
    assert "unknown event 'Launch'" in str(caught.value)


def test_invalid_transition_changes_nothing_and_says_what_is_allowed() -> None:
    bus = RecordingBus()
    vm = VM("vm-42", bus=bus, state="Stopped")
    with pytest.raises(InvalidTransition) as caught:
        vm.stop_requested()
    error = caught.value
    assert (error.machine, error.resource_id, error.state, error.event) == (
        "VirtualMachine", "vm-42", "Stopped", "StopRequested")
    assert str(error) == ("VirtualMachine vm-42: StopRequested is not allowed in Stopped; "
                          "allowed: StartRequested, DestroyRequested, Crashed")
    assert vm.state is VM.State.Stopped and bus.events == []
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error) and restored.state == "Stopped"


def test_allowed_events_in_declaration_order_and_can_fire() -> None:
    vm = VM("vm-1", state="Running")
    assert vm.allowed_events() == (VM.Event.StopRequested, VM.Event.DestroyRequested,
                                   VM.Event.Crashed)
    assert VM("vm-1", state="Expunged").allowed_events() == ()
    assert VM("vm-1").can_fire("StartRequested") and not VM("vm-1").can_fire("StopRequested")


def test_posts_one_state_changed_after_the_state_changed() -> None:
    seen: list[str] = []

    class Bus:
        def post(self, event: object) -> None:
            seen.append(vm.state.name)
            assert isinstance(event, StateChanged)
            assert (event.machine, event.resource_id, event.event, event.old_state,
                    event.new_state, event.tags) == (
                "VirtualMachine", "vm-7", "OperationSucceeded", "Starting", "Running", ("usage",))
            assert event.topic == "VirtualMachine.Starting.OperationSucceeded.Running"
            assert dict(event.payload) == {"host": "h1"}

    vm = VM("vm-7", bus=Bus(), state="Starting")
    vm.operation_succeeded(host="h1")
    assert seen == ["Running"]


def test_guards_are_tried_in_file_order(log: list[str]) -> None:
    assert ApprovalImpl("c", state="Review").approve(small=True) is Approval.State.Approved
    assert log == ["guard small", "action notify in Review"]
    log.clear()
    assert ApprovalImpl("c", state="Review").approve(senior=False) is Approval.State.Escalated
    assert log == ["guard small", "guard senior"]
    log.clear()
    assert ApprovalImpl("c", state="Review").approve(senior=True) is Approval.State.Approved
    assert ApprovalImpl("c", state="Escalated").approve(senior=True) is Approval.State.Approved


def test_guard_rejection(log: list[str]) -> None:
    machine = ApprovalImpl("c-9", state="Escalated")
    with pytest.raises(GuardRejected, match="rejected by its guards \\(if senior\\)"):
        machine.approve(senior=False)
    assert machine.state is Approval.State.Escalated


def test_order_pre_listeners_action_state_post_listeners_bus(log: list[str]) -> None:
    bus = RecordingBus()
    machine = ApprovalImpl("c", bus=bus, state="Review")
    machine.add_listener(Log(log, "one"))
    machine.add_listener(Log(log, "two"))
    machine.reject()
    assert log == ["one.pre Review->Rejected", "two.pre Review->Rejected",
                   "action notify in Review", "one.post Review->Rejected",
                   "two.post Review->Rejected"]
    assert [e.new_state for e in bus.events] == ["Rejected"]


def test_pre_listener_veto_changes_nothing(log: list[str]) -> None:
    bus = RecordingBus()
    machine = ApprovalImpl("c", bus=bus, state="Review")
    machine.add_listener(Log(log, "veto", veto=True))
    with pytest.raises(PermissionError, match="veto says no"):
        machine.reject()
    assert machine.state is Approval.State.Review and bus.events == []
    assert "action notify in Review" not in log


def test_failing_action_changes_nothing(log: list[str]) -> None:
    bus = RecordingBus()
    machine = ApprovalImpl("c", bus=bus, state="Review")
    post = Log(log, "after")
    machine.add_listener(post)
    with pytest.raises(OSError, match="mail server down"):
        machine.reject(fail=True)
    assert machine.state is Approval.State.Review and bus.events == []
    assert not any(entry.startswith("after.post") for entry in log)


def test_failing_post_listener_still_posts_then_raises(log: list[str]) -> None:
    bus = RecordingBus()
    machine = ApprovalImpl("c", bus=bus, state="Draft")
    machine.add_listener(Log(log, "broken", fail_after=True))
    machine.add_listener(Log(log, "fine"))
    with pytest.raises(RuntimeError, match="broken failed after"):
        machine.submit()
    assert machine.state is Approval.State.Review
    assert "fine.post Draft->Review" in log and len(bus.events) == 1


def test_listeners_added_twice_run_once_and_can_be_removed(log: list[str]) -> None:
    machine = ApprovalImpl("c")
    listener = Log(log, "x")
    machine.add_listener(listener)
    machine.add_listener(listener)
    machine.submit()
    assert log == ["x.pre Draft->Review", "x.post Draft->Review"]
    machine.remove_listener(listener)
    with pytest.raises(ValueError, match="not a listener"):
        machine.remove_listener(listener)


def test_class_listeners_see_every_instance_and_subclasses(log: list[str]) -> None:
    listener = Log(log, "cls")
    Approval.add_class_listener(listener)
    try:
        ApprovalImpl("a").submit()
        Approval("b").submit()
        assert log == ["cls.pre Draft->Review", "cls.post Draft->Review"] * 2
    finally:
        Approval.remove_class_listener(listener)
    log.clear()
    ApprovalImpl("c").submit()
    assert log == []


def test_class_listeners_on_a_subclass_switch_the_fast_path_off_then_on(log: list[str]) -> None:
    """The generated fast path checks only the instance: class listeners empty its tables
    (every transition then takes the full path) and removing the last one refills them."""
    full = {event: dict(table) for event, table in zip("abcdef", VM._PLAIN, strict=False)}
    listener = Log(log, "sub")

    class Watched(VM):  # type: ignore[misc,valid-type]
        __slots__ = ()

    Watched.add_class_listener(listener)
    try:
        assert not any(VM._PLAIN)
        sibling, watched = VM("plain"), Watched("watched")
        sibling.start_requested()
        watched.start_requested()
        assert sibling.state is watched.state is VM.State.Starting
        assert log == ["sub.pre Allocated->Starting", "sub.post Allocated->Starting"]
    finally:
        Watched.remove_class_listener(listener)
    assert {event: dict(table) for event, table in zip("abcdef", VM._PLAIN, strict=False)} == full


def test_a_subclass_dying_with_class_listeners_gives_the_fast_path_back(log: list[str]) -> None:
    import gc

    def make_and_forget() -> None:
        class Temporary(VM):  # type: ignore[misc,valid-type]
            __slots__ = ()

        Temporary.add_class_listener(Log(log, "tmp"))
        assert not any(VM._PLAIN)

    make_and_forget()
    gc.collect()
    assert all(VM._PLAIN)


def test_default_guard_and_action_name_the_spec_line() -> None:
    with pytest.raises(NotImplementedError, match=r"can_stop is a guard declared at vm\.fsm:13"):
        VM("vm", state="Running").stop_requested()


def test_create_accepts_only_start_states() -> None:
    assert Approval.create("c").state is Approval.State.Draft
    assert Approval.create("c", state="Imported").state is Approval.State.Imported
    with pytest.raises(ValueError, match="cannot start in Review; it starts in Draft or Imported"):
        Approval.create("c", state="Review")
    assert Approval("c", state="Review").state is Approval.State.Review
    assert Approval.SPEC.entries == ("Imported",)


def test_reentrant_fire_before_the_state_changed_is_refused() -> None:
    class Eager(VM):  # type: ignore[misc,valid-type]
        __slots__ = ()

        def can_stop(self, **payload: Any) -> bool:
            self.crashed()
            return True

    vm = Eager("vm", state="Running")
    with pytest.raises(ReentrantTransition, match="before its state changed"):
        vm.stop_requested()
    assert vm.state is VM.State.Running


def test_reentrant_fire_from_a_post_listener_posts_in_order() -> None:
    bus = RecordingBus()
    vm = VM("vm", bus=bus, state="Stopped")

    class Chain:
        def post_transition(self, event: StateChanged) -> None:
            if event.new_state == "Starting":
                vm.operation_succeeded()

    vm.add_listener(Chain())
    assert vm.start_requested() is VM.State.Starting
    assert vm.state is VM.State.Running
    assert [(e.old_state, e.new_state) for e in bus.events] == [
        ("Stopped", "Starting"), ("Starting", "Running")]


def test_racing_threads_exactly_one_wins() -> None:
    for _ in range(50):
        vm = VM("vm", state="Stopped", bus=RecordingBus())
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def race(vm: Any = vm, barrier: threading.Barrier = barrier,
                 outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                vm.start_requested()
                outcomes.append("won")
            except InvalidTransition:
                outcomes.append("lost")

        threads = [threading.Thread(target=race) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_eight_threads_many_fires_no_lost_or_doubled_transitions() -> None:
    """A cycle Stopped → Starting → Running → Stopping → Stopped driven by 8 threads: each
    successful fire is one transition, so the event count equals the successes and the posted
    events chain without a gap."""

    class Always(VM):  # type: ignore[misc,valid-type]
        __slots__ = ()

        def can_stop(self, **payload: Any) -> bool:
            return True

        def release_host(self, **payload: Any) -> None:
            pass

    bus = RecordingBus()
    vm = Always("vm", bus=bus, state="Stopped")
    successes = [0] * 8
    cycle = ["start_requested", "operation_succeeded", "stop_requested", "operation_succeeded"]

    def work(index: int) -> None:
        for step in range(4000):
            try:
                getattr(vm, cycle[(step + index) % 4])()
                successes[index] += 1
            except InvalidTransition:
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(successes) == len(bus.events) > 0
    for before, after in zip(bus.events, bus.events[1:], strict=False):
        assert before.new_state == after.old_state


def test_afire_with_async_guards_actions_and_listeners() -> None:
    order: list[str] = []

    class AsyncApproval(Approval):  # type: ignore[misc,valid-type]
        __slots__ = ()

        async def small(self, **payload: Any) -> bool:
            await asyncio.sleep(0)
            order.append("guard")
            return True

        async def notify(self, **payload: Any) -> None:
            await asyncio.sleep(0)
            order.append("action")

    class AsyncListener:
        async def pre_transition(self, event: StateChanged) -> None:
            order.append("pre")

        async def post_transition(self, event: StateChanged) -> None:
            order.append("post")

    bus = RecordingBus()
    machine = AsyncApproval("c", bus=bus, state="Review")
    machine.add_listener(AsyncListener())
    assert asyncio.run(machine.afire("Approve")) is Approval.State.Approved
    assert order == ["guard", "pre", "action", "post"]
    assert [e.new_state for e in bus.events] == ["Approved"]
    with pytest.raises(TypeError, match="async"):
        AsyncApproval("d", state="Review").approve()


def test_concurrent_afire_calls_are_serialised() -> None:
    class Slow(VM):  # type: ignore[misc,valid-type]
        __slots__ = ()

        async def can_stop(self, **payload: Any) -> bool:
            await asyncio.sleep(0.01)
            return True

    async def main() -> list[str]:
        vm = Slow("vm", state="Running")
        results = await asyncio.gather(vm.afire("StopRequested"), vm.afire("StopRequested"),
                                       return_exceptions=True)
        return sorted(type(r).__name__ for r in results)

    assert asyncio.run(main()) == ["InvalidTransition", "State"]


def test_reentrant_fire_from_an_async_guard_is_refused_not_deadlocked() -> None:
    class Eager(VM):  # type: ignore[misc,valid-type]
        __slots__ = ()

        async def can_stop(self, **payload: Any) -> bool:
            self.crashed()
            return True

    vm = Eager("vm", state="Running")
    with pytest.raises(ReentrantTransition):
        asyncio.run(vm.afire("StopRequested"))
    assert vm.state is VM.State.Running


def test_a_bus_subscriber_may_fire_the_same_machine() -> None:
    """A synchronous subscriber reacting to Starting by firing OperationSucceeded: the nested
    transition runs, and its event reaches the bus after the one that caused it."""
    seen: list[tuple[str, str]] = []

    class ReactingBus:
        def post(self, event: object) -> None:
            assert isinstance(event, StateChanged)
            seen.append((event.old_state, event.new_state))
            if event.new_state == "Starting":
                vm.operation_succeeded()

    vm = VM("vm", bus=ReactingBus(), state="Stopped")
    vm.start_requested()
    assert vm.state is VM.State.Running
    assert seen == [("Stopped", "Starting"), ("Starting", "Running")]
