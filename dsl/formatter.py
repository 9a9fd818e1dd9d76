"""`.fsm` text → the same spec in the canonical layout (what `fsmc fmt` writes).

The formatter works on the token stream of `lexer.tokenize`, not on the model, so that it keeps
what the model drops (comments, blank lines, the author's grouping) and copies every token's
text as written (doc strings and their escapes byte for byte). Statements it knows (state and
event declarations, transitions) get the canonical spacing and alignment, `assert` and `moved`
the canonical spacing; any other statement
keeps its tokens in order with each run of whitespace between two tokens reduced to one space,
so syntax added to the grammar later is never dropped or reordered. The layout rules are listed
in docs/editing.md; `format_text` refuses (returns the diagnostics) a file with errors, and
`fsmc fmt` refuses output whose model differs from the input's (see `same_meaning`).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from .diagnostics import Diagnostic
from .lexer import KEYWORD_TOKENS, TOKEN_PATTERN, is_plain_transition
from .loader import load_text
from .model import SpecFile
from .spans import Span

INDENT = "    "
DECLARATION_KEYWORDS = frozenset({"INITIAL", "ENTRY", "FINAL", "STATE", "STATES", "EVENTS"})
# Statements spaced canonically but not aligned (their words are names and `->`, `,`, `[ ]`).
SPACED_KEYWORDS = frozenset({"ASSERT", "MOVED"})
_SEPARATOR_PART = re.compile(r"\n|;|#[^\n]*|[ \t\f\r]+")
_NO_SPACE_BEFORE = frozenset({"_COMMA", "RSQB"})
_NO_SPACE_AFTER = frozenset({"LSQB"})


class Lexeme(NamedTuple):
    """A token as the formatter needs it: its grammar terminal, its text and where it is
    (character offsets). Lighter than lark's `Token`: specs of 10k transitions have 60k."""

    type: str
    value: str
    start_pos: int
    end_pos: int


class ScanError(ValueError):
    """A character no token starts with (the loader reports it as a diagnostic)."""


def scan(text: str) -> Iterator[Lexeme]:
    """Every token of `text` (whitespace dropped, separators kept whole), by the lexer's own
    expression."""
    keywords = KEYWORD_TOKENS
    position = 0
    for found in TOKEN_PATTERN.finditer(text):
        if found.start() != position:
            raise ScanError(position)
        kind = found.lastgroup
        position = found.end()
        if kind == "WS":
            continue
        value = found.group()
        if kind == "NAME":
            kind = keywords.get(value, "NAME")
        yield Lexeme(kind or "", value, found.start(), position)
    if position != len(text):
        raise ScanError(position)


def signature(text: str) -> list[tuple[str, str]]:
    """What the parser reads of `text`: its tokens in order, with a `_SEP` where a separator
    ends a statement (what a separator holds, blank lines, `;` or comments, does not matter to
    the parser, nor do the optional ones at the ends of the file and beside braces)."""
    return _signature(list(scan(text)))


def _signature(lexemes: list[Lexeme]) -> list[tuple[str, str]]:
    tokens = [("_SEP", "") if t.type == "_SEP" else (t.type, t.value) for t in lexemes]
    return [token for index, token in enumerate(tokens) if token[0] != "_SEP" or (
        0 < index < len(tokens) - 1
        and tokens[index - 1][0] != "_LBRACE" and tokens[index + 1][0] != "_RBRACE"
        and tokens[index - 1][0] != "_RBRACE" and tokens[index + 1][0] != "_LBRACE")]


@dataclass(frozen=True, slots=True)
class Line:
    """One output line before layout: a statement (its tokens), a comment on a line of its
    own, a blank line, a block opening (`machine ... {`) or closing (`}`). `depth` is the
    number of blocks around it; `comment` is a comment after the code on the same line."""

    kind: str
    depth: int
    tokens: tuple[Lexeme, ...] = ()
    text: str = ""
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class FormatResult:
    """The formatted text, or None with the diagnostics that stopped formatting (or, with
    none, `meaning_changed`: the layout would have changed what the parser reads, a bug)."""

    text: str | None
    diagnostics: tuple[Diagnostic, ...] = ()
    meaning_changed: bool = False


def format_text(text: str, path: str = "<string>") -> FormatResult:
    """Format one spec's text. A file with syntax errors (anything the loader reports as an
    error) is not formatted: its diagnostics come back; warnings and the analyses' findings do
    not stop formatting. The result is checked to read the same to the parser: the same tokens
    and the same statement breaks (`signature`), hence the same model."""
    body = text.removeprefix("\ufeff")
    loaded = load_text(body, path)
    errors = tuple(d for d in loaded.diagnostics if d.is_error)
    if errors or loaded.spec is None:
        return FormatResult(None, errors)
    lexemes = list(scan(body))
    formatted = layout(text, lexemes)
    if formatted != text and _signature(lexemes) != signature(formatted.removeprefix("\ufeff")):
        return FormatResult(None, meaning_changed=True)
    return FormatResult(formatted)


