"""Model → Python source: one module per spec file, rendered from `templates/module.py.j2`.

Emitting is a pure function. `module_view` computes everything the template needs (names,
tables, docstrings) so the template holds no logic; every value that lands in Python source goes
through `pyliteral` (a double-quoted literal, inert whatever the text) or `ident` (a validated
identifier), so a hostile doc string cannot become code.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import jinja2
from fsmc.dsl.loader import paused_gc
from fsmc.dsl.model import Machine, SpecFile, StateKind, Transition
from fsmc.runtime.errors import FsmcError

from .naming import is_identifier, snake_case

LINE_LIMIT = 100


class EmitError(FsmcError):
    """The emitter was given a model the analyses should have rejected (a bug in fsmc)."""


@dataclass(frozen=True)
class StateView:
    name: str
    kind: str
    line: int
    doc: str | None


@dataclass(frozen=True)
class RowView:
    source: str
    candidates: tuple[TransitionView, ...]


@dataclass(frozen=True)
class EventView:
    name: str
    method: str
    constant: str
    doc: str
    rows: tuple[RowView, ...]

    @property
    def plain_rows(self) -> tuple[RowView, ...]:
        """Sources whose only candidate has no guard and no action: the fast path's table."""
        return tuple(row for row in self.rows if len(row.candidates) == 1
                     and row.candidates[0].guard is None and row.candidates[0].action is None)


@dataclass(frozen=True)
class HookView:
    name: str
    is_guard: bool
    doc: str
    error: str


@dataclass(frozen=True)
class TransitionView:
    source: str
    event: str
    target: str
    guard: str | None
    negated: bool
    action: str | None
    tags: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class AllowedView:
    state: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class MachineView:
    name: str
    doc: str
    states: tuple[StateView, ...]
    events: tuple[EventView, ...]
    hooks: tuple[HookView, ...]
    initial: str
    finals: tuple[str, ...]
    entries: tuple[str, ...]
    transitions: tuple[TransitionView, ...]
    allowed: tuple[AllowedView, ...]

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)


@dataclass(frozen=True)
class ModuleView:
    source: str
    doc: str
    machines: tuple[MachineView, ...]

    @property
    def exports(self) -> list[str]:
        return [m.name for m in self.machines]


def module_view(spec: SpecFile, source: str) -> ModuleView:
    """Everything the template needs for one spec file; `source` is the path shown in the
    generated code (relative, so output does not depend on where the build ran)."""
    with paused_gc():  # see `paused_gc`: a big model would make every collection traverse it
        constants = _Constants()
        machines = tuple(machine_view(m, source, constants) for m in spec.machines)
    names = ", ".join(m.name for m in machines)
    return ModuleView(source, f"State machines generated from {source}: {names}.", machines)


class _Constants:
    """The module-level names of the event tables, `_<MACHINE>_<EVENT>` plus `_PLAIN` and
    `_POST`: unique in the module, where `Foo`.`BarBaz` and `FooBar`.`Baz`, or the events `X`
    and `XPlain`, would otherwise share one."""

    SUFFIXES = ("", "_PLAIN", "_POST")

    def __init__(self) -> None:
        self.taken = {"_get_ident", "_waiting", "_wake"}

    def name(self, machine: str, event: str) -> str:
        base = f"_{snake_case(machine).upper()}_{snake_case(event).upper()}"
        candidate, number = base, 1
        while any(candidate + suffix in self.taken for suffix in self.SUFFIXES):
            number += 1
            candidate = f"{base}_{number}"
        self.taken.update(candidate + suffix for suffix in self.SUFFIXES)
        return candidate


def machine_view(machine: Machine, source: str, constants: _Constants | None = None
                 ) -> MachineView:
    initial = machine.initial
    if initial is None:
        raise EmitError(f"machine {machine.name.text} has no initial state")
    events = machine.event_names
    constants = constants or _Constants()
    transitions = tuple(_transition_view(t) for t in machine.transitions)
    by_event: dict[str, list[TransitionView]] = {name: [] for name in events}
    for view in transitions:  # one pass: a big machine is read once, not once per event
        by_event.setdefault(view.event, []).append(view)
    return MachineView(
        name=machine.name.text,
        doc=machine.doc if machine.doc is not None else f"The {machine.name.text} lifecycle.",
        states=tuple(StateView(d.name.text, d.kind.value, d.name.span.line, d.doc)
                     for d in machine.states),
        events=tuple(_event_view(name, constants.name(machine.name.text, name), by_event[name])
                     for name in events),
        hooks=_hook_views(machine, source),
        initial=initial.name.text,
        finals=tuple(d.name.text for d in machine.finals),
        entries=tuple(d.name.text for d in machine.states if d.kind is StateKind.ENTRY),
        transitions=transitions,
        allowed=_allowed(machine, events),
    )


def _transition_view(t: Transition) -> TransitionView:
    return TransitionView(t.source.text, t.event.text, t.target.text,
                          t.guard.name.text if t.guard else None,
                          bool(t.guard and t.guard.negated),
                          t.action.name.text if t.action else None, t.tag_names, t.line)


