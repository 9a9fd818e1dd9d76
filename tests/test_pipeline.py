"""The one-pass check and build (`compiler/pipeline.py`): each file loaded, analysed and emitted
in one worker process gives the same answers as checking with the models kept, in worker
processes or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsmc.compiler.buildplan import SpecEmitter, check_and_emit, plan
from fsmc.compiler.cli import main
from fsmc.compiler.parallel import MIN_PARALLEL
from fsmc.compiler.pipeline import Job, check_files, process_one
from fsmc.compiler.project import check

CLEAN = ("machine M{index} {{\n initial A\n final Done\n state B\n"
         " A -> B : Go\n B -> Done : Finish\n}}\n")
WARNING = "machine Warned {\n initial A\n state Unused\n A -> A : Loop\n}\n"
TWO_MACHINES = ("machine Door {\n initial Shut\n Shut -> Shut : Knock\n}\n"
                "machine Light {\n initial Off\n Off -> Off : Flick\n}\n")
UNDECLARED = "machine Broken {\n initial A\n A -> Nowhere : Go\n}\n"
SYNTAX = "machine Garbled {\n initial A\n A B\n}\n"
DUPLICATE = "machine M0 {\n initial A\n A -> A : Again\n}\n"  # M0 is also in clean_000.fsm


def write_specs(folder: Path, extra: dict[str, str | bytes], clean: int = MIN_PARALLEL) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(clean):
        (folder / f"clean_{index:03d}.fsm").write_text(CLEAN.format(index=index))
    for name, content in extra.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


@pytest.fixture(params=["1", "2"], ids=["in-process", "workers"])
def jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FSMC_JOBS", request.param)
    return str(request.param)


def test_check_files_finds_what_check_finds(tmp_path: Path, jobs: str) -> None:
    specs = write_specs(tmp_path / "specs", {
        "warned.fsm": WARNING, "two.fsm": TWO_MACHINES, "broken.fsm": UNDECLARED,
        "syntax.fsm": SYNTAX, "latin1.fsm": b"machine Caf\xe9 {\n initial A\n}\n",
        "duplicate.fsm": DUPLICATE})
    kept, lean = check([specs]), check_files([specs])
    assert lean.paths == kept.paths
    assert lean.diagnostics == kept.diagnostics
    assert {d.code for d in lean.diagnostics} >= {"W303", "E101", "E003", "E107"}
    assert dict(lean.sources) == dict(kept.sources)
    assert not lean.specs  # the models stayed in the workers


def test_one_pass_build_plans_what_plan_plans(tmp_path: Path, jobs: str) -> None:
    specs = write_specs(tmp_path / "specs", {"warned.fsm": WARNING, "two.fsm": TWO_MACHINES})
    build = check_and_emit([specs], tmp_path / "out")
    assert build.project.ok
    assert build.plan().files == plan(check([specs]), tmp_path / "out").files


def test_workers_write_what_one_process_writes(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    specs = write_specs(tmp_path / "specs", {"warned.fsm": WARNING, "two.fsm": TWO_MACHINES})
    outputs = {}
    for count in ("1", "2"):
        monkeypatch.setenv("FSMC_JOBS", count)
        out = tmp_path / f"out{count}"
        assert main(["build", str(specs), "-o", str(out), "--no-svg"]) == 0
        printed = capsys.readouterr()
        outputs[count] = (printed.out, printed.err.replace(str(out), "OUT"),
                          {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
                           if p.is_file()})
    assert outputs["1"] == outputs["2"]
    assert len(outputs["2"][2]) == 2 * (MIN_PARALLEL + 2) + 2  # modules, diagrams, __init__


@pytest.mark.parametrize("extra", [{"duplicate.fsm": DUPLICATE}, {"broken.fsm": UNDECLARED}],
                         ids=["across-files", "in-one-file"])
def test_one_error_anywhere_stops_the_build(tmp_path: Path, extra: dict[str, str | bytes],
                                            jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    specs = write_specs(tmp_path / "specs", extra)
    out = tmp_path / "out"
    assert main(["build", str(specs), "-o", str(out)]) == 1
    printed = capsys.readouterr()
    assert ("E107" if "duplicate.fsm" in extra else "E101") in printed.out
    assert "nothing written" in printed.err and not out.exists()
    with pytest.raises(ValueError, match="errors"):
        check_and_emit([specs], out).plan()


def test_strict_build_emits_nothing_for_a_file_with_warnings(tmp_path: Path) -> None:
    spec = tmp_path / "warned.fsm"
    spec.write_text(WARNING)
    emit = SpecEmitter("warned.fsm", "warned", "0")
    assert process_one(Job(spec, strict=False, emit=emit)).outputs
    assert process_one(Job(spec, strict=True, emit=emit)).outputs is None
    assert not check_and_emit([spec], tmp_path / "out", strict=True).project.ok
