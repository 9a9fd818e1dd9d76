"""What `fsmc migrate` finds: the rows of a store (counted per machine and state) held against
the specs. Pure: the database work is `fsmc.runtime.store_migrate`; this module judges and
words it.

Each (machine, state) with rows is *declared* (the spec declares the state), *moved* (a
`moved State -> Target` says where its rows go) or *stranded* (neither: the class cannot load
them). Rows of a machine no spec declares are reported apart. Moves can be applied only when
nothing is stranded.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fsmc.dsl.model import Machine


class RowStatus(enum.Enum):
    DECLARED = "declared"
    MOVED = "moved"
    STRANDED = "stranded"


@dataclass(frozen=True)
class StateRows:
    state: str
    rows: int
    status: RowStatus
    target: str | None = None  # where `moved` puts them


@dataclass(frozen=True)
class MachineRows:
    machine: str
    path: str
    states: tuple[StateRows, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.states)

    @property
    def moves(self) -> dict[str, str]:
        """The moves that have rows to move: {old: new}, in spec order."""
        return {s.state: s.target for s in self.states
                if s.status is RowStatus.MOVED and s.target is not None}

    @property
    def stranded(self) -> tuple[StateRows, ...]:
        return tuple(s for s in self.states if s.status is RowStatus.STRANDED)


@dataclass(frozen=True)
class Plan:
    machines: tuple[MachineRows, ...]
    undeclared: tuple[tuple[str, int], ...]  # (machine no spec declares, rows)

    @property
    def blocked(self) -> bool:
        """Whether rows are stranded or belong to machines no spec declares."""
        return bool(self.undeclared) or any(m.stranded for m in self.machines)

    @property
    def moves(self) -> dict[str, dict[str, str]]:
        return {m.machine: m.moves for m in self.machines if m.moves}

    def rows_to_move(self) -> int:
        return sum(s.rows for m in self.machines for s in m.states
                   if s.status is RowStatus.MOVED)


def plan(machines: Sequence[tuple[Machine, str]], census: Mapping[str, Mapping[str, int]]) -> Plan:
    """Judge the counted rows (`census`: {machine: {state: rows}}) against the machines of the
    specs, each with the path of its file."""
    judged = []
    for machine, path in machines:
        counted = census.get(machine.name.text, {})
        declared = machine.state_names
        moved = machine.moved
        states = [StateRows(name, counted[name], RowStatus.DECLARED)
                  for name in declared if counted.get(name)]
        for name in sorted(set(counted) - set(declared)):
            if name in moved:
                states.append(StateRows(name, counted[name], RowStatus.MOVED, moved[name]))
            else:
                states.append(StateRows(name, counted[name], RowStatus.STRANDED))
        judged.append(MachineRows(machine.name.text, path, tuple(states)))
    known = {machine.name.text for machine, _ in machines}
    undeclared = tuple((name, sum(states.values())) for name, states in sorted(census.items())
                       if name not in known)
    return Plan(tuple(judged), undeclared)


def _count(rows: int, what: str = "row") -> str:
    return f"{rows:,} {what}{'' if rows == 1 else 's'}"


def describe(found: Plan, examples: Mapping[tuple[str, str | None], Sequence[str]]) -> list[str]:
    """The report: each machine's rows per state, stranded states with a few resource ids
    (`examples[(machine, state)]`; `(machine, None)` for a machine no spec declares)."""
    lines: list[str] = []
    for machine in found.machines:
        if not machine.states:
            lines.append(f"machine {machine.machine} ({machine.path}): no rows")
            continue
        lines.append(f"machine {machine.machine} ({machine.path}): {_count(machine.rows)}")
        width = max(len(s.state) for s in machine.states)
        digits = max(len(f"{s.rows:,}") for s in machine.states)
        for state in machine.states:
            text = f"  {state.state:<{width}}  {state.rows:>{digits},}"
            if state.status is RowStatus.MOVED:
                text += f"  moved -> {state.target}"
            elif state.status is RowStatus.STRANDED:
                ids = ", ".join(examples.get((machine.machine, state.state), ()))
                text += f"  STRANDED: neither declared nor moved (e.g. {ids})"
            lines.append(text)
    if found.undeclared:
        lines.append("rows of machines no spec declares:")
        for name, rows in found.undeclared:
            ids = ", ".join(examples.get((name, None), ()))
            lines.append(f"  {name}: {_count(rows)} (e.g. {ids})")
    return lines


def blocked_summary(found: Plan) -> list[str]:
    stranded = [s for m in found.machines for s in m.stranded]
    parts = []
    if stranded:
        parts.append(f"{_count(sum(s.rows for s in stranded))} stranded in "
                     f"{_count(len(stranded), 'state')}")
    if found.undeclared:
        parts.append(f"{_count(sum(rows for _, rows in found.undeclared))} of "
                     f"{_count(len(found.undeclared), 'machine')} no spec declares")
    lines = [f"blocked: {' and '.join(parts)}; nothing changed"]
    if stranded:
        lines.append("  declare each stranded state again, or add `moved State -> NewState` to "
                     "its machine")
    if found.undeclared:
        lines.append("  give the spec of every machine stored in this database")
    return lines


def move_lines(found: Plan, moved: Mapping[tuple[str, str], tuple[int, int]] | None = None,
               ) -> list[str]:
    """One line per move: what `--apply` moves (`moved` None: the counts of the census), or
    what it moved (`moved[(machine, old)] = (moved, left by other writers)`)."""
    lines = []
    for machine in found.machines:
        for state in machine.states:
            if state.status is not RowStatus.MOVED:
                continue
            rows, left = (state.rows, 0) if moved is None else moved[(machine.machine,
                                                                        state.state)]
            text = f"  {machine.machine}: {state.state} -> {state.target}: {_count(rows)}"
            if left:
                text += (f" ({_count(left)} left {state.state} meanwhile, moved by another "
                         "writer: not overwritten)")
            lines.append(text)
    return lines
