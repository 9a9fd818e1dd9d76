"""Every name the grammar accepts, in every place a spec names something, either builds a
module that works (the class, its enums, its methods, `mypy --strict`) or is a positioned
diagnostic from `fsmc check`: never a build failure after a clean check.

Tried exhaustively over Python's keywords and soft keywords, the builtins, the attributes of
the runtime's classes and of generated classes and their members, the generated module's own
names, and dunders; then at random (hypothesis) over what the grammar's NAME accepts.
"""

from __future__ import annotations

import builtins
import keyword
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsmc.runtime
import pytest
from fsmc.compiler.naming import snake_case
from fsmc.compiler.project import check_results
from fsmc.compiler.pyemit import module_view, render_module
from fsmc.dsl.loader import load_text
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.generation import compile_spec
from tests.test_lint import type_tree

EXAMPLES = int(os.environ.get("FSMC_EMIT_EXAMPLES", "200"))
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _generated_attributes() -> set[str]:
    module = compile_spec("machine Probe { initial A; state B; A -> B : Go if ok do act }",
                          "probe")
    probe = module.Probe
    names = set(dir(probe)) | set(dir(probe("r"))) | set(dir(probe.State.A))
    names |= set(dir(probe.SPEC)) | set(vars(module))
    return names


DUNDERS = {"__init__", "__new__", "__class__", "__dict__", "__slots__", "__doc__", "__module__",
           "__name__", "__qualname__", "__all__", "__annotations__", "__builtins__", "__file__",
           "__spec__", "__loader__", "__init_subclass__", "__getattr__", "__call__",
           "__hash__", "__eq__", "__members__", "__set_name__", "__class_getitem__", "__"}
CANDIDATES = sorted(name for name in {
    *keyword.kwlist, *keyword.softkwlist, *dir(builtins), *dir(fsmc.runtime),
    *(n for cls in (fsmc.runtime.Machine, fsmc.runtime.MachineEnum, fsmc.runtime.StateChanged,
                    fsmc.runtime.MachineSpec, str) for n in dir(cls)),
    *_generated_attributes(), *DUNDERS, "machine", "state", "states", "events", "initial",
    "final", "entry", "if", "unless", "do", "Go", "A", "B", "M", "Probe", "Back", "Fire",
    "name", "value", "mro",
} if NAME.fullmatch(name))

# One spec per place; `{n}` is the name tried. The rest of each spec is ordinary.
PLACES: dict[str, str] = {
    "machine": "machine {n} {{ initial A; state B; A -> B : Go }}",
    "state": "machine M {{ initial A; state {n}; A -> {n} : Go; {n} -> A : Back }}",
    "initial": "machine M {{ initial {n}; state B; {n} -> B : Go }}",
    "event": "machine M {{ initial A; state B; A -> B : {n} }}",
    "guard": "machine M {{ initial A; state B; A -> B : Go if {n} }}",
    "action": "machine M {{ initial A; state B; A -> B : Go do {n} }}",
    "tag": "machine M {{ initial A; state B; A -> B : Go [{n}] }}",
}


DSL_KEYWORDS = {"machine", "initial", "final", "state", "states", "events", "if", "unless", "do"}
MUST_REFUSE = {
    "machine": {"None", "True", "False", "class", "__init__", "_", "Machine", "Any", "State",
                "IndexError", "dict"} | DSL_KEYWORDS,
    "state": {"None", "class", "__init__", "name", "value", "upper", "mro"} | DSL_KEYWORDS,
    "initial": {"None", "class", "__init__", "name", "value", "count"} | DSL_KEYWORDS,
    "event": {"None", "class", "__init__", "name", "Fire", "State", "title"} | DSL_KEYWORDS,
    "guard": {"None", "fire", "acan_fire", "__init__", "Any", "bool", "M"} | DSL_KEYWORDS,
    "action": {"None", "fire", "state", "__init__", "Any", "bool", "M"} | DSL_KEYWORDS,
    "tag": DSL_KEYWORDS,
}


