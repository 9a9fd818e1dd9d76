"""Diagrams: the DOT emitter (golden files), its grouping and marks, escaping, rendering, and
how `fsmc build` and `fsmc render` write them.

Golden files live in tests/cases/diagrams/: `<stem>.<Machine>.dot` for every machine of
specs/*.fsm (exactly what `fsmc build` writes to generated/diagrams/) and of the cases
tests/cases/diagrams/*.fsm. Set FSMC_REGEN_GOLDEN=1 to rewrite them, then review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fsmc.compiler.buildplan import plan
from fsmc.compiler.cli import main
from fsmc.compiler.diagrams.dot import _tooltip, machine_dot, to_dot
from fsmc.compiler.diagrams.emit import diagram_files
from fsmc.compiler.diagrams.render import render
from fsmc.compiler.diagrams.view import ANY_ID, INITIAL_ID, Mark, Role, entry_id, machine_view
from fsmc.compiler.naming import module_name
from fsmc.compiler.project import Project, check
from fsmc.dsl.model import Machine

from tests.conftest import ROOT, check_text

CASES = ROOT / "tests" / "cases" / "diagrams"
REGENERATE = os.environ.get("FSMC_REGEN_GOLDEN") == "1"
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"


def golden_outputs() -> dict[str, bytes]:
    """Every golden file's expected name → what the emitter writes now."""
    outputs: dict[str, bytes] = {}
    old = Path.cwd()
    os.chdir(ROOT)  # paths in the diagrams' header are relative to the current directory
    try:
        for folder in (ROOT / "specs", CASES):
            project = check([folder.relative_to(ROOT)])
            assert project.ok, [d.message for d in project.errors()]
            for spec in project.specs:
                stem = Path(spec.path).stem
                for name, data in diagram_files(spec, spec.path, stem).items():
                    outputs[name.removeprefix("diagrams/")] = data
    finally:
        os.chdir(old)
    return outputs


GOLDEN = golden_outputs()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_dot(name: str) -> None:
    expected = CASES / name
    if REGENERATE:
        expected.write_bytes(GOLDEN[name])
    assert expected.exists(), f"no golden file {name}; run with FSMC_REGEN_GOLDEN=1"
    assert GOLDEN[name] == expected.read_bytes(), f"{name} differs; FSMC_REGEN_GOLDEN=1 rewrites"


def test_no_stale_golden_files() -> None:
    stale = sorted(p.name for p in CASES.glob("*.dot") if p.name not in GOLDEN)
    assert not stale, f"golden files without a machine: {stale}"


