"""Helpers for tests that generate specs: random valid specs (hypothesis strategies), and
compiling spec text straight to a class without touching the disk layout."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fsmc.compiler.project import check_results
from fsmc.compiler.pyemit import module_view, render_module
from fsmc.dsl.loader import load_text
from hypothesis import strategies as st

_counter = itertools.count()


def compile_spec(text: str, name: str = "spec") -> ModuleType:
    """Check `text` (it must be free of errors) and import the generated module."""
    project = check_results([load_text(text, f"{name}.fsm")])
    assert project.ok, [f"{d.code} {d.message}" for d in project.errors()]
    [spec] = project.specs
    source = render_module(module_view(spec, f"{name}.fsm"), "test")
    module_name = f"_fsmc_test_{name}_{next(_counter)}"
    module = ModuleType(module_name)
    sys.modules[module_name] = module
    exec(compile(source, f"{module_name}.py", "exec"), module.__dict__)
    return module


@dataclass(frozen=True)
class RandomTransition:
    source: str
    event: str
    target: str
    guard: str | None
    negated: bool
    action: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RandomSpec:
    states: tuple[str, ...]
    finals: frozenset[str]
    events: tuple[str, ...]
    transitions: tuple[RandomTransition, ...]

    def text(self) -> str:
        lines = ["machine Random {", f"    initial {self.states[0]}"]
        for state in self.states[1:]:
            lines.append(f"    {'final' if state in self.finals else 'state'} {state}")
        lines.append(f"    events {', '.join(self.events)}")
        for t in self.transitions:
            line = f"    {t.source} -> {t.target} : {t.event}"
            if t.guard:
                line += f" {'unless' if t.negated else 'if'} {t.guard}"
            if t.action:
                line += f" do {t.action}"
            if t.tags:
                line += f" [{', '.join(t.tags)}]"
            lines.append(line)
        lines.append("}")
        return "\n".join(lines) + "\n"

    def expected(self, state: str, event: str, guards: dict[str, bool]) -> str | None:
        """The reference interpreter: the first candidate in file order whose guard holds;
        None when there is no candidate; 'REJECTED' when guards block them all."""
        candidates = [t for t in self.transitions if t.source == state and t.event == event]
        if not candidates:
            return None
        for t in candidates:
            if t.guard is None or guards[t.guard] is not t.negated:
                return t.target
        return "REJECTED"


GUARDS = ("g_one", "g_two", "g_three")


@st.composite
def random_specs(draw: Any) -> RandomSpec:
    count = draw(st.integers(2, 7))
    states = tuple(f"S{i}" for i in range(count))
    finals = frozenset(draw(st.sets(st.sampled_from(states[1:]), max_size=2)))
    events = tuple(f"Ev{i}" for i in range(draw(st.integers(1, 5))))
    sources = [s for s in states if s not in finals]
    transitions: list[RandomTransition] = []
    for source in sources:
        for event in events:
            # Per (source, event): 0-3 guarded candidates with distinct guards, maybe a final
            # unguarded one: always deterministic.
            guards = draw(st.lists(st.sampled_from(GUARDS), unique=True, max_size=3))
            closing = draw(st.booleans()) or (not guards and draw(st.booleans()))
            for guard in guards:
                transitions.append(RandomTransition(
                    source, event, draw(st.sampled_from(states)), guard, draw(st.booleans()),
                    draw(st.sampled_from([None, "act"])),
                    tuple(draw(st.lists(st.sampled_from(["usage", "audit"]), unique=True)))))
            if closing:
                transitions.append(RandomTransition(
                    source, event, draw(st.sampled_from(states)), None, False,
                    draw(st.sampled_from([None, "act"])), ()))
    shuffled = draw(st.permutations(transitions))
    # Shuffle across pairs but keep each pair's candidates in their order.
    order = {id(t): i for i, t in enumerate(transitions)}
    by_pair: dict[tuple[str, str], list[RandomTransition]] = {}
    for t in sorted(transitions, key=lambda t: order[id(t)]):
        by_pair.setdefault((t.source, t.event), []).append(t)
    arranged: list[RandomTransition] = []
    taken: dict[tuple[str, str], int] = {}
    for t in shuffled:
        pair = (t.source, t.event)
        arranged.append(by_pair[pair][taken.get(pair, 0)])
        taken[pair] = taken.get(pair, 0) + 1
    return RandomSpec(states, finals, events, tuple(arranged))
