"""Text → lark parse tree, with syntax errors turned into diagnostics.

The grammar lives in `fsm.lark`. A syntax error is named from the examples in
`syntax_examples.py` (falling back to the tokens the parser expected, in words), reported at
the unexpected token, and parsing resumes on the next line when the error sits inside a machine
body, so one run reports every broken statement of a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from .diagnostics import Diagnostic, make
from .lexer import Diverted, SpecLexer
from .spans import SourceText, Span
from .syntax_examples import EXAMPLES

MAX_SYNTAX_ERRORS = 20

_TOKEN_WORDS = {
    "NAME": "a name", "STRING": "a string", "_SEP": "the end of the line",
    "$END": "the end of the file",
    "ARROW": "`->`", "COLON": "`:`", "STAR": "`*`", "LSQB": "`[`", "RSQB": "`]`", "_COMMA": "`,`",
    "_LBRACE": "`{`", "_RBRACE": "`}`", "MACHINE": "`machine`", "INITIAL": "`initial`",
    "ENTRY": "`entry`", "FINAL": "`final`", "STATE": "`state`", "STATES": "`states`",
    "EVENTS": "`events`", "IF": "`if`", "UNLESS": "`unless`", "DO": "`do`", "ASSERT": "`assert`",
    "MOVED": "`moved`",
}


@cache
def grammar() -> Lark:
    """The LALR parser, built once per process."""
    return Lark.open("fsm.lark", rel_to=__file__, parser="lalr", lexer=SpecLexer,
                     maybe_placeholders=False)


@dataclass(frozen=True)
class ParseResult:
    """The tree (None after any syntax error), the transitions the lexer diverted around the
    parser (see `lexer.divert_transitions`), and the syntax errors."""

    tree: Tree[Token] | None
    diverted: list[Diverted]
    diagnostics: list[Diagnostic]


def parse_text(text: str) -> tuple[Tree[Token], list[Diverted]]:
    """Run the LALR parser; raises lark's `UnexpectedInput` on a syntax error."""
    sink: list[Diverted] = []
    SpecLexer.sinks.current = sink
    try:
        tree = grammar().parse(text)
    finally:
        SpecLexer.sinks.current = None
    return tree, sink


def parse(source: SourceText) -> ParseResult:
    """Parse one file. `tree` is None when there was any syntax error."""
    text = source.text
    diagnostics: list[Diagnostic] = []
    while True:
        try:
            tree, diverted = parse_text(text)
        except UnexpectedInput as error:
            diagnostic = _describe(error, source)
            diagnostics.append(diagnostic)
            line = diagnostic.span.line
            if len(diagnostics) >= MAX_SYNTAX_ERRORS or not _recoverable(text, line):
                return ParseResult(None, [], diagnostics)
            text = _blank_line(text, line)
            continue
        if diagnostics:
            return ParseResult(None, [], diagnostics)
        return ParseResult(tree, diverted, diagnostics)


def _recoverable(text: str, line: int) -> bool:
    """Resume after an error only on a plain statement line inside a machine body: blanking a
    line that opens or closes a block would only produce follow-on errors."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return False
    current = lines[line - 1].split("#", 1)[0]
    if "{" in current or "}" in current or "machine" in current:
        return False
    before = "\n".join(lines[: line - 1])
    return before.count("{") > before.count("}")


def _blank_line(text: str, line: int) -> str:
    lines = text.split("\n")
    lines[line - 1] = "\r" if lines[line - 1].endswith("\r") else ""
    return "\n".join(lines)


def _describe(error: UnexpectedInput, source: SourceText) -> Diagnostic:
    if isinstance(error, UnexpectedCharacters):
        return _bad_character(error, source)
    span = _error_span(error, source)
    message = _match_label(error) or _from_expected(error)
    return make("E001", span, f"{message}; found {_found(error)}", _hint(error, source, span))


# `if not ready`: the name after `if not` is where the parser gives up; in `if a and b`, `and`.
_IF_NOT = re.compile(r"\b(?:if|unless)\s+not\s+$")
_AFTER_GUARD = re.compile(r"\b(?:if|unless)\s+[A-Za-z_][A-Za-z0-9_]*\s+$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _hint(error: UnexpectedInput, source: SourceText, span: Span) -> str | None:
    """A hint for syntax errors that have a likely cause beyond the grammar's words."""
    token = getattr(error, "token", None)
    if token is None or token.type != "NAME":
        return None
    before = source.line_text(span.line)[: span.column - 1]
    negated = _IF_NOT.search(before)
    if negated:
        if negated.group().startswith("unless"):
            return f"`unless not {token}` is `if {token}`"
        return f"negate a guard with `unless`: `unless {token}`"
    if token in ("and", "or") and _AFTER_GUARD.search(before):
        return "a transition has one guard: combine the conditions in one predicate"
    return None


