"""The `assert` statements of a machine, proved or refuted exactly over its transition graph.

`verdict(graph, assertion)` decides one assertion; the rules below (one code each) turn the
refuted ones into errors carrying the shortest counterexample (`Diagnostic.trace`). The graph
is the machine's own: the initial and entry states are where paths start, `*` transitions are
there once per source, every guard counts as possibly true (a guarded transition is an edge)
and so will every timer transition. What that over-approximation means per form is in
docs/verification.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fsmc.dsl.diagnostics import Diagnostic, Step, make
from fsmc.dsl.model import Assertion, AssertionKind, Machine, Name, Transition

from .declarations import did_you_mean
from .reachability import TransitionGraph, cyclic_states, path_to, shortest_cycle

# The codes of refuted assertions: the spec itself is sound, so its diagram can still be drawn
# (with the counterexamples highlighted).
REFUTATION_CODES = frozenset({"E401", "E402", "E403", "E404", "E405", "E406", "E413"})


@dataclass(frozen=True)
class Verdict:
    """Whether an assertion holds; when it does not, why (`reason`, words) and the shortest
    counterexample (`trace`: a real path of the graph; None for `reachable S`, whose
    refutation is the absence of any path)."""

    assertion: Assertion
    holds: bool
    reason: str = ""
    trace: tuple[Step, ...] | None = None


def verdict(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    return _DECIDE[assertion.kind](graph, assertion)


def machine_verdicts(machine: Machine, *, kind: AssertionKind | None = None,
                     expected: bool | None = None) -> list[Verdict]:
    """The verdict of every well-formed assertion of `machine` (those E411/E412 accept), or
    of those of one `kind` / with `expect_refuted` equal to `expected`."""
    checked = [a for a in machine.assertions
               if kind in (None, a.kind) and expected in (None, a.expect_refuted)
               and _well_formed(machine, a)]
    if not checked:
        return []
    graph = TransitionGraph.of(machine)
    return [verdict(graph, assertion) for assertion in checked]


def _starts(graph: TransitionGraph) -> str:
    quoted = [f"`{name}`" for name in graph.starts]
    if len(quoted) < 2:
        return "from " + (quoted[0] if quoted else "the start")
    return "from " + ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _prefixed(graph: TransitionGraph, transition: Transition) -> tuple[tuple[Step, ...], str]:
    """The shortest path from a start through `transition`, or the transition alone (and a
    note) when its source cannot be reached."""
    parents = graph.search(graph.starts)
    step = Step(transition.source.text, transition.event.text)
    end = Step(transition.target.text)
    if transition.source.text not in parents:
        return (step, end), f"; `{transition.source.text}` itself cannot be reached " \
                            f"{_starts(graph)}"
    steps = path_to(parents, transition.source.text)
    return (*steps[:-1], step, end), ""


def _decide_reachable(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    parents = graph.search(graph.starts)
    if assertion.subject.text in parents:
        return Verdict(assertion, True)
    return Verdict(assertion, False, f"no path {_starts(graph)} reaches "
                                     f"`{assertion.subject.text}`")


def _decide_reachable_from(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    reaching = graph.reverse_reach(assertion.subject.text)
    if assertion.from_any:
        parents = graph.search(graph.starts)
        for state in parents:  # breadth-first order: the first is the nearest
            if state not in reaching:
                return Verdict(assertion, False,
                               f"from `{state}` no path reaches `{assertion.subject.text}`",
                               tuple(path_to(parents, state)))
        return Verdict(assertion, True)
    for name in assertion.names:
        if name.text not in reaching:
            return Verdict(assertion, False,
                           f"from `{name.text}` no path reaches `{assertion.subject.text}`",
                           (Step(name.text),))
    return Verdict(assertion, True)


def _decide_never(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    source, target = assertion.subject.text, assertion.target.text if assertion.target else ""
    # One transition or more; `never A -> A` sets A's self-loops aside (it asks whether A,
    # once left, is ever entered again).
    first = [t for t in graph.out[source] if not (source == target and t.target.text == source)]
    parents = graph.search(t.target.text for t in first if t.target.text != source)
    if target not in parents:
        return Verdict(assertion, True)
    tail = path_to(parents, target)
    entry = tail[0].state
    via = next(t for t in first if t.target.text == entry)
    steps = (Step(source, via.event.text), *tail)
    return Verdict(assertion, False,
                   f"`{source}` reaches `{target}` in {len(steps) - 1} "
                   f"transition{'s' if len(steps) != 2 else ''}", steps)


def _decide_only(graph: TransitionGraph, assertion: Assertion,
                 offends: list[Transition], what: str) -> Verdict:
    if not offends:
        return Verdict(assertion, True)
    parents = graph.search(graph.starts)
    reachable = [t for t in offends if t.source.text in parents]
    # The offence nearest the start; an unreachable one only when no other exists.
    order = {state: index for index, state in enumerate(parents)}  # breadth-first order
    chosen = min(reachable, key=lambda t: order[t.source.text]) if reachable else offends[0]
    steps, note = _prefixed(graph, chosen)
    return Verdict(assertion, False,
                   f"{what} `{chosen.source.text} --{chosen.event.text}--> "
                   f"{chosen.target.text}` (line {chosen.line}){note}", steps)


def _decide_only_from(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    state = assertion.subject.text
    allowed = {name.text for name in assertion.names} | {state}
    offends = [t for leaving in graph.out.values() for t in leaving
               if t.target.text == state and t.source.text not in allowed]
    return _decide_only(graph, assertion, offends, f"`{state}` is also entered by")


def _decide_only_in(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    event = assertion.subject.text
    allowed = {name.text for name in assertion.names}
    offends = [t for leaving in graph.out.values() for t in leaving
               if t.event.text == event and t.source.text not in allowed]
    return _decide_only(graph, assertion, offends, f"`{event}` is also accepted by")


def _decide_leads_to(graph: TransitionGraph, assertion: Assertion) -> Verdict:
    source, target = assertion.subject.text, assertion.target.text if assertion.target else ""
    parents = graph.search((source,), follow=lambda t: t.target.text != target)
    avoiding = set(parents)
    cyclic = cyclic_states(graph, avoiding)
    for state in parents:  # breadth-first: the nearest state where B can be avoided for ever
        if not graph.out[state]:
            where = f"`{source}` itself is a dead end" if state == source else \
                f"a path from `{source}` ends in `{state}`"
            return Verdict(assertion, False,
                           f"{where}: no transition leaves `{state}`, and `{target}` is "
                           "never reached", tuple(path_to(parents, state)))
        if state in cyclic:
            prefix = path_to(parents, state)
            cycle = shortest_cycle(graph, state, avoiding)
            return Verdict(assertion, False,
                           f"a path from `{source}` runs into a cycle through `{state}` that "
                           f"never reaches `{target}`", (*prefix[:-1], *cycle))
    return Verdict(assertion, True)


_DECIDE = {
    AssertionKind.REACHABLE: _decide_reachable,
    AssertionKind.REACHABLE_FROM: _decide_reachable_from,
    AssertionKind.NEVER: _decide_never,
    AssertionKind.ONLY_FROM: _decide_only_from,
    AssertionKind.ONLY_IN: _decide_only_in,
    AssertionKind.LEADS_TO: _decide_leads_to,
}

_HINTS = {
    AssertionKind.REACHABLE: "add a transition into it from a reachable state, or declare it "
                             "with `entry` if resources start there",
    AssertionKind.REACHABLE_FROM: "add a way out of that state towards the asserted one",
    AssertionKind.NEVER: "remove or guard a transition on the path (guards count as possibly "
                         "true)",
    AssertionKind.ONLY_FROM: "add the source to the list if it is allowed, or remove the "
                             "transition",
    AssertionKind.ONLY_IN: "add the state to the list if it is allowed, or remove the "
                           "transition",
    AssertionKind.LEADS_TO: "break the cycle or give the dead end a way to the target; a "
                            "known finding can stay as `[refuted]`",
}


def _refutations(machine: Machine, kind: AssertionKind, code_id: str) -> Iterator[Diagnostic]:
    """The refuted assertions of one form (expected failures aside) as `code_id` errors."""
    for found in machine_verdicts(machine, kind=kind, expected=False):
        assertion = found.assertion
        if found.holds:
            continue
        span = assertion.span or assertion.subject.span
        yield make(code_id, span, f"`assert {assertion.text}` is refuted: {found.reason}",
                   _HINTS[kind], trace=found.trace)


def reachable_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E401: `assert reachable S`."""
    yield from _refutations(machine, AssertionKind.REACHABLE, "E401")


