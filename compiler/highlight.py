"""Syntax highlighting of `.fsm` specs: a Pygments lexer (registered as the `fsm` entry point
of `pygments.lexers`, so `pygmentize -l fsm`, Sphinx, MkDocs and `fsmc review` use it) and
the highlighting of one source line as HTML for the review site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

# Pygments' stubs leave `bygroups` untyped; through a typed name mypy --strict accepts it.
_by_groups: Callable[..., Any] = bygroups
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SPACE = r"[ \t]+"


class FsmLexer(RegexLexer):
    """fsmc lifecycle specs."""

    name = "fsmc spec"
    aliases = ["fsm", "fsmc"]
    filenames = ["*.fsm"]
    mimetypes = ["text/x-fsm"]
    url = "https://pypi.org/project/fsmc/"

    tokens = {
        "root": [
            (r"#.*?$", Comment.Single),
            (r'"', String.Double, "string"),
            (rf"(machine)({_SPACE})({_NAME})", _by_groups(Keyword.Declaration, Whitespace,
                                                        Name.Class)),
            (rf"(initial|entry|final|state|moved)({_SPACE})({_NAME})",
             _by_groups(Keyword.Declaration, Whitespace, Name.Constant)),
            (rf"(if|unless|do)({_SPACE})({_NAME})", _by_groups(Keyword, Whitespace, Name.Function)),
            (rf"(:)([ \t]*)({_NAME})", _by_groups(Punctuation, Whitespace, Name.Label)),
            (r"\[", Punctuation, "tags"),
            (words(("states", "events", "event", "data", "after", "assert", "machine",
                    "initial", "entry", "final", "state", "if", "unless", "do"),
                   suffix=r"\b"), Keyword),
            (r"->", Operator),
            (r"\*", Operator),
            (r"[{}(),;=|]", Punctuation),
            (r"\d+(?:\.\d+)?[a-z]*", Number),
            (_NAME, Name),
            (r"\s+", Whitespace),
            (r".", Text),
        ],
        "string": [
            (r'\\["\\nt]', String.Escape),
            (r"\\.", Error),
            (r'[^"\\\n]+', String.Double),
            (r'"', String.Double, "#pop"),
            (r"\n", Error, "#pop"),
        ],
        "tags": [
            (_NAME, Name.Tag),
            (r"[ \t]+", Whitespace),
            (r",", Punctuation),
            (r"\]", Punctuation, "#pop"),
            (r"\n", Whitespace, "#pop"),
            (r".", Error),
        ],
    }


_LEXER = FsmLexer()
_FORMATTER = HtmlFormatter(nowrap=True)


def highlight_line(line: str) -> str:
    """One spec line as HTML spans with Pygments' short CSS classes (text escaped)."""
    return highlight(line, _LEXER, _FORMATTER).rstrip("\n")