def _bad_character(error: UnexpectedCharacters, source: SourceText) -> Diagnostic:
    line, column = error.line, error.column
    char = source.line_text(line)[column - 1:column] or "\n"
    span = Span(source.path, line, column, line, column + 1)
    if char == '"':
        end = len(source.line_text(line)) + 1
        return make("E002", Span(source.path, line, column, line, end),
                    "unterminated string: strings must close on the line they open",
                    'add the closing `"`; write a quote inside a string as `\\"`')
    rest = source.line_text(line)[column - 1:]
    for start, width, message, hint in _LOOKALIKES:
        if rest.startswith(start):
            after = _NAME.match(rest[width:].lstrip())
            return make("E001", Span(source.path, line, column, line, column + width),
                        message, hint.format(after=after.group() if after else "ready"))
    shown = repr(char) if not char.isprintable() or char.isspace() else f"`{char}`"
    return make("E001", span, f"unexpected character {shown}",
                "names use ASCII letters, digits and `_`; strings are double-quoted")


# What people bring from other languages: (text it starts with, width, message, hint). Tried
# in order, at a character that no token starts with.
_LOOKALIKES = (
    ("//", 2, "unexpected `//`", "comments start with `#` and run to the end of the line"),
    ("/*", 2, "unexpected `/*`", "comments start with `#` and run to the end of the line"),
    ("-->", 3, "unexpected `-->`", "did you mean `->`?"),
    ("=>", 2, "unexpected `=>`", "did you mean `->`?"),
    ("—>", 2, "unexpected `—>`", "did you mean `->`? (an em dash is not a `-`)"),
    ("→", 1, "unexpected `→`", "did you mean `->`?"),
    ("-", 1, "unexpected character `-`", "did you mean `->`?"),
    ("!", 1, "unexpected character `!`", "negate a guard with `unless`: `unless {after}`"),
    ("&&", 2, "unexpected `&&`",
     "a transition has one guard: combine the conditions in one predicate"),
    ("||", 2, "unexpected `||`",
     "a transition has one guard: combine the conditions in one predicate"),
)


def _error_span(error: UnexpectedInput, source: SourceText) -> Span:
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedEOF) or token is None or token.type == "$END" or error.line < 1:
        last = source.line_count
        while last > 1 and not source.line_text(last).strip():
            last -= 1
        return source.end_of_line(last)
    if token.type == "_SEP":
        line, column = token.line or 1, token.column or 1
        return Span(source.path, line, column, line, column)
    return Span(source.path, token.line or 1, token.column or 1,
                token.end_line or token.line or 1, token.end_column or (token.column or 1) + 1)


@cache
def _examples() -> dict[str, list[str]]:
    """The snippets plus variants at other parser-stack depths (lark matches a state only at
    the same depth): after an earlier statement, on the `{` line, after an earlier machine."""
    examples: dict[str, list[str]] = {}
    for label, (_, snippets) in EXAMPLES.items():
        variants = list(snippets)
        for snippet in snippets:
            if snippet.startswith("machine M {\n"):
                variants.append(snippet.replace("{\n", "{\n initial Z\n", 1))
                variants.append(snippet.replace("{\n", "{\n initial Z\n state Y\n", 1))
                variants.append(snippet.replace("{\n", "{ ", 1))
            variants.append("machine Z {\n}\n" + snippet)
            variants.append("machine Z {\n}\nmachine Y {\n}\n" + snippet)
        examples[label] = variants
    return examples


def _match_label(error: UnexpectedInput) -> str | None:
    state = getattr(error, "state", None)
    token = getattr(error, "token", None)
    if state is None:
        return None
    key = (len(getattr(state, "state_stack", ())), getattr(state, "position", None),
           frozenset(getattr(error, "accepts", None) or ()), getattr(token, "type", None))
    if key not in _LABELS:
        _LABELS[key] = _classify(error)
    return _LABELS[key]


def _classify(error: UnexpectedInput) -> str | None:
    """The message of the example that fails like `error` (same parser state and accepted
    tokens; an example failing on the same token type wins), as lark's `match_examples`."""
    fallback: str | None = None
    token = getattr(error, "token", None)
    for label, snippets in _examples().items():
        for snippet in snippets:
            try:
                parse_text(snippet)
            except UnexpectedInput as other:
                if other.state != error.state or getattr(other, "accepts", None) != getattr(
                        error, "accepts", None):
                    continue
                other_token = getattr(other, "token", None)
                if token is not None and other_token is not None and \
                        other_token.type == token.type:
                    return EXAMPLES[label][0]
                fallback = fallback or EXAMPLES[label][0]
    return fallback


# Parser situation → message: matching examples re-parses every snippet, so remember answers.
_LABELS: dict[tuple[object, ...], str | None] = {}


def _from_expected(error: UnexpectedInput) -> str:
    expected = sorted(getattr(error, "accepts", None) or getattr(error, "expected", None) or ())
    words = sorted({_TOKEN_WORDS.get(name, f"`{name.lower()}`") for name in expected})
    if not words:
        return "unexpected input"
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return "expected " + listed


def _found(error: UnexpectedInput) -> str:
    token = getattr(error, "token", None)
    if token is None or token.type == "$END":
        return "the end of the file"
    if token.type == "_SEP":
        return "`;`" if str(token).startswith(";") else "the end of the line"
    if token.type == "NAME":
        return f"the name `{token}`"
    if token.type == "STRING":
        return "a string"
    return f"`{token}`"
