"""What a spec says at each position: the diagnostics of `fsmc check` and every occurrence
of a name (state, event, guard, action, machine), with its role and whether it declares."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from fsmc.compiler.project import check_results
from fsmc.dsl.diagnostics import Diagnostic, Severity
from fsmc.dsl.loader import load_text
from fsmc.dsl.model import Machine, Name, SpecFile, StateDecl, Transition
from fsmc.dsl.spans import Span


class Role(enum.Enum):
    MACHINE = "machine"
    STATE = "state"
    EVENT = "event"
    GUARD = "guard"
    ACTION = "action"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A name written at `span`, in machine number `machine` of the file."""

    text: str
    role: Role
    span: Span
    machine: int
    declares: bool = False


@dataclass(frozen=True)
class Analysis:
    """One version of a document: its text, model (None after a syntax error), diagnostics
    with their severity as `fsmc check` reports it, and the name occurrences by line."""

    path: str
    text: str
    spec: SpecFile | None
    diagnostics: tuple[tuple[Diagnostic, Severity], ...]
    occurrences: tuple[Occurrence, ...] = ()
    _by_line: dict[int, list[Occurrence]] = field(default_factory=dict, repr=False,
                                                  compare=False)

    def __post_init__(self) -> None:
        for occurrence in self.occurrences:
            self._by_line.setdefault(occurrence.span.line, []).append(occurrence)

    def at(self, line: int, column: int) -> Occurrence | None:
        """The occurrence under a 1-based line and code-point column (its end included, so a
        cursor just after a name finds it)."""
        for occurrence in self._by_line.get(line, ()):
            if occurrence.span.column <= column <= occurrence.span.end_column:
                return occurrence
        return None

    def machine(self, index: int) -> Machine | None:
        if self.spec is None or not 0 <= index < len(self.spec.machines):
            return None
        return self.spec.machines[index]

    def machine_at(self, line: int) -> int | None:
        """The machine whose block holds a 1-based line."""
        if self.spec is None:
            return None
        starts = [m.span.line if m.span else 0 for m in self.spec.machines]
        index = bisect.bisect_right(starts, line) - 1
        return index if index >= 0 else None

    def same_name(self, occurrence: Occurrence) -> list[Occurrence]:
        """Every occurrence of the same name in the same role and machine, in file order."""
        return [o for o in self.occurrences if o.text == occurrence.text and
                o.role is occurrence.role and o.machine == occurrence.machine]


def analyse(text: str, path: str) -> Analysis:
    """Load and check `text` as `fsmc check` does, and index its names."""
    loaded = load_text(text.removeprefix("\ufeff"), path)
    project = check_results([loaded])
    diagnostics = tuple((d, project.severity(d)) for d in project.diagnostics)
    if loaded.spec is None:
        return Analysis(path, text, None, diagnostics)
    return Analysis(path, text, loaded.spec, diagnostics, tuple(_occurrences(loaded.spec)))


def _occurrences(spec: SpecFile) -> Iterator[Occurrence]:
    for index, machine in enumerate(spec.machines):
        seen: set[tuple[Span, Role]] = set()

        def once(name: Name, role: Role, declares: bool = False,
                 index: int = index, seen: set[tuple[Span, Role]] = seen) -> Iterator[Occurrence]:
            if (name.span, role) not in seen:
                seen.add((name.span, role))
                yield Occurrence(name.text, role, name.span, index, declares)

        yield from once(machine.name, Role.MACHINE, True)
        for decl in machine.declarations:
            yield from once(decl.name, Role.STATE, True)
        for event in machine.events or ():
            yield from once(event, Role.EVENT, True)
        for transition in machine.transitions:
            if not transition.via_star:
                yield from once(transition.source, Role.STATE)
            yield from once(transition.target, Role.STATE)
            yield from once(transition.event, Role.EVENT)
            if transition.guard is not None:
                yield from once(transition.guard.name, Role.GUARD)
            if transition.action is not None:
                yield from once(transition.action.name, Role.ACTION)
            for tag in transition.tags:
                yield from once(tag, Role.TAG)


def declaration(machine: Machine, name: str) -> StateDecl | None:
    """The first declaration of a state."""
    return next((d for d in machine.declarations if d.name.text == name), None)


def transitions_of(machine: Machine, occurrence: Occurrence) -> list[Transition]:
    """The transitions an event, guard, action or tag takes part in, one per statement."""
    found: dict[object, Transition] = {}
    for transition in machine.transitions:
        role = occurrence.role
        if (role is Role.EVENT and transition.event.text == occurrence.text) or (
                role is Role.GUARD and transition.guard is not None
                and transition.guard.name.text == occurrence.text) or (
                role is Role.ACTION and transition.action is not None
                and transition.action.name.text == occurrence.text) or (
                role is Role.TAG and occurrence.text in transition.tag_names):
            found.setdefault((transition.span, transition.source.text), transition)
    return list(found.values())
