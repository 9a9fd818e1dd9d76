"""transitions and python-statemachine written for the VirtualMachine cycle in their idiomatic
form (`bench.machines` has the generated and hand-written contenders), and helpers shared by
the cases: walking any contender to a state, compiling a spec in memory."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from bench.machines import CYCLE, STATES

# -- transitions -----------------------------------------------------------------------------

TRANSITIONS_TABLE = [
    {"trigger": "start_requested", "source": "Stopped", "dest": "Starting"},
    {"trigger": "operation_succeeded", "source": "Starting", "dest": "Running"},
    {"trigger": "operation_succeeded", "source": "Stopping", "dest": "Stopped"},
    {"trigger": "stop_requested", "source": "Running", "dest": "Stopping"},
]


class TransitionsModel:
    """A model object of the `transitions` library: the machine adds the trigger methods."""

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id


def transitions_own(resource_id: object = "vm-1",
                    callback: Callable[[Any], object] | None = None) -> TransitionsModel:
    """A `transitions.Machine` per object (the documented default)."""
    from transitions import Machine

    model = TransitionsModel(resource_id)
    Machine(model=model, states=list(STATES), transitions=TRANSITIONS_TABLE, initial="Stopped",
            auto_transitions=False, send_event=callback is not None,
            after_state_change=[callback] if callback else None)  # type: ignore[list-item]
    return model


def transitions_shared_factory(callback: Callable[[Any], object] | None = None
                               ) -> Callable[[object], TransitionsModel]:
    """A fresh `transitions.Machine` shared by every model the returned function makes (the
    library's way to save memory: one machine, many models)."""
    from transitions import Machine

    machine = Machine(model=None, states=list(STATES), transitions=TRANSITIONS_TABLE,
                      initial="Stopped", auto_transitions=False,
                      send_event=callback is not None,
                      after_state_change=[callback] if callback else None)  # type: ignore[list-item]

    def make(resource_id: object = "vm-1") -> TransitionsModel:
        model = TransitionsModel(resource_id)
        machine.add_model(model)
        return model

    return make


def transitions_shared(resource_id: object = "vm-1",
                       callback: Callable[[Any], object] | None = None,
                       others: int = 999) -> TransitionsModel:
    """One model of a shared machine that also drives `others` models."""
    make = transitions_shared_factory(callback)
    for index in range(others):
        make(f"other-{index}")
    return make(resource_id)


# -- python-statemachine ---------------------------------------------------------------------


@functools.cache
def statemachine_class() -> type[Any]:
    from statemachine import State, StateMachine

    class VirtualMachineSM(StateMachine):
        stopped = State("Stopped", initial=True)
        starting = State("Starting")
        running = State("Running")
        stopping = State("Stopping")

        start_requested = stopped.to(starting)
        operation_succeeded = starting.to(running) | stopping.to(stopped)
        stop_requested = running.to(stopping)

    return VirtualMachineSM


class StatemachineListener:
    """A python-statemachine listener forwarding each transition to one subscriber."""

    def __init__(self, subscriber: Callable[[object], object]) -> None:
        self.subscriber = subscriber

    def after_transition(self, event: Any, source: Any, target: Any) -> None:
        self.subscriber((event, source, target))


def statemachine(subscriber: Callable[[object], object] | None = None) -> Any:
    listeners = [StatemachineListener(subscriber)] if subscriber else []
    return statemachine_class()(listeners=listeners)


def set_state(machine: Any, state: str) -> Any:
    """Walk `machine` (any contender) along the cycle until it is in `state`."""
    for source, method, _target in CYCLE * 2:
        if _state_name(machine) == state:
            return machine
        assert _state_name(machine) == source, (machine, source)
        getattr(machine, method)()
    raise AssertionError(state)


def _state_name(machine: Any) -> str:
    if hasattr(machine, "configuration"):  # python-statemachine 3
        return str(next(iter(machine.configuration)).name)
    state = machine.state
    return state if isinstance(state, str) else str(state.name)


def machine_module(text: str, name: str) -> ModuleType:
    """Check and emit `text` (no errors allowed) and import the generated module."""
    from fsmc.compiler.project import check_results
    from fsmc.compiler.pyemit import module_view, render_module
    from fsmc.dsl.loader import load_text

    project = check_results([load_text(text, f"{name}.fsm")])
    assert project.ok, [d.message for d in project.errors()]
    [spec] = project.specs
    source = render_module(module_view(spec, f"{name}.fsm"), "bench")
    module = ModuleType(f"_bench_{name}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{module.__name__}.py", "exec"), module.__dict__)
    return module
