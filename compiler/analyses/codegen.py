"""E108: names that generated Python code could not take as they are.

States and events become enum members, events become snake_case methods, guards and actions
become methods; all of them share the class namespace with the runtime's own members.
"""

from __future__ import annotations

from collections.abc import Iterator

from fsmc.compiler.naming import (
    enum_member_problem,
    machine_problem,
    method_problem,
    snake_case,
)
from fsmc.dsl.diagnostics import Diagnostic, make
from fsmc.dsl.model import Machine, Name


def _hooks(machine: Machine) -> dict[str, Name]:
    hooks: dict[str, Name] = {}
    for transition in machine.transitions:
        for hook in (transition.guard, transition.action):
            if hook is not None:
                hooks.setdefault(hook.name.text, hook.name)
    return hooks


def _event_names(machine: Machine) -> dict[str, Name]:
    events: dict[str, Name] = {}
    for event in machine.events or ():
        events.setdefault(event.text, event)
    for transition in machine.transitions:
        events.setdefault(transition.event.text, transition.event)
    return events


def generated_name_collisions(machine: Machine) -> Iterator[Diagnostic]:
    """E108: keywords, reserved members and names that collide after snake_case."""
    machine_name = machine.name.text
    if problem := machine_problem(machine_name):
        yield make("E108", machine.name.span, f"machine name {problem}", "rename the machine")
    for decl in machine.states:
        if problem := enum_member_problem(decl.name.text):
            yield make("E108", decl.name.span, f"state name {problem}", "rename the state")
    methods: dict[str, tuple[str, Name]] = {}
    for event_name, event in _event_names(machine).items():
        if problem := enum_member_problem(event_name):
            yield make("E108", event.span, f"event name {problem}", "rename the event")
            continue
        method = snake_case(event_name)
        if problem := method_problem(method, machine_name):
            yield make("E108", event.span,
                       f"event `{event_name}` becomes the method `{method}()`, but {problem}",
                       "rename the event")
        elif method in methods:
            other = methods[method][1]
            yield make("E108", event.span,
                       f"events `{other.text}` (line {other.span.line}) and `{event_name}` both "
                       f"become the method `{method}()`", "rename one of them")
        else:
            methods[method] = ("event", event)
    for hook_name, hook in _hooks(machine).items():
        if problem := method_problem(hook_name, machine_name):
            yield make("E108", hook.span, f"guard or action name {problem}", "rename it")
        elif hook_name in methods:
            other = methods[hook_name][1]
            yield make("E108", hook.span,
                       f"`{hook_name}` is a guard or action, but event `{other.text}` "
                       f"(line {other.span.line}) already becomes the method `{hook_name}()`",
                       "rename the guard or action")
