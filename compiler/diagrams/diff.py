"""What changed between two versions of a spec: a structural diff, its text summary and its
diagram (added in green, removed in red, changed in amber).

Machines are matched by name, states by name, transitions by (source, event, target); two
transitions with the same key are paired in file order. A paired transition whose guard,
action or tags differ is *changed*; a new target for the same (source, event) is one removal
and one addition. A state is changed when its kind (initial, entry, final, state) or its doc
changed. Comments, order and layout of the file are not changes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from fsmc.dsl.model import Machine, SpecFile, StateDecl, Transition

from .view import (
    ANY_ID,
    EdgeLine,
    EdgeView,
    MachineView,
    Mark,
    NodeView,
    any_node,
    start_nodes,
    state_node,
    transition_label,
)

DIFF_LEGEND = ("Diff: added in green, removed in red (dashed), changed in amber; hover for "
               "details.")


class Status(enum.Enum):
    SAME = " "
    ADDED = "+"
    REMOVED = "-"
    CHANGED = "~"

    @property
    def mark(self) -> Mark:
        return _MARKS[self]


_MARKS = {Status.SAME: Mark.NONE, Status.ADDED: Mark.ADDED, Status.REMOVED: Mark.REMOVED,
          Status.CHANGED: Mark.CHANGED}


@dataclass(frozen=True)
class StateChange:
    name: str
    status: Status
    old: StateDecl | None
    new: StateDecl | None
    details: tuple[str, ...] = ()

    @property
    def decl(self) -> StateDecl:
        decl = self.new or self.old
        assert decl is not None
        return decl


@dataclass(frozen=True)
class TransitionChange:
    status: Status
    old: Transition | None
    new: Transition | None

    @property
    def transition(self) -> Transition:
        transition = self.new or self.old
        assert transition is not None
        return transition

    @property
    def label(self) -> str:
        label = transition_label(self.transition)
        if self.status is Status.CHANGED and self.old is not None:
            label += f" (was: {transition_label(self.old)})"
        return label

    def text(self, *, any_source: bool = False) -> str:
        t = self.transition
        source = "*" if any_source else t.source.text
        return f"{source} -> {t.target.text} : {self.label}"

    def detail(self, *, any_source: bool = False) -> str:
        t = self.transition
        where = "was line" if self.status is Status.REMOVED else "line"
        return f"{where} {t.line}: {self.text(any_source=any_source)}"


@dataclass(frozen=True)
class MachineDiff:
    name: str
    old: Machine | None
    new: Machine | None
    states: tuple[StateChange, ...] = ()
    transitions: tuple[TransitionChange, ...] = ()
    events_added: tuple[str, ...] = ()
    events_removed: tuple[str, ...] = ()
    details: tuple[str, ...] = ()  # about the machine itself (its doc)
    moves_added: tuple[tuple[str, str], ...] = ()  # `moved old -> new`, as (old, new)
    moves_removed: tuple[tuple[str, str], ...] = ()

    @property
    def status(self) -> Status:
        if self.old is None:
            return Status.ADDED
        if self.new is None:
            return Status.REMOVED
        return Status.CHANGED if self.changes() else Status.SAME

    def changes(self) -> list[str]:
        """One summary line per change, `+`/`-`/`~` first."""
        lines = [f"~ machine {detail}" for detail in self.details]
        for state in self.states:
            if state.status is Status.SAME:
                continue
            doc = f' "{state.decl.doc}"' if state.decl.doc and not state.details else ""
            described = ": " + "; ".join(state.details) if state.details else ""
            kind = state.decl.kind.value
            lines.append(f"{state.status.value} {kind} {state.name}{doc}{described}")
        statuses = _star_statuses(self.transitions)
        reported: set[tuple[str, str, str]] = set()
        for change in self.transitions:
            if change.status is Status.SAME:
                continue
            whole = change.transition.via_star and len(statuses[_statement(change)]) == 1
            if whole:  # the `*` statement changed as a whole: one line, not one per state
                if _statement(change) in reported:
                    continue
                reported.add(_statement(change))
            lines.append(f"{change.status.value} {change.text(any_source=whole)}")
        lines.extend(f"+ event {name}" for name in self.events_added)
        lines.extend(f"- event {name}" for name in self.events_removed)
        lines.extend(f"+ moved {old} -> {new}" for old, new in self.moves_added)
        lines.extend(f"- moved {old} -> {new}" for old, new in self.moves_removed)
        return lines


@dataclass(frozen=True)
class SpecDiff:
    old_label: str
    new_label: str
    machines: tuple[MachineDiff, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return any(m.status is not Status.SAME for m in self.machines)


def _star_statuses(changes: Iterable[TransitionChange]) -> dict[tuple[str, str, str], set[Status]]:
    """For each `*` statement, the statuses of its expansions (one status: it changed as a
    whole)."""
    statuses: dict[tuple[str, str, str], set[Status]] = {}
    for change in changes:
        if change.transition.via_star:
            statuses.setdefault(_statement(change), set()).add(change.status)
    return statuses


def _statement(change: TransitionChange) -> tuple[str, str, str]:
    t = change.transition
    return (t.event.text, t.target.text, change.label)


def diff_states(old: Machine | None, new: Machine | None) -> list[StateChange]:
    before = {d.name.text: d for d in old.states} if old else {}
    after = {d.name.text: d for d in new.states} if new else {}
    changes = []
    for name, decl in after.items():
        previous = before.get(name)
        if previous is None:
            changes.append(StateChange(name, Status.ADDED, None, decl))
            continue
        details = []
        if previous.kind is not decl.kind:
            details.append(f"{previous.kind.value} -> {decl.kind.value}")
        if previous.doc != decl.doc:
            details.append(f"doc {_quoted(previous.doc)} -> {_quoted(decl.doc)}")
        status = Status.CHANGED if details else Status.SAME
        changes.append(StateChange(name, status, previous, decl, tuple(details)))
    changes.extend(StateChange(name, Status.REMOVED, decl, None)
                   for name, decl in before.items() if name not in after)
    return changes


def _quoted(doc: str | None) -> str:
    return "(none)" if doc is None else f'"{doc}"'


def _signature(transition: Transition) -> tuple[object, ...]:
    guard = transition.guard
    return (None if guard is None else (guard.name.text, guard.negated),
            None if transition.action is None else transition.action.name.text,
            transition.tag_names)


def diff_transitions(old: Machine | None, new: Machine | None) -> list[TransitionChange]:
    """Changes in the new file's order, then what was removed in the old file's order."""

    def by_key(machine: Machine | None) -> dict[tuple[str, str, str], list[Transition]]:
        groups: dict[tuple[str, str, str], list[Transition]] = {}
        for t in machine.transitions if machine else ():
            groups.setdefault((t.source.text, t.event.text, t.target.text), []).append(t)
        return groups

    before, after = by_key(old), by_key(new)
    changes: list[TransitionChange] = []
    for t in new.transitions if new else ():
        key = (t.source.text, t.event.text, t.target.text)
        index = after[key].index(t)
        previous = before.get(key, [])
        if index >= len(previous):
            changes.append(TransitionChange(Status.ADDED, None, t))
        else:
            same = _signature(previous[index]) == _signature(t)
            changes.append(TransitionChange(Status.SAME if same else Status.CHANGED,
                                            previous[index], t))
    for t in old.transitions if old else ():
        key = (t.source.text, t.event.text, t.target.text)
        if before[key].index(t) >= len(after.get(key, [])):
            changes.append(TransitionChange(Status.REMOVED, t, None))
    return changes


def diff_machines(old: Machine | None, new: Machine | None) -> MachineDiff:
    named = new or old
    assert named is not None
    before = set(old.event_names) if old else set()
    after = set(new.event_names) if new else set()
    details = []
    if old is not None and new is not None and old.doc != new.doc:
        details.append(f"doc {_quoted(old.doc)} -> {_quoted(new.doc)}")
    moves_before = set(old.moved.items()) if old else set()
    moves_after = set(new.moved.items()) if new else set()
    return MachineDiff(
        named.name.text, old, new, tuple(diff_states(old, new)),
        tuple(diff_transitions(old, new)),
        tuple(e for e in (new.event_names if new else ()) if e not in before),
        tuple(e for e in (old.event_names if old else ()) if e not in after),
        tuple(details),
        tuple(m for m in (new.moved.items() if new else ()) if m not in moves_before),
        tuple(m for m in (old.moved.items() if old else ()) if m not in moves_after))


def diff_specs(old: SpecFile | None, new: SpecFile | None, *, old_label: str = "",
               new_label: str = "") -> SpecDiff:
    """Machines matched by name: the new file's order, then those removed."""
    before = {m.name.text: m for m in old.machines} if old else {}
    after = {m.name.text: m for m in new.machines} if new else {}
    machines = [diff_machines(before.get(name), machine) for name, machine in after.items()]
    machines.extend(diff_machines(machine, None) for name, machine in before.items()
                    if name not in after)
    return SpecDiff(old_label or (old.path if old else "(none)"),
                    new_label or (new.path if new else "(none)"), tuple(machines))


