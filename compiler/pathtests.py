"""Test plans as text, JSON and a pytest module that drives a generated class along each path.

The pytest module imports the generated class (`<package>.<module>`), subclasses it so that
every guard answers what the plan needs (the answer travels in the payload under the guard's
own name: `stop_requested(can_stop=True)`) and every action is recorded, then for each path
creates an instance in the path's start state, fires each event through its generated method
and asserts the state after it (a refusal: `GuardRejected`, the state unchanged) and the
action that ran.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fsmc.dsl.model import Machine

from .naming import snake_case
from .paths import Outcome, Plan, TestPath


def plan_text(plan: Plan) -> str:
    lines = [f"{plan.machine}: {len(plan.paths)} path{'s' if len(plan.paths) != 1 else ''}, "
             f"{sum(len(p.steps) for p in plan.paths)} steps, covering "
             f"{plan.outcomes - len(plan.unreachable)} of {plan.outcomes} outcomes "
             f"({plan.transitions} transitions)"]
    for number, path in enumerate(plan.paths, 1):
        lines.append(f"  path {number} from {path.start} ({len(path.steps)} "
                     f"step{'s' if len(path.steps) != 1 else ''}):")
        lines.extend(f"    {step.label}" for step in path.steps)
    for outcome in plan.unreachable:
        lines.append(f"  not covered (its state cannot be reached): {outcome.label} "
                     f"(line {outcome.line})")
    for transition, why in plan.impossible:
        lines.append(f"  never taken ({why}): {transition.source.text} --"
                     f"{transition.event.text}--> {transition.target.text} "
                     f"(line {transition.line})")
    return "\n".join(lines)


def _step_json(step: Outcome) -> dict[str, object]:
    return {"state": step.source, "event": step.event, "guards": dict(step.guards),
            "target": step.target, "refused": step.refused, "line": step.line}


def plans_json(plans: Sequence[Plan]) -> str:
    return json.dumps([
        {"machine": plan.machine, "outcomes": plan.outcomes, "transitions": plan.transitions,
         "paths": [{"start": path.start, "steps": [_step_json(s) for s in path.steps]}
                   for path in plan.paths],
         "unreachable": [_step_json(o) for o in plan.unreachable],
         "impossible": [{"state": t.source.text, "event": t.event.text,
                         "target": t.target.text, "line": t.line, "why": why}
                        for t, why in plan.impossible]}
        for plan in plans], indent=2, ensure_ascii=False)


def _hooks(machine: Machine) -> tuple[list[str], list[str]]:
    guards: dict[str, None] = {}
    actions: dict[str, None] = {}
    for transition in machine.transitions:
        if transition.guard is not None:
            guards.setdefault(transition.guard.name.text, None)
        if transition.action is not None:
            actions.setdefault(transition.action.name.text, None)
    return list(guards), list(actions)


def _planned_class(machine: Machine) -> list[str]:
    name = machine.name.text
    guards, actions = _hooks(machine)
    lines = [f"class Planned{name}({name}):",
             '    """Guards answer what the path planned (the payload entry named after the '
             'guard);',
             '    actions are recorded in `ran`."""', "",
             "    def __init__(self, resource_id: object, *, state: str) -> None:",
             "        super().__init__(resource_id, state=state)",
             "        self.ran: list[str] = []", ""]
    for guard in guards:
        lines += [f"    def {guard}(self, **payload: Any) -> bool:",
                  f"        return bool(payload[{guard!r}])", ""]
    for action in actions:
        lines += [f"    def {action}(self, **payload: Any) -> None:",
                  f"        self.ran.append({action!r})", ""]
    return lines


def _test(machine: Machine, number: int, path: TestPath) -> list[str]:
    name = machine.name.text
    lines = ["", "", f"def test_{snake_case(name)}_path_{number}() -> None:",
             f'    """From {path.start}: ' + "; ".join(s.label for s in path.steps)[:400]
             .replace("\\", "\\\\").replace('"""', "'''") + '"""',
             f"    machine = Planned{name}({f'{name}-path-{number}'!r}, state={path.start!r})"]
    for step in path.steps:
        method = snake_case(step.event)
        payload = ", ".join(f"{guard}={value}" for guard, value in step.guards)
        call = f"machine.{method}({payload})"
        lines.append(f"    # line {step.line}: {step.label}")
        if step.target is None:
            lines += ["    with pytest.raises(GuardRejected):", f"        {call}",
                      f"    assert machine.state is {name}.State.{step.source}"]
            continue
        lines += [f"    assert {call} is {name}.State.{step.target}",
                  f"    assert machine.state is {name}.State.{step.target}"]
        action = step.transition.action if step.transition is not None else None
        expected = [action.name.text] if action is not None else []
        if _hooks(machine)[1]:
            lines += [f"    assert machine.ran == {expected!r}", "    machine.ran.clear()"]
    return lines


def pytest_module(specs: Sequence[tuple[Machine, Plan]], *, source: str, module: str,
                  package: str) -> str:
    """The test module for the plans of one spec file's machines."""
    names = ", ".join(machine.name.text for machine, _ in specs)
    lines = [f"# Generated by `fsmc paths --format pytest` from {source}. DO NOT EDIT:",
             "# change the spec and generate it again.",
             f'"""Every transition and guard outcome of {names}, driven through the generated '
             'class."""', "", "from __future__ import annotations", "", "from typing import Any",
             "", "import pytest", "from fsmc.runtime import GuardRejected", "",
             f"from {package}.{module} import {names}", ""]
    if not any(path for _, plan in specs for path in plan.paths):
        lines.append("")
    for machine, plan in specs:
        lines += ["", *_planned_class(machine)]
        while lines[-1] == "":
            lines.pop()
        for number, path in enumerate(plan.paths, 1):
            lines += _test(machine, number, path)
    return "\n".join(lines) + "\n"
