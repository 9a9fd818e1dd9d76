"""Assertions: the forms, their diagnostics (golden counterexamples), the CloudStack findings
kept as expected failures, and the proofs against a reference on random specs."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import networkx as nx
import pytest
from fsmc.compiler.analyses.properties import machine_verdicts
from fsmc.compiler.cli import main
from fsmc.compiler.project import check
from fsmc.dsl.diagnostics import Step, trace_text
from fsmc.dsl.loader import load_text
from fsmc.dsl.model import AssertionKind, Machine
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, check_text
from tests.generation import RandomSpec, random_specs

CASES = ROOT / "tests" / "cases" / "verification"
REGEN = os.environ.get("FSMC_REGEN_GOLDEN") == "1"


def golden(name: str, data: str) -> None:
    """Compare with a golden file; FSMC_REGEN_GOLDEN=1 rewrites it."""
    expected = CASES / name
    if REGEN:
        expected.write_text(data, encoding="utf-8")
    assert expected.exists(), f"no golden file {name}; run with FSMC_REGEN_GOLDEN=1"
    assert data == expected.read_text("utf-8"), f"output differs from {name}"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), stdout=out, stderr=io.StringIO())
    return code, out.getvalue()


def test_counterexamples_text_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out = run("check", "--color", "never", "tests/cases/verification/assertions.fsm")
    assert code == 1
    golden("assertions.check.expected", out)


def test_counterexamples_json_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out = run("check", "--format", "json", "tests/cases/verification/assertions.fsm")
    assert code == 1
    found = json.loads(out)
    # Backward compatible: the nine keys of the contract and `related`, plus `counterexample`
    # on refutations.
    for item in found:
        keys = set(item) - {"counterexample"}
        assert keys == {"path", "line", "column", "end_line", "end_column", "severity", "code",
                        "message", "hint", "related"}
        assert ("counterexample" in item) == (item["code"] in {"E402", "E403", "E404", "E405",
                                                               "E406"})
    golden("assertions.json.expected", out)


def test_cloudstack_assertions_are_proved() -> None:
    project = check([ROOT / "specs"])
    assert project.ok
    assert not [d for d in project.diagnostics if d.code.startswith("E4")]
    proved = sum(len(m.assertions) for s in project.specs for m in s.machines)
    assert proved >= 25


def test_cloudstack_findings_stay_refuted() -> None:
    """The assertions CloudStack's own tables refute, kept with `[refuted]`: each listed with
    its counterexample, so a change of the table (or of the checker) shows here."""
    project = check([ROOT / "specs"])
    lines = []
    for spec in project.specs:
        for machine in spec.machines:
            for verdict in machine_verdicts(machine, expected=True):
                assert not verdict.holds
                trace = trace_text(verdict.trace) if verdict.trace else "(no path)"
                lines.append(f"{Path(spec.path).name}:{verdict.assertion.line}: "
                             f"{verdict.assertion.text}\n    {verdict.reason}\n    {trace}\n")
    golden("cloudstack_refutations.expected", "".join(lines))


@pytest.mark.parametrize(("line", "expected"), [
    ("assert reachable", ("E410", 5, 21)),
    ("assert never A", ("E410", 5, 19)),
    ("assert A only to B", ("E410", 5, 19)),
    ("assert A leads B", ("E410", 5, 20)),
    ("assert reachable B from", ("E410", 5, 28)),
    ("assert reachable B [x]", ("E410", 5, 25)),
    ("assert never A -> Bee", ("E411", 5, 23)),
    ("assert Go only in A", ("E411", 5, 12)),
    ("assert Gone only in A", ("E411", 5, 12)),
    ("assert B only from B", ("E412", 5, 24)),
    ("assert B only from A, A", ("E412", 5, 27)),
    ("assert reachable B from B", ("E412", 5, 29)),
    ("assert A leads to A", ("E412", 5, 23)),
])
def test_wrong_assertions_are_pinpointed(line: str, expected: tuple[str, int, int]) -> None:
    text = f"machine M {{\n    initial A\n    state B\n    A -> B : Goes\n    {line}\n}}\n"
    found = [(d.code, d.span.line, d.span.column) for d in check_text(text).diagnostics]
    assert expected in found, found


def test_did_you_mean_in_assertions() -> None:
    text = "machine M {\n initial Stopped\n state Running\n Stopped -> Running : Start\n" \
           " assert reachable Runing\n}\n"
    [diagnostic] = check_text(text).diagnostics
    assert diagnostic.hint == "did you mean `Running`?"


def test_soft_keywords_stay_names() -> None:
    text = ("machine M {\n initial assert\n states never, reachable, only, leads\n"
            " assert -> never : only\n never -> reachable : leads\n reachable -> leads : to\n"
            " leads -> only : assert\n only -> assert : never\n"
            " assert never never -> assert\n assert reachable reachable\n"
            " assert only only from leads\n assert leads leads to assert\n"
            " assert only only in assert\n}\n")
    project = check_text(text)
    # (`assert` is a Python keyword, so generated code could not take it: E108; the
    # spec still parses and the assertions are judged.)
    errors = [(d.code, d.message) for d in project.errors() if d.code != "E108"]
    assert [code for code, _ in errors] == ["E403"], errors
    [machine] = project.specs[0].machines
    assert [a.kind for a in machine.assertions] == [
        AssertionKind.NEVER, AssertionKind.REACHABLE, AssertionKind.ONLY_FROM,
        AssertionKind.LEADS_TO, AssertionKind.ONLY_IN]


def test_star_and_entry_states_count() -> None:
    text = ("machine M {\n initial A\n entry E\n states B, C\n A -> B : Go\n"
            " E -> C : Go\n * -> A : Reset\n assert reachable C\n assert A only from B, C, E\n"
            " assert Reset only in B, C, E\n}\n")
    project = check_text(text)
    assert [d.code for d in project.errors()] == ["E405"]
    [diagnostic] = project.errors()
    # `*` includes A itself (A --Reset--> A), the nearest offence from the start.
    assert diagnostic.trace == (Step("A", "Reset"), Step("A"))


def test_guards_count_as_possibly_true() -> None:
    text = ("machine M {\n initial A\n states B, C\n A -> B : Go if never_true\n"
            " B -> C : On unless always\n C -> A : Back\n assert never A -> C\n}\n")
    [diagnostic] = check_text(text).errors()
    assert diagnostic.trace == (Step("A", "Go"), Step("B", "On"), Step("C"))


def test_never_self_means_never_entered_again() -> None:
    base = "machine M {\n initial A\n state B\n A -> A : Spin\n A -> B : Go\n%s}\n"
    assert check_text(base % " assert never A -> A\n").ok
    assert not check_text(base % " B -> A : Back\n assert never A -> A\n").ok


def test_leads_to_dead_end_and_cycle() -> None:
    text = ("machine M {\n initial A\n states B, C, D\n final Done\n A -> B : Go\n"
            " B -> Done : Finish\n A -> C : Side\n C -> D : On\n D -> C : Off\n"
            " assert A leads to Done\n}\n")
    [diagnostic] = check_text(text).errors()
    assert diagnostic.trace == (Step("A", "Side"), Step("C", "On"), Step("D", "Off"),
                                Step("C"))
    text = "machine M {\n initial A\n states B, C\n A -> B : Go\n A -> C : Other\n" \
           " assert A leads to C\n}\n"
    [diagnostic] = check_text(text).errors()
    assert diagnostic.trace == (Step("A", "Go"), Step("B"))


# The reference: networkx over the same graph, and every counterexample walked on the spec.

def _machine(spec: RandomSpec) -> Machine:
    result = load_text(spec.text(), "random.fsm")
    assert result.spec is not None
    return result.spec.machines[0]


def _assertions(spec: RandomSpec, picks: list[tuple[int, int, int]]) -> str:
    states = spec.states
    lines = []
    for form, a, b in picks:
        first, second = states[a % len(states)], states[b % len(states)]
        event = spec.events[a % len(spec.events)]
        if form == 0:
            lines.append(f"assert reachable {first}")
        elif form == 1:
            lines.append(f"assert never {first} -> {second}")
        elif form == 2 and first != second:
            lines.append(f"assert {first} only from {second}")
        elif form == 3 and first != second:
            lines.append(f"assert {first} leads to {second}")
        elif form == 4:
            lines.append(f"assert {event} only in {first}")
        elif form == 5:
            lines.append(f"assert reachable {first} from *")
    return "".join(f"    {line}\n" for line in lines)


def _walks(machine: Machine, trace: tuple[Step, ...]) -> bool:
    edges = {(t.source.text, t.event.text, t.target.text) for t in machine.transitions}
    return all((here.state, here.event, there.state) in edges
               for here, there in itertools.pairwise(trace)) and \
        trace[-1].event is None


def _reference(machine: Machine, kind: AssertionKind, subject: str, target: str | None,
               names: list[str]) -> bool:
    graph: nx.MultiDiGraph[str] = nx.MultiDiGraph()
    graph.add_nodes_from(machine.state_names)
    graph.add_edges_from((t.source.text, t.target.text) for t in machine.transitions)
    starts = [d.name.text for d in machine.entries]
    reach = set(starts).union(*(nx.descendants(graph, s) for s in starts))
    if kind is AssertionKind.REACHABLE:
        return subject in reach
    if kind is AssertionKind.REACHABLE_FROM:
        return all(subject == s or subject in nx.descendants(graph, s) for s in reach)
    if kind is AssertionKind.NEVER:
        assert target is not None
        if subject == target:
            plain = nx.DiGraph((u, v) for u, v in graph.edges() if (u, v) != (subject, subject))
            plain.add_nodes_from(graph)
            return not any(subject in nx.descendants(plain, v) or v == subject
                           for v in plain.successors(subject))
        return target not in nx.descendants(graph, subject)
    if kind is AssertionKind.ONLY_FROM:
        return all(t.source.text in (subject, *names) for t in machine.transitions
                   if t.target.text == subject)
    if kind is AssertionKind.ONLY_IN:
        return all(t.source.text in names for t in machine.transitions
                   if t.event.text == subject)
    assert target is not None
    avoiding = graph.subgraph(n for n in graph if n != target)
    seen = {subject} | nx.descendants(avoiding, subject)
    inner = avoiding.subgraph(seen)
    dead = any(graph.out_degree(n) == 0 for n in seen)
    return not dead and nx.is_directed_acyclic_graph(inner)


@settings(max_examples=150, deadline=None)
@given(random_specs(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9),
                                          st.integers(0, 9)), min_size=1, max_size=6))
def test_verdicts_match_reference_and_counterexamples_are_paths(
        spec: RandomSpec, picks: list[tuple[int, int, int]]) -> None:
    body = _assertions(spec, picks)
    text = spec.text().replace("}\n", body + "}\n")
    result = load_text(text, "random.fsm")
    assert result.spec is not None and not result.diagnostics
    [machine] = result.spec.machines
    for verdict in machine_verdicts(machine):
        a = verdict.assertion
        expected = _reference(machine, a.kind, a.subject.text,
                              a.target.text if a.target else None, [n.text for n in a.names])
        assert verdict.holds == expected, (a.text, text)
        if verdict.trace is not None:
            assert not verdict.holds
            assert _walks(machine, verdict.trace), (a.text, verdict.trace)
            first = verdict.trace[0].state
            if a.kind in (AssertionKind.NEVER, AssertionKind.LEADS_TO):
                assert first == a.subject.text
                if a.kind is AssertionKind.NEVER:
                    assert verdict.trace[-1].state == (a.target.text if a.target else "")
                    assert len(verdict.trace) >= 2
            if a.kind is AssertionKind.LEADS_TO:
                assert all(step.state != (a.target.text if a.target else "")
                           for step in verdict.trace)


REFUTED_ONLY = """machine M {
    initial A
    states B, C
    A -> B : Go
    B -> C : On
    C -> A : Back
    A -> A : Spin
    assert never B -> A
}
"""


def test_render_highlights_the_counterexample(tmp_path: Path) -> None:
    spec = tmp_path / "m.fsm"
    spec.write_text(REFUTED_ONLY, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = main(["render", str(spec), "--format", "dot"], stdout=out, stderr=err)
    assert code == 1  # drawn, but the spec has an error: the refutation, on stderr
    assert "error[E403]" in err.getvalue() and "error" not in out.getvalue()
    dot = out.getvalue()
    path_colour = "#c2255c"
    marked = [line for line in dot.splitlines() if path_colour in line]
    # B -> C and C -> A are on the path, A -> B is not; the states B, C, A are marked.
    assert any(line.strip().startswith("B -> C") for line in marked), marked
    assert any(line.strip().startswith("C -> A") for line in marked), marked
    assert not any(line.strip().startswith("A -> B") for line in marked), marked
    assert {line.split()[0] for line in marked if "[label=" in line.split(" ", 1)[0] + " "
            or line.split()[1].startswith("[")} == {"A", "B", "C"}
    # The self-loop A --Spin--> A is not on the path: its row keeps the plain colour.
    assert '#24313d">↻ Spin' in dot


def test_review_lists_assertions_and_draws_each_refutation(tmp_path: Path) -> None:
    code, _ = run("review", str(ROOT / "specs"), "-o", str(tmp_path / "site"))
    assert code == 0
    page = (tmp_path / "site" / "volume.Volume.html").read_text("utf-8")
    assert "<code>assert never Expunged -&gt; Ready [refuted]</code>" in page
    assert "Expunged --RestoreRequested--&gt; Restoring --RestoreSucceeded--&gt; Ready" in page
    assert page.count('class="badge verdict">proved<') == 5
    assert page.count('class="badge verdict">expected failure<') == 3
    drawn = (tmp_path / "site" / "volume.Volume.assert-L142.dot").read_text("utf-8")
    assert "#c2255c" in drawn


def test_verification_doc_shows_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/verification.md quotes `fsmc check vm.fsm` and `fsmc paths guards.fsm` as they are."""
    doc = (ROOT / "docs" / "verification.md").read_text("utf-8")
    monkeypatch.chdir(CASES)
    code, out = run("check", "--color", "never", "vm.fsm")
    assert code == 1
    assert out in doc
    assert (CASES / "vm.fsm").read_text("utf-8") in doc
    monkeypatch.chdir(ROOT)
    code, out = run("paths", "tests/cases/golden/guards.fsm")
    assert code == 0
    assert f"$ fsmc paths tests/cases/golden/guards.fsm\n{out}" in doc
    monkeypatch.chdir(CASES)
    code, out = run("replay", "audit.jsonl", "cloudstack.jsonl", "--specs", str(ROOT / "specs"))
    assert code == 1
    assert f"$ fsmc replay audit.jsonl cloudstack.jsonl --specs specs/\n{out}" in doc