def summary(diff: SpecDiff) -> str:
    """The text report: a header, then each changed machine with one line per change."""
    lines = [f"--- {diff.old_label}", f"+++ {diff.new_label}"]
    for machine in diff.machines:
        status = machine.status
        if status is Status.SAME:
            continue
        changes = machine.changes()
        what = {Status.ADDED: "added", Status.REMOVED: "removed"}.get(
            status, f"{len(changes)} change{'s' if len(changes) != 1 else ''}")
        lines.append(f"machine {machine.name}: {what}")
        if status is Status.CHANGED:
            lines.extend(f"  {line}" for line in changes)
    if not diff.changed:
        lines.append("no changes")
    return "\n".join(lines) + "\n"


def diff_view(machine: MachineDiff) -> MachineView:
    """The union of both versions, each element marked by what happened to it."""
    nodes, edges = _start_views(machine.old, machine.new)
    for state in machine.states:
        base = state_node(state.decl)
        tooltip = "\n".join([base.tooltip, *state.details])
        nodes.append(replace(base, tooltip=tooltip, mark=state.status.mark))
    latest = machine.new or machine.old
    transitions, star_sources = _transition_edges(machine.transitions, latest)
    if star_sources:
        nodes.append(any_node(star_sources))
    doc = "\n".join(filter(None, [latest.doc if latest else None, DIFF_LEGEND]))
    return MachineView(machine.name, doc, tuple(nodes), tuple(edges + transitions))