def test_built_diagrams_match_the_goldens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed generated/diagrams/ are the golden files of specs/."""
    monkeypatch.chdir(ROOT)
    files = plan(check(["specs"]), ROOT / "generated").files
    dots = {name.removeprefix("diagrams/"): data for name, data in files.items()
            if name.endswith(".dot")}
    assert dots and {name: GOLDEN[name] for name in dots} == dots


def test_dot_is_deterministic() -> None:
    project = check([ROOT / "specs" / "virtual_machine.fsm"])
    machine = project.specs[0].machines[0]
    first = machine_dot(machine, project.diagnostics, source="vm.fsm")
    assert all(machine_dot(machine, project.diagnostics, source="vm.fsm") == first
               for _ in range(5))


def machine_of(text: str) -> tuple[Machine, Project]:
    project = check_text(text)
    assert project.ok, [d.message for d in project.diagnostics]
    return project.specs[0].machines[0], project


def test_design_example_view(design_example: str) -> None:
    machine, project = machine_of(design_example)
    view = machine_view(machine, project.diagnostics)
    nodes = {node.id: node for node in view.nodes}
    assert nodes[INITIAL_ID].role is Role.INITIAL
    assert nodes["Expunged"].kind is not None and nodes["Expunged"].kind.value == "final"
    edges = {(e.source, e.target): e for e in view.edges}
    assert (INITIAL_ID, "Allocated") in edges
    stop = edges[("Running", "Stopping")]
    assert [line.text for line in stop.lines] == ["StopRequested if can_stop"]
    release = edges[("Stopping", "Stopped")]
    assert [line.text for line in release.lines] == [
        "OperationSucceeded do release_host [usage]"]
    # `* -> Error : Crashed` is one edge from the "any" node, not one per state.
    assert [e.source for e in view.edges if e.target == "Error"] == [ANY_ID]
    assert "Starting, Running, Stopping, Stopped, Destroyed, Error" in nodes[ANY_ID].tooltip


def test_parallel_edges_merge_and_star_statements_share_an_edge() -> None:
    machine, project = machine_of((CASES / "star.fsm").read_text())
    view = machine_view(machine, project.diagnostics)
    edges = {(e.source, e.target): e for e in view.edges}
    assert [line.text for line in edges[(ANY_ID, "Cancelled")].lines] == [
        "Cancel [billing, audit]", "Timeout unless is_protected"]
    assert [line.text for line in edges[(ANY_ID, "Failed")].lines] == [
        "Crash do page_operator"]
    assert sum(1 for e in view.edges if e.source == ANY_ID) == 2
    assert edges[("Paused", "Paused")].is_loop


def test_warnings_mark_states() -> None:
    machine, project = machine_of((CASES / "warnings.fsm").read_text())
    view = machine_view(machine, project.diagnostics)
    nodes = {node.id: node for node in view.nodes}
    assert nodes["Orphan"].mark is Mark.UNREACHABLE and nodes["Orphan"].notes == (
        "W301 unreachable-state",)
    assert nodes["Forgotten"].mark is Mark.UNREACHABLE
    assert nodes["Stuck"].mark is Mark.DEAD_END
    assert nodes["Placed"].mark is Mark.NONE and not nodes["Placed"].notes
    entry = next(e for e in view.edges if e.source == entry_id("Imported"))
    assert entry.dashed and entry.target == "Imported"
    dot = machine_dot(machine, project.diagnostics)
    assert re.search(r"rank=sink\s+Forgotten", dot), "an isolated state goes to the far end"
    assert "\u21bb Edited" in dot and "\u21bb Saved [audit]" in dot


def test_built_diagrams_carry_the_checkers_warnings() -> None:
    dot = GOLDEN["virtual_machine.VirtualMachine.dot"].decode()
    assert "W303 unused-state" in dot
    assert "W302 cannot-reach-final" in GOLDEN["snapshot.Snapshot.dot"].decode()


def test_node_ids_are_quoted_safely() -> None:
    dot = GOLDEN["escaping.Quoting.dot"].decode()
    for keyword in ("node", "subgraph", "strict"):
        assert f'\t"{keyword}" [' in dot
    assert '"(initial)" -> "node"' in dot


def test_every_spec_diagram_names_every_state_and_event() -> None:
    project = check([ROOT / "specs"])
    for spec in project.specs:
        for machine in spec.machines:
            dot = machine_dot(machine, project.diagnostics)
            for state in machine.state_names:
                assert re.search(rf"\b{state}\b", dot), (machine.name.text, state)
            for transition in machine.transitions:
                assert transition.event.text in dot


def svg_texts(svg: bytes) -> tuple[list[str], list[str]]:
    """The visible texts and the tooltips of an SVG."""
    root = ET.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    tooltips = [a.get(f"{XLINK}title", "") for a in root.iter(f"{SVG}a")]
    return texts, tooltips


@pytest.mark.usefixtures("requires_dot")
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_renders(name: str) -> None:
    result = subprocess.run(["dot", "-Tsvg"], input=GOLDEN[name], capture_output=True,
                            check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr.decode()
    texts, _ = svg_texts(result.stdout)
    assert any(t.strip() for t in texts)


@pytest.mark.usefixtures("requires_dot")
def test_doc_strings_reach_tooltips_intact() -> None:
    machine, project = machine_of((CASES / "escaping.fsm").read_text())
    texts, tooltips = svg_texts(render(machine_dot(machine, project.diagnostics), "svg"))
    docs = {decl.name.text: decl.doc for decl in machine.states if decl.doc}
    for name, doc in docs.items():
        assert any(doc in tip for tip in tooltips), (name, doc, tooltips)
    assert machine.doc is not None
    assert machine.doc.replace("\t", " ") in tooltips
    assert "Quotes \"here\", a backslash \\ and <b>not bold</b> & more" in texts


@pytest.mark.usefixtures("requires_dot")
@pytest.mark.parametrize("value", [
    "a\\N b", "\\\\G", "ends \\", "\\n not a newline", "quote \\\" inside", "&amp; &lt;",
    "<b>bold?</b>", 'say "hi"', "two\nlines",
])
def test_tooltip_escaping_round_trips(value: str) -> None:
    import graphviz  # type: ignore[import-untyped]

    graph = graphviz.Digraph()
    graph.node("n", tooltip=_tooltip(value))
    _, tooltips = svg_texts(render(graph.source, "svg"))
    assert tooltips == [value]


def test_several_machines_become_clusters() -> None:
    project = check([CASES / "two_machines.fsm"])
    views = [machine_view(m) for m in project.specs[0].machines]
    dot = to_dot(views)
    assert "subgraph cluster_1" in dot and "subgraph cluster_2" in dot
    assert '"Light/Off"' in dot and '"Door/Closed"' in dot


# --- fsmc build ---------------------------------------------------------------------------

DOOR = "machine Door {\n initial Shut\n state Open\n Shut -> Open : Push\n Open -> Shut : Pull\n}\n"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("requires_dot")
def test_build_writes_dot_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR)
    out = tmp_path / "out"
    assert run_cli(["build", str(spec), "-o", str(out)], capsys)[0] == 0
    assert (out / "diagrams" / "door.Door.dot").read_text().startswith("// Generated by fsmc")
    svg = (out / "diagrams" / "door.Door.svg").read_bytes()
    assert b"Generated by fsmc" in svg[:300]
    texts, _ = svg_texts(svg)
    assert {"Shut", "Open", "Push", "Pull"} <= {t.strip() for t in texts}


@pytest.mark.usefixtures("requires_dot")
def test_check_compares_dot_but_not_svg(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR)
    out = tmp_path / "out"
    assert run_cli(["build", str(spec), "-o", str(out)], capsys)[0] == 0
    svg = out / "diagrams" / "door.Door.svg"
    svg.write_text(svg.read_text().replace("Push", "Pushed"))  # another Graphviz, say
    assert run_cli(["build", "--check", str(spec), "-o", str(out)], capsys)[0] == 0
    svg.unlink()
    assert run_cli(["build", "--check", str(spec), "-o", str(out)], capsys)[0] == 0
    dot = out / "diagrams" / "door.Door.dot"
    dot.write_text(dot.read_text() + "// edited\n")
    code, _, err = run_cli(["build", "--check", str(spec), "-o", str(out)], capsys)
    assert code == 1 and "differs:" in err and "door.Door.dot" in err


@pytest.mark.usefixtures("requires_dot")
def test_stale_diagrams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A removed machine's DOT is stale (reported and removed); its SVG is removed quietly;
    files that fsmc did not write stay."""
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR + DOOR.replace("Door", "Gate"))
    out = tmp_path / "out"
    assert run_cli(["build", str(spec), "-o", str(out)], capsys)[0] == 0
    (out / "diagrams" / "mine.svg").write_text("<svg/>")
    spec.write_text(DOOR)
    code, _, err = run_cli(["build", "--check", str(spec), "-o", str(out)], capsys)
    assert code == 1 and "stale:" in err and "door.Gate.dot" in err and ".svg" not in err
    assert run_cli(["build", str(spec), "-o", str(out)], capsys)[0] == 0
    left = sorted(p.name for p in (out / "diagrams").iterdir())
    assert left == ["door.Door.dot", "door.Door.svg", "mine.svg"]


