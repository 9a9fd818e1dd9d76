"""What a diagram shows, as plain data: nodes and edges with their marks, before any DOT.

`machine_view` turns one machine (and the checker's warnings about it) into a `MachineView`;
the diff builds its own views from two versions; `dot.to_dot` writes either as DOT text. Keeping
the decisions (which edges merge, what a label says, which state is greyed) here and the styling
in `dot.py` lets both be tested alone.

Edges are grouped for legibility:

- all transitions between one (source, target) pair become one edge whose label lists them,
  one line each, in spec order;
- the transitions a `*` statement expands to become one edge from a single "any non-final state"
  node (`ANY`), instead of one edge from every state.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from fsmc.dsl.diagnostics import Diagnostic, Step, code
from fsmc.dsl.model import Machine, StateDecl, StateKind, Transition

# Pseudo-node ids contain parentheses, so no state name (an identifier) can take them.
INITIAL_ID = "(initial)"
ANY_ID = "(any)"


def entry_id(state: str) -> str:
    return f"(entry {state})"


class Role(enum.Enum):
    """What a node stands for."""

    STATE = "state"
    INITIAL = "initial"  # the black dot the initial state's arrow starts from
    ENTRY = "entry"  # the hollow dot an entry state's dashed arrow starts from
    ANY = "any"  # "any non-final state": the source of `*` transitions


class Mark(enum.Enum):
    """How a node or an edge is highlighted."""

    NONE = "none"
    UNREACHABLE = "unreachable"  # W301 and W303: greyed
    DEAD_END = "dead-end"  # W302: highlighted
    ADDED = "added"  # diff: only in the new version
    REMOVED = "removed"  # diff: only in the old version
    CHANGED = "changed"  # diff: in both, with another label, kind or doc
    PATH = "path"  # on the counterexample of a refuted assertion


# Checker warnings about a state, and the mark each gives its node.
STATE_WARNINGS: dict[str, Mark] = {
    "W301": Mark.UNREACHABLE,
    "W302": Mark.DEAD_END,
    "W303": Mark.UNREACHABLE,
}


@dataclass(frozen=True, slots=True)
class NodeView:
    id: str
    label: str
    role: Role = Role.STATE
    kind: StateKind | None = None
    tooltip: str = ""
    notes: tuple[str, ...] = ()  # short lines under the name, e.g. "W303 unused-state"
    mark: Mark = Mark.NONE
    href: str | None = None


@dataclass(frozen=True, slots=True)
class EdgeLine:
    """One transition in an edge's label: what it says, its spec line for tooltips, a link."""

    text: str
    detail: str = ""
    href: str | None = None


@dataclass(frozen=True, slots=True)
class EdgeView:
    """One arrow. A self-transition (`source == target`) is drawn inside its state instead."""

    source: str
    target: str
    lines: tuple[EdgeLine, ...] = ()
    mark: Mark = Mark.NONE
    dashed: bool = False
    tooltip: str = ""  # for arrows without lines

    @property
    def is_loop(self) -> bool:
        return self.source == self.target

    @property
    def details(self) -> str:
        return "\n".join(line.detail for line in self.lines if line.detail) or self.tooltip

    @property
    def href(self) -> str | None:
        return next((line.href for line in self.lines if line.href), None)


@dataclass(frozen=True, slots=True)
class MachineView:
    name: str
    doc: str | None
    nodes: tuple[NodeView, ...]
    edges: tuple[EdgeView, ...]


@dataclass(frozen=True, slots=True)
class Links:
    """Where a diagram's nodes and edges link to (the review site); None in built diagrams."""

    state: Callable[[str], str]  # state name → URL
    line: Callable[[int], str]  # spec line → URL


def guard_text(transition: Transition) -> str | None:
    """`if guard` or `unless guard`, as the spec writes it (None without a guard)."""
    guard = transition.guard
    if guard is None:
        return None
    return f"{'unless' if guard.negated else 'if'} {guard.name.text}"


def transition_label(transition: Transition) -> str:
    """`Event if guard do action [tag, ...]`: the spec's own notation (`unless guard` for a
    negated guard), clauses in that order whatever order the spec wrote them in."""
    parts = [transition.event.text]
    guard = guard_text(transition)
    if guard is not None:
        parts.append(guard)
    if transition.action is not None:
        parts.append(f"do {transition.action.name.text}")
    if transition.tags:
        parts.append("[" + ", ".join(transition.tag_names) + "]")
    return " ".join(parts)


def transition_text(transition: Transition, *, any_source: bool = False) -> str:
    """`line 12: Source -> Target : label`, for tooltips and summaries."""
    source = "*" if any_source else transition.source.text
    return (f"line {transition.line}: {source} -> {transition.target.text} : "
            f"{transition_label(transition)}")


def edge_line(transition: Transition, links: Links | None = None, *,
              any_source: bool = False) -> EdgeLine:
    return EdgeLine(transition_label(transition),
                    transition_text(transition, any_source=any_source),
                    links.line(transition.line) if links else None)


def state_warnings(machine: Machine,
                   diagnostics: Iterable[Diagnostic]) -> dict[str, tuple[Diagnostic, ...]]:
    """The diagnostics that point at a state's declaration, by state name."""
    by_span = {decl.name.span: decl.name.text for decl in machine.states}
    found: dict[str, list[Diagnostic]] = {}
    for diagnostic in diagnostics:
        name = by_span.get(diagnostic.span)
        if name is not None and not diagnostic.is_error:
            found.setdefault(name, []).append(diagnostic)
    return {name: tuple(sorted(found[name], key=Diagnostic.sort_key)) for name in sorted(found)}


