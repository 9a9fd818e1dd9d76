"""Parse tree → model. Never raises on user input: problems become diagnostics.

The builder checks what only it can see (keywords used as names, bad string escapes, a second
guard or action on one transition), expands `*` and multi-source transitions, and leaves every
other judgement (undeclared names, duplicates, graph properties) to the analyses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lark import Token, Tree

from .diagnostics import Diagnostic, make
from .lexer import NAME_TYPES, Diverted, tokenize
from .model import (
    Action,
    Assertion,
    AssertionKind,
    Guard,
    Machine,
    Move,
    Name,
    SpecFile,
    StateDecl,
    StateKind,
    Transition,
)
from .spans import SourceText, Span
from .syntax_examples import KEYWORDS

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_DECLARATION_KINDS = {
    "initial": StateKind.INITIAL, "entry": StateKind.ENTRY, "final": StateKind.FINAL,
    "state": StateKind.NORMAL,
}


def build(tree: Tree[Token], source: SourceText,
          diverted: Sequence[Diverted] = ()) -> tuple[SpecFile, list[Diagnostic]]:
    """Turn a successful parse (the tree and the transitions the lexer diverted around the
    parser) into a `SpecFile` plus the builder's diagnostics."""
    builder = _Builder(source)
    by_machine: dict[int, list[list[Token]]] = {}
    for statement in diverted:
        by_machine.setdefault(statement.machine, []).append(statement.tokens)
    machine_trees = [child for child in tree.children if isinstance(child, Tree)]
    machines = tuple(builder.machine(child, by_machine.get(index, []))
                     for index, child in enumerate(machine_trees))
    return SpecFile(source, machines), builder.diagnostics


_ARTICLES = {"initial": "the", "entry": "an", "final": "a"}


def keyword_hint(keyword: str) -> str:
    """What to write instead of a keyword used as a name."""
    return f"rename it; names are case-sensitive, so `{keyword.capitalize()}` would do"


def token_span(path: str, token: Token) -> Span:
    """The span of a token from `SpecLexer` (which always sets every position)."""
    return Span(path, token.line, token.column, token.end_line, token.end_column)  # type: ignore[arg-type]


