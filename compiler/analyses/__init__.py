"""The analyses: pure functions from the model to diagnostics, one rule (one code) each.

`analyse(specs)` runs every rule over every machine, plus the rules that look across files.
The two halves also run apart: `analyse_spec` needs one file only (so a build runs it in the
worker process that loaded the file) and `analyse_across` needs only the machines' names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from fsmc.dsl.diagnostics import Diagnostic
from fsmc.dsl.model import Machine, Name, SpecFile

from .codegen import generated_name_collisions
from .declarations import (
    did_you_mean,
    duplicate_events,
    duplicate_machines,
    duplicate_states,
    initial_state,
    undeclared_events,
    undeclared_states,
)
from .graph import (
    cannot_reach_final,
    inconsistent_hooks,
    nondeterminism,
    sharing_graph,
    state_graph,
    transitions_from_final,
    unreachable_states,
    unused_states,
)
from .moves import (
    duplicate_moves,
    move_chains,
    move_into_final,
    move_target_undeclared,
    moved_state_declared,
)
from .properties import (
    assertion_names,
    expected_refutations,
    leads_to_assertions,
    never_assertions,
    only_from_assertions,
    only_in_assertions,
    reachable_assertions,
    reachable_from_assertions,
    trivial_assertions,
)

MachineRule = Callable[[Machine], Iterable[Diagnostic]]

MACHINE_RULES: tuple[MachineRule, ...] = (
    undeclared_states,
    undeclared_events,
    duplicate_states,
    duplicate_events,
    initial_state,
    generated_name_collisions,
    transitions_from_final,
    nondeterminism,
    unreachable_states,
    cannot_reach_final,
    unused_states,
    inconsistent_hooks,
    assertion_names,
    trivial_assertions,
    reachable_assertions,
    reachable_from_assertions,
    never_assertions,
    only_from_assertions,
    only_in_assertions,
    leads_to_assertions,
    expected_refutations,
    moved_state_declared,
    move_target_undeclared,
    move_chains,
    duplicate_moves,
    move_into_final,
)

# The assertion rules that prove or refute over the graph.
_ASSERTION_RULES = frozenset({
    reachable_assertions, reachable_from_assertions, never_assertions, only_from_assertions,
    only_in_assertions, leads_to_assertions, expected_refutations})

# Judging reachability through a misspelt name only adds noise to the real error.
_GRAPH_RULES = frozenset({unreachable_states, cannot_reach_final, unused_states,
                          *_ASSERTION_RULES})


def analyse_machine(machine: Machine) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    with sharing_graph(machine):
        for rule in MACHINE_RULES:
            if rule in _GRAPH_RULES and any(d.code == "E101" for d in found):
                continue
            found.extend(rule(machine))
    return found


def analyse_spec(spec: SpecFile) -> list[Diagnostic]:
    """Every machine rule over every machine of one file."""
    return [d for machine in spec.machines for d in analyse_machine(machine)]


def analyse_across(machines: Iterable[Name]) -> list[Diagnostic]:
    """The rules that look across files, given the names of the machines of every file
    checked, in file order."""
    return list(duplicate_machines(machines))


def analyse(specs: Sequence[SpecFile]) -> list[Diagnostic]:
    """Every rule over every machine of `specs`, plus the cross-file rules."""
    found = [d for spec in specs for d in analyse_spec(spec)]
    found.extend(analyse_across(machine.name for spec in specs for machine in spec.machines))
    return found


__all__ = ["MACHINE_RULES", "analyse", "analyse_across", "analyse_machine", "analyse_spec",
           "did_you_mean", "state_graph"]
