"""The CLI contract: exit codes, streams, formats, discovery, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fsmc.compiler.cli import main

from tests.conftest import DESIGN_EXAMPLE


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "vm.fsm"
    path.write_text(DESIGN_EXAMPLE)
    return path


def test_clean_spec_prints_a_summary_and_exits_0(spec: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", str(spec)], capsys) == (0, "1 file checked: no problems\n", "")


def test_errors_exit_1_with_text_diagnostics_on_stdout(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.fsm"
    path.write_text("machine M {\n\tinitial Stopped\n\tstate Running\n\tStopped -> Runing : Go\n"
                    "\tRunning -> Stopped : Stop\n}\n")
    code, out, err = run(["check", str(path)], capsys)
    assert code == 1 and err == ""
    assert out.splitlines()[:4] == [
        f"{path}:4:13: error[E101]: state `Runing` is not declared",
        "   4 | \tStopped -> Runing : Go",
        "     | \t           ^~~~~~",
        "     = hint: did you mean `Running`?",
    ]
    assert out.splitlines()[-1] == "1 file checked: 1 error"


def test_warnings_exit_0_unless_strict(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.fsm"
    path.write_text("machine M {\n initial A\n states B, Spare\n A -> B : Go\n B -> A : Back\n}\n")
    code, out, _ = run(["check", str(path)], capsys)
    assert code == 0 and "warning[W303]" in out
    code, out, _ = run(["check", "--strict", str(path)], capsys)
    assert code == 1 and "error[W303]" in out


def test_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.fsm"
    path.write_text("machine M {\n initial A\n A -> B : Go\n}\n")
    code, out, _ = run(["check", "--format", "json", str(path)], capsys)
    assert code == 1
    assert json.loads(out) == [{
        "path": str(path), "line": 3, "column": 7, "end_line": 3, "end_column": 8,
        "severity": "error", "code": "E101", "message": "state `B` is not declared",
        "hint": "declare it: `state B`", "related": []}]
    assert run(["check", "--format", "json", str(tmp_path / "bad.fsm")], capsys)[1].startswith("[")


def test_clean_json_is_an_empty_array(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--format", "json", str(spec)], capsys)
    assert code == 0 and json.loads(out) == []


def test_directories_are_searched_recursively(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.fsm").write_text("machine One {\n initial X\n X -> Y : Go\n}\n")
    (tmp_path / "two.fsm").write_text("machine Two {\n initial X\n X -> Z : Go\n}\n")
    (tmp_path / "notes.txt").write_text("not a spec")
    code, out, _ = run(["check", "--format", "json", str(tmp_path)], capsys)
    assert code == 1
    assert [Path(d["path"]).name for d in json.loads(out)] == ["one.fsm", "two.fsm"]


@pytest.mark.parametrize("args", [["check"], ["check", "--bogus", "x.fsm"], ["frobnicate"],
                                  ["check", "--format", "yaml", "x.fsm"], []])
def test_usage_errors_exit_2_on_stderr(args: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2
    if args:
        assert "error" in err


def test_missing_path_is_a_usage_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", str(tmp_path / "nope.fsm")], capsys)
    assert code == 2 and out == ""
    assert err == f"fsmc: error: {tmp_path / 'nope.fsm'}: no such file or directory\n"


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("fsmc ")
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "examples:" in out and "fsmc check specs/" in out
    code, out, _ = run(["check", "--help"], capsys)
    assert code == 0 and "Exit status" in out


@pytest.mark.parametrize(("name", "data", "code_id"), [
    ("empty.fsm", b"", "E004"),
    ("blank.fsm", b"\n\n   \n# only a comment\n", "E004"),
    ("latin1.fsm", "machine M {\n initial Caf\xe9\n}".encode("latin-1"), "E003"),
    ("binary.fsm", bytes(range(256)) * 4, "E003"),
    ("nul.fsm", b"machine M {\x00}", "E001"),
    ("nested.fsm", b"{" * 10000 + b"}" * 10000, "E001"),
    ("unterminated.fsm", b'machine M "oops {\n initial A\n}\n', "E002"),
])
def test_bad_input_gives_a_diagnostic_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes,
        code_id: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = run(["check", "--format", "json", str(path)], capsys)
    assert code == 1 and err == ""
    assert code_id in [d["code"] for d in json.loads(out)]


def test_five_megabyte_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.fsm"
    body = "".join(f"    S{i} -> S{i + 1} : Next\n" for i in range(150_000))
    states = "".join(f"    state S{i}\n" for i in range(1, 150_001))
    path.write_text(f"machine Big {{\n    initial S0\n{states}{body}}}\n")
    assert path.stat().st_size > 5_000_000
    code, out, _ = run(["check", "--format", "json", str(path)], capsys)
    assert code == 0 and json.loads(out) == []


def test_console_script_entry_point(spec: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fsmc.compiler.cli", "check", str(spec)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "1 file checked: no problems\n", "")


def test_colour_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.fsm"
    path.write_text("machine M {\n initial A\n A -> B : Go\n}\n")
    assert "\x1b[" not in run(["check", str(path)], capsys)[1]
    assert "\x1b[" in run(["check", "--color", "always", str(path)], capsys)[1]


def test_related_places_in_text_and_json(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.fsm"
    path.write_text("machine M {\n initial A\n A -> B : Go\n B -> A : Back\n}\n")
    code, out, _ = run(["check", str(path)], capsys)
    assert code == 1
    assert out == (f"{path}:3:7: error[E101]: state `B` is not declared (used 2 times)\n"
                   "   3 |  A -> B : Go\n"
                   "     |       ^\n"
                   "     = hint: declare it: `state B`\n"
                   f"{path}:4:2: note: `B` is used here too\n"
                   "   4 |  B -> A : Back\n"
                   "     |  ^\n"
                   "1 file checked: 1 error\n")
    code, out, _ = run(["check", "--format", "json", str(path)], capsys)
    [found] = json.loads(out)
    assert found["related"] == [{"path": str(path), "line": 4, "column": 2, "end_line": 4,
                                 "end_column": 3, "message": "`B` is used here too"}]
    assert list(found)[:9] == ["path", "line", "column", "end_line", "end_column", "severity",
                               "code", "message", "hint"]  # the fields of earlier versions


def test_a_directory_without_specs_is_named(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no spec here")
    for command in ("check", "build"):
        code, out, err = run([command, str(empty)], capsys)
        assert (code, out) == (2, "")
        assert err == f"fsmc: error: nothing to check: {empty} holds no spec (*.fsm file)\n"
    spec = tmp_path / "vm.fsm"
    spec.write_text(DESIGN_EXAMPLE)
    code, out, err = run(["check", str(empty), str(spec)], capsys)
    assert (code, out) == (0, "1 file checked: no problems\n")
    assert err == f"fsmc: warning: {empty} holds no spec (*.fsm file)\n"


def test_json_output_is_only_json(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", "--format", "json", str(spec)], capsys)
    assert (code, json.loads(out), err) == (0, [], "")


@pytest.mark.parametrize(("args", "usage"), [
    (["check", "x.fsm", "--bogus"], "usage: fsmc check "),
    (["render", "x.fsm", "-x"], "usage: fsmc render "),
    (["events", "tail", "--amqp", "amqp://h/", "--zzz"], "usage: fsmc events tail "),
    (["--zzz"], "usage: fsmc [-h]"),
])
def test_unknown_arguments_show_the_usage_of_their_command(
        args: list[str], usage: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(args, capsys)
    assert (code, out) == (2, "") and err.startswith(usage)
    assert err.endswith(f"error: unrecognized arguments: {args[-1]}\n")
