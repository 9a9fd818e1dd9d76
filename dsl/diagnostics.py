"""Diagnostics: what is wrong with a spec, where, and how to fix it.

Codes are data (`codes.toml` beside this module): each has a stable identifier such as `E101`,
a short name, a default severity and a one-line summary. A `Diagnostic` is one finding at a
`Span`; the front end and the analyses return lists of them and never raise on user input.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import NamedTuple

from .spans import Span


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Code:
    """One entry of the code table."""

    id: str
    name: str
    severity: Severity
    summary: str
    example: str


@cache
def code_table() -> dict[str, Code]:
    """Every diagnostic code, by id, in the order of `codes.toml`."""
    raw = tomllib.loads(resources.files(__package__).joinpath("codes.toml").read_text("utf-8"))
    return {
        code_id: Code(code_id, entry["name"], Severity(entry["severity"]), entry["summary"],
                      entry["example"])
        for code_id, entry in raw.items()
    }


def code(code_id: str) -> Code:
    """Look up a code; an unknown id is a bug in fsmc, not in the user's spec."""
    return code_table()[code_id]


class Step(NamedTuple):
    """One step of a counterexample: a state, and the event fired from it (None on the last)."""

    state: str
    event: str | None = None


@dataclass(frozen=True, slots=True)
class Related:
    """Another place a finding concerns (say, another use of one undeclared name)."""

    span: Span
    message: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding. `hint` is an optional suggestion shown on its own line; `related` are the
    other places it concerns, shown after it; `trace` is the counterexample of a refuted
    assertion (a path of the graph), None for other findings."""

    span: Span
    code: str
    message: str
    hint: str | None = None
    severity: Severity | None = None
    related: tuple[Related, ...] = ()
    trace: tuple[Step, ...] | None = None

    @property
    def level(self) -> Severity:
        """The severity: the code's default unless this diagnostic overrides it."""
        return self.severity or code(self.code).severity

    @property
    def is_error(self) -> bool:
        return self.level is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.span.path, self.span.line, self.span.column, self.code, self.message)


def make(code_id: str, span: Span, message: str, hint: str | None = None,
         related: tuple[Related, ...] = (), *,
         trace: tuple[Step, ...] | None = None) -> Diagnostic:
    """Create a diagnostic, checking that its code exists."""
    code(code_id)
    return Diagnostic(span, code_id, message, hint, related=related, trace=trace)


def trace_text(trace: tuple[Step, ...]) -> str:
    """`Destroyed --RecoverRequested--> Stopped --StartRequested--> Starting`."""
    parts: list[str] = []
    for step in trace:
        parts.append(step.state)
        if step.event is not None:
            parts.append(f"--{step.event}-->")
    return " ".join(parts)


def sorted_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics by file and position, without exact duplicates."""
    return sorted(set(diagnostics), key=Diagnostic.sort_key)
