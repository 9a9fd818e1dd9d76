"""Parse tree → model. Never raises on user input: problems become diagnostics.

The builder checks what only it can see (keywords used as names, bad string escapes, a second
guard or action on one transition), expands `*` and multi-source transitions, and leaves every
other judgement (undeclared names, duplicates, graph properties) to the analyses.
"""

from __future__ import annotations

from collections.abc import Iterator

from lark import Token, Tree

from .diagnostics import Diagnostic, make
from .model import Action, Guard, Machine, Name, SpecFile, StateDecl, StateKind, Transition
from .spans import SourceText, Span
from .syntax_examples import KEYWORDS

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_DECLARATION_KINDS = {
    "initial": StateKind.INITIAL, "entry": StateKind.ENTRY, "final": StateKind.FINAL,
    "state": StateKind.NORMAL,
}


def build(tree: Tree[Token], source: SourceText) -> tuple[SpecFile, list[Diagnostic]]:
    """Turn a successful parse into a `SpecFile` plus the builder's diagnostics."""
    builder = _Builder(source)
    machines = tuple(builder.machine(child) for child in tree.children if isinstance(child, Tree))
    return SpecFile(source, machines), builder.diagnostics


def token_span(path: str, token: Token) -> Span:
    line = token.line or 1
    column = token.column or 1
    return Span(path, line, column, token.end_line or line, token.end_column or column + 1)


class _Builder:
    def __init__(self, source: SourceText) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def span(self, token: Token) -> Span:
        return token_span(self.source.path, token)

    def name(self, token: Token) -> Name:
        name = Name(str(token), self.span(token))
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

    def machine(self, tree: Tree[Token]) -> Machine:
        tokens = [c for c in tree.children if isinstance(c, Token)]
        name = self.name(tokens[1])
        doc = self.string(tokens[2]) if len(tokens) > 2 and tokens[2].type == "STRING" else None
        declarations: list[StateDecl] = []
        events: list[Name] | None = None
        raw_transitions: list[Tree[Token]] = []
        for statement in (c for c in tree.children if isinstance(c, Tree)):
            kind = statement.data
            if kind in _DECLARATION_KINDS:
                declarations.append(self.declaration(statement, _DECLARATION_KINDS[str(kind)]))
            elif kind == "states":
                declarations.extend(StateDecl(self.name(t), StateKind.NORMAL)
                                    for t in _names(statement))
            elif kind == "events":
                events = (events or []) + [self.name(t) for t in _names(statement)]
            else:
                raw_transitions.append(statement)
        finals = {d.name.text for d in declarations if d.kind is StateKind.FINAL}
        non_final = [d.name for d in _first_declarations(declarations) if d.name.text not in finals]
        transitions = tuple(t for raw in raw_transitions for t in self.transition(raw, non_final))
        return Machine(name, doc, tuple(declarations), transitions,
                       None if events is None else tuple(events),
                       self.span(tokens[0]).to(self.span(tokens[-1])))

    def declaration(self, tree: Tree[Token], kind: StateKind) -> StateDecl:
        tokens = [c for c in tree.children if isinstance(c, Token)]
        doc = self.string(tokens[2]) if len(tokens) > 2 else None
        return StateDecl(self.name(tokens[1]), kind, doc)

    def transition(self, tree: Tree[Token], non_final: list[Name]) -> Iterator[Transition]:
        sources_tree, _arrow, target_token, _colon, event_token, *clauses = tree.children
        assert isinstance(sources_tree, Tree) and isinstance(target_token, Token)
        assert isinstance(event_token, Token)
        first = sources_tree.children[0]
        assert isinstance(first, Token)
        target, event = self.name(target_token), self.name(event_token)
        guard, action, tags = self.clauses([c for c in clauses if isinstance(c, Tree)])
        last = _last_token(tree)
        span = self.span(first).to(self.span(last))
        if first.type == "STAR":
            star = self.span(first)
            # `*` stands for every non-final state; each expansion points at the `*`.
            sources = [Name(name.text, star) for name in non_final]
        else:
            sources = [self.name(t) for t in sources_tree.children if isinstance(t, Token)]
        for source in sources:
            yield Transition(source, target, event, guard, action, tuple(tags),
                             via_star=first.type == "STAR", span=span)

    def clauses(self, clauses: list[Tree[Token]]) -> tuple[Guard | None, Action | None, list[Name]]:
        guard: Guard | None = None
        action: Action | None = None
        tags: list[Name] = []
        for clause in clauses:
            tokens = [c for c in clause.children if isinstance(c, Token)]
            if clause.data == "tags":
                tags.extend(self.name(t) for t in tokens if t.type == "NAME")
                continue
            keyword, name = self.span(tokens[0]), self.name(tokens[1])
            if clause.data == "guard":
                if guard is not None:
                    self.diagnostics.append(self._second("guard", keyword, guard.keyword))
                    continue
                guard = Guard(name, tokens[0].type == "UNLESS", keyword)
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


def _names(tree: Tree[Token]) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token) and c.type == "NAME"]


def _first_declarations(declarations: list[StateDecl]) -> list[StateDecl]:
    seen: dict[str, StateDecl] = {}
    for decl in declarations:
        seen.setdefault(decl.name.text, decl)
    return list(seen.values())


def _last_token(tree: Tree[Token]) -> Token:
    last = tree.children[-1]
    while isinstance(last, Tree):
        last = last.children[-1]
    return last
