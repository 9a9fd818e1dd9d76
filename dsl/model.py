"""The language as plain data: frozen dataclasses that carry their source spans.

The builder turns a parse tree into a `SpecFile`; everything after it (analyses, emitters)
reads only these classes. Names keep the span where they were written, so any later phase can
point at them. `*` sources and multi-source transitions are already expanded here: one
`Transition` per (source, event, target).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from .spans import SourceText, Span


class Name(NamedTuple):
    """An identifier as written at one place of the spec (a named tuple: specs of 100k
    transitions hold hundreds of thousands of them)."""

    text: str
    span: Span

    def __str__(self) -> str:
        return self.text


class StateKind(enum.Enum):
    INITIAL = "initial"
    ENTRY = "entry"
    FINAL = "final"
    NORMAL = "state"


@dataclass(frozen=True, slots=True)
class StateDecl:
    """One declaration of a state (a duplicate declaration is a second `StateDecl`)."""

    name: Name
    kind: StateKind
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Guard:
    """`if name` or `unless name` (negated); `keyword` spans the `if`/`unless`."""

    name: Name
    negated: bool
    keyword: Span


@dataclass(frozen=True, slots=True)
class Action:
    """`do name`; `keyword` spans the `do`."""

    name: Name
    keyword: Span


@dataclass(frozen=True, slots=True)
class Transition:
    """One (source, event, target) edge. `via_star` marks an expansion of `*`."""

    source: Name
    target: Name
    event: Name
    guard: Guard | None = None
    action: Action | None = None
    tags: tuple[Name, ...] = ()
    via_star: bool = False
    span: Span | None = None

    @property
    def line(self) -> int:
        return self.event.span.line

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(tag.text for tag in self.tags)


class AssertionKind(enum.Enum):
    """The forms of `assert`, by the words that follow it."""

    REACHABLE = "reachable"  # assert reachable S
    REACHABLE_FROM = "reachable from"  # assert reachable S from A, B   (or `from *`)
    NEVER = "never"  # assert never A -> B
    ONLY_FROM = "only from"  # assert S only from A, B
    ONLY_IN = "only in"  # assert E only in A, B        (E an event)
    LEADS_TO = "leads to"  # assert A leads to B


@dataclass(frozen=True, slots=True)
class Assertion:
    """One `assert` statement. `subject` is the state (the event, for `only in`) the form is
    about: S of `reachable S`, A of `never A -> B` and `A leads to B`; `target` is B of those
    two; `names` the list after `from`/`in` (empty for `from *`, which sets `from_any`).
    `expect_refuted` marks a documented expected failure (`[refuted]`): the check then proves
    that it does not hold. `span` covers the statement, `keyword` the `assert`."""

    kind: AssertionKind
    subject: Name
    target: Name | None = None
    names: tuple[Name, ...] = ()
    from_any: bool = False
    expect_refuted: bool = False
    span: Span | None = None
    keyword: Span | None = None

    @property
    def line(self) -> int:
        return self.subject.span.line

    @property
    def text(self) -> str:
        """The assertion as written, canonically (`never A -> B`, `S only from A, B`)."""
        listed = "*" if self.from_any else ", ".join(name.text for name in self.names)
        subject, target = self.subject.text, self.target.text if self.target else ""
        form = {
            AssertionKind.REACHABLE: f"reachable {subject}",
            AssertionKind.REACHABLE_FROM: f"reachable {subject} from {listed}",
            AssertionKind.NEVER: f"never {subject} -> {target}",
            AssertionKind.ONLY_FROM: f"{subject} only from {listed}",
            AssertionKind.ONLY_IN: f"{subject} only in {listed}",
            AssertionKind.LEADS_TO: f"{subject} leads to {target}",
        }[self.kind]
        return form + (" [refuted]" if self.expect_refuted else "")


@dataclass(frozen=True, slots=True)
class Move:
    """`moved source -> target`: stored rows still in the removed state `source` belong in
    the declared state `target` (`fsmc migrate --apply` moves them)."""

    source: Name
    target: Name
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    """A `machine` block. `declarations` keeps every state declaration in file order,
    duplicates included; `events` is None when the machine declares no events; `assertions`
    are its `assert` statements and `moves` its `moved` statements, in file order."""

    name: Name
    doc: str | None
    declarations: tuple[StateDecl, ...]
    transitions: tuple[Transition, ...]
    events: tuple[Name, ...] | None = None
    span: Span | None = None
    assertions: tuple[Assertion, ...] = ()
    moves: tuple[Move, ...] = ()

    @property
    def states(self) -> tuple[StateDecl, ...]:
        """The first declaration of each state, in declaration order."""
        seen: dict[str, StateDecl] = {}
        for decl in self.declarations:
            seen.setdefault(decl.name.text, decl)
        return tuple(seen.values())

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(decl.name.text for decl in self.states)

    @property
    def initial(self) -> StateDecl | None:
        return next((d for d in self.declarations if d.kind is StateKind.INITIAL), None)

    @property
    def entries(self) -> tuple[StateDecl, ...]:
        """The initial state followed by the `entry` states: where a new resource may start."""
        return tuple(d for d in self.states if d.kind in (StateKind.INITIAL, StateKind.ENTRY))

    @property
    def finals(self) -> tuple[StateDecl, ...]:
        return tuple(d for d in self.states if d.kind is StateKind.FINAL)

    @property
    def event_names(self) -> tuple[str, ...]:
        """Declared events first (in order), then events first used by a transition."""
        names: dict[str, None] = {}
        for event in self.events or ():
            names.setdefault(event.text, None)
        for transition in self.transitions:
            names.setdefault(transition.event.text, None)
        return tuple(names)

    @property
    def moved(self) -> dict[str, str]:
        """Each moved state's target, the first `moved` of a state winning."""
        targets: dict[str, str] = {}
        for move in self.moves:
            targets.setdefault(move.source.text, move.target.text)
        return targets

    @property
    def docs(self) -> dict[str, str]:
        return {d.name.text: d.doc for d in self.states if d.doc is not None}


@dataclass(frozen=True)
class SpecFile:
    """The machines of one `.fsm` file, and its text for diagnostics."""

    source: SourceText
    machines: tuple[Machine, ...] = field(default_factory=tuple)

    @property
    def path(self) -> str:
        return self.source.path
