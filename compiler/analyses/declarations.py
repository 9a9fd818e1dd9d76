"""Rules about declarations and names: every name resolves, nothing is declared twice."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence

from fsmc.dsl.diagnostics import Diagnostic, Related, make
from fsmc.dsl.model import Machine, Name, StateKind


def did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    """The nearest candidate, preferring one that differs only in case."""
    for candidate in candidates:
        if candidate.lower() == name.lower():
            return f"did you mean `{candidate}`?"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def grouped_uses(uses: Iterable[Name], code_id: str, what: str,
                 hint: Callable[[str], str]) -> Iterator[Diagnostic]:
    """One `code_id` error per distinct name in `uses`, at its first use, with the other uses
    as related places (one misspelt name used four times is one mistake, not four)."""
    by_name: dict[str, list[Name]] = {}
    for name in uses:
        by_name.setdefault(name.text, []).append(name)
    for text, (first, *others) in by_name.items():
        counted = f" (used {len(others) + 1} times)" if others else ""
        yield make(code_id, first.span, f"{what} `{text}` is not declared{counted}", hint(text),
                   tuple(Related(other.span, f"`{text}` is used here too") for other in others))


def undeclared_states(machine: Machine) -> Iterator[Diagnostic]:
    """E101: a transition names a state that is not declared."""
    names = machine.state_names
    declared = set(names)
    uses = (name for transition in machine.transitions if not transition.via_star
            for name in (transition.source, transition.target) if name.text not in declared)
    yield from grouped_uses(
        uses, "E101", "state",
        lambda text: did_you_mean(text, names) or f"declare it: `state {text}`")


def undeclared_events(machine: Machine) -> Iterator[Diagnostic]:
    """E102: in a machine with `events`, a transition uses an event it did not declare."""
    if machine.events is None:
        return
    declared = [event.text for event in machine.events]
    known = set(declared)
    uses = (t.event for t in machine.transitions if t.event.text not in known)
    yield from grouped_uses(
        uses, "E102", "event",
        lambda text: did_you_mean(text, declared) or f"add it to `events`: {text}")


def duplicate_states(machine: Machine) -> Iterator[Diagnostic]:
    """E103: a state declared twice; reported at the second declaration."""
    first: dict[str, Name] = {}
    for decl in machine.declarations:
        name = decl.name
        if name.text in first:
            line = first[name.text].span.line
            yield make("E103", name.span, f"state `{name.text}` is already declared on line {line}",
                       "declare each state once; `initial`, `entry` and `final` already declare it")
        else:
            first[name.text] = name


def duplicate_events(machine: Machine) -> Iterator[Diagnostic]:
    """E104: `events` names one event twice."""
    first: dict[str, Name] = {}
    for event in machine.events or ():
        if event.text in first:
            line = first[event.text].span.line
            yield make("E104", event.span,
                       f"event `{event.text}` is already declared on line {line}")
        else:
            first[event.text] = event


def initial_state(machine: Machine) -> Iterator[Diagnostic]:
    """E105 / E106: exactly one `initial` per machine."""
    initials = [d for d in machine.declarations if d.kind is StateKind.INITIAL]
    if not initials:
        yield make("E105", machine.name.span, f"machine `{machine.name.text}` has no initial state",
                   "add `initial <State>`; new resources start there")
    for extra in initials[1:]:
        yield make("E106", extra.name.span,
                   f"machine `{machine.name.text}` already has an initial state "
                   f"(`{initials[0].name.text}`, line {initials[0].name.span.line})",
                   "declare other starting states with `entry`")


def duplicate_machines(machines: Iterable[Name]) -> Iterator[Diagnostic]:
    """E107: two machines with one name, in one file or across the files checked together
    (`machines`: every machine's name, in file order)."""
    first: dict[str, Name] = {}
    for name in machines:
        if name.text in first:
            where = first[name.text].span
            yield make("E107", name.span,
                       f"machine `{name.text}` is already defined at {where.path}:{where.line}",
                       "machine names become class names; give each one its own")
        else:
            first[name.text] = name