def _event_view(event: str, constant: str, views: list[TransitionView]) -> EventView:
    """`views`: the event's transitions, in spec order."""
    rows: dict[str, list[TransitionView]] = {}
    lines: list[str] = []
    for view in views:
        rows.setdefault(view.source, []).append(view)
        lines.append(f"{view.source} -> {view.target}{_clauses(view)}  (line {view.line})")
    if lines:
        doc = f"Fire `{event}`:\n\n" + "\n".join(f"- {line}" for line in lines)
    else:
        doc = f"Fire `{event}`: declared, but no transition uses it (always invalid)."
    return EventView(event, snake_case(event), constant, doc,
                     tuple(RowView(s, tuple(c)) for s, c in rows.items()))


def _clauses(view: TransitionView) -> str:
    text = ""
    if view.guard:
        text += f" {'unless' if view.negated else 'if'} {view.guard}"
    if view.action:
        text += f" do {view.action}"
    if view.tags:
        text += f" [{', '.join(view.tags)}]"
    return text


def _hook_views(machine: Machine, source: str) -> tuple[HookView, ...]:
    first_line: dict[str, int] = {}
    is_guard: dict[str, bool] = {}
    for t in machine.transitions:
        if t.guard is not None:
            first_line.setdefault(t.guard.name.text, t.guard.name.span.line)
            is_guard[t.guard.name.text] = True
        if t.action is not None:
            first_line.setdefault(t.action.name.text, t.action.name.span.line)
            is_guard.setdefault(t.action.name.text, False)
    views = []
    for name, line in first_line.items():
        kind = "a guard" if is_guard[name] else "an action"
        where = f"{source}:{line}"
        views.append(HookView(
            name, is_guard[name], f"The {kind[kind.index(' ') + 1:]} `{name}` ({where}); "
            "override it in a subclass.",
            f"{machine.name.text}.{name} is {kind} declared at {where}: subclass "
            f"{machine.name.text} and implement it"))
    return tuple(sorted(views, key=lambda v: v.name))


def _allowed(machine: Machine, events: Sequence[str]) -> tuple[AllowedView, ...]:
    by_state: dict[str, set[str]] = {}
    for t in machine.transitions:
        by_state.setdefault(t.source.text, set()).add(t.event.text)
    return tuple(AllowedView(state, tuple(e for e in events if e in by_state[state]))
                 for state in machine.state_names if state in by_state)


# -- rendering ------------------------------------------------------------------------------

# `json.dumps(text, ensure_ascii=False)` without building an encoder on every call.
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def pyliteral(value: object) -> str:
    """A Python literal for str / None / bool / int / tuple of those. Strings are written
    double-quoted with every special character escaped, so no text can escape the literal, and
    with every character that is not printable escaped too (`\\u2028`, `\\x7f`), so that the
    literal is one line for every tool that reads the module (editors split lines where
    `str.splitlines` does, Python's tokenizer only at `\\n` and `\\r`)."""
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, str):
        literal = _json_string(value)  # escapes `"`, `\\` and the C0 controls
        return literal if literal.isprintable() else "".join(map(_printable, literal))
    if isinstance(value, tuple):
        items = [pyliteral(v) for v in value]
        return "(" + (items[0] + "," if len(items) == 1 else ", ".join(items)) + ")"
    raise EmitError(f"cannot write {type(value).__name__} as a Python literal")


def _printable(char: str) -> str:
    """`char` itself, or the Python escape of a character that is not printable."""
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def ident(value: object) -> str:
    """A name that is written as code: it must be a plain identifier and not a keyword."""
    text = str(value)
    if not _is_plain_name(text):
        raise EmitError(f"{text!r} cannot be written as a Python name")
    return text


def _is_plain_name(text: str) -> bool:  # C calls only: no cache (a bounded one thrashed)
    return is_identifier(text) and not keyword.iskeyword(text)


def docstring(value: object, indent: int = 4, *, exact: bool = False) -> str:
    """A triple-quoted docstring when the text is plain, else a safe literal (`pyliteral`).
    `exact`: `__doc__` must be the text itself (a spec's doc string), so text of several lines
    is a literal: lines indented in the source would be indented in `__doc__` (Python 3.13
    strips them again, along with the text's own indentation)."""
    text = str(value)
    plain = text.replace("\n", "").isprintable() and "\\" not in text
    if not plain or '"""' in text or text.endswith('"') or not text.strip():
        return pyliteral(text)
    lines = text.split("\n")
    pad = " " * indent
    if len(lines) == 1:
        # A line too long becomes a literal, which `_fit_lines` can cut into pieces.
        return f'"""{text}"""' if indent + len(text) + 6 <= LINE_LIMIT else pyliteral(text)
    if exact or any(len(pad) + len(line) > LINE_LIMIT for line in lines):
        return pyliteral(text)
    body = "\n".join((pad + line) if line else "" for line in lines[1:])
    return f'"""{lines[0]}\n{body}\n{pad}"""'


