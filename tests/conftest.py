"""Shared fixtures: the example spec of DESIGN.md and helpers to check text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsmc.compiler.project import Project, check_results
from fsmc.dsl.loader import load_bytes, load_text

ROOT = Path(__file__).resolve().parents[1]

DESIGN_EXAMPLE = """\
# Comments run from '#' to the end of the line.
machine VirtualMachine "Lifecycle of a user virtual machine" {
    initial Allocated                      # exactly one initial state
    final Expunged                         # zero or more final states: nothing leaves them
    states Starting, Running, Stopping     # declare several states at once
    state Stopped "Powered off; disks kept" # declare one, with a doc string
    state Destroyed
    state Error "Needs an operator"

    Allocated -> Starting  : StartRequested
    Starting  -> Running   : OperationSucceeded  [usage]
    Starting  -> Stopped   : OperationFailed
    Running   -> Stopping  : StopRequested  if can_stop
    Stopping  -> Stopped   : OperationSucceeded  [usage]  do release_host
    Stopped   -> Starting  : StartRequested
    Stopped, Running -> Destroyed : DestroyRequested
    Destroyed -> Expunged  : ExpungeRequested
    * -> Error : Crashed                   # '*' = every state that is not final
    Error -> Destroyed : DestroyRequested
}
"""


def check_text(text: str, path: str = "spec.fsm", *, strict: bool = False) -> Project:
    """Run the whole front end and the analyses on one text."""
    return check_results([load_text(text, path)], strict=strict)


def check_bytes(data: bytes, path: str = "spec.fsm") -> Project:
    return check_results([load_bytes(data, path)])


def codes(project: Project) -> list[tuple[str, int, int]]:
    """(code, line, column) of every diagnostic, in report order."""
    return [(d.code, d.span.line, d.span.column) for d in project.diagnostics]


@pytest.fixture
def design_example() -> str:
    return DESIGN_EXAMPLE


# --- diagrams (issue 6) ---------------------------------------------------------------------

def dot_missing_reason() -> str | None:
    """Why tests that render with Graphviz must skip, or None when `dot` is installed."""
    import shutil

    if shutil.which("dot") is None:
        return "Graphviz `dot` is not installed (Debian/Ubuntu: apt-get install graphviz)"
    return None


@pytest.fixture
def requires_dot() -> None:
    """Skip the test when Graphviz's `dot` binary is not on PATH."""
    reason = dot_missing_reason()
    if reason is not None:
        pytest.skip(reason)
