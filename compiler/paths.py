"""Test paths: a small set of event sequences that together take every transition and every
guard outcome of a machine, from its initial or entry states. Pure: model in, plan out.

An *outcome* is what firing one event in one state can do: take one of its candidate
transitions (the guards of the earlier candidates answering no, its own yes) or, when every
candidate is guarded, be refused (`GuardRejected`, the state unchanged). Each outcome carries
the guard answers that produce it; an outcome no answers produce (`if a`, `unless a`, then a
third candidate) is reported as impossible.

The plan is greedy: for the nearest outcome not yet covered, the shortest path to its state
(breadth-first over outcomes), the outcome, then as long as the state reached has outcomes not
yet covered, one of them (refusals first: they stay put). Paths are listed shortest first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fsmc.dsl.model import Machine, Transition


@dataclass(frozen=True, slots=True)
class Outcome:
    """Firing `event` in `source` with the guards answering `guards` (name → answer, in the
    order they are asked) gives `target`; `target` None is a refusal. `transition` is the
    one taken (None for a refusal)."""

    source: str
    event: str
    guards: tuple[tuple[str, bool], ...]
    target: str | None
    transition: Transition | None
    line: int

    @property
    def refused(self) -> bool:
        return self.target is None

    @property
    def label(self) -> str:
        answers = ", ".join(f"{name}={'yes' if value else 'no'}" for name, value in self.guards)
        event = f"{self.event} [{answers}]" if answers else self.event
        if self.target is None:
            return f"{self.source} --{event}--x (refused, stays {self.source})"
        return f"{self.source} --{event}--> {self.target}"


@dataclass(frozen=True, slots=True)
class TestPath:
    start: str
    steps: tuple[Outcome, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    machine: str
    paths: tuple[TestPath, ...]
    outcomes: int  # every possible outcome
    transitions: int
    unreachable: tuple[Outcome, ...]  # from states no path reaches
    impossible: tuple[tuple[Transition, str], ...]  # transitions no guard answers can take


def _outcomes(machine: Machine) -> tuple[list[Outcome], list[tuple[Transition, str]]]:
    declared = set(machine.state_names)
    groups: dict[tuple[str, str], list[Transition]] = {}
    for transition in machine.transitions:
        if transition.source.text in declared and transition.target.text in declared:
            groups.setdefault((transition.source.text, transition.event.text), []).append(
                transition)
    found: list[Outcome] = []
    impossible: list[tuple[Transition, str]] = []
    for (source, event), candidates in groups.items():
        answers: dict[str, bool] = {}
        feasible = True
        for candidate in candidates:
            guard = candidate.guard
            if not feasible:
                impossible.append((candidate, "an earlier candidate always wins"))
                continue
            if guard is None:
                found.append(Outcome(source, event, tuple(answers.items()),
                                     candidate.target.text, candidate, candidate.line))
                feasible = False  # nothing after an unguarded candidate is ever tried
                continue
            accept = not guard.negated
            if answers.get(guard.name.text, accept) != accept:
                impossible.append((candidate, f"`{guard.name.text}` must answer both yes and "
                                              "no"))
            else:
                taken = {**answers, guard.name.text: accept}
                found.append(Outcome(source, event, tuple(taken.items()),
                                     candidate.target.text, candidate, candidate.line))
            # Later candidates are tried only when this one's guard says no.
            if answers.get(guard.name.text, not accept) == accept:
                feasible = False
            else:
                answers[guard.name.text] = not accept
        if feasible:
            found.append(Outcome(source, event, tuple(answers.items()), None, None,
                                 candidates[-1].line))
    return found, impossible


def plan(machine: Machine) -> Plan:
    outcomes, impossible = _outcomes(machine)
    leaving: dict[str, list[Outcome]] = {name: [] for name in machine.state_names}
    for outcome in outcomes:
        leaving[outcome.source].append(outcome)
    for name in leaving:  # refusals first: they stay where they are
        leaving[name].sort(key=lambda o: not o.refused)
    starts = [d.name.text for d in machine.entries]
    parents: dict[str, tuple[str, Outcome] | None] = {}
    start_of: dict[str, str] = {}
    queue: deque[str] = deque()
    for start in starts:
        if start not in parents:
            parents[start] = None
            start_of[start] = start
            queue.append(start)
    while queue:
        state = queue.popleft()
        for outcome in leaving[state]:
            target = outcome.target
            if target is not None and target not in parents:
                parents[target] = (state, outcome)
                start_of[target] = start_of[state]
                queue.append(target)
    order = {name: index for index, name in enumerate(parents)}
    pending = sorted((o for o in outcomes if o.source in parents),
                     key=lambda o: order[o.source])
    covered: set[int] = set()
    next_of = dict.fromkeys(leaving, 0)  # per state: how far its list is known covered
    paths: list[TestPath] = []
    for goal in pending:
        if id(goal) in covered:
            continue
        prefix: list[Outcome] = []
        state = goal.source
        while (link := parents[state]) is not None:
            state, outcome = link
            prefix.append(outcome)
        prefix.reverse()
        steps = [*prefix, goal]
        covered.update(id(o) for o in steps)
        current = goal.source if goal.target is None else goal.target
        while True:
            options = leaving[current]
            index = next_of[current]
            while index < len(options) and id(options[index]) in covered:
                index += 1
            next_of[current] = index
            if index == len(options):
                break
            chosen = options[index]
            covered.add(id(chosen))
            steps.append(chosen)
            if chosen.target is not None:
                current = chosen.target
        paths.append(TestPath(start_of[goal.source], tuple(steps)))
    paths.sort(key=lambda p: len(p.steps))
    return Plan(machine.name.text, tuple(paths), len(outcomes), len(machine.transitions),
                tuple(o for o in outcomes if o.source not in parents), tuple(impossible))