def comment(value: object) -> str:
    """Text for a `#` comment: one line, printable characters only."""
    return "".join(c if c.isprintable() else "?" for c in str(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fsmc.compiler", "templates"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    env.filters.update(pyliteral=pyliteral, ident=ident, comment=comment, docstring=docstring)
    return env


def template() -> jinja2.Template:
    """The module template, compiled on first use in each process (a build compiles it before
    it forks its workers, so that they share it)."""
    return environment().get_template("module.py.j2")


def render_module(view: ModuleView, version: str) -> str:
    with paused_gc():
        return _fit_lines(template().render(module=view, version=version))


_NOQA = "  # noqa: E501"


def _fit_lines(text: str) -> str:
    """Wrap the long one-line calls of the template; mark the rare line that cannot be
    shortened (a very long spec name) for the linter rather than break it."""
    out: list[str] = []
    # Split where Python's tokenizer does; `str.splitlines` also splits at U+2028, U+0085...
    for line in text.removesuffix("\n").split("\n"):
        if len(line) <= LINE_LIMIT:
            out.append(line)
            continue
        out.extend(_wrap_string(line) or _wrap_call(line))
    return "\n".join(o if len(o) <= LINE_LIMIT or o.endswith(_NOQA) else o + _NOQA
                     for o in out) + "\n"


_LITERAL = r'"(?:[^"\\]|\\.)*"'
# `    f(a, b),  # note`, `    key=(a, b),`, `    A.B: (a, b),`, `    "A": (a, b),`
# `class A(Base[...]):`, `NAME: dict[A, B] = {`
_CALL_LINE = re.compile(
    rf"^(\s*)([A-Za-z_][\w.]*\s*[=:]\s*|{_LITERAL}:\s*|(?:class )?[A-Za-z_][\w.]*)?"
    r"\((.*)\)([,:]?)(  # .*)?$")
_ANNOTATED_LINE = re.compile(r"^([A-Za-z_]\w*: [A-Za-z_][\w.]*)\[(.*)\]( = \{)$")
# `    "text"`, `    doc="text",`, `    "A": "text",`
_STRING_LINE = re.compile(rf"^(\s*)((?:[A-Za-z_]\w*=|{_LITERAL}: )?)({_LITERAL})(,?)$")
# The characters and escapes of a literal written by `pyliteral`: a cut goes between two.
_LITERAL_PIECE = re.compile(r"\\U[0-9a-f]{8}|\\u[0-9a-f]{4}|\\x[0-9a-f]{2}|\\.|[^\\]")


def _wrap_string(line: str) -> list[str] | None:
    """A long string literal → implicitly concatenated pieces in parentheses (the same string,
    a docstring still), cut after a space where one is near."""
    match = _STRING_LINE.match(line)
    if match is None:
        return None
    indent, opening, literal, comma = match.groups()
    inner = indent + "    "
    room = max(LINE_LIMIT - len(inner) - 2, 20)
    pieces: list[str] = []
    current: list[str] = []
    width = 0
    for piece in _LITERAL_PIECE.findall(literal[1:-1]):
        if current and width + len(piece) > room:
            spaces = [i for i, p in enumerate(current) if p == " "]
            cut = spaces[-1] + 1 if spaces and spaces[-1] >= len(current) // 2 else len(current)
            pieces.append("".join(current[:cut]))
            current = current[cut:]
            width = sum(map(len, current))
        current.append(piece)
        width += len(piece)
    pieces.append("".join(current))
    return [f"{indent}{opening}(", *(f'{inner}"{p}"' for p in pieces), f"{indent}){comma}"]


def _wrap_call(line: str) -> list[str]:
    """`    f(a, b, c),  # note` or `    key=(a, b),` → the arguments packed on indented lines."""
    match = _CALL_LINE.match(line)
    if match is None:
        annotated = _ANNOTATED_LINE.match(line)
        if annotated is None:
            return [line]
        head, body, tail = annotated.groups()
        return [f"{head}[", f"    {body},", f"]{tail}"]
    indent, opening, body, comma, note = match.groups()
    arguments = _split_arguments(body)
    if arguments is None:
        return [line]
    inner = indent + "    "
    lines = [f"{indent}{opening or ''}(" + (note or "")]
    current = inner
    for argument in arguments:
        piece = f"{argument},"
        if current != inner and len(current) + 1 + len(piece) > LINE_LIMIT:
            lines.append(current)
            current = inner
        current += piece if current == inner else " " + piece
    lines.append(current)
    lines.append(f"{indent}){comma}")
    return lines


def _split_arguments(body: str) -> list[str] | None:
    """Split a call's arguments at top-level commas (strings and brackets respected)."""
    arguments: list[str] = []
    depth, start, index, quoted = 0, 0, 0, False
    while index < len(body):
        char = body[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(body[start:index].strip())
            start = index + 1
        index += 1
    if quoted or depth:
        return None
    last = body[start:].strip()
    if last:
        arguments.append(last)
    return arguments
