"""Every diagnostic code: its documented example triggers it, broken variants of the design
example report the right code at the right place, and the docs list exactly the codes."""

from __future__ import annotations

import re

import pytest
from fsmc.dsl.diagnostics import Severity, code_table

from tests.conftest import DESIGN_EXAMPLE, ROOT, check_bytes, codes


def example_bytes(code_id: str) -> bytes:
    example = code_table()[code_id].example
    # TOML cannot hold a raw invalid byte; the encoding example spells it `\xff`.
    return example.encode("utf-8").replace(b"\\xff", b"\xff")


@pytest.mark.parametrize("code_id", list(code_table()))
def test_each_code_example_triggers_its_code(code_id: str) -> None:
    project = check_bytes(example_bytes(code_id), "example.fsm")
    found = {code for code, _, _ in codes(project)}
    assert code_id in found, project.diagnostics
    expected_exit_failure = code_table()[code_id].severity is Severity.ERROR
    assert (not project.ok) == expected_exit_failure


def test_language_reference_lists_every_code() -> None:
    text = (ROOT / "docs" / "language.md").read_text("utf-8")
    documented = re.findall(r"^\| `([EW]\d{3})` \| `([a-z-]+)` \|", text, re.MULTILINE)
    assert [(c.id, c.name) for c in code_table().values()] == documented


def variant(old: str, new: str) -> str:
    assert old in DESIGN_EXAMPLE
    return DESIGN_EXAMPLE.replace(old, new, 1)


BROKEN = [
    # (what, text, expected (code, line, column))
    ("misspelt target", variant("Starting  -> Running ", "Starting  -> Runing "), ("E101", 11, 18)),
    ("misspelt source", variant("Destroyed -> Expunged", "Destroyd -> Expunged"), ("E101", 17, 5)),
    ("second initial", variant("state Destroyed", "initial Destroyed"), ("E106", 7, 13)),
    ("no initial", variant("initial Allocated", "state Allocated"), ("E105", 2, 9)),
    ("state twice", variant("state Destroyed", "state Running"), ("E103", 7, 11)),
    ("leaving a final", variant("Error -> Destroyed", "Expunged -> Destroyed"), ("E201", 19, 5)),
    ("unguarded twice", variant("Starting  -> Stopped   : OperationFailed",
                                "Starting  -> Stopped   : OperationSucceeded"), ("E202", 12, 30)),
    ("keyword as name", variant("state Destroyed", "state do"), ("E005", 7, 11)),
    ("second guard", variant("if can_stop", "if can_stop if other"), ("E006", 13, 57)),
    ("second action", variant("do release_host", "do release_host do other"),
     ("E006", 14, 75)),
    ("missing arrow", variant("Allocated -> Starting", "Allocated Starting"), ("E001", 10, 15)),
    ("missing colon", variant("Starting  -> Stopped   : OperationFailed",
                              "Starting  -> Stopped   OperationFailed"), ("E001", 12, 28)),
    ("unterminated", variant('"Needs an operator"', '"Needs an operator'), ("E002", 8, 17)),
    ("bad escape", variant('"Needs an operator"', '"Needs \\an operator"'), ("E002", 8, 24)),
    ("unreachable", variant("state Destroyed", "state Destroyed\n    state Orphan\n"
                            "    Orphan -> Error : Crashed"), ("W301", 8, 11)),
    ("unused", variant("state Destroyed", "state Destroyed\n    state Spare"), ("W303", 8, 11)),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_broken_variants_report_code_line_and_column(text: str,
                                                     expected: tuple[str, int, int]) -> None:
    project = check_bytes(text.encode(), "vm.fsm")
    assert expected in codes(project), project.diagnostics


def test_dead_end_names_the_trapped_states() -> None:
    text = variant("Error -> Destroyed : DestroyRequested", "Error -> Error : DestroyRequested")
    project = check_bytes(text.encode())
    [dead] = [d for d in project.diagnostics if d.code == "W302"]
    assert (dead.span.line, dead.span.column) == (8, 11)
    assert "from it only Error is reachable" in dead.message


def test_did_you_mean_hint() -> None:
    text = variant("Starting  -> Running ", "Starting  -> Runing ")
    [error] = [d for d in check_bytes(text.encode()).diagnostics if d.code == "E101"]
    assert error.hint == "did you mean `Running`?"


def test_all_problems_of_all_files_are_reported_sorted() -> None:
    from fsmc.compiler.project import check_results
    from fsmc.dsl.loader import load_text

    results = [load_text("machine A {\n initial X\n X -> Y : Go\n X -> Z : Go2\n}", "b.fsm"),
               load_text("machine B {\n initial X\n X Y\n X Z\n}", "a.fsm")]
    project = check_results(results)
    assert [(d.span.path, d.code, d.span.line) for d in project.diagnostics] == [
        ("a.fsm", "E001", 3), ("a.fsm", "E001", 4), ("b.fsm", "E101", 3), ("b.fsm", "E101", 4)]