def layout(text: str, lexemes: list[Lexeme] | None = None) -> str:
    """The canonical layout of text that parses (a BOM and CRLF line endings are kept);
    `lexemes`: its tokens, when they are already scanned."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text.removeprefix("\ufeff")
    if lexemes is None:
        lexemes = list(scan(body))
    newline = "\r\n" if body.count("\r\n") * 2 > body.count("\n") else "\n"
    lines = _collapse_blanks(_separate_declarations(_merge_trailing(_lines(lexemes))))
    rendered = list(_render(lines))
    return bom + newline.join(rendered) + newline if rendered else bom


def _events(lexemes: list[Lexeme]) -> Iterator[Lexeme | str]:
    """Tokens, with each separator split into `\\n`, `;` and comments (`#...`, trailing
    whitespace and `\\r` removed)."""
    for token in lexemes:
        if token.type != "_SEP":
            yield token
            continue
        for part in _SEPARATOR_PART.findall(token.value):
            if part in ("\n", ";"):
                yield part
            elif part.startswith("#"):
                yield part.rstrip()


def _lines(lexemes: list[Lexeme]) -> Iterator[Line]:
    depth = 0
    statement: list[Lexeme] = []
    last: Line | None = None  # the line written since the last newline, for a trailing comment
    newlines = 0  # newlines since the last thing written: two or more make a blank line

    def flush() -> Iterator[Line]:
        nonlocal last
        if statement:
            last = Line(_statement_kind(statement), depth, tuple(statement))
            statement.clear()
            yield last

    header_comment: str | None = None  # between `machine Name` and a `{` on a later line

    for event in _events(lexemes):
        if depth == 0 and statement and not isinstance(event, Lexeme):
            if event.startswith("#"):
                header_comment = header_comment or event
            continue  # a machine's header runs to its `{`
        if isinstance(event, Lexeme):
            if newlines >= 2:
                yield Line("blank", depth)
            newlines = 0
            if event.type == "_LBRACE":
                last = Line("open", depth, (*statement, event), comment=header_comment)
                header_comment = None
                statement.clear()
                depth += 1
                yield last
            elif event.type == "_RBRACE":
                yield from flush()
                depth -= 1
                last = Line("close", depth, (event,))
                yield last
            else:
                statement.append(event)
        elif event == ";":
            yield from flush()
        elif event == "\n":
            yield from flush()
            last = None
            newlines += 1
        elif statement or last is not None:  # a comment after code on its line
            yield from flush()
            assert last is not None
            yield dataclasses.replace(last, comment=event, kind="trailing:" + last.kind)
            last = None
        else:
            if newlines >= 2:
                yield Line("blank", depth)
            newlines = 0
            yield Line("comment", depth, text=event)
    yield from flush()


def _merge_trailing(lines: Iterable[Line]) -> list[Line]:
    """Fold each "trailing:" line (the same line again, with its comment) into its line."""
    merged: list[Line] = []
    for line in lines:
        if line.kind.startswith("trailing:"):
            merged[-1] = dataclasses.replace(line, kind=line.kind.removeprefix("trailing:"))
        else:
            merged.append(line)
    return merged


def _statement_kind(tokens: list[Lexeme]) -> str:
    """"transition" and "declaration" are laid out; any other "statement" is kept as is."""
    if tokens[0].type in DECLARATION_KEYWORDS:
        return "declaration"
    if is_plain_transition(cast("list[Any]", tokens)):
        return "transition"
    return "statement"


STATEMENT_KINDS = frozenset({"transition", "declaration", "statement"})


def _separate_declarations(lines: list[Line]) -> list[Line]:
    """A blank line between declarations and the transitions that follow them (before the
    comments that introduce the transitions)."""
    out: list[Line] = []
    previous: Line | None = None  # the last statement since a blank line or block boundary
    for line in lines:
        if line.kind in ("blank", "open", "close"):
            previous = None
        elif line.kind in STATEMENT_KINDS:
            if line.kind == "transition" and previous is not None and \
                    previous.kind == "declaration":
                at = len(out)
                while at > 0 and out[at - 1].kind == "comment":
                    at -= 1
                out.insert(at, Line("blank", line.depth))
            previous = line
        out.append(line)
    return out


def _collapse_blanks(lines: list[Line]) -> list[Line]:
    """At most one blank line in a row; none at the start or end of a block or of the file;
    one after a top-level block that another follows (its comments go with the next one)."""
    out: list[Line] = []
    for line in lines:
        if line.kind == "blank":
            if out and out[-1].kind not in ("blank", "open"):
                out.append(line)
            continue
        if line.kind == "close" and out and out[-1].kind == "blank":
            out.pop()
        if line.kind == "open" and line.depth == 0:
            at = len(out)
            while at > 0 and out[at - 1].kind == "comment":
                at -= 1
            if at > 0 and out[at - 1].kind == "close":
                out.insert(at, Line("blank", 0))
        out.append(line)
    while out and out[-1].kind == "blank":
        out.pop()
    return out


def join_tokens(tokens: Iterable[Lexeme], *, as_written: bool = False) -> str:
    """Tokens as text. Canonical spacing: one space between tokens, none before `,` and `]`
    nor after `[`. `as_written`: a space exactly where the source had whitespace."""
    parts: list[str] = []
    previous: Lexeme | None = None
    for token in tokens:
        if previous is not None:
            if as_written:
                if previous.end_pos < token.start_pos:
                    parts.append(" ")
            elif token.type not in _NO_SPACE_BEFORE and previous.type not in _NO_SPACE_AFTER:
                parts.append(" ")
        parts.append(token.value)
        previous = token
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _TransitionParts:
    sources: str
    target: str
    event: str
    clauses: str


def _transition_parts(tokens: tuple[Lexeme, ...]) -> _TransitionParts:
    arrow = next(i for i, t in enumerate(tokens) if t.type == "ARROW")
    return _TransitionParts(join_tokens(tokens[:arrow]), tokens[arrow + 1].value,
                            tokens[arrow + 3].value, join_tokens(tokens[arrow + 4:]))




def _groups(lines: list[Line]) -> Iterator[list[Line]]:
    """Runs of lines between blank lines and block boundaries (comment lines stay inside)."""
    group: list[Line] = []
    for line in lines:
        if line.kind in ("blank", "open", "close"):
            if group:
                yield group
            group = []
            yield [line]
        else:
            group.append(line)
    if group:
        yield group


def _render(lines: list[Line]) -> Iterator[str]:
    for group in _groups(lines):
        yield from _render_group(group)


def _render_group(group: list[Line]) -> Iterator[str]:
    transitions = {id(line): _transition_parts(line.tokens) for line in group
                   if line.kind == "transition"}
    parts = transitions.values()
    source_width = max((len(p.sources) for p in parts), default=0)
    target_width = max((len(p.target) for p in parts), default=0)
    event_width = max((len(p.event) for p in parts), default=0)
    codes: list[str | None] = []
    for line in group:
        if line.kind == "comment":
            codes.append(None)
        elif line.kind == "blank":
            codes.append("")
        elif line.kind in ("open", "close", "declaration"):
            codes.append(join_tokens(line.tokens))
        elif id(line) in transitions:
            p = transitions[id(line)]
            head = f"{p.sources.ljust(source_width)} -> {p.target.ljust(target_width)} : "
            tail = f"{p.event.ljust(event_width)} {p.clauses}" if p.clauses else p.event
            codes.append(head + tail)
        else:
            codes.append(join_tokens(line.tokens,
                                     as_written=line.tokens[0].type not in SPACED_KEYWORDS))
    commented = [len(code) for code, line in zip(codes, group, strict=True)
                 if code is not None and line.comment is not None]
    comment_column = max(commented, default=0) + 2
    for code, line in zip(codes, group, strict=True):
        indent = INDENT * line.depth
        if code is None:
            yield indent + line.text
        elif line.comment is not None:
            yield indent + code.ljust(comment_column) + line.comment
        else:
            yield (indent + code) if code else ""


def strip_spans(value: Any) -> Any:
    """A model value without its source positions: spans become None, names their text,
    dataclasses and named tuples tuples of their fields (whatever fields later versions of the
    model add), so that two models compare equal exactly when they mean the same."""
    if isinstance(value, Span):
        return None
    if isinstance(value, str | int | float | bool | enum.Enum) or value is None:
        return value
    if hasattr(value, "_fields"):
        if "text" in value._fields and "span" in value._fields:
            return value.text
        return tuple(strip_spans(getattr(value, f)) for f in value._fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple(
            strip_spans(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return tuple(sorted((strip_spans(k), strip_spans(v)) for k, v in value.items()))
    if isinstance(value, tuple | list | frozenset | set):
        items = [strip_spans(item) for item in value]
        if isinstance(value, frozenset | set):
            items.sort(key=repr)
        return tuple(items)
    return repr(value)


def model_shape(spec: SpecFile) -> tuple[Any, ...]:
    """What a spec means: its machines without positions (the text is not part of it)."""
    return tuple(strip_spans(machine) for machine in spec.machines)


def same_meaning(before: str, after: str) -> bool:
    """Whether two texts parse without errors into equal models."""
    old, new = load_text(before.removeprefix("\ufeff")), load_text(after.removeprefix("\ufeff"))
    if old.spec is None or new.spec is None or any(d.is_error for d in new.diagnostics):
        return False
    return model_shape(old.spec) == model_shape(new.spec)
