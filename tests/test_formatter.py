"""`fsmc.dsl.formatter`: the canonical layout.

Golden files pin the layout (tests/cases/fmt/NAME.fsm → NAME.fsm.formatted; set
FSMC_REGEN_GOLDEN=1 to rewrite them, then review the diff). Properties, for every spec in the
repository and for generated ones: formatting is idempotent, keeps the model, keeps every
comment and doc string byte for byte, and refuses text with errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fsmc.dsl.formatter import (
    format_text,
    join_tokens,
    layout,
    model_shape,
    same_meaning,
    scan,
    signature,
)
from fsmc.dsl.loader import load_text
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DESIGN_EXAMPLE, ROOT, check_text
from tests.test_fuzz import spec_texts

REGENERATE = os.environ.get("FSMC_REGEN_GOLDEN") == "1"
CASES = ROOT / "tests" / "cases" / "fmt"
REPOSITORY_SPECS = sorted([*(ROOT / "specs").glob("*.fsm"), *CASES.glob("*.fsm"),
                           *(ROOT / "tests" / "cases" / "diagrams").glob("*.fsm")])


def formatted(text: str) -> str:
    result = format_text(text, "spec.fsm")
    assert result.text is not None, result.diagnostics
    return result.text


@pytest.mark.parametrize("path", sorted(CASES.glob("*.fsm")), ids=lambda p: p.name)
def test_golden_layout(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    expected = path.with_name(path.name + ".formatted")
    result = formatted(text).encode("utf-8")
    if REGENERATE:
        expected.write_bytes(result)
    assert expected.exists(), f"no golden file {expected.name}; run with FSMC_REGEN_GOLDEN=1"
    assert result == expected.read_bytes(), f"{expected.name} differs; FSMC_REGEN_GOLDEN=1"


def assert_formats_safely(text: str) -> None:
    once = formatted(text)
    assert formatted(once) == once, "not idempotent"
    assert same_meaning(text, once)
    assert signature(text.removeprefix("\ufeff")) == signature(once.removeprefix("\ufeff"))
    before, after = load_text(text).spec, load_text(once).spec
    assert before is not None and after is not None
    assert model_shape(before) == model_shape(after)
    comments = re.findall(r"#[^\r\n]*", re.sub(r'"(?:[^"\\\n]|\\.)*"', "", text))
    assert [c.rstrip() for c in comments] == re.findall(
        r"#[^\r\n]*", re.sub(r'"(?:[^"\\\n]|\\.)*"', "", once)), "comments lost or changed"
    strings = re.findall(r'"(?:[^"\\\n]|\\.)*"', text)
    assert strings == re.findall(r'"(?:[^"\\\n]|\\.)*"', once), "doc strings changed"


@pytest.mark.parametrize("path", REPOSITORY_SPECS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_repository_specs_format_safely(path: Path) -> None:
    assert_formats_safely(path.read_bytes().decode("utf-8"))


def test_design_example_formats_safely() -> None:
    assert_formats_safely(DESIGN_EXAMPLE)


def test_specs_are_formatted() -> None:
    """specs/ is kept in the canonical layout (CI also runs `fsmc fmt --check specs/`)."""
    for path in sorted((ROOT / "specs").glob("*.fsm")):
        text = path.read_text("utf-8")
        assert layout(text) == text, f"{path.name}: run `fsmc fmt specs/`"


@settings(max_examples=200, deadline=None)
@given(spec_texts(), st.sampled_from(["", "  # note", " # x ; y"]), st.booleans())
def test_generated_specs_format_safely(text: str, comment: str, crlf: bool) -> None:
    lines = text.split("\n")
    lines = [line + comment if "->" in line else line for line in lines]
    text = "\n".join(lines)
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    assert_formats_safely(text)
    if crlf:
        assert "\n" not in formatted(text).replace("\r\n", "")


def test_semicolons_split_and_blocks_opened() -> None:
    text = 'machine M { initial A; state B ; A -> B : E ;B->A:F }'
    assert formatted(text) == (
        "machine M {\n    initial A\n    state B\n\n    A -> B : E\n    B -> A : F\n}\n")


def test_unknown_statements_keep_their_tokens_and_spacing_is_normalised() -> None:
    """Statements the formatter does not lay out are kept in place, whitespace runs reduced
    to one space and no space added where there was none (as for syntax added later)."""
    text = "machine M {\n initial Old\n  data   size  :int;  Old->Old:E\n}\n"
    lines = layout(text).splitlines()
    assert lines[2:4] == ["    data size :int", "    Old -> Old : E"]
    tokens = [t for t in scan("data   size  :int") if t.type != "_SEP"]
    assert join_tokens(tokens, as_written=True) == "data size :int"


def test_output_that_would_read_differently_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsmc.dsl.formatter as formatter
    text = "machine M {\n  initial A\n  A -> A : E [t]\n}\n"
    monkeypatch.setattr(formatter, "layout", lambda t, _=None: t.replace(" [t]", ""))
    assert format_text(text) == formatter.FormatResult(None, meaning_changed=True)
    monkeypatch.setattr(formatter, "layout", lambda t, _=None: t.replace("A -> A", "A\n-> A"))
    assert format_text(text).meaning_changed


def test_bom_and_final_newline() -> None:
    text = "\ufeffmachine M {\n    initial A\n}"
    assert formatted(text) == "\ufeffmachine M {\n    initial A\n}\n"


def test_files_with_errors_are_refused_with_their_diagnostics() -> None:
    result = format_text("machine M {\n    initial A\n    A -> B : \n}\n", "bad.fsm")
    assert result.text is None
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("E001", 3)]
    result = format_text('machine M {\n    initial A "bad \\q"\n}\n', "bad.fsm")
    assert result.text is None and [d.code for d in result.diagnostics] == ["E002"]


def test_assert_and_moved_are_spaced_canonically() -> None:
    text = ("machine M {\n  initial A ;  state B\n   moved   Old->B\n  A->B:Go\n B -> A : Back\n"
            "  assert   never B  ->A\n assert B only from A,B[refuted]\n}\n")
    assert formatted(text) == (
        "machine M {\n    initial A\n    state B\n    moved Old -> B\n    A -> B : Go\n"
        "    B -> A : Back\n    assert never B -> A\n    assert B only from A, B [refuted]\n}\n")


def test_warnings_do_not_stop_formatting() -> None:
    text = "machine M {\n    initial A\n    state Lonely\n}\n"
    assert [d.code for d in check_text(text).diagnostics if not d.is_error]
    assert formatted(text) == text


def test_comments_between_groups_and_machines_are_kept() -> None:
    text = "# head\nmachine A {\n    initial X\n}\n# about B\nmachine B {\n    initial Y\n}\n"
    assert formatted(text) == (
        "# head\nmachine A {\n    initial X\n}\n\n# about B\nmachine B {\n    initial Y\n}\n")


def spec_blocks(markdown: str) -> list[str]:
    """The fenced blocks of a Markdown page that are specs (start with a comment or
    `machine`) and load without errors: the examples a reader copies."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", markdown, flags=re.S | re.M)
    return [block for block in blocks if re.match(r"(#[^\n]*\n)*machine ", block)
            and format_text(block).text is not None]


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_documentation_examples_are_formatted(page: Path) -> None:
    for block in spec_blocks(page.read_text("utf-8")):
        assert formatted(block) == block, f"{page.name}: an example is not in fmt's layout"
