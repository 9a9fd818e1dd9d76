"""`fsmc diff`: the structural diff, its summary, its diagram, git revisions, exit codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.compiler.diagrams.diff import Status, diff_specs, diff_view, summary
from fsmc.compiler.diagrams.dot import to_dot
from fsmc.compiler.diagrams.view import ANY_ID, Mark
from fsmc.dsl.loader import load_text
from fsmc.dsl.model import SpecFile

from tests.conftest import DESIGN_EXAMPLE, ROOT

VM = ROOT / "specs" / "virtual_machine.fsm"


def spec(text: str, path: str = "spec.fsm") -> SpecFile:
    result = load_text(text, path)
    assert result.spec is not None, result.diagnostics
    return result.spec


def edit(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


# A reviewer's pull request on the real VirtualMachine spec: a new Paused state, a guard on
# stopping, a removed self-loop, a retargeted transition, a doc change, a state dropped.
VM_CHANGES = (
    ('    state Unknown "State not known to the management server; not used by the machine"\n',
     ""),
    ('    state Restoring "Root disk being restored or reinstalled; comes back Stopped"\n',
     '    state Restoring "Root disk being restored or reinstalled; comes back Stopped"\n'
     '    state Paused "Suspended in memory on its host"\n'),
    ("events CreateRequested,", "events PauseRequested, ResumeRequested, CreateRequested,"),
    ("    Running -> Stopping  : StopRequested\n",
     "    Running -> Stopping : StopRequested if can_stop\n"
     "    Running -> Paused : PauseRequested [usage]\n"
     "    Paused -> Running : ResumeRequested [usage]\n"),
    ("    Stopped -> Stopped   : StopRequested\n", ""),
    ('state Stopping "Being shut down on its host"',
     'state Stopping "Being shut down gracefully on its host"'),
    ("    Error -> Expunging : DestroyRequested\n", "    Error -> Destroyed : DestroyRequested\n"),
)

VM_SUMMARY = """\
--- old.fsm
+++ new.fsm
machine VirtualMachine: 11 changes
  ~ state Stopping: doc "Being shut down on its host" -> "Being shut down gracefully on its host"
  + state Paused "Suspended in memory on its host"
  - state Unknown "State not known to the management server; not used by the machine"
  ~ Running -> Stopping : StopRequested if can_stop (was: StopRequested)
  + Running -> Paused : PauseRequested [usage]
  + Paused -> Running : ResumeRequested [usage]
  + Error -> Destroyed : DestroyRequested
  - Stopped -> Stopped : StopRequested
  - Error -> Expunging : DestroyRequested
  + event PauseRequested
  + event ResumeRequested
