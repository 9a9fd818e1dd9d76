"""Diagnostics as text (for people) and JSON (for editors and CI).

Text follows the compilers people know: `path:line:col: error[CODE]: message`, the source line,
a caret line under the span, then an optional `hint:`. Colour only when asked (on a terminal).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from fsmc.dsl.diagnostics import Diagnostic, Severity, trace_text
from fsmc.dsl.spans import SourceText

_COLOURS = {Severity.ERROR: "\x1b[1;31m", Severity.WARNING: "\x1b[1;33m"}
_BOLD, _BLUE, _RESET = "\x1b[1m", "\x1b[1;34m", "\x1b[0m"

SourceLookup = Callable[[str], SourceText | None]


def format_text(diagnostic: Diagnostic, severity: Severity, source: SourceText | None, *,
                colour: bool = False) -> str:
    span = diagnostic.span
    level = severity.value
    where = f"{span.path}:{span.line}:{span.column}:"
    head = f"{where} {level}[{diagnostic.code}]: {diagnostic.message}"
    if colour:
        head = (f"{_BOLD}{span.path}:{span.line}:{span.column}:{_RESET} {_COLOURS[severity]}"
                f"{level}[{diagnostic.code}]{_RESET}: {_BOLD}{diagnostic.message}{_RESET}")
    lines = [head]
    if source is not None and 1 <= span.line <= source.line_count:
        text = source.line_text(span.line)
        # The caret line copies tabs from the source so it stays aligned in any tab width.
        lead = "".join("\t" if c == "\t" else " " for c in text[: span.column - 1])
        end = span.end_column if span.end_line == span.line else len(text) + 1
        width = max(1, end - span.column)
        marker = "^" + "~" * (width - 1)
        gutter = f"{span.line:>4} | "
        lines.append(gutter + _printable(text))
        caret = " " * (len(gutter) - 2) + "| " + lead + marker
        lines.append(f"{_COLOURS[severity]}{caret}{_RESET}" if colour else caret)
    if diagnostic.trace:
        label = f"{_BLUE}counterexample{_RESET}" if colour else "counterexample"
        lines.append(f"     = {label}: {trace_text(diagnostic.trace)}")
    if diagnostic.hint:
        hint = f"{_BLUE}hint{_RESET}" if colour else "hint"
        lines.append(f"     = {hint}: {diagnostic.hint}")
    return "\n".join(lines)


def _printable(text: str) -> str:
    """Control characters would garble a terminal; show them as `?` (same column count)."""
    return "".join(c if c == "\t" or c.isprintable() else "?" for c in text)


def render_text(diagnostics: Sequence[Diagnostic], severity: Callable[[Diagnostic], Severity],
                sources: SourceLookup, *, colour: bool = False) -> str:
    blocks = [format_text(d, severity(d), sources(d.span.path), colour=colour)
              for d in diagnostics]
    return "\n".join(blocks)


def summary(diagnostics: Sequence[Diagnostic], severity: Callable[[Diagnostic], Severity],
            files: int) -> str:
    errors = sum(1 for d in diagnostics if severity(d) is Severity.ERROR)
    warnings = len(diagnostics) - errors
    checked = f"{files} file{'s' if files != 1 else ''} checked"
    if not diagnostics:
        return f"{checked}: no problems"
    parts = [f"{errors} error{'s' if errors != 1 else ''}"] if errors else []
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{checked}: {', '.join(parts)}"


def to_json(diagnostic: Diagnostic, severity: Severity) -> dict[str, object]:
    """The contract's nine keys; a refuted assertion adds `counterexample`, its path as a list
    of `{"state", "event"}` steps (`event` null on the last)."""
    span = diagnostic.span
    found: dict[str, object] = {
        "path": span.path, "line": span.line, "column": span.column,
        "end_line": span.end_line, "end_column": span.end_column,
        "severity": severity.value, "code": diagnostic.code, "message": diagnostic.message,
        "hint": diagnostic.hint}
    if diagnostic.trace is not None:
        found["counterexample"] = [{"state": step.state, "event": step.event}
                                   for step in diagnostic.trace]
    return found


def render_json(diagnostics: Sequence[Diagnostic],
                severity: Callable[[Diagnostic], Severity]) -> str:
    return json.dumps([to_json(d, severity(d)) for d in diagnostics], indent=2,
                      ensure_ascii=False)