class _Builder:
    def __init__(self, source: SourceText) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def span(self, token: Token) -> Span:
        return token_span(self.source.path, token)

    def name(self, token: Token, hint: str | None = None) -> Name:
        """The name `token` holds; a keyword is reported (E005) with `hint`, or with a
        suggestion that fits the keyword when none is given."""
        name = Name(token.value, Span(self.source.path, token.line, token.column,  # type: ignore[arg-type]
                                      token.end_line, token.end_column))  # type: ignore[arg-type]
        if name.text in KEYWORDS:
            self.diagnostics.append(make(
                "E005", name.span, f"`{name.text}` is a keyword and cannot be used as a name",
                hint or keyword_hint(name.text)))
        return name

    def string(self, token: Token) -> str:
        """Decode a string literal, reporting each bad escape at its backslash."""
        raw = str(token)[1:-1]
        out: list[str] = []
        index = 0
        while index < len(raw):
            char = raw[index]
            if char != "\\":
                out.append(char)
                index += 1
                continue
            escaped = raw[index + 1]
            if escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
            else:
                column = (token.column or 1) + 1 + index
                line = token.line or 1
                self.diagnostics.append(make(
                    "E002", Span(self.source.path, line, column, line, column + 2),
                    f"unknown escape `\\{escaped}` in a string",
                    'the escapes are \\", \\\\, \\n and \\t; write a backslash as \\\\'))
                out.append(escaped)
            index += 2
        return "".join(out)

    def machine(self, tree: Tree[Token], diverted: list[list[Token]]) -> Machine:
        tokens = [c for c in tree.children if isinstance(c, Token)]
        name = self.name(tokens[1])
        doc = self.string(tokens[2]) if len(tokens) > 2 and tokens[2].type == "STRING" else None
        declarations: list[StateDecl] = []
        events: list[Name] | None = None
        moves: list[Move] = []
        raw_transitions: list[list[Token]] = list(diverted)
        assertions: list[Assertion] = []
        for statement in (c for c in tree.children if isinstance(c, Tree)):
            kind = statement.data
            if kind in _DECLARATION_KINDS:
                declarations.append(self.declaration(statement, _DECLARATION_KINDS[str(kind)]))
            elif kind == "states":
                declarations.extend(StateDecl(self.name(t), StateKind.NORMAL)
                                    for t in _tokens(statement)[1:])
            elif kind == "events":
                events = (events or []) + [self.name(t) for t in _tokens(statement)[1:]]
            elif kind == "assertion":
                assertion = self.assertion(_tokens(statement))
                if assertion is not None:
                    assertions.append(assertion)
            elif kind == "moved":
                moves.append(self.move(statement))
            else:
                raw_transitions.append(_flatten(statement))
        # Diverted and parsed transitions back in file order (the order guards are tried in).
        raw_transitions.sort(key=lambda tokens: tokens[0].start_pos or 0)
        finals = {d.name.text for d in declarations if d.kind is StateKind.FINAL}
        non_final = [d.name for d in _first_declarations(declarations) if d.name.text not in finals]
        transitions = tuple(t for raw in raw_transitions for t in self.transition(raw, non_final))
        return Machine(name, doc, tuple(declarations), transitions,
                       None if events is None else tuple(events),
                       self.span(tokens[0]).to(self.span(tokens[-1])),
                       assertions=tuple(assertions), moves=tuple(moves))

    def move(self, tree: Tree[Token]) -> Move:
        keyword, source, _arrow, target = _tokens(tree)
        return Move(self.name(source), self.name(target),
                    self.span(keyword).to(self.span(target)))

    def declaration(self, tree: Tree[Token], kind: StateKind) -> StateDecl:
        tokens = [c for c in tree.children if isinstance(c, Token)]
        doc = self.string(tokens[2]) if len(tokens) > 2 else None
        named = tokens[1].value
        hint = None
        if kind is StateKind.NORMAL and named in _DECLARATION_KINDS and named != "state":
            hint = (f"to declare {_ARTICLES[named]} {named} state, write `{named} Name` instead "
                    f"of `state {named}`")
        return StateDecl(self.name(tokens[1], hint), kind, doc)

    def transition(self, tokens: list[Token], non_final: list[Name]) -> Iterator[Transition]:
        """One statement `sources -> target : event clauses...`, as a flat token list."""
        arrow = 1
        while tokens[arrow].type != "ARROW":
            arrow += 1
        target, event = self.name(tokens[arrow + 1]), self.name(tokens[arrow + 3])
        guard, action, tags = self.clauses(tokens[arrow + 4:])
        first = tokens[0]
        span = self.span(first).to(self.span(tokens[-1]))
        if first.type == "STAR":
            star = self.span(first)
            # `*` stands for every non-final state; each expansion points at the `*`.
            sources = [Name(name.text, star) for name in non_final]
        else:
            sources = [self.name(t) for t in tokens[:arrow]]
        for source in sources:
            yield Transition(source, target, event, guard, action, tuple(tags),
                             via_star=first.type == "STAR", span=span)

    def clauses(self, tokens: list[Token]) -> tuple[Guard | None, Action | None, list[Name]]:
        guard: Guard | None = None
        action: Action | None = None
        tags: list[Name] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.type == "LSQB":
                index += 1
                while tokens[index].type != "RSQB":
                    tags.append(self.name(tokens[index]))
                    index += 1
                index += 1
                continue
            keyword, name = self.span(token), self.name(tokens[index + 1])
            index += 2
            if token.type in ("IF", "UNLESS"):
                if guard is not None:
                    self.diagnostics.append(self._second("guard", keyword, guard.keyword))
                    continue
                guard = Guard(name, token.type == "UNLESS", keyword)
            else:
                if action is not None:
                    self.diagnostics.append(self._second("action", keyword, action.keyword))
                    continue
                action = Action(name, keyword)
        return guard, action, tags

    def assertion(self, parsed: list[Token]) -> Assertion | None:
        """`assert FORM`, its words read from the statement's own tokens (commas included);
        a malformed form is E410 at the first token that does not fit, and None."""
        first, last = parsed[0], parsed[-1]
        tokens = list(tokenize(self.source.text, first.start_pos or 0, last.end_pos))
        statement = self.span(first).to(self.span(tokens[-1]))
        reader = _FormReader(self, tokens[1:], self.span(tokens[-1]))
        try:
            return reader.read(statement, self.span(first))
        except _Malformed as error:
            self.diagnostics.append(make("E410", error.span, error.message, error.hint))
            return None

    def _second(self, what: str, keyword: Span, first: Span) -> Diagnostic:
        return make("E006", keyword,
                    f"a transition has at most one {what}; the first is at column {first.column}",
                    "combine the conditions in one predicate" if what == "guard"
                    else "combine the work in one action")


_FORMS_HINT = ("the forms are `reachable S`, `reachable S from A, B` (or `from *`), "
               "`never A -> B`, `S only from A, B`, `Event only in A, B` and `A leads to B`, "
               "each optionally followed by `[refuted]`")


