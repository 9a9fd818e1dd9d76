"""`moved Old -> New`: parsed, printed back, and checked (E501-E504, W505)."""

from __future__ import annotations

import pytest
from fsmc.dsl.loader import load_text
from fsmc.dsl.printer import print_spec

from tests.conftest import check_text, codes

BASE = """\
machine M {
    initial Ready
    state Busy
    final Done
%s
    Ready -> Busy : Go
    Busy -> Done : Finish
}
"""


def spec(moves: str) -> str:
    return BASE % moves


def test_moves_are_parsed_in_order_and_printed_back() -> None:
    text = spec("    moved Old -> Ready\n    moved Older -> Busy")
    result = load_text(text, "m.fsm")
    assert result.spec is not None and not result.diagnostics
    [machine] = result.spec.machines
    assert [(m.source.text, m.target.text) for m in machine.moves] == [
        ("Old", "Ready"), ("Older", "Busy")]
    assert machine.moved == {"Old": "Ready", "Older": "Busy"}
    first = machine.moves[0]
    assert (first.source.span.line, first.source.span.column) == (5, 11)
    assert first.span is not None and (first.span.column, first.span.end_column) == (5, 23)
    printed = print_spec(result.spec)
    assert "    moved Old -> Ready\n    moved Older -> Busy\n" in printed
    again = load_text(printed, "m.fsm").spec
    assert again is not None
    assert [(m.source.text, m.target.text) for m in again.machines[0].moves] == [
        ("Old", "Ready"), ("Older", "Busy")]
    assert check_text(text).diagnostics == ()


def test_moved_stays_a_valid_name() -> None:
    text = ("machine M {\n    initial moved\n    state B\n    moved -> B : moved\n"
            "    B -> moved : Back\n}\n")
    project = check_text(text)
    assert project.diagnostics == ()
    [machine] = project.specs[0].machines
    assert machine.state_names == ("moved", "B") and machine.moves == ()


@pytest.mark.parametrize(("moves", "expected", "message"), [
    ("    moved Busy -> Ready", [("E501", 5, 11)], "`Busy` is moved but still declared (line 3)"),
    ("    moved Old -> Redy", [("E502", 5, 18)], "did you mean `Ready`?"),
    ("    moved Old -> Nowhere", [("E502", 5, 18)], "declare it (`state Nowhere`)"),
    ("    moved A -> B\n    moved B -> Ready", [("E503", 5, 16)],
     "`B` is itself moved (to `Ready`, line 6)"),
    ("    moved A -> B\n    moved B -> C\n    moved C -> Ready", [("E503", 5, 16), ("E503", 6, 16)],
     "`moved A -> Ready`"),
    ("    moved P -> Q\n    moved Q -> P", [("E503", 5, 16), ("E503", 6, 16)],
     "P -> Q -> P form a cycle"),
    ("    moved P -> P", [("E503", 5, 16)], "P -> P form a cycle"),
    ("    moved Old -> Ready\n    moved Old -> Busy", [("E504", 6, 11)],
     "`Old` is already moved on line 5 (to `Ready`)"),
    ("    moved Old -> Ready\n    moved Old -> Ready", [("E504", 6, 11)],
     "`Old` is already moved on line 5\n"),
    ("    moved Retired -> Done", [("W505", 5, 22)], "into final state `Done` can never leave"),
])
def test_move_diagnostics(moves: str, expected: list[tuple[str, int, int]], message: str) -> None:
    project = check_text(spec(moves))
    assert codes(project) == expected
    rendered = "\n".join(f"{d.message}\n{d.hint}" for d in project.diagnostics) + "\n"
    assert message in rendered


def test_a_move_into_final_is_a_warning_only() -> None:
    project = check_text(spec("    moved Retired -> Done"))
    assert project.ok
    assert not check_text(spec("    moved Retired -> Done"), strict=True).ok
