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


def only(text: str) -> list[tuple[str, int, int, str, str | None]]:
    """(code, line, column, message, hint) of every diagnostic of one spec text."""
    return [(d.code, d.span.line, d.span.column, d.message, d.hint)
            for d in check_bytes(text.encode()).diagnostics]


def in_machine(line: str) -> str:
    return f"machine M {{\n initial A\n state B\n {line}\n}}\n"


@pytest.mark.parametrize(("line", "column", "message", "hint"), [
    ("// a comment", 2, "unexpected `//`",
     "comments start with `#` and run to the end of the line"),
    ("A -> B : Go // why", 14, "unexpected `//`",
     "comments start with `#` and run to the end of the line"),
    ("A --> B : Go", 4, "unexpected `-->`", "did you mean `->`?"),
    ("A => B : Go", 4, "unexpected `=>`", "did you mean `->`?"),
    ("A → B : Go", 4, "unexpected `→`", "did you mean `->`?"),
    ("A -> B : Go if !ready", 17, "unexpected character `!`",
     "negate a guard with `unless`: `unless ready`"),
    ("A -> B : Go if a && b", 19, "unexpected `&&`",
     "a transition has one guard: combine the conditions in one predicate"),
], ids=["slashes", "slashes-after", "long-arrow", "fat-arrow", "unicode-arrow", "bang", "and"])
def test_habits_from_other_languages_get_a_hint(line: str, column: int, message: str,
                                                hint: str) -> None:
    assert only(in_machine(line)) == [("E001", 4, column, message, hint)]


def test_if_not_suggests_unless() -> None:
    [(code, line, column, message, hint)] = only(in_machine("A -> B : Go if not ready"))
    assert (code, line, column) == ("E001", 4, 21) and "found the name `ready`" in message
    assert hint == "negate a guard with `unless`: `unless ready`"
    [(*_, hint)] = only(in_machine("A -> B : Go unless not ready"))
    assert hint == "`unless not ready` is `if ready`"
    [(*_, hint)] = only(in_machine("A -> B : Go if ready and set"))
    assert hint == "a transition has one guard: combine the conditions in one predicate"


def test_keyword_hint_fits_the_keyword() -> None:
    found = only("machine M {\n initial A\n state final\n A -> final : Go\n A -> A : do\n}\n")
    assert found == [
        ("E005", 3, 8, "`final` is a keyword and cannot be used as a name",
         "to declare a final state, write `final Name` instead of `state final`"),
        ("E005", 4, 7, "`final` is a keyword and cannot be used as a name",
         "rename it; names are case-sensitive, so `Final` would do"),
        ("E005", 5, 11, "`do` is a keyword and cannot be used as a name",
         "rename it; names are case-sensitive, so `Do` would do")]
    [(*_, hint)] = only("machine M {\n initial A\n state initial\n A -> initial : Go\n}\n")[:1]
    assert hint == "to declare the initial state, write `initial Name` instead of `state initial`"


def test_one_undeclared_name_is_one_error_with_every_use_related() -> None:
    text = ("machine M {\n initial A\n A -> Nowhere : Go\n A -> Nowhere : Stop\n"
            " A -> Nowher : Halt\n Nowhere -> A : Back\n}\n")
    [first, second] = check_bytes(text.encode()).diagnostics
    assert (first.code, first.span.line, first.span.column) == ("E101", 3, 7)
    assert first.message == "state `Nowhere` is not declared (used 3 times)"
    assert [(r.span.line, r.span.column, r.message) for r in first.related] == [
        (4, 7, "`Nowhere` is used here too"), (6, 2, "`Nowhere` is used here too")]
    assert (second.code, second.message, second.related) == (
        "E101", "state `Nowher` is not declared", ())


def test_one_undeclared_event_is_one_error() -> None:
    text = "machine M {\n initial A\n events Go\n A -> A : Stop if x\n A -> A : Stop unless x\n}\n"
    [error] = check_bytes(text.encode()).diagnostics
    assert error.code == "E102" and [r.span.line for r in error.related] == [5]


def test_builder_errors_do_not_hide_the_rules_findings() -> None:
    """E006 (and the other errors the builder finds on a parsed file) come with the rules'
    findings, without a second error at the same place."""
    text = "machine M {\n initial A\n state B, C\n A -> B : Go do x do y\n A -> C : Go\n}\n"
    assert [c for c, *_ in only(text.replace("state B, C", "states B, C"))] == ["E006", "E202"]
    text = "machine M {\n initial A\n state if\n A -> if : Go\n}\n"
    assert [(c, line) for c, line, *_ in only(text)] == [("E005", 3), ("E005", 4)]