class _Malformed(Exception):
    def __init__(self, span: Span, message: str, hint: str | None = _FORMS_HINT) -> None:
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


class _FormReader:
    """The words after `assert`, read left to right."""

    def __init__(self, builder: _Builder, tokens: list[Token], last: Span) -> None:
        self.builder = builder
        self.tokens = tokens
        self.index = 0
        self.end = Span(last.path, last.end_line, last.end_column, last.end_line,
                        last.end_column)

    def peek(self, offset: int = 0) -> Token | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def word(self, offset: int = 0) -> str | None:
        token = self.peek(offset)
        return token.value if token is not None and token.type in NAME_TYPES else None

    def fail(self, expected: str) -> _Malformed:
        token = self.peek()
        if token is None:
            return _Malformed(self.end, f"malformed assertion: expected {expected}, found the "
                                        "end of the line")
        return _Malformed(self.builder.span(token),
                          f"malformed assertion: expected {expected}, found `{token.value}`")

    def name(self, what: str) -> Name:
        token = self.peek()
        if token is None or token.type not in NAME_TYPES:
            raise self.fail(what)
        self.index += 1
        return self.builder.name(token)

    def keyword(self, word: str) -> None:
        if self.word() != word:
            raise self.fail(f"`{word}`")
        self.index += 1

    def names(self, what: str, *, star: bool = False) -> tuple[tuple[Name, ...], bool]:
        token = self.peek()
        if star and token is not None and token.type == "STAR":
            self.index += 1
            return (), True
        listed = [self.name(what)]
        while (token := self.peek()) is not None and token.type == "_COMMA":
            self.index += 1
            listed.append(self.name(what))
        return tuple(listed), False

    def read(self, statement: Span, keyword: Span) -> Assertion:
        kind, subject, target = AssertionKind.REACHABLE, None, None
        names: tuple[Name, ...] = ()
        from_any = False
        if self.word(1) == "only":
            subject = self.name("a name")
            self.index += 1
            scope = self.word()
            if scope not in ("from", "in"):
                raise self.fail("`from` (the states allowed to enter it) or `in` (the states "
                                "an event may be fired in) after `only`")
            self.index += 1
            kind = AssertionKind.ONLY_FROM if scope == "from" else AssertionKind.ONLY_IN
            names, _ = self.names("a comma-separated list of state names")
        elif self.word(1) == "leads":
            kind = AssertionKind.LEADS_TO
            subject = self.name("a state name")
            self.index += 1
            self.keyword("to")
            target = self.name("the state name after `leads to`")
        elif self.word() == "never":
            kind = AssertionKind.NEVER
            self.index += 1
            subject = self.name("the state name after `never`")
            token = self.peek()
            if token is None or token.type != "ARROW":
                raise self.fail("`->` after the first state of `never A -> B`")
            self.index += 1
            target = self.name("the state name after `->`")
        elif self.word() == "reachable":
            self.index += 1
            subject = self.name("the state name after `reachable`")
            if self.word() == "from":
                self.index += 1
                kind = AssertionKind.REACHABLE_FROM
                names, from_any = self.names("a comma-separated list of state names, or `*`",
                                             star=True)
        else:
            raise self.fail("`reachable`, `never`, `S only from`, `Event only in` or "
                            "`A leads to`")
        expect_refuted = self.refuted_marker()
        return Assertion(kind, subject, target, names, from_any, expect_refuted, statement,
                         keyword)

    def refuted_marker(self) -> bool:
        token = self.peek()
        if token is None:
            return False
        if token.type != "LSQB":
            raise self.fail("the end of the line (or `[refuted]`)")
        self.index += 1
        if self.word() != "refuted":
            raise self.fail("`refuted` (an expected failure is written `[refuted]`)")
        self.index += 1
        token = self.peek()
        if token is None or token.type != "RSQB":
            raise self.fail("`]` after `[refuted`")
        self.index += 1
        if self.peek() is not None:
            raise self.fail("the end of the line after `[refuted]`")
        return True


def _tokens(tree: Tree[Token]) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token)]


def _first_declarations(declarations: list[StateDecl]) -> list[StateDecl]:
    seen: dict[str, StateDecl] = {}
    for decl in declarations:
        seen.setdefault(decl.name.text, decl)
    return list(seen.values())


def _flatten(tree: Tree[Token]) -> list[Token]:
    """A parsed transition as the flat token list the lexer gives for diverted ones."""
    tokens: list[Token] = []
    for child in tree.children:
        if isinstance(child, Tree):
            tokens.extend(_flatten(child))
        else:
            tokens.append(child)
    return tokens
