"""For random specs, the generated class behaves exactly like an interpreter of the model:
every (state, event) pair under every guard valuation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fsmc.runtime import GuardRejected, InvalidTransition
from hypothesis import HealthCheck, given, settings

from tests.generation import GUARDS, RandomSpec, compile_spec, random_specs


def implemented(cls: type) -> type:
    """A subclass whose guards read their verdict from the payload and whose action counts."""

    def guard(name: str) -> Any:
        def method(self: Any, **payload: Any) -> bool:
            return bool(payload[name])
        return method

    namespace: dict[str, Any] = {name: guard(name) for name in GUARDS if hasattr(cls, name)}
    namespace["__slots__"] = ()
    if hasattr(cls, "act"):
        def act(self: Any, **payload: Any) -> None:
            payload["calls"].append(self.state.name)
        namespace["act"] = act
    return type("Implemented", (cls,), namespace)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs())
def test_generated_class_matches_the_interpreter(spec: RandomSpec) -> None:
    module = compile_spec(spec.text(), "random")
    cls = implemented(module.Random)
    for state, event in itertools.product(spec.states, spec.events):
        for values in itertools.product([False, True], repeat=len(GUARDS)):
            guards = dict(zip(GUARDS, values, strict=True))
            expected = spec.expected(state, event, guards)
            machine = cls("r", state=state)
            calls: list[str] = []
            payload = {**guards, "calls": calls}
            if expected is None:
                with pytest.raises(InvalidTransition):
                    machine.fire(event, **payload)
                assert machine.state.name == state
                assert not machine.can_fire(event, **payload)
            elif expected == "REJECTED":
                with pytest.raises(GuardRejected):
                    machine.fire(event, **payload)
                assert machine.state.name == state
                assert not machine.can_fire(event, **payload)
            else:
                assert machine.can_fire(event, **payload)
                assert machine.fire(event, **payload) is cls.State[expected]
                assert machine.state is cls.State[expected]
            allowed = {e.name for e in cls("r", state=state).allowed_events()}
            assert (event in allowed) == any(
                t.source == state and t.event == event for t in spec.transitions)


@settings(max_examples=30, deadline=None)
@given(random_specs())
def test_spec_data_matches_the_spec(spec: RandomSpec) -> None:
    cls = compile_spec(spec.text(), "random").Random
    assert cls.SPEC.states == spec.states
    assert cls.SPEC.events == spec.events
    assert cls.SPEC.initial == spec.states[0]
    assert set(cls.SPEC.finals) == set(spec.finals)
    assert [(t.source, t.event, t.target, t.guard, t.negated, t.action, t.tags)
            for t in cls.SPEC.transitions] == [
        (t.source, t.event, t.target, t.guard, t.negated, t.action, t.tags)
        for t in spec.transitions]


def test_states_and_events_are_their_names_as_strings() -> None:
    """`machine.state == "Allocated"` and `json.dumps({"s": machine.state})` work: members are
    strings (a `StrEnum`), named and valued exactly as in the spec."""
    import json

    from tests.generation import compile_spec

    module = compile_spec("machine Vm { initial Allocated; state Running; "
                          "Allocated -> Running : Start }", "strenum")
    vm = module.Vm("vm-1")
    assert vm.state == "Allocated" and isinstance(vm.state, str)
    dumped = json.dumps({"s": vm.state, "e": module.Vm.Event.Start})
    assert dumped == '{"s": "Allocated", "e": "Start"}'
    assert f"{vm.state}" == str(vm.state) == vm.state.name == vm.state.value == "Allocated"
    assert {vm.state: 1}["Allocated"] == 1 and hash(vm.state) == hash("Allocated")
    assert vm.fire("Start") == "Running" and vm.state is module.Vm.State.Running
    assert [m.name for m in module.Vm.State] == ["Allocated", "Running"]