def state_node(decl: StateDecl, warnings: tuple[Diagnostic, ...] = (), *,
               links: Links | None = None) -> NodeView:
    name = decl.name.text
    kind_word = {StateKind.INITIAL: "initial state", StateKind.ENTRY: "entry state",
                 StateKind.FINAL: "final state"}.get(decl.kind, "state")
    tooltip = [f"{name} ({kind_word}, line {decl.name.span.line})"]
    if decl.doc:
        tooltip.append(decl.doc)
    tooltip.extend(f"warning {d.code}: {d.message}" for d in warnings)
    marks = [STATE_WARNINGS[d.code] for d in warnings if d.code in STATE_WARNINGS]
    mark = Mark.DEAD_END if Mark.DEAD_END in marks else (marks[0] if marks else Mark.NONE)
    return NodeView(
        id=name, label=name, kind=decl.kind, tooltip="\n".join(tooltip),
        notes=tuple(f"{d.code} {code(d.code).name}" for d in warnings), mark=mark,
        href=links.state(name) if links else None)


def start_nodes(machine: Machine) -> tuple[list[NodeView], list[EdgeView]]:
    """The dots new resources start from: one solid arrow into the initial state, one dashed
    arrow into each entry state."""
    nodes: list[NodeView] = []
    edges: list[EdgeView] = []
    for decl in machine.entries:
        name = decl.name.text
        if decl.kind is StateKind.INITIAL:
            nodes.append(NodeView(INITIAL_ID, "", Role.INITIAL,
                                  tooltip=f"new resources start in {name}"))
            edges.append(EdgeView(INITIAL_ID, name, tooltip=f"initial state: {name}"))
        else:
            nodes.append(NodeView(entry_id(name), "", Role.ENTRY,
                                  tooltip=f"new resources may also start in {name}"))
            edges.append(EdgeView(entry_id(name), name, tooltip=f"entry state: {name}",
                                  dashed=True))
    return nodes, edges


def any_node(sources: Iterable[str]) -> NodeView:
    names = ", ".join(sources)
    return NodeView(ANY_ID, "* any non-final state", Role.ANY,
                    tooltip=f"* : every state that is not final ({names})")


def transition_edges(machine: Machine, *,
                     links: Links | None = None) -> tuple[list[EdgeView], list[str]]:
    """One edge per (source, target) pair, `*` statements drawn from `ANY_ID`; and the states
    that `*` stands for (empty when the machine has no `*` transition)."""
    groups: dict[tuple[str, str], list[Transition]] = {}
    star_sources: dict[str, None] = {}
    seen_star: set[tuple[object, str, str]] = set()
    for transition in machine.transitions:
        if transition.via_star:
            star_sources.setdefault(transition.source.text, None)
            statement = (transition.span, transition.event.text, transition.target.text)
            if statement in seen_star:
                continue
            seen_star.add(statement)
        source = ANY_ID if transition.via_star else transition.source.text
        groups.setdefault((source, transition.target.text), []).append(transition)
    edges = [
        EdgeView(source, target, tuple(edge_line(t, links, any_source=source == ANY_ID)
                                       for t in group))
        for (source, target), group in groups.items()
    ]
    order = {name: index for index, name in enumerate(machine.state_names)}
    return edges, sorted(star_sources, key=lambda name: order.get(name, len(order)))


def path_edges(machine: Machine, traces: Iterable[tuple[Step, ...]]) -> tuple[
        set[str], set[tuple[str, str]]]:
    """The states and the (source, target) edges of the diagram that counterexamples walk
    (a `*` transition's edge starts at `ANY_ID`)."""
    by_step: dict[tuple[str, str, str], Transition] = {}
    for transition in machine.transitions:
        by_step.setdefault((transition.source.text, transition.event.text,
                            transition.target.text), transition)
    states: set[str] = set()
    edges: set[tuple[str, str]] = set()
    for trace in traces:
        states.update(step.state for step in trace)
        for here, there in itertools.pairwise(trace):
            if here.event is None:
                continue
            taken = by_step.get((here.state, here.event, there.state))
            if taken is not None:
                source = ANY_ID if taken.via_star else here.state
                edges.add((source, there.state))
    return states, edges


def highlighted(view: MachineView, states: set[str],
                edges: set[tuple[str, str]]) -> MachineView:
    """`view` with the given states and edges marked `Mark.PATH`."""
    nodes = tuple(replace(node, mark=Mark.PATH) if node.role is Role.STATE and node.id in states
                  else node for node in view.nodes)
    marked = tuple(replace(edge, mark=Mark.PATH) if (edge.source, edge.target) in edges
                   else edge for edge in view.edges)
    return replace(view, nodes=nodes, edges=marked)


def machine_view(machine: Machine, diagnostics: Iterable[Diagnostic] = (), *,
                 links: Links | None = None,
                 traces: Iterable[tuple[Step, ...]] = ()) -> MachineView:
    """The diagram of one machine: start dots, states in declaration order (marked by the
    checker's warnings about them), the `*` node if needed, and the merged transition edges.
    The counterexamples of refuted assertions among `diagnostics` (those of this machine), and
    the extra `traces`, are highlighted."""
    diagnostics = list(diagnostics)
    warnings = state_warnings(machine, diagnostics)
    nodes, edges = start_nodes(machine)
    nodes.extend(state_node(decl, warnings.get(decl.name.text, ()), links=links)
                 for decl in machine.states)
    transitions, star_sources = transition_edges(machine, links=links)
    if star_sources:
        nodes.append(any_node(star_sources))
    view = MachineView(machine.name.text, machine.doc, tuple(nodes), tuple(edges + transitions))
    lines = {a.span.line for a in machine.assertions if a.span is not None}
    walked = [*traces, *(d.trace for d in diagnostics
                         if d.trace and d.is_error and d.span.line in lines)]
    if not walked:
        return view
    return highlighted(view, *path_edges(machine, walked))