def test_build_without_dot_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR + DOOR.replace("Door", "Gate"))
    out = tmp_path / "out"
    code, _, err = run_cli(["build", str(spec), "-o", str(out)], capsys)
    assert code == 0
    assert err.count("warning") == 1 and "Graphviz `dot` not found" in err
    assert sorted(p.name for p in (out / "diagrams").iterdir()) == [
        "door.Door.dot", "door.Gate.dot"]
    assert run_cli(["build", "--check", str(spec), "-o", str(out)], capsys)[0] == 0


# --- fsmc render --------------------------------------------------------------------------

@pytest.mark.usefixtures("requires_dot")
@pytest.mark.parametrize("fmt, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"),
                                        ("pdf", b"%PDF-"), ("dot", b"// Generated by fsmc")])
def test_render_formats(fmt: str, magic: bytes, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / f"vm.{fmt}"
    code, _, err = run_cli(["render", str(ROOT / "specs" / "virtual_machine.fsm"), "-o",
                            str(target)], capsys)
    assert code == 0, err
    assert target.read_bytes().startswith(magic)


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "lb.jpg"], "-o lb.jpg: cannot draw a `.jpg` file; name it .svg, .png, .pdf or .dot"),
    (["-o", "lb.pdf", "--format", "svg"],
     "-o lb.pdf names a PDF file but --format is svg; drop --format or name the file .svg"),
    (["-o", "lb.PNG", "--format", "dot"],
     "-o lb.PNG names a PNG file but --format is dot; drop --format or name the file .dot"),
])
def test_render_refuses_a_file_name_of_another_format(
        args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["render", str(ROOT / "specs" / "nic.fsm"), *args], capsys)
    assert code == 2 and f"fsmc: error: {message}" in err
    assert not list(tmp_path.iterdir())


