"""The tokenizer of `.fsm` text: one master regular expression, for speed.

lark's own lexers match token by token through several layers; specs of 100k transitions
need a faster one. The token names are the terminals of `fsm.lark`; keywords are recognised
by a dictionary lookup on every identifier (the grammar accepts them wherever a name may
stand, see `_name` there).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, LexerState

KEYWORD_TOKENS = {
    "machine": "MACHINE", "initial": "INITIAL", "entry": "ENTRY", "final": "FINAL",
    "state": "STATE", "states": "STATES", "events": "EVENTS", "if": "IF", "unless": "UNLESS",
    "do": "DO", "assert": "ASSERT", "moved": "MOVED",
}

_PATTERN = re.compile(r"""
    (?P<WS>[ \t\f\r]+)
  | (?P<_SEP>(?:[;\n]|\#[^\n]*)(?:[ \t\f\r;\n]|\#[^\n]*)*)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<STRING>"(?:[^"\\\r\n]|\\[^\r\n])*")
  | (?P<ARROW>->)
  | (?P<COLON>:)
  | (?P<STAR>\*)
  | (?P<LSQB>\[)
  | (?P<RSQB>\])
  | (?P<_COMMA>,)
  | (?P<_LBRACE>\{)
  | (?P<_RBRACE>\})
""", re.VERBOSE)
TOKEN_PATTERN = _PATTERN
"""The master expression (public for scanners that need no lark tokens: the formatter)."""


def _token(kind: str, value: str, start: int, line: int, column: int, end_line: int,
           end_column: int, end: int) -> Token:
    """`Token(...)` without its argument juggling (about 10x cheaper; same object)."""
    token: Any = str.__new__(Token, value)
    token.type = kind
    token.value = value
    token.start_pos = start
    token.line = line
    token.column = column
    token.end_line = end_line
    token.end_column = end_column
    token.end_pos = end
    return token  # type: ignore[no-any-return]


NAME_TYPES = frozenset({"NAME", *KEYWORD_TOKENS.values()})
_CLAUSE_STARTS = frozenset({"IF", "UNLESS", "DO", "LSQB"})


def tokenize(text: str, position: int = 0, end: int | None = None) -> Iterator[Token]:
    """Every token of `text[position:end]`, whitespace dropped; raises lark's
    `UnexpectedCharacters` at the first character no token can start with."""
    end = len(text) if end is None else end
    line = text.count("\n", 0, position) + 1
    line_start = text.rfind("\n", 0, position) + 1
    match = _PATTERN.match
    keywords = KEYWORD_TOKENS
    while position < end:
        found = match(text, position)
        if found is None:
            raise UnexpectedCharacters(  # type: ignore[no-untyped-call]
                text, position, line, position - line_start + 1)
        kind = found.lastgroup
        stop = found.end()
        if kind == "WS":
            position = stop
            continue
        value = found.group()
        column = position - line_start + 1
        if kind == "NAME":
            kind = keywords.get(value, "NAME")
        elif kind == "_SEP":
            newlines = value.count("\n")
            if newlines:
                token = _token(kind, value, position, line, column, line + newlines,
                               stop - text.rfind("\n", 0, stop), stop)
                line += newlines
                line_start = text.rfind("\n", 0, stop) + 1
                position = stop
                yield token
                continue
        assert kind is not None
        yield _token(kind, value, position, line, column, line, column + stop - position, stop)
        position = stop


def is_plain_transition(tokens: list[Token]) -> bool:
    """`A, B -> C : E` (or `* -> ...`), then any guards, actions and tag lists: exactly what
    the grammar's `transition` rule accepts, checked on the token types."""
    types = [t.type for t in tokens]
    count = len(types)
    if count < 5:
        return False
    index = 0
    if types[0] == "STAR":
        index = 1
    else:
        while True:
            if index >= count or types[index] not in NAME_TYPES:
                return False
            index += 1
            if index < count and types[index] == "_COMMA":
                index += 1
                continue
            break
    if index + 3 >= count or types[index] != "ARROW" or types[index + 2] != "COLON" or \
            types[index + 1] not in NAME_TYPES or types[index + 3] not in NAME_TYPES:
        return False
    index += 4
    while index < count:
        kind = types[index]
        if kind in ("IF", "UNLESS", "DO"):
            if index + 1 >= count or types[index + 1] not in NAME_TYPES:
                return False
            index += 2
        elif kind == "LSQB":
            index += 1
            if index < count and types[index] in NAME_TYPES:
                index += 1
                while index + 1 < count and types[index] == "_COMMA" and \
                        types[index + 1] in NAME_TYPES:
                    index += 2
            if index >= count or types[index] != "RSQB":
                return False
            index += 1
        else:
            return False
    return True


class Diverted(NamedTuple):
    """A transition statement taken out of lark's token stream: which machine block it is in
    (0-based) and its tokens (commas dropped)."""

    machine: int
    tokens: list[Token]


def divert_transitions(tokens: Iterator[Token], sink: list[Diverted]) -> Iterator[Token]:
    """Pass tokens through, except plain transition statements inside a machine body, which go
    to `sink` (with the separator after them) instead of through the LALR parser.

    Transitions are most of a large spec and need no parser to be understood once their shape
    is checked; feeding lark only the rest makes parsing several times faster. The builder
    puts them back in file order. The grammar still defines the language: the shape check is
    its `transition` rule, and the tests compare both paths on random specs."""
    depth = 0
    machines = -1
    at_start = False
    for token in tokens:
        kind = token.type
        if depth == 1 and at_start and (kind in NAME_TYPES or kind == "STAR"):
            statement = [token]
            end: Token | None = None
            for following in tokens:
                if following.type in ("_SEP", "_RBRACE"):
                    end = following
                    break
                statement.append(following)
            if is_plain_transition(statement):
                sink.append(Diverted(machines, [t for t in statement if t.type != "_COMMA"]))
                if end is None or end.type == "_SEP":
                    continue  # the separator before it (or `{`) still ends the previous one
            else:
                yield from statement
            if end is None:
                return
            token, kind = end, end.type
        if kind == "_LBRACE":
            depth += 1
            if depth == 1:
                machines += 1
        elif kind == "_RBRACE":
            depth -= 1
        at_start = kind in ("_LBRACE", "_SEP")
        yield token


class SpecLexer(Lexer):
    """The lark `Lexer` of `fsm.lark`: `tokenize`, with plain transitions diverted to the sink
    of the current parse (see `parser.parse`)."""

    # lark's interface 2: `lex(lexer_state, parser_state)`, the text possibly a slice.
    __future_interface__ = 2
    sinks = threading.local()

    def __init__(self, lexer_conf: Any) -> None:
        self.lexer_conf = lexer_conf

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        source: Any = lexer_state.text
        if isinstance(source, str):
            tokens = tokenize(source)
        else:
            tokens = tokenize(source.text, source.start, source.end)
        sink: list[Diverted] | None = getattr(self.sinks, "current", None)
        return tokens if sink is None else divert_transitions(tokens, sink)
