"""`fsmc paths`: golden plans, generated pytest modules that pass on the CloudStack classes and
fail on a mutated one, and on random specs every path is a valid run that covers everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fsmc.compiler.paths import plan
from fsmc.dsl.loader import load_text
from hypothesis import given, settings

from tests.conftest import ROOT
from tests.generation import RandomSpec, random_specs
from tests.test_assertions import golden, run

SPECS = sorted((ROOT / "specs").glob("*.fsm"))


def test_guarded_plan_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out = run("paths", "tests/cases/golden/guards.fsm")
    assert code == 0
    golden("guards.paths.expected", out)
    code, out = run("paths", "tests/cases/golden/guards.fsm", "--format", "json")
    assert code == 0
    golden("guards.paths.json.expected", out)


def test_volume_plan_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out = run("paths", "specs/volume.fsm")
    assert code == 0
    golden("volume.paths.expected", out)


def _pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(folder)], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)


def test_generated_tests_pass_on_cloudstack_classes(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "generated", tmp_path / "generated",
                    ignore=shutil.ignore_patterns("diagrams"))
    for spec in SPECS:
        code, _ = run("paths", str(spec), "--format", "pytest", "-o",
                      str(tmp_path / f"test_{spec.stem}_paths.py"))
        assert code == 0
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_generated_tests_fail_on_a_mutated_table(tmp_path: Path) -> None:
    package = tmp_path / "mutant"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = (ROOT / "generated" / "volume.py").read_text("utf-8")
    # Creating --OperationSucceeded--> Ready (line 50) now goes to Allocated, in both tables.
    ready, allocated = "Volume.State.Ready", "Volume.State.Allocated"
    mutated = source.replace(f"candidate({ready}),  # line 50",
                             f"candidate({allocated}),  # line 50", 1)
    table = "_VOLUME_OPERATION_SUCCEEDED_PLAIN: dict[Volume.State, Volume.State] = {\n" \
            f"    {allocated}: {allocated},\n    Volume.State.Creating: {ready},"
    assert table in mutated and mutated != source
    mutated = mutated.replace(table, table.replace(f"Creating: {ready}",
                                                   f"Creating: {allocated}"))
    (package / "volume.py").write_text(mutated, encoding="utf-8")
    code, _ = run("paths", str(ROOT / "specs" / "volume.fsm"), "--format", "pytest",
                  "--package", "mutant", "-o", str(tmp_path / "test_volume_paths.py"))
    assert code == 0
    done = _pytest(tmp_path)
    assert done.returncode == 1, done.stdout[-2000:]
    assert " failed" in done.stdout, done.stdout[-2000:]
    assert "# line 50: Creating --OperationSucceeded--> Ready\n>" in done.stdout


@settings(max_examples=150, deadline=None)
@given(random_specs())
def test_every_path_is_a_valid_run_and_covers_every_outcome(spec: RandomSpec) -> None:
    result = load_text(spec.text(), "random.fsm")
    assert result.spec is not None
    [machine] = result.spec.machines
    found = plan(machine)
    covered: set[tuple[str, str, tuple[tuple[str, bool], ...]]] = set()
    for path in found.paths:
        assert path.start == spec.states[0]
        state = path.start
        for step in path.steps:
            assert step.source == state
            guards = dict(step.guards)
            answers = {g: guards.get(g, False) for g in ("g_one", "g_two", "g_three")}
            expected = spec.expected(state, step.event, answers)
            # Unasked guards do not matter: the reference must agree whatever they answer.
            other = spec.expected(state, step.event,
                                  {g: guards.get(g, True) for g in answers})
            assert expected == other
            assert expected == (step.target or "REJECTED")
            state = step.target or state
            covered.add((step.source, step.event, step.guards))
    reachable = {spec.states[0]}
    frontier = [spec.states[0]]
    while frontier:
        current = frontier.pop()
        for t in spec.transitions:
            if t.source == current and t.target not in reachable:
                reachable.add(t.target)
                frontier.append(t.target)
    for transition in spec.transitions:
        if transition.source not in reachable:
            continue
        taken = any(step.transition is not None and step.transition.line ==
                    _line(spec, transition) for path in found.paths for step in path.steps)
        impossible = any(t.line == _line(spec, transition) for t, _ in found.impossible)
        assert taken or impossible, transition
    lengths = [len(p.steps) for p in found.paths]
    assert lengths == sorted(lengths)


def _line(spec: RandomSpec, transition: object) -> int:
    # `machine`, `initial`, one line per other state, `events`, then the transitions.
    return spec.transitions.index(transition) + len(spec.states) + 3  # type: ignore[arg-type]