def outcome(place: str, name: str) -> tuple[bool, list[str]]:
    """(clean, diagnostics) of `fsmc check` for `name` in `place`; clean means it must build."""
    text = PLACES[place].format(n=name)
    project = check_results([load_text(text, f"{place}.fsm")])
    problems = []
    for d in project.errors():
        assert d.span.line == 1 and d.span.column >= 1, d  # positioned in the one line
        problems.append(f"{d.code} {d.message}")
    return project.ok, problems


def works(place: str, name: str) -> None:
    """Build the clean spec as `fsmc build` does, import it, use everything generated."""
    text = PLACES[place].format(n=name)
    module = compile_spec(text, f"names_{place}")
    machine_name = name if place == "machine" else "M"
    cls = module.__dict__[machine_name]
    assert cls.SPEC.name == machine_name and module.__all__ == [machine_name]
    initial = name if place == "initial" else "A"
    target = name if place == "state" else "B"
    event = name if place == "event" else "Go"
    assert cls.State[initial].name == initial and cls.State[initial] == initial
    assert getattr(cls.State, target).value == target and getattr(cls.Event, event) == event
    namespace: dict[str, Callable[..., Any]] = {}
    if place == "guard":
        namespace[name] = lambda self, **payload: True
    if place == "action":
        namespace[name] = lambda self, **payload: None
    subclass = type(machine_name, (cls,), namespace)
    instance = subclass("r")
    method = getattr(instance, snake_case(event))
    assert method() == target and instance.state is cls.State[target]
    again = subclass("s")
    assert again.fire(event) is cls.State[target]
    assert again.allowed_events() == ((cls.Event.Back,) if place == "state" else ())
    if place == "tag":
        assert cls.SPEC.transitions[0].tags == (name,)


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_hostile_name_builds_or_is_a_positioned_diagnostic(place: str) -> None:
    accepted, refused = [], {}
    for name in CANDIDATES:
        clean, problems = outcome(place, name)
        if clean:
            works(place, name)
            accepted.append(name)
        else:
            assert problems, name
            refused[name] = problems
    # The checks refuse what they must, and no more than that.
    assert MUST_REFUSE[place] <= set(refused), sorted(MUST_REFUSE[place] - set(refused))
    assert {"Go", "Warning", "Exception", "match", "case", "print"} <= set(accepted)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(sorted(PLACES)), st.from_regex(NAME, fullmatch=True) |
       st.sampled_from(CANDIDATES))
def test_check_and_build_agree_on_any_name(place: str, name: str) -> None:
    clean, problems = outcome(place, name)
    if clean:
        works(place, name)
    else:
        assert problems


def combined_spec(place: str, names: list[str]) -> str:
    """One file with every accepted name of `place` at once, for one mypy run."""
    if place == "machine":
        return "\n".join(PLACES["machine"].format(n=n) for n in names)
    if place == "tag":
        return PLACES["tag"].format(n=", ".join(names))
    if place in ("state", "initial"):
        lines = [f"state {n}; A -> {n} : Go{i}; {n} -> A : Back" for i, n in enumerate(names)]
        return "machine M { initial A; " + "; ".join(lines) + " }"
    clause = {"event": "A -> B : {n}", "guard": "A -> B : Go{i} if {n}",
              "action": "A -> B : Go{i} do {n}"}[place]
    lines = [clause.format(n=n, i=i) for i, n in enumerate(names)]
    return "machine M { initial A; state B; " + "; ".join(lines) + " }"


def test_accepted_names_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    tree = type_tree(tmp_path)
    package = tree / "names"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for place in PLACES:
        accepted = [n for n in CANDIDATES if outcome(place, n)[0]]
        if place in ("state", "initial"):  # `A` is the combined spec's own initial state
            accepted = [n for n in accepted if n != "A"]
        if place == "event":  # `Go` and `go` are fine apart, not together (one method)
            accepted = list({snake_case(n): n for n in reversed(accepted)}.values())
        text = combined_spec(place, accepted)
        project = check_results([load_text(text, f"{place}.fsm")])
        assert project.ok, [f"{d.code} {d.message}" for d in project.errors()][:5]
        [spec] = project.specs
        (package / f"{place}.py").write_text(render_module(module_view(spec, f"{place}.fsm"),
                                                           "test"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file",
         str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), "-p", "names"],
        cwd=tree, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr
