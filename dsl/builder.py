"""Parse tree → model. Never raises on user input: problems become diagnostics.

The builder checks what only it can see (keywords used as names, bad string escapes, a second
guard or action on one transition), expands `*` and multi-source transitions, and leaves every
other judgement (undeclared names, duplicates, graph properties) to the analyses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from lark import Token, Tree

from .diagnostics import Diagnostic, make
from .lexer import Diverted
from .model import (
    Action,
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


def token_span(path: str, token: Token) -> Span:
    """The span of a token from `SpecLexer` (which always sets every position)."""
    return Span(path, token.line, token.column, token.end_line, token.end_column)  # type: ignore[arg-type]


class _Builder:
    def __init__(self, source: SourceText) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def span(self, token: Token) -> Span:
        return token_span(self.source.path, token)

    def name(self, token: Token) -> Name:
        name = Name(token.value, Span(self.source.path, token.line, token.column,  # type: ignore[arg-type]
                                      token.end_line, token.end_column))  # type: ignore[arg-type]
        if name.text in KEYWORDS:
            self.diagnostics.append(make(
                "E005", name.span, f"`{name.text}` is a keyword and cannot be used as a name",
                "rename it (names are case-sensitive: `If` or `State` would do)"))
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
        for statement in (c for c in tree.children if isinstance(c, Tree)):
            kind = statement.data
            if kind in _DECLARATION_KINDS:
                declarations.append(self.declaration(statement, _DECLARATION_KINDS[str(kind)]))
            elif kind == "states":
                declarations.extend(StateDecl(self.name(t), StateKind.NORMAL)
                                    for t in _tokens(statement)[1:])
            elif kind == "events":
                events = (events or []) + [self.name(t) for t in _tokens(statement)[1:]]
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
                       self.span(tokens[0]).to(self.span(tokens[-1])), tuple(moves))

    def move(self, tree: Tree[Token]) -> Move:
        keyword, source, _arrow, target = _tokens(tree)
        return Move(self.name(source), self.name(target),
                    self.span(keyword).to(self.span(target)))

    def declaration(self, tree: Tree[Token], kind: StateKind) -> StateDecl:
        tokens = [c for c in tree.children if isinstance(c, Token)]
        doc = self.string(tokens[2]) if len(tokens) > 2 else None
        return StateDecl(self.name(tokens[1]), kind, doc)

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

    def _second(self, what: str, keyword: Span, first: Span) -> Diagnostic:
        return make("E006", keyword,
                    f"a transition has at most one {what}; the first is at column {first.column}",
                    "combine the conditions in one predicate" if what == "guard"
                    else "combine the work in one action")


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
