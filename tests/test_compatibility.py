"""`fsmc diff` judges each change for live data and for code, and `--fail-on` turns that into
an exit status for CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.compiler.compatibility import Verdict, classify
from fsmc.compiler.diagrams.diff import diff_specs
from fsmc.dsl.loader import load_text

CASES = Path(__file__).parent / "cases" / "compat"
OLD, NEW = CASES / "old.fsm", CASES / "new.fsm"


def verdicts(old: str, new: str) -> list[Verdict]:
    before, after = load_text(old, "old.fsm").spec, load_text(new, "new.fsm").spec
    assert before is not None and after is not None
    return classify(diff_specs(before, after))


def judged(old: str, new: str) -> dict[str, tuple[str | None, str | None]]:
    return {v.change: (v.data, v.code) for v in verdicts(old, new)}


def test_every_kind_of_change_is_judged() -> None:
    found = judged(OLD.read_text(), NEW.read_text())
    breaking = {change for change, (data, code) in found.items() if data or code}
    data = {change for change, (d, _) in found.items() if d}
    assert data == {"- state Unknown (moved -> Gone)", "- state Legacy"}
    assert breaking == data | {
        "~ state Imported: entry -> state",
        "- event Halt",
        "- Paused -> Stopped : Halt",
    } | {change for change in found if change.startswith(("~ Stopped -> Running : Start",
                                                          "+ Running -> Error : Pause"))}
    assert found["- state Legacy"] == (
        "rows still in Legacy would be stranded: add `moved Legacy -> <State>`",
        "`VM.State.Legacy` is gone")
    assert found["- state Unknown (moved -> Gone)"][0] == (
        "rows moved into the final state Gone lose their way out of Unknown (Recover)")
    [guarded] = [v for c, v in found.items() if c.startswith("~ Stopped -> Running")]
    assert guarded == (None, "a new guard `if has_host` may refuse `start()` in Stopped")
    [retargeted] = [v for c, v in found.items() if c.startswith("+ Running -> Error")]
    assert retargeted == (None, "`pause()` in Running now leads to Error (was Paused)")
    assert found["- event Halt"][1] == (
        "`halt()` is gone: its callers break (mypy --strict finds them)")
    assert found["+ moved Unknown -> Gone"] == (None, None)
    assert found["+ state Error"] == (None, None)


MACHINE = """\
machine M {
    initial A
    states B, C
    final Done
%s
    A -> B : Go
    B -> A : Back
    B -> Done : Finish
}
"""


def test_moves_and_finals() -> None:
    with_c = MACHINE % "    C -> A : Back\n    A -> C : Side"
    moved = MACHINE.replace("states B, C", "state B") % "    moved C -> A"
    assert judged(with_c, moved)["- state C (moved -> A)"] == (None, "`M.State.C` is gone")
    into_final = MACHINE.replace("states B, C", "state B") % "    moved C -> Done"
    assert judged(with_c, into_final)["- state C (moved -> Done)"][0] == (
        "rows moved into the final state Done lose their way out of C (Back)")
    finished = MACHINE.replace("final Done", "final Done\n    final Old") % ""
    old_gone = MACHINE % "    moved Old -> Done"
    assert judged(finished, old_gone)["- state Old (moved -> Done)"] == (
        None, "`M.State.Old` is gone")  # it was final: nothing to lose
    dropped = judged(old_gone, MACHINE % "")
    assert dropped["- moved Old -> Done"][0] == (
        "rows still in Old would be stranded again (fine once `fsmc migrate` shows no store "
        "holds any)")
    trapped = judged(MACHINE % "", MACHINE.replace("    B -> A : Back\n", "") % "")
    assert trapped["- B -> A : Back"] == (None, "`back()` in B now raises InvalidTransition")
    last_exit = judged(MACHINE % "", MACHINE.replace("    B -> Done : Finish\n", "").replace(
        "    B -> A : Back\n", "") % "")
    assert last_exit["- B -> A : Back"][0] == "rows in B lose their last way out"
    [negated] = verdicts(MACHINE % "", (MACHINE % "").replace("A -> B : Go",
                                                             "A -> B : Go unless busy"))
    assert negated.change.startswith("~ A -> B : Go") and (negated.data, negated.code) == (
        None, "a new guard `unless busy` may refuse `go()` in A")


def test_a_removed_guard_a_doc_and_tags_are_compatible() -> None:
    guarded = (MACHINE % "").replace("A -> B : Go", "A -> B : Go if ready [usage]")
    plain = (MACHINE % "").replace('initial A', 'initial A "the start"')
    assert [v.breaking for v in verdicts(guarded, plain)] == [False, False]


def test_a_removed_machine_breaks_both() -> None:
    [verdict] = verdicts(MACHINE % "" + "machine Z {\n    initial A\n}\n", MACHINE % "")
    assert verdict.change == "- machine Z" and verdict.data and verdict.code


@pytest.mark.parametrize(("fail_on", "pair", "expected"), [
    ("change", (OLD, NEW), 1), ("breaking", (OLD, NEW), 1), ("data", (OLD, NEW), 1),
    ("code", (OLD, NEW), 1), ("breaking", (NEW, NEW), 0), ("change", (NEW, NEW), 0),
])
def test_fail_on(fail_on: str, pair: tuple[Path, Path], expected: int,
                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(pair[0]), str(pair[1]), "--fail-on", fail_on]) == expected
    out = capsys.readouterr().out
    if pair[0] != pair[1]:
        assert out.endswith("2 changes breaking for live data, 7 changes breaking for code, "
                            "7 changes compatible\n")
        assert "  BREAKING        VM: - state Legacy\n    live data: rows still in Legacy" in out


def test_fail_on_breaking_passes_compatible_changes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.fsm", tmp_path / "new.fsm"
    old.write_text(MACHINE % "")
    new.write_text((MACHINE % "").replace("states B, C", "states B, C, D").replace(
        "    A -> B : Go\n", "    A -> B : Go\n    C -> D : Go\n    A -> C : Side\n"))
    assert main(["diff", str(old), str(new)]) == 1  # today's meaning: something changed
    assert main(["diff", str(old), str(new), "--fail-on", "breaking"]) == 0
    assert main(["diff", str(old), str(new), "--fail-on", "code"]) == 0
    out = capsys.readouterr().out
    assert "0 changes breaking for live data, 0 changes breaking for code" in out
