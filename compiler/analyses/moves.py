"""Rules about `moved Old -> New`: the old state is gone, the new one is declared, each row
moves once, to a state it can still leave (or knowingly to a final one)."""

from __future__ import annotations

from collections.abc import Iterator

from fsmc.dsl.diagnostics import Diagnostic, make
from fsmc.dsl.model import Machine, Move

from .declarations import did_you_mean


def moved_state_declared(machine: Machine) -> Iterator[Diagnostic]:
    """E501: the state a `moved` takes rows out of is still declared."""
    declared = {d.name.text: d for d in machine.states}
    for move in machine.moves:
        decl = declared.get(move.source.text)
        if decl is not None:
            yield make("E501", move.source.span,
                       f"state `{move.source.text}` is moved but still declared "
                       f"(line {decl.name.span.line})",
                       f"`moved` is for removed states: remove the declaration of "
                       f"`{move.source.text}`, or this `moved`")


def move_target_undeclared(machine: Machine) -> Iterator[Diagnostic]:
    """E502: the state a `moved` puts rows in is not declared (and not moved itself: E503)."""
    names = machine.state_names
    declared, moved = set(names), machine.moved
    for move in machine.moves:
        target = move.target.text
        if target not in declared and target not in moved:
            hint = did_you_mean(target, names) or f"rows must move to a declared state; " \
                f"declare it (`state {target}`) or name another"
            yield make("E502", move.target.span,
                       f"state `{target}` (the target of the move) is not declared", hint)


def move_chains(machine: Machine) -> Iterator[Diagnostic]:
    """E503: the target of a `moved` is itself moved: a chain (rows would move twice) or a
    cycle (they would never arrive)."""
    moved = machine.moved
    lines = {m.source.text: m.span.line if m.span else m.source.span.line
             for m in reversed(machine.moves)}
    for move in _first_moves(machine):
        if move.target.text not in moved:
            continue
        path = [move.source.text]
        current = move.target.text
        while current in moved and current not in path:
            path.append(current)
            current = moved[current]
        if current in path:
            cycle = " -> ".join([*path[path.index(current):], current])
            yield make("E503", move.target.span,
                       f"the moves {cycle} form a cycle: rows would never reach a declared "
                       "state",
                       "end every move in a declared state")
        else:
            via = move.target.text
            yield make("E503", move.target.span,
                       f"`{via}` is itself moved (to `{moved[via]}`, line {lines[via]}): rows "
                       "would move twice",
                       f"move straight to the end of the chain: `moved {move.source.text} -> "
                       f"{current}`")


def duplicate_moves(machine: Machine) -> Iterator[Diagnostic]:
    """E504: one state moved twice (to the same target or to another)."""
    first: dict[str, Move] = {}
    for move in machine.moves:
        earlier = first.get(move.source.text)
        if earlier is None:
            first[move.source.text] = move
            continue
        same = earlier.target.text == move.target.text
        yield make("E504", move.source.span,
                   f"state `{move.source.text}` is already moved on line "
                   f"{earlier.source.span.line}"
                   + ("" if same else f" (to `{earlier.target.text}`)"),
                   "each removed state's rows go to one place: keep one `moved`")


def move_into_final(machine: Machine) -> Iterator[Diagnostic]:
    """W505: rows moved into a final state can never leave it. Right for a retired state whose
    resources were finished anyway, wrong for live ones; the spec alone cannot tell, so this
    is a warning (`fsmc diff`, which sees the old spec, decides: breaking when the old state
    was not final)."""
    finals = {d.name.text for d in machine.finals}
    for move in _first_moves(machine):
        if move.target.text in finals:
            yield make("W505", move.target.span,
                       f"rows moved from `{move.source.text}` into final state "
                       f"`{move.target.text}` can never leave it",
                       f"fine if `{move.source.text}` was finished too (then ignore this); "
                       "otherwise move its rows to a state with a way out")


def _first_moves(machine: Machine) -> list[Move]:
    seen: dict[str, Move] = {}
    for move in machine.moves:
        seen.setdefault(move.source.text, move)
    return list(seen.values())


