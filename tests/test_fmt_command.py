"""`fsmc fmt`: rewriting, --check, --diff, and refusing files with errors."""

from __future__ import annotations

import io
from pathlib import Path

from fsmc.compiler.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(["fmt", *argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


MESSY = "machine M {\n  initial A ; state B\n  A->B:Go\n}\n"
TIDY = "machine M {\n    initial A\n    state B\n\n    A -> B : Go\n}\n"


def test_rewrites_files_and_then_leaves_them_alone(tmp_path: Path) -> None:
    spec = tmp_path / "m.fsm"
    spec.write_text(MESSY)
    assert run(str(tmp_path)) == (0, "", "fsmc: 1 file reformatted, 0 already formatted\n")
    assert spec.read_text() == TIDY
    assert run(str(spec))[0] == 0
    assert spec.read_text() == TIDY


def test_check_writes_nothing_and_fails_on_a_change(tmp_path: Path) -> None:
    spec = tmp_path / "m.fsm"
    spec.write_text(MESSY)
    status, out, err = run("--check", "--diff", str(spec))
    assert status == 1 and spec.read_text() == MESSY
    assert f"would reformat {spec}" in err
    assert f"--- {spec} (before)" in out and "+    A -> B : Go\n" in out and "-  A->B:Go\n" in out
    spec.write_text(TIDY)
    assert run("--check", str(spec)) == (
        0, "", "fsmc: 0 files would be reformatted, 1 already formatted\n")


def test_a_file_with_errors_is_refused_with_its_diagnostics(tmp_path: Path) -> None:
    spec = tmp_path / "bad.fsm"
    broken = "machine M {\n  initial A\n  A -> B :\n}\n"
    spec.write_text(broken)
    status, out, err = run(str(spec))
    assert status == 1 and spec.read_text() == broken
    assert f"{spec}:3:11: error[E001]" in out and "1 error" in out
    assert "not formatted: fix the errors above first" in err


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "bin.fsm"
    spec.write_bytes(b"machine M {\n  initial \xff\n}\n")
    status, out, _ = run(str(spec))
    assert status == 1 and "error[E003]" in out
    assert spec.read_bytes() == b"machine M {\n  initial \xff\n}\n"


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    spec = tmp_path / "w.fsm"
    spec.write_bytes(MESSY.replace("\n", "\r\n").encode())
    assert run(str(spec))[0] == 0
    assert spec.read_bytes() == TIDY.replace("\n", "\r\n").encode()


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    status, _, err = run(str(tmp_path / "nope.fsm"))
    assert status == 2 and "nope.fsm" in err
