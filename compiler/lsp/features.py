"""The editor features as pure functions of an `Analysis` (and, for positions, its
`PositionMap`): each returns lsprotocol values and never raises on any document."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from fsmc.compiler.diagrams.dot import header, to_dot
from fsmc.compiler.diagrams.render import dot_available, render
from fsmc.compiler.diagrams.view import machine_view
from fsmc.dsl.diagnostics import Diagnostic, Severity
from fsmc.dsl.formatter import format_text
from fsmc.dsl.lexer import KEYWORD_TOKENS
from fsmc.dsl.model import Machine, StateKind, Transition
from fsmc.dsl.printer import print_transition
from fsmc.dsl.spans import Span
from fsmc.dsl.syntax_examples import KEYWORDS
from lsprotocol import types

from .hooks import MethodFinder
from .index import Analysis, Occurrence, Role, declaration, transitions_of
from .positions import PositionMap

SOURCE = "fsmc"
SHOW_DIAGRAM = "fsmc.showDiagram"
DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_SEVERITIES = {Severity.ERROR: types.DiagnosticSeverity.Error,
               Severity.WARNING: types.DiagnosticSeverity.Warning}


class RenameRefused(ValueError):
    """A rename that would break the spec (the message says why)."""


# --- diagnostics ---------------------------------------------------------------------------

def diagnostics(analysis: Analysis, positions: PositionMap, uri: str) -> list[types.Diagnostic]:
    """`fsmc check`'s diagnostics: the same codes, ranges, messages; the hint on a line of its
    own after the message (and in `data` for the quick fix); the first declaration as related
    information of a duplicate, the suggested declaration for a misspelt name."""
    found = []
    for diagnostic, severity in analysis.diagnostics:
        message = diagnostic.message
        if diagnostic.hint:
            message += f"\nhint: {diagnostic.hint}"
        related = [types.DiagnosticRelatedInformation(
            location=types.Location(uri=uri, range=positions.range(span)), message=text)
            for span, text in _related(analysis, diagnostic)]
        found.append(types.Diagnostic(
            range=positions.range(diagnostic.span), message=message, code=diagnostic.code,
            severity=_SEVERITIES[severity], source=SOURCE,
            related_information=related or None,
            data={"hint": diagnostic.hint} if diagnostic.hint else None))
    return found


def _related(analysis: Analysis, diagnostic: Diagnostic) -> list[tuple[Span, str]]:
    spec = analysis.spec
    if spec is None:
        return []
    index = analysis.machine_at(diagnostic.span.line)
    machine = analysis.machine(index) if index is not None else None
    occurrence = analysis.at(diagnostic.span.line, diagnostic.span.column)
    if machine is None:
        return []
    name = occurrence.text if occurrence is not None else None
    code = diagnostic.code
    if code == "E103" and name is not None:
        first = declaration(machine, name)
        return [(first.name.span, f"`{name}` is first declared here")] if first else []
    if code == "E104" and name is not None:
        event = next((e for e in machine.events or () if e.text == name), None)
        return [(event.span, f"`{name}` is first declared here")] if event else []
    if code == "E106" and machine.initial is not None:
        return [(machine.initial.name.span, "the first initial state is declared here")]
    if code == "E107":
        first_machine = next(m for m in spec.machines if m.name.text == machine.name.text)
        return [(first_machine.name.span, f"`{machine.name.text}` is first declared here")]
    suggestion = DID_YOU_MEAN.search(diagnostic.hint or "")
    if code == "E101" and suggestion:
        target = declaration(machine, suggestion.group(1))
        return [(target.name.span, f"`{target.name.text}` is declared here")] if target else []
    if code == "E102" and suggestion:
        event = next((e for e in machine.events or () if e.text == suggestion.group(1)), None)
        return [(event.span, f"`{event.text}` is declared here")] if event else []
    return []


def code_actions(analysis: Analysis, positions: PositionMap, uri: str,
                 context: Iterable[types.Diagnostic]) -> list[types.CodeAction]:
    """A quick fix for every did-you-mean hint among the diagnostics of the request."""
    actions = []
    for diagnostic in context:
        hint = (diagnostic.data or {}).get("hint") if isinstance(diagnostic.data, dict) else None
        hint = hint or diagnostic.message
        match = DID_YOU_MEAN.search(hint or "")
        if diagnostic.source != SOURCE or match is None:
            continue
        replacement = match.group(1)
        edit = types.TextEdit(range=diagnostic.range, new_text=replacement)
        actions.append(types.CodeAction(
            title=f"Change to `{replacement}`", kind=types.CodeActionKind.QuickFix,
            diagnostics=[diagnostic], is_preferred=True,
            edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return actions


# --- hover, definition, references ---------------------------------------------------------

def _occurrence(analysis: Analysis, positions: PositionMap,
                position: types.Position) -> Occurrence | None:
    line, column = positions.from_client(position)
    return analysis.at(line + 1, column + 1)


def _arrow(transition: Transition) -> str:
    return f"{print_transition(transition)}  (line {transition.line})"


def _listing(title: str, transitions: list[Transition]) -> list[str]:
    if not transitions:
        return [f"{title}: none"]
    shown = [f"    {_arrow(t)}" for t in transitions[:20]]
    if len(transitions) > 20:
        shown.append(f"    ... and {len(transitions) - 20} more")
    return [f"{title} ({len(transitions)}):", "```fsm", *(s.strip() for s in shown), "```"]


def hover(analysis: Analysis, positions: PositionMap,
          position: types.Position) -> types.Hover | None:
    occurrence = _occurrence(analysis, positions, position)
    machine = analysis.machine(occurrence.machine) if occurrence else None
    if occurrence is None or machine is None:
        return None
    lines = _hover_lines(machine, occurrence)
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                                    value="\n".join(lines)),
                       range=positions.range(occurrence.span))


def _hover_lines(machine: Machine, occurrence: Occurrence) -> list[str]:
    name = occurrence.text
    if occurrence.role is Role.MACHINE:
        lines = [f"**machine** `{name}`"]
        if machine.doc:
            lines += ["", machine.doc]
        counts = (f"{len(machine.states)} states, {len(machine.event_names)} events, "
                  f"{len(machine.transitions)} transitions")
        return [*lines, "", counts]
    if occurrence.role is Role.STATE:
        decl = declaration(machine, name)
        if decl is None:
            return [f"**state** `{name}` (not declared)"]
        kind = "" if decl.kind is StateKind.NORMAL else f" ({decl.kind.value})"
        lines = [f"**state** `{name}`{kind} of `{machine.name.text}`"]
        if decl.doc:
            lines += ["", decl.doc]
        lines += ["", f"Declared on line {decl.name.span.line}.", ""]
        incoming = _unique(t for t in machine.transitions if t.target.text == name)
        outgoing = _unique(t for t in machine.transitions if t.source.text == name)
        return lines + _listing("In", incoming) + [""] + _listing("Out", outgoing)
    role = occurrence.role.value
    lines = [f"**{role}** `{name}` of `{machine.name.text}`"]
    if occurrence.role is Role.EVENT and machine.events is not None:
        declared = next((e for e in machine.events if e.text == name), None)
        lines += ["", f"Declared on line {declared.span.line}." if declared else "Not declared."]
    return [*lines, "", *_listing("Transitions", transitions_of(machine, occurrence))]


def _unique(transitions: Iterable[Transition]) -> list[Transition]:
    seen: dict[object, Transition] = {}
    for transition in transitions:
        seen.setdefault((transition.span, transition.source.text), transition)
    return list(seen.values())


def definition(analysis: Analysis, positions: PositionMap, uri: str, position: types.Position,
               finder: MethodFinder, roots: list[Path]) -> list[types.Location]:
    """A state or event: its declaration. A guard or action: the method implementing it in a
    subclass of the generated class under the workspace (else the generated default)."""
    occurrence = _occurrence(analysis, positions, position)
    machine = analysis.machine(occurrence.machine) if occurrence else None
    if occurrence is None or machine is None:
        return []
    if occurrence.role in (Role.GUARD, Role.ACTION):
        methods = finder.find(roots, machine.name.text, occurrence.text)
        return [types.Location(uri=method.path.resolve().as_uri(), range=types.Range(
            start=types.Position(line=method.line - 1, character=method.column - 1),
            end=types.Position(line=method.line - 1,
                               character=method.column - 1 + len(occurrence.text))))
            for method in methods]
    declarations = [o for o in analysis.same_name(occurrence) if o.declares]
    return [types.Location(uri=uri, range=positions.range(o.span)) for o in declarations[:1]]


def references(analysis: Analysis, positions: PositionMap, uri: str, position: types.Position,
               include_declaration: bool) -> list[types.Location]:
    occurrence = _occurrence(analysis, positions, position)
    if occurrence is None:
        return []
    return [types.Location(uri=uri, range=positions.range(o.span))
            for o in analysis.same_name(occurrence) if include_declaration or not o.declares]


def highlights(analysis: Analysis, positions: PositionMap,
               position: types.Position) -> list[types.DocumentHighlight]:
    occurrence = _occurrence(analysis, positions, position)
    if occurrence is None:
        return []
    return [types.DocumentHighlight(range=positions.range(o.span),
                                    kind=types.DocumentHighlightKind.Write if o.declares
                                    else types.DocumentHighlightKind.Read)
            for o in analysis.same_name(occurrence)]


# --- rename --------------------------------------------------------------------------------

def prepare_rename(analysis: Analysis, positions: PositionMap,
                   position: types.Position) -> types.PrepareRenamePlaceholder | None:
    occurrence = _occurrence(analysis, positions, position)
    if occurrence is None or occurrence.role not in (Role.STATE, Role.EVENT):
        return None
    return types.PrepareRenamePlaceholder(range=positions.range(occurrence.span),
                                          placeholder=occurrence.text)


def rename(analysis: Analysis, positions: PositionMap, uri: str, position: types.Position,
           new_name: str) -> types.WorkspaceEdit | None:
    """Rename a state or event everywhere in its machine. Raises `RenameRefused` for a name
    that is not an identifier, a keyword, or already a state (event) of the machine."""
    occurrence = _occurrence(analysis, positions, position)
    machine = analysis.machine(occurrence.machine) if occurrence else None
    if occurrence is None or machine is None:
        return None
    if occurrence.role not in (Role.STATE, Role.EVENT):
        raise RenameRefused(f"only states and events can be renamed, not a {occurrence.role.value}")
    if not NAME.match(new_name):
        raise RenameRefused(f"`{new_name}` is not a name: use letters, digits and `_`, "
                            "not starting with a digit")
    if new_name in KEYWORDS or (new_name in KEYWORD_TOKENS and new_name != "entry"):
        raise RenameRefused(f"`{new_name}` is a keyword and cannot be used as a name")
    existing = machine.state_names if occurrence.role is Role.STATE else machine.event_names
    if new_name in existing and new_name != occurrence.text:
        raise RenameRefused(f"`{new_name}` is already a {occurrence.role.value} of "
                            f"`{machine.name.text}`")
    edits = [types.TextEdit(range=positions.range(o.span), new_text=new_name)
             for o in analysis.same_name(occurrence)]
    return types.WorkspaceEdit(changes={uri: edits})


# --- completion ----------------------------------------------------------------------------

_AFTER_HOOK = re.compile(r"\b(if|unless|do)\s+\w*\Z")
_AFTER_COLON = re.compile(r"->\s*\w+\s*:\s*\w*\Z")
_AFTER_ARROW = re.compile(r"->\s*\w*\Z")
_IN_TAGS = re.compile(r"\[[^\]]*\Z")
_DECLARING = re.compile(r"^\s*(initial|entry|final|state|states|events)\s[^#]*\Z")
STATEMENT_KEYWORDS = ("initial", "entry", "final", "state", "states", "events")
CLAUSE_KEYWORDS = ("if", "unless", "do")


def completion(analysis: Analysis, names: Analysis, positions: PositionMap,
               position: types.Position) -> list[types.CompletionItem]:
    """What may be typed at `position`, judged from the text before it on its line: states
    after `->` or at the start of a transition, events after `:`, guard and action names after
    `if`/`unless`/`do`, keywords where a statement or clause may start. `names` is the latest
    analysis that parsed (while typing, the current text often does not)."""
    line, column = positions.from_client(position)
    before = positions.line(line)[:column]
    index = names.machine_at(line + 1)
    machine = names.machine(index) if index is not None else None
    states = list(machine.state_names) if machine else []
    events = list(machine.event_names) if machine else []
    hooks = sorted({t.guard.name.text for t in machine.transitions if t.guard} |
                   {t.action.name.text for t in machine.transitions if t.action}) if machine \
        else []
    tags = sorted({tag for t in machine.transitions for tag in t.tag_names}) if machine else []

    def items(values: Iterable[str], kind: types.CompletionItemKind,
              detail: str) -> list[types.CompletionItem]:
        return [types.CompletionItem(label=v, kind=kind, detail=detail) for v in values]

    state, event = types.CompletionItemKind.EnumMember, types.CompletionItemKind.Event
    if "#" in before or before.count('"') % 2:
        return []
    if _IN_TAGS.search(before):
        return items(tags, types.CompletionItemKind.Constant, "tag")
    if _AFTER_HOOK.search(before):
        return items(hooks, types.CompletionItemKind.Method, "guard or action")
    if _AFTER_COLON.search(before):
        return items(events, event, "event")
    if _AFTER_ARROW.search(before):
        return items(states, state, "state")
    if re.search(r":\s*\w+\s+(\w*)\Z", before) or re.search(r"\]\s*\w*\Z", before):
        return items(CLAUSE_KEYWORDS, types.CompletionItemKind.Keyword, "clause")
    if _DECLARING.match(before):
        return items(events, event, "event") if before.lstrip().startswith("events") else []
    if machine is None:
        return items(["machine"], types.CompletionItemKind.Keyword, "keyword")
    return (items(STATEMENT_KEYWORDS, types.CompletionItemKind.Keyword, "keyword")
            + items(states, state, "state") + items(["*"], state, "every non-final state"))


# --- symbols, lenses, formatting, diagrams -------------------------------------------------

def symbols(analysis: Analysis, positions: PositionMap) -> list[types.DocumentSymbol]:
    """Machines, with their states and events as children."""
    found = []
    for index, machine in enumerate(analysis.spec.machines if analysis.spec else ()):
        children = []
        for decl in machine.states:
            children.append(types.DocumentSymbol(
                name=decl.name.text, detail=decl.kind.value, kind=types.SymbolKind.EnumMember,
                range=positions.range(decl.name.span),
                selection_range=positions.range(decl.name.span)))
        for event in analysis.occurrences:
            if event.machine == index and event.role is Role.EVENT and (
                    event.declares or machine.events is None) and not any(
                    c.name == event.text and c.kind == types.SymbolKind.Event for c in children):
                children.append(types.DocumentSymbol(
                    name=event.text, detail="event", kind=types.SymbolKind.Event,
                    range=positions.range(event.span), selection_range=positions.range(event.span)))
        whole = machine.span or machine.name.span
        found.append(types.DocumentSymbol(
            name=machine.name.text, detail=machine.doc or "", kind=types.SymbolKind.Class,
            range=positions.range(whole), selection_range=positions.range(machine.name.span),
            children=children))
    return found


def code_lenses(analysis: Analysis, positions: PositionMap, uri: str) -> list[types.CodeLens]:
    """"Show diagram" above each machine."""
    return [types.CodeLens(range=positions.range(machine.name.span), command=types.Command(
        title="Show diagram", command=SHOW_DIAGRAM, arguments=[uri, machine.name.text]))
        for machine in (analysis.spec.machines if analysis.spec else ())]


def formatting(text: str, positions: PositionMap) -> list[types.TextEdit]:
    """`fsmc fmt` of the document as one edit; none when it has errors or is formatted."""
    result = format_text(text)
    if result.text is None or result.text == text:
        return []
    return [types.TextEdit(range=positions.whole(), new_text=result.text)]


def diagram(analysis: Analysis, machine_name: str, folder: Path) -> Path:
    """Write the machine's diagram into `folder` (SVG with Graphviz, else DOT); its path.
    Raises ValueError when the document has errors or no such machine."""
    spec = analysis.spec
    if spec is None or any(s is Severity.ERROR for _, s in analysis.diagnostics):
        raise ValueError("the spec has errors: fix them to draw its diagram")
    machine = next((m for m in spec.machines if m.name.text == machine_name), None)
    if machine is None:
        raise ValueError(f"no machine named {machine_name}")
    dot = to_dot([machine_view(machine, [d for d, _ in analysis.diagnostics])],
                 comment=header(Path(analysis.path).name))
    folder.mkdir(parents=True, exist_ok=True)
    if dot_available():
        path = folder / f"{machine_name}.svg"
        path.write_bytes(render(dot, "svg"))
    else:
        path = folder / f"{machine_name}.dot"
        path.write_text(dot, "utf-8")
    return path