def _start_views(old: Machine | None,
                 new: Machine | None) -> tuple[list[NodeView], list[EdgeView]]:
    """The start dots and arrows of both versions; an arrow only in one is added or removed."""
    new_nodes, new_edges = start_nodes(new) if new else ([], [])
    old_nodes, old_edges = start_nodes(old) if old else ([], [])
    old_keys = {(e.source, e.target) for e in old_edges}
    new_keys = {(e.source, e.target) for e in new_edges}
    nodes: dict[str, NodeView] = {}
    for node in new_nodes + old_nodes:
        nodes.setdefault(node.id, node)
    edges = [replace(e, mark=Mark.NONE if (e.source, e.target) in old_keys else Mark.ADDED)
             for e in new_edges]
    edges.extend(replace(e, mark=Mark.REMOVED) for e in old_edges
                 if (e.source, e.target) not in new_keys)
    return list(nodes.values()), edges


def _transition_edges(changes: Iterable[TransitionChange],
                      machine: Machine | None) -> tuple[list[EdgeView], list[str]]:
    """Edges grouped by (source, target, status). A `*` statement whose expansions all share a
    status is drawn once from the "any" node; otherwise its unchanged part is, and the rest is
    drawn from the real sources."""
    changes = list(changes)
    statuses = _star_statuses(changes)
    groups: dict[tuple[str, str, Status], list[EdgeLine]] = {}
    drawn: set[tuple[tuple[str, str, str], Status]] = set()
    star_sources: dict[str, None] = {}
    for change in changes:
        t = change.transition
        source = t.source.text
        if t.via_star:
            statement = _statement(change)
            star_sources.setdefault(t.source.text, None)
            if len(statuses[statement]) == 1 or change.status is Status.SAME:
                if (statement, change.status) in drawn:
                    continue
                drawn.add((statement, change.status))
                source = ANY_ID
        line = EdgeLine(change.label, change.detail(any_source=source == ANY_ID))
        groups.setdefault((source, t.target.text, change.status), []).append(line)
    edges = [EdgeView(source, target, tuple(lines), mark=status.mark)
             for (source, target, status), lines in groups.items()]
    order = {name: i for i, name in enumerate(machine.state_names)} if machine else {}
    drawn_from_any = any(edge.source == ANY_ID for edge in edges)
    sources = sorted(star_sources, key=lambda name: order.get(name, len(order)))
    return edges, sources if drawn_from_any else []
