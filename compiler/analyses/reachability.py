"""The transition graph as the assertions and the path planner walk it: shortest paths by
breadth-first search, with the steps (state, event) that make them.

Plain dictionaries rather than networkx: specs of 100k transitions are proved in a few linear
passes, and every path found is built from the machine's own transitions, so it is a real path
(guards counted as possibly true; timer transitions, once the language has them, are
transitions like any other). Names that do not resolve are left out (the declaration rules
report them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fsmc.dsl.diagnostics import Step
from fsmc.dsl.model import Machine, Transition

# state -> (previous state, event) that first reached it; None for a source of the search.
Parents = dict[str, tuple[str, str] | None]


@dataclass(frozen=True)
class TransitionGraph:
    """`out[state]`: the transitions leaving it, in file order (every declared state has an
    entry); `starts`: the initial state, then the entry states."""

    states: tuple[str, ...]
    starts: tuple[str, ...]
    out: dict[str, list[Transition]]

    @classmethod
    def of(cls, machine: Machine) -> TransitionGraph:
        states = machine.state_names
        out: dict[str, list[Transition]] = {name: [] for name in states}
        for transition in machine.transitions:
            leaving = out.get(transition.source.text)
            if leaving is not None and transition.target.text in out:
                leaving.append(transition)
        return cls(states, tuple(d.name.text for d in machine.entries), out)

    def search(self, sources: Iterable[str], *,
               follow: Callable[[Transition], bool] | None = None) -> Parents:
        """Breadth-first from `sources` along the transitions `follow` accepts (all by default):
        every state reached, with the step that first reached it (so each path is shortest)."""
        parents: Parents = {}
        queue: deque[str] = deque()
        for source in sources:
            if source in self.out and source not in parents:
                parents[source] = None
                queue.append(source)
        while queue:
            state = queue.popleft()
            for transition in self.out[state]:
                target = transition.target.text
                if target not in parents and (follow is None or follow(transition)):
                    parents[target] = (state, transition.event.text)
                    queue.append(target)
        return parents

    def reverse_reach(self, target: str) -> set[str]:
        """Every state from which some path (possibly empty) reaches `target`."""
        into: dict[str, list[str]] = {name: [] for name in self.states}
        for state, leaving in self.out.items():
            for transition in leaving:
                into[transition.target.text].append(state)
        found = {target}
        queue = deque([target])
        while queue:
            for source in into[queue.popleft()]:
                if source not in found:
                    found.add(source)
                    queue.append(source)
        return found


def path_to(parents: Parents, state: str) -> list[Step]:
    """The steps from a source of the search to `state`, ending with `Step(state)`."""
    steps = [Step(state)]
    link = parents[state]
    while link is not None:
        previous, event = link
        steps.append(Step(previous, event))
        link = parents[previous]
    steps.reverse()
    return steps


def cyclic_states(graph: TransitionGraph, within: set[str]) -> set[str]:
    """The states of `within` that lie on a cycle of transitions staying inside `within`
    (a self-loop counts): Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cyclic: set[str] = set()
    counter = 0
    for root in within:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            state, position = work[-1]
            leaving = graph.out[state]
            if position < len(leaving):
                work[-1] = (state, position + 1)
                target = leaving[position].target.text
                if target not in within:
                    continue
                if target == state:
                    cyclic.add(state)
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack:
                    low[state] = min(low[state], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[state])
            if low[state] == index[state]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == state:
                        break
                if len(component) > 1:
                    cyclic.update(component)
    return cyclic


def shortest_cycle(graph: TransitionGraph, state: str, within: set[str]) -> list[Step]:
    """The shortest cycle from `state` back to it through `within`, as steps starting at
    `state` and ending with `Step(state)` (`state` must lie on such a cycle)."""
    parents: Parents = {state: None}
    queue = deque([state])
    while queue:
        current = queue.popleft()
        for transition in graph.out[current]:
            target = transition.target.text
            if target == state:
                steps = path_to(parents, current)
                steps[-1] = Step(current, transition.event.text)
                steps.append(Step(state))
                return steps
            if target in within and target not in parents:
                parents[target] = (current, transition.event.text)
                queue.append(target)
    raise ValueError(f"{state} lies on no cycle")