def reachable_from_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E402: `assert reachable S from A, B` and `from *`."""
    yield from _refutations(machine, AssertionKind.REACHABLE_FROM, "E402")


def never_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E403: `assert never A -> B`."""
    yield from _refutations(machine, AssertionKind.NEVER, "E403")


def only_from_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E404: `assert S only from A, B`."""
    yield from _refutations(machine, AssertionKind.ONLY_FROM, "E404")


def only_in_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E405: `assert Event only in A, B`."""
    yield from _refutations(machine, AssertionKind.ONLY_IN, "E405")


def leads_to_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E406: `assert A leads to B`."""
    yield from _refutations(machine, AssertionKind.LEADS_TO, "E406")


def expected_refutations(machine: Machine) -> Iterator[Diagnostic]:
    """E413: an assertion marked `[refuted]` that holds after all."""
    for found in machine_verdicts(machine, expected=True):
        assertion = found.assertion
        if found.holds:
            span = assertion.span or assertion.subject.span
            yield make("E413", span,
                       f"`assert {assertion.text}` is marked as an expected failure, but it "
                       "holds", "remove `[refuted]` (and the comment that explains the "
                                "failure): the property is now proved")


def _state_names(assertion: Assertion) -> list[Name]:
    names = list(assertion.names)
    if assertion.kind is not AssertionKind.ONLY_IN:
        names.insert(0, assertion.subject)
    if assertion.target is not None:
        names.append(assertion.target)
    return names


def _unknown(machine: Machine, assertion: Assertion) -> Iterator[Diagnostic]:
    states = machine.state_names
    declared = set(states)
    if assertion.kind is AssertionKind.ONLY_IN:
        events = machine.event_names
        event = assertion.subject
        if event.text not in set(events):
            yield make("E411", event.span,
                       f"event `{event.text}` is not an event of `{machine.name.text}`",
                       did_you_mean(event.text, events)
                       or "`only in` is about an event; `S only from A` is about a state")
    for name in _state_names(assertion):
        if name.text not in declared:
            yield make("E411", name.span, f"state `{name.text}` is not declared",
                       did_you_mean(name.text, states) or "assertions name declared states")


def _trivial(assertion: Assertion) -> Iterator[Diagnostic]:
    subject = assertion.subject.text
    kind = assertion.kind
    if kind is AssertionKind.LEADS_TO and assertion.target is not None and \
            assertion.target.text == subject:
        yield make("E412", assertion.target.span,
                   f"`{subject} leads to {subject}` always holds: every path from "
                   f"`{subject}` starts there",
                   f"to say that `{subject}` is always entered again, assert where it is left "
                   f"to: `assert <State> leads to {subject}`")
    seen: set[str] = set()
    for name in assertion.names:
        if name.text in seen:
            yield make("E412", name.span, f"`{name.text}` is listed twice",
                       "list each state once")
        seen.add(name.text)
        if name.text == subject and kind is AssertionKind.ONLY_FROM:
            yield make("E412", name.span,
                       f"`{subject}` in its own `only from` list says nothing: self-loops are "
                       "always allowed", f"remove `{subject}` from the list")
        if name.text == subject and kind is AssertionKind.REACHABLE_FROM:
            yield make("E412", name.span,
                       f"`reachable {subject} from {subject}` always holds (the empty path)",
                       f"remove `{subject}` from the list")


def _well_formed(machine: Machine, assertion: Assertion) -> bool:
    return next(_unknown(machine, assertion), None) is None and \
        next(_trivial(assertion), None) is None


def assertion_names(machine: Machine) -> Iterator[Diagnostic]:
    """E411: an assertion names an undeclared state (or, for `only in`, an unknown event)."""
    for assertion in machine.assertions:
        yield from _unknown(machine, assertion)


def trivial_assertions(machine: Machine) -> Iterator[Diagnostic]:
    """E412: an assertion that holds (or says nothing) by its form alone."""
    for assertion in machine.assertions:
        yield from _trivial(assertion)