"""


def test_real_change_to_the_vm_spec() -> None:
    text = VM.read_text()
    diff = diff_specs(spec(text), spec(edit(text, *VM_CHANGES)), old_label="old.fsm",
                      new_label="new.fsm")
    assert diff.changed
    assert summary(diff) == VM_SUMMARY


def test_vm_diff_diagram_marks() -> None:
    text = VM.read_text()
    diff = diff_specs(spec(text), spec(edit(text, *VM_CHANGES)))
    view = diff_view(diff.machines[0])
    nodes = {node.id: node.mark for node in view.nodes}
    assert nodes["Paused"] is Mark.ADDED
    assert nodes["Unknown"] is Mark.REMOVED
    assert nodes["Stopping"] is Mark.CHANGED
    assert nodes["Running"] is Mark.NONE
    edges = {(e.source, e.target, e.mark): [line.text for line in e.lines] for e in view.edges}
    assert edges[("Running", "Paused", Mark.ADDED)] == ["PauseRequested [usage]"]
    assert edges[("Error", "Expunging", Mark.REMOVED)] == ["DestroyRequested"]
    assert edges[("Error", "Expunging", Mark.NONE)] == ["ExpungeOperation"]
    assert edges[("Running", "Stopping", Mark.CHANGED)] == [
        "StopRequested if can_stop (was: StopRequested)"]
    assert edges[("Stopped", "Stopped", Mark.REMOVED)] == ["StopRequested"]
    dot = to_dot([view])
    assert "#2b8a3e" in dot and "#c92a2a" in dot and "#e67700" in dot


def test_identical_specs_have_no_changes() -> None:
    text = VM.read_text()
    commented = text.replace("# From Stopped.", "# Reworded comment. From Stopped.")
    diff = diff_specs(spec(text), spec(commented))
    assert not diff.changed
    assert summary(diff).endswith("no changes\n")
    assert all(m.status is Status.SAME for m in diff.machines)


def test_star_statements_are_reported_once() -> None:
    old = spec(DESIGN_EXAMPLE)
    new = spec(edit(DESIGN_EXAMPLE, ("* -> Error : Crashed", "* -> Error : Crashed [alert]")))
    diff = diff_specs(old, new)
    changes = diff.machines[0].changes()
    assert changes == ["~ * -> Error : Crashed [alert] (was: Crashed)"]
    view = diff_view(diff.machines[0])
    star = [e for e in view.edges if e.source == ANY_ID]
    assert len(star) == 1 and star[0].mark is Mark.CHANGED


def test_a_new_state_gains_the_star_transitions_from_its_own_box() -> None:
    old = spec(DESIGN_EXAMPLE)
    new = spec(edit(DESIGN_EXAMPLE,
                    ("    state Destroyed\n", "    state Destroyed\n    state Paused\n"),
                    ("Stopped   -> Starting  : StartRequested",
                     "Stopped   -> Starting  : StartRequested\n    Running -> Paused : Pause")))
    view = diff_view(diff_specs(old, new).machines[0])
    marks = {(e.source, e.target): e.mark for e in view.edges}
    assert marks[(ANY_ID, "Error")] is Mark.NONE
    assert marks[("Paused", "Error")] is Mark.ADDED


def test_machines_added_removed_and_initial_moved() -> None:
    old = spec("machine A {\n initial X\n state Y\n X -> Y : Go\n}\n"
               "machine B {\n initial P\n}\n")
    new = spec("machine A {\n state X\n initial Y\n X -> Y : Go\n}\n"
               "machine C {\n initial Q\n}\n")
    diff = diff_specs(old, new, old_label="a", new_label="b")
    assert [(m.name, m.status) for m in diff.machines] == [
        ("A", Status.CHANGED), ("C", Status.ADDED), ("B", Status.REMOVED)]
    assert summary(diff) == (
        "--- a\n+++ b\n"
        "machine A: 2 changes\n"
        "  ~ state X: initial -> state\n"
        "  ~ initial Y: state -> initial\n"
        "machine C: added\n"
        "machine B: removed\n")
    view = diff_view(diff.machines[0])
    starts = {(e.source, e.target): e.mark for e in view.edges if e.source == "(initial)"}
    assert starts == {("(initial)", "Y"): Mark.ADDED, ("(initial)", "X"): Mark.REMOVED}


# --- the command ----------------------------------------------------------------------------

def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def vm_pair(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old.fsm", tmp_path / "new.fsm"
    old.write_text(VM.read_text())
    new.write_text(edit(VM.read_text(), *VM_CHANGES))
    return old, new


def test_cli_exit_codes(vm_pair: tuple[Path, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    old, new = vm_pair
    code, out, _ = run_cli(["diff", str(old), str(new)], capsys)
    assert code == 1 and "+ state Paused" in out
    code, out, _ = run_cli(["diff", str(old), str(old)], capsys)
    assert code == 0 and "no changes" in out
    assert run_cli(["diff", str(old)], capsys)[0] == 2
    assert run_cli(["diff", str(old), str(new), str(new)], capsys)[0] == 2
    assert run_cli(["diff", str(old), str(tmp_path / "missing.fsm")], capsys)[0] == 2
    assert run_cli(["diff", "--bogus", str(old), str(new)], capsys)[0] == 2
    broken = tmp_path / "broken.fsm"
    broken.write_text("machine {\n")
    code, out, err = run_cli(["diff", str(old), str(broken)], capsys)
    assert code == 2 and "error[" in out and "syntax errors" in err


def test_cli_writes_the_diff_diagram(vm_pair: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    old, new = vm_pair
    target = tmp_path / "diff.dot"
    assert run_cli(["diff", str(old), str(new), "-o", str(target)], capsys)[0] == 1
    dot = target.read_text()
    assert "digraph VirtualMachine" in dot and "Paused" in dot and "#2b8a3e" in dot


@pytest.mark.usefixtures("requires_dot")
def test_cli_writes_svg(vm_pair: tuple[Path, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    old, new = vm_pair
    target = tmp_path / "diff.svg"
    assert run_cli(["diff", str(old), str(new), "-o", str(target)], capsys)[0] == 1
    svg = target.read_text()
    assert svg.startswith("<?xml") and "Paused" in svg and "#c92a2a" in svg


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    git("init", "-q")
    (root / "specs" / "vm.fsm").write_text(VM.read_text())
    git("add", ".")
    git("commit", "-q", "-m", "first")
    (root / "specs" / "vm.fsm").write_text(edit(VM.read_text(), *VM_CHANGES))
    git("commit", "-q", "-am", "second")
    return root


def test_against_a_git_revision(repo: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    code, out, _ = run_cli(["diff", "specs/vm.fsm", "--rev", "HEAD~1"], capsys)
    assert code == 1
    assert out.startswith("--- specs/vm.fsm@HEAD~1\n+++ specs/vm.fsm\n")
    assert "+ state Paused" in out and "- Error -> Expunging : DestroyRequested" in out
    code, out, _ = run_cli(["diff", "specs/vm.fsm", "--rev", "HEAD"], capsys)
    assert code == 0 and "no changes" in out
    monkeypatch.chdir(repo / "specs")  # the path is taken relative to where it is
    assert run_cli(["diff", "vm.fsm", "--rev", "HEAD~1"], capsys)[0] == 1


def test_git_revision_errors_and_new_files(repo: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    code, _, err = run_cli(["diff", "specs/vm.fsm", "--rev", "no-such-rev"], capsys)
    assert code == 2 and "not a git revision" in err
    assert run_cli(["diff", "specs/vm.fsm", "specs/vm.fsm", "--rev", "HEAD"], capsys)[0] == 2
    (repo / "specs" / "new.fsm").write_text("machine New {\n initial A\n}\n")
    code, out, _ = run_cli(["diff", "specs/new.fsm", "--rev", "HEAD"], capsys)
    assert code == 1 and "(absent)" in out and "machine New: added" in out