def test_render_writes_an_unknown_suffix_only_when_told_the_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nic.gv"
    args = ["render", str(ROOT / "specs" / "nic.fsm"), "-o", str(target), "--format", "dot"]
    assert run_cli(args, capsys)[0] == 0
    assert target.read_text().split("\n", 1)[1] == GOLDEN["nic.Nic.dot"].decode().split("\n", 1)[1]


def test_render_of_several_specs_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["render", "a.fsm", "b.fsm"], capsys)
    assert (code, out) == (2, "")
    assert err == ("fsmc: error: render draws one spec file, not 2 (a.fsm, b.fsm): run it once "
                   "per spec, or `fsmc review a.fsm b.fsm` for a site with all of them\n")


def test_render_dot_to_stdout(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run_cli(["render", "specs/nic.fsm", "--format", "dot"], capsys)
    assert code == 0
    assert out.encode() == GOLDEN["nic.Nic.dot"]
    monkeypatch.chdir(ROOT / "tests")  # the same from anywhere: the spec's project decides
    code, out, _ = run_cli(["render", "../specs/nic.fsm", "--format", "dot"], capsys)
    assert code == 0 and out.encode() == GOLDEN["nic.Nic.dot"]


def test_render_picks_a_machine(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(CASES / "two_machines.fsm")
    code, out, _ = run_cli(["render", spec, "--format", "dot", "--machine", "Door"], capsys)
    assert code == 0 and "digraph Door" in out and "Light" not in out
    code, out, _ = run_cli(["render", spec, "--format", "dot"], capsys)
    assert code == 0 and "cluster_1" in out and "cluster_2" in out
    code, _, err = run_cli(["render", spec, "--format", "dot", "--machine", "Window"], capsys)
    assert code == 2 and "no machine named Window" in err and "Light, Door" in err


def test_render_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.fsm"
    bad.write_text("machine Bad {\n initial A\n A -> Nowhere : Go\n}\n")
    code, out, _ = run_cli(["render", str(bad), "--format", "dot"], capsys)
    assert code == 1 and "E101" in out
    assert run_cli(["render", str(tmp_path), "--format", "dot"], capsys)[0] == 2
    assert run_cli(["render", str(tmp_path / "missing.fsm")], capsys)[0] == 2
    assert run_cli(["render", str(bad), "--format", "gif"], capsys)[0] == 2
    good = tmp_path / "door.fsm"
    good.write_text(DOOR)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run_cli(["render", str(good), "-o", str(tmp_path / "d.svg")], capsys)
    assert code == 2 and "Graphviz `dot` not found" in err
    assert run_cli(["render", str(good), "-o", str(tmp_path / "d.dot")], capsys)[0] == 0


@pytest.mark.usefixtures("requires_dot")
def test_every_spec_renders_to_png(tmp_path: Path) -> None:
    """What a reviewer opens: each spec's diagram as PNG (kept in tmp_path)."""
    for spec in sorted((ROOT / "specs").glob("*.fsm")):
        target = tmp_path / f"{module_name(spec.stem)}.png"
        assert main(["render", str(spec), "-o", str(target)]) == 0
        assert target.stat().st_size > 10_000
    assert shutil.which("dot")


def test_labels_are_written_in_the_spec_notation() -> None:
    """Every transition label of every spec, put back after `Source -> Target :`, parses to
    the same guard, negation, action and tags: the diagrams speak the spec's language."""
    from fsmc.compiler.diagrams.view import transition_label

    for spec in check([ROOT / "specs", CASES]).specs:
        for machine in spec.machines:
            for transition in machine.transitions:
                line = f"A -> A : {transition_label(transition)}"
                [again] = machine_of(f"machine M {{\n initial A\n {line}\n}}\n")[0].transitions
                assert (again.event.text, again.guard and (again.guard.name.text,
                                                           again.guard.negated),
                        again.action and again.action.name.text, again.tag_names) == (
                    transition.event.text, transition.guard and (transition.guard.name.text,
                                                                 transition.guard.negated),
                    transition.action and transition.action.name.text,
                    transition.tag_names), line


def hostile_spec() -> str:
    from fsmc.dsl.printer import quote

    from tests.hostile import SPEC_TEXTS

    states = "\n".join(f"    state S{n} {quote(text)}\n    A -> S{n} : Go{n}"
                       for n, text in enumerate(SPEC_TEXTS))
    return f"machine Hostile {quote(' | '.join(SPEC_TEXTS))} {{\n    initial A\n{states}\n}}\n"


@pytest.mark.usefixtures("requires_dot")
def test_hostile_docs_render_to_svg_that_parses(tmp_path: Path) -> None:
    """Graphviz parses HTML-like labels as XML and writes SVG: a doc with \\x0b, \\x1c or U+FFFE
    checked clean, then `fsmc render` exited 2 ("dot failed: not well-formed")."""
    import xml.etree.ElementTree as ElementTree

    from fsmc.compiler.cli import main

    spec = tmp_path / "hostile.fsm"
    spec.write_text(hostile_spec(), encoding="utf-8")
    assert main(["check", str(spec)]) == 0
    assert main(["render", str(spec), "-o", str(tmp_path / "h.svg")]) == 0
    tree = ElementTree.parse(tmp_path / "h.svg")
    texts = " ".join(t for node in tree.iter() for t in (node.text, node.get("title"))
                     if t)
    assert "<script>alert(1)</script>" in texts and "\\x1c" in texts
    assert not [n for n in tree.iter() if n.tag.endswith("script")]


@pytest.mark.usefixtures("requires_dot")
def test_hostile_docs_stay_text_on_the_review_site(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    from fsmc.compiler.cli import main

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.scripts = 0

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.scripts += tag == "script"

    def scripts(site: Path) -> dict[str, int]:
        counts = {}
        for page in sorted(site.rglob("*.html")):
            parser = Tags()
            parser.feed(page.read_text(encoding="utf-8"))
            counts[page.name] = parser.scripts
        return counts

    spec = tmp_path / "hostile.fsm"
    spec.write_text(hostile_spec(), encoding="utf-8")
    plain = tmp_path / "plain" / "hostile.fsm"
    plain.parent.mkdir()
    plain.write_text(re.sub(r'"(?:[^"\\]|\\.)*"', '"doc"', hostile_spec()), encoding="utf-8")
    assert main(["review", str(spec), "-o", str(tmp_path / "site")]) == 0
    assert main(["review", str(plain), "-o", str(tmp_path / "plain_site")]) == 0
    assert scripts(tmp_path / "site") == scripts(tmp_path / "plain_site")
    for name in ("index.html", "hostile.Hostile.html", "source/hostile.fsm.html"):
        text = (tmp_path / "site" / name).read_text(encoding="utf-8")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, name
        assert "<script>alert" not in text, name
