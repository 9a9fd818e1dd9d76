"""Rules about the transition graph, computed with networkx.

Every rule is a pure function of one machine and assumes nothing about the others: names that
do not resolve are skipped here (the declaration rules report them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import networkx as nx
from fsmc.dsl.diagnostics import Diagnostic, make
from fsmc.dsl.model import Machine, StateKind, Transition


def _resolved(machine: Machine) -> list[Transition]:
    declared = set(machine.state_names)
    return [t for t in machine.transitions
            if t.source.text in declared and t.target.text in declared]


def state_graph(machine: Machine) -> nx.DiGraph[str]:
    """States as nodes (in declaration order), one edge per connected pair. Inside
    `sharing_graph(machine)` it is built once and shared, read-only (`nx.freeze`)."""
    shared = _shared.get()
    if shared is None or shared.machine is not machine:
        return _build_graph(machine)
    if shared.graph is None:
        shared.graph = nx.freeze(_build_graph(machine))
    return shared.graph


def _build_graph(machine: Machine) -> nx.DiGraph[str]:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(machine.state_names)
    graph.add_edges_from((t.source.text, t.target.text) for t in _resolved(machine))
    return graph


@dataclass
class _Shared:
    machine: Machine
    graph: nx.DiGraph[str] | None = None


_shared: ContextVar[_Shared | None] = ContextVar("fsmc_shared_graph", default=None)


@contextmanager
def sharing_graph(machine: Machine) -> Iterator[None]:
    """Build `machine`'s state graph at most once while the rules run over it."""
    token = _shared.set(_Shared(machine))
    try:
        yield
    finally:
        _shared.reset(token)


def _mentioned(machine: Machine) -> set[str]:
    """States named by some transition (a `*` expansion names no one in particular)."""
    names: set[str] = set()
    for transition in machine.transitions:
        if not transition.via_star:
            names.add(transition.source.text)
        names.add(transition.target.text)
    return names


def transitions_from_final(machine: Machine) -> Iterator[Diagnostic]:
    """E201: nothing may leave a final state."""
    finals = {d.name.text for d in machine.finals}
    for transition in machine.transitions:
        if transition.source.text in finals and not transition.via_star:
            yield make("E201", transition.source.span,
                       f"`{transition.source.text}` is final: no transition may leave it",
                       "remove the transition, or declare the state with `state` instead")


def nondeterminism(machine: Machine) -> Iterator[Diagnostic]:
    """E202: the same (state, event) with targets that guards do not tell apart.

    Candidates are tried in file order: an unguarded transition must come last, and one guard
    (with the same `if`/`unless`) may appear once.
    """
    groups: dict[tuple[str, str], list[Transition]] = defaultdict(list)
    for transition in machine.transitions:
        groups[(transition.source.text, transition.event.text)].append(transition)
    for (source, event), candidates in groups.items():
        for index, later in enumerate(candidates[1:], start=1):
            earlier = candidates[:index]
            message = _conflict(source, event, later, earlier)
            if message is not None:
                yield make("E202", later.event.span, message[0], message[1])


def _conflict(source: str, event: str, later: Transition,
              earlier: list[Transition]) -> tuple[str, str] | None:
    for previous in earlier:
        where = f"line {previous.line}"
        if previous.guard is None:
            if later.target.text == previous.target.text and later.guard is None:
                return (f"{source} --{event}--> {later.target.text} is written twice "
                        f"(first on {where})", "remove one of them")
            return (f"{event} from {source} can never take this transition: the unguarded one on "
                    f"{where} always wins", "guard the earlier transition, or move the unguarded "
                    "one last")
        if later.guard is not None and (later.guard.name.text, later.guard.negated) == (
                previous.guard.name.text, previous.guard.negated):
            return (f"{event} from {source} is guarded by `{later.guard.name.text}` twice "
                    f"(first on {where}); the first always wins", "use different guards")
    return None


def unreachable_states(machine: Machine) -> Iterator[Diagnostic]:
    """W301: no path from the initial or an entry state."""
    starts = [d.name.text for d in machine.entries]
    if not starts:
        return
    graph = state_graph(machine)
    reachable: set[str] = set()
    for start in starts:
        reachable |= {start} | nx.descendants(graph, start)
    mentioned = _mentioned(machine)
    for decl in machine.states:
        name = decl.name.text
        if name not in reachable and name in mentioned:
            yield make("W301", decl.name.span,
                       f"state `{name}` cannot be reached from "
                       f"{_listing(starts, 'the initial state')}",
                       "add a transition into it, or declare it with `entry` if resources start "
                       "there")


def cannot_reach_final(machine: Machine) -> Iterator[Diagnostic]:
    """W302: a non-final state with no path to any final state (when finals exist)."""
    finals = {d.name.text for d in machine.finals}
    if not finals:
        return
    graph = state_graph(machine)
    can_finish: set[str] = set(finals)
    for final in finals:
        can_finish |= nx.ancestors(graph, final)
    mentioned = _mentioned(machine) | {d.name.text for d in machine.entries}
    order = {name: index for index, name in enumerate(machine.state_names)}
    for decl in machine.states:
        name = decl.name.text
        if name in can_finish or name not in mentioned:
            continue
        trapped = sorted({name} | nx.descendants(graph, name), key=order.__getitem__)
        shown = ", ".join(trapped[:6]) + (", ..." if len(trapped) > 6 else "")
        yield make("W302", decl.name.span,
                   f"state `{name}` cannot reach a final state: from it only {shown} "
                   f"{'is' if len(trapped) == 1 else 'are'} reachable, none of them final",
                   f"add a transition towards {_listing(sorted(finals), 'a final state')}")


def unused_states(machine: Machine) -> Iterator[Diagnostic]:
    """W303: a declared state that no transition mentions (starting states excepted)."""
    mentioned = _mentioned(machine)
    for decl in machine.states:
        if decl.kind in (StateKind.INITIAL, StateKind.ENTRY):
            continue
        if decl.name.text not in mentioned:
            yield make("W303", decl.name.span,
                       f"state `{decl.name.text}` is declared but no transition mentions it",
                       "remove it, or add the transitions that use it")


def inconsistent_hooks(machine: Machine) -> Iterator[Diagnostic]:
    """W304: one name used both as a guard and as an action."""
    guards = {t.guard.name.text: t.guard.name for t in machine.transitions if t.guard}
    reported: set[str] = set()
    for transition in machine.transitions:
        action = transition.action
        if action and action.name.text in guards and action.name.text not in reported:
            reported.add(action.name.text)
            yield make("W304", action.name.span,
                       f"`{action.name.text}` is used as an action here and as a guard on line "
                       f"{guards[action.name.text].span.line}",
                       "a guard answers a question, an action does work: give them two names")


def _listing(names: list[str], fallback: str) -> str:
    if not names:
        return fallback
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
