"""The core syntax of DESIGN.md, its extensions, and exact source positions."""

from __future__ import annotations

import pytest
from fsmc.dsl.loader import load_text
from fsmc.dsl.model import StateKind

from tests.conftest import DESIGN_EXAMPLE, check_bytes, check_text, codes


def machine_of(text: str):
    result = load_text(text, "m.fsm")
    assert result.spec is not None, result.diagnostics
    return result.spec.machines[0]


def test_design_example_is_clean() -> None:
    project = check_text(DESIGN_EXAMPLE)
    assert project.diagnostics == ()


def test_design_example_model() -> None:
    machine = machine_of(DESIGN_EXAMPLE)
    assert machine.name.text == "VirtualMachine"
    assert machine.doc == "Lifecycle of a user virtual machine"
    assert machine.state_names == ("Allocated", "Expunged", "Starting", "Running", "Stopping",
                                   "Stopped", "Destroyed", "Error")
    assert machine.initial is not None and machine.initial.name.text == "Allocated"
    assert [d.name.text for d in machine.finals] == ["Expunged"]
    assert machine.docs == {"Stopped": "Powered off; disks kept", "Error": "Needs an operator"}
    stop = next(t for t in machine.transitions if t.event.text == "StopRequested")
    assert stop.guard is not None and stop.guard.name.text == "can_stop"
    assert not stop.guard.negated
    release = next(t for t in machine.transitions if t.action is not None)
    assert (release.source.text, release.target.text, release.action.name.text,
            release.tag_names) == ("Stopping", "Stopped", "release_host", ("usage",))
    crashed = [t.source.text for t in machine.transitions if t.event.text == "Crashed"]
    # `*` = every non-final state, in declaration order.
    assert crashed == ["Allocated", "Starting", "Running", "Stopping", "Stopped", "Destroyed",
                       "Error"]
    destroyed = [t.source.text for t in machine.transitions
                 if t.event.text == "DestroyRequested"]
    assert destroyed == ["Stopped", "Running", "Error"]


def test_name_spans_are_exact() -> None:
    machine = machine_of(DESIGN_EXAMPLE)
    stop = next(t for t in machine.transitions if t.event.text == "StopRequested")
    assert (stop.source.span.line, stop.source.span.column) == (13, 5)
    assert (stop.event.span.line, stop.event.span.column, stop.event.span.end_column) == (
        13, 30, 43)
    assert (stop.guard.keyword.column, stop.guard.name.span.column) == (45, 48)


def test_semicolons_and_one_line_machines() -> None:
    machine = machine_of('machine M { initial A; state B; A -> B : Go; B -> A : Back }')
    assert machine.state_names == ("A", "B")
    assert [t.event.text for t in machine.transitions] == ["Go", "Back"]


def test_order_does_not_matter_inside_a_machine() -> None:
    project = check_text("machine M {\n A -> B : Go\n B -> A : Back\n state B\n initial A\n}\n")
    assert project.diagnostics == ()


def test_several_machines_in_one_file() -> None:
    result = load_text("machine A {\n initial X\n}\n\nmachine B {\n initial Y\n}\n")
    assert result.spec is not None
    assert [m.name.text for m in result.spec.machines] == ["A", "B"]


def test_string_escapes() -> None:
    machine = machine_of(r'machine M "a \"b\" \\ c\nd\te" {' + "\n initial A\n}")
    assert machine.doc == 'a "b" \\ c\nd\te'


def test_bad_escape_points_at_the_backslash() -> None:
    assert codes(check_text('machine M "bad \\q" {\n initial A\n}')) == [("E002", 1, 16)]


def test_unterminated_string_points_at_the_opening_quote() -> None:
    assert codes(check_text('machine M {\n initial A "never closed\n}')) == [("E002", 2, 12)]


def test_guards_actions_and_tags_in_any_order() -> None:
    machine = machine_of("machine M {\n initial A\n state B\n"
                         " A -> B : Go [usage, audit] do work unless busy\n}")
    transition = machine.transitions[0]
    assert transition.tag_names == ("usage", "audit")
    assert transition.action is not None and transition.action.name.text == "work"
    assert transition.guard is not None and transition.guard.negated


def test_state_and_event_may_share_a_name() -> None:
    project = check_text("machine M {\n initial Enabled\n state Disabled\n"
                         " Enabled -> Disabled : Disabled\n Disabled -> Enabled : Enabled\n}")
    assert project.diagnostics == ()


def test_events_declaration_keeps_unused_events() -> None:
    machine = machine_of("machine M {\n initial A\n state B\n events Go, Spare\n A -> B : Go\n"
                         " B -> A : Go\n}")
    assert machine.event_names == ("Go", "Spare")


def test_entry_declares_a_starting_state() -> None:
    machine = machine_of("machine M {\n initial A\n entry Up \"uploaded\"\n state B\n"
                         " A -> B : Go\n Up -> B : Go\n}")
    assert [d.name.text for d in machine.entries] == ["A", "Up"]
    assert machine.states[1].kind is StateKind.ENTRY and machine.states[1].doc == "uploaded"


def test_entry_is_a_soft_keyword() -> None:
    """`entry` opens a declaration but remains a valid name (the core never reserved it)."""
    project = check_text("machine M {\n initial A\n state entry\n A -> entry : Go\n"
                         " entry -> A : Back\n}")
    assert project.diagnostics == ()


def test_unreachable_judged_from_every_entry_point() -> None:
    text = "machine M {\n initial A\n entry U\n state B\n A -> B : Go\n U -> B : Go\n B -> A : X\n}"
    assert check_text(text).diagnostics == ()


def test_crlf_and_tabs_give_correct_columns() -> None:
    text = "machine M {\r\n\tinitial A\r\n\tstate B\r\n\tA -> Bee : Go\r\n}\r\n"
    assert ("E101", 4, 7) in codes(check_text(text))


def test_bom_is_ignored() -> None:
    data = "\ufeff".encode() + DESIGN_EXAMPLE.encode()
    assert check_bytes(data).diagnostics == ()


@pytest.mark.parametrize("keyword", ["machine", "initial", "final", "state", "states", "events",
                                     "if", "unless", "do"])
def test_keywords_cannot_be_names(keyword: str) -> None:
    project = check_text(f"machine M {{\n initial A\n state {keyword}\n A -> {keyword} : Go\n}}")
    assert "E005" in [code for code, _, _ in codes(project)]
