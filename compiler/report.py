"""Diagnostics as text (for people) and JSON (for editors and CI).

Text follows the compilers people know: `path:line:col: error[CODE]: message`, the source line,
a caret line under the span, then an optional `hint:` and a `note:` (with its line) for each
related place. Colour only when asked (on a terminal).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from fsmc.dsl.diagnostics import Diagnostic, Severity, trace_text
from fsmc.dsl.spans import SourceText, Span

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
    lines = [head, *_quote(span, source, _COLOURS[severity] if colour else None)]
    if diagnostic.trace:
        label = f"{_BLUE}counterexample{_RESET}" if colour else "counterexample"
        lines.append(f"     = {label}: {trace_text(diagnostic.trace)}")
    if diagnostic.hint:
        hint = f"{_BLUE}hint{_RESET}" if colour else "hint"
        lines.append(f"     = {hint}: {diagnostic.hint}")
    for related in diagnostic.related:
        other = related.span
        note = f"{_BLUE}note{_RESET}" if colour else "note"
        lines.append(f"{other.path}:{other.line}:{other.column}: {note}: {related.message}")
        lines.extend(_quote(other, source if other.path == span.path else None,
                            _BLUE if colour else None))
    return "\n".join(lines)


def _quote(span: Span, source: SourceText | None, colour: str | None) -> list[str]:
    """The source line of `span` and a caret line under it (nothing without the source)."""
    if source is None or not 1 <= span.line <= source.line_count:
        return []
    text = source.line_text(span.line)
    # The caret line copies tabs from the source so it stays aligned in any tab width.
    lead = "".join("\t" if c == "\t" else " " for c in text[: span.column - 1])
    end = span.end_column if span.end_line == span.line else len(text) + 1
    width = max(1, end - span.column)
    marker = "^" + "~" * (width - 1)
    gutter = f"{span.line:>4} | "
    caret = " " * (len(gutter) - 2) + "| " + lead + marker
    return [gutter + _printable(text), f"{colour}{caret}{_RESET}" if colour else caret]


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


def span_json(span: Span) -> dict[str, object]:
    return {"path": span.path, "line": span.line, "column": span.column,
            "end_line": span.end_line, "end_column": span.end_column}


def to_json(diagnostic: Diagnostic, severity: Severity) -> dict[str, object]:
    """One diagnostic as a JSON object: the contract's nine keys, then `related` (a list of
    the other places the finding concerns, each a span and a `message`; empty for most), and
    for a refuted assertion `counterexample`, its path as a list of `{"state", "event"}`
    steps (`event` null on the last). Fields of earlier versions keep their names and
    meaning."""
    found: dict[str, object] = {
        **span_json(diagnostic.span),
        "severity": severity.value, "code": diagnostic.code, "message": diagnostic.message,
        "hint": diagnostic.hint,
        "related": [{**span_json(r.span), "message": r.message} for r in diagnostic.related]}
    if diagnostic.trace is not None:
        found["counterexample"] = [{"state": step.state, "event": step.event}
                                   for step in diagnostic.trace]
    return found


def render_json(diagnostics: Sequence[Diagnostic],
                severity: Callable[[Diagnostic], Severity]) -> str:
    return json.dumps([to_json(d, severity(d)) for d in diagnostics], indent=2,
                      ensure_ascii=False)
