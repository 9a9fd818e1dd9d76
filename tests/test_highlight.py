"""The Pygments lexer for `.fsm` (`fsmc.compiler.highlight`) and its entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsmc.compiler.highlight import FsmLexer, highlight_line
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, String

from tests.conftest import ROOT


def test_registered_through_the_entry_point() -> None:
    assert isinstance(get_lexer_by_name("fsm"), FsmLexer)
    assert isinstance(get_lexer_for_filename("specs/volume.fsm"), FsmLexer)


def kinds(text: str) -> list[tuple[object, str]]:
    return [(kind, value) for kind, value in FsmLexer().get_tokens(text) if value.strip()]


def test_tokens_name_what_each_word_is() -> None:
    found = kinds('machine Door "a \\"b\\" \\q" {\n  initial Closed # c\n'
                  '  A, B -> C : Go if ok do act [usage, t]\n}\n')
    assert (Name.Class, "Door") in found and (Name.Constant, "Closed") in found
    assert (String.Escape, '\\"') in found and (Error, "\\q") in found
    assert (Comment.Single, "# c") in found
    assert (Name.Label, "Go") in found and (Name.Function, "ok") in found
    assert (Name.Function, "act") in found and (Name.Tag, "usage") in found
    assert (Keyword, "if") in found


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.fsm")), ids=lambda p: p.name)
def test_specs_lex_without_errors_and_round_trip(path: Path) -> None:
    text = path.read_text("utf-8")
    tokens = list(FsmLexer().get_tokens(text))
    assert "".join(value for _, value in tokens) == text
    assert not [value for kind, value in tokens if kind in Error]


def test_a_line_as_html_is_escaped() -> None:
    html = highlight_line('  A -> B : Go # <script>x</script> "&"')
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.startswith('<span class="w">') and '<span class="nl">Go</span>' in html
