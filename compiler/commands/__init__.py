"""One module per subcommand; each has `add_parser(subparsers)` that sets `run`."""

from __future__ import annotations

from types import ModuleType

from . import build, check, demo, diff, events, notify, render, review, usage

# isort: split
from . import fmt, lsp  # issue 26 (editing)

COMMANDS: tuple[ModuleType, ...] = (check, build, render, review, diff, demo, usage, events, notify)
COMMANDS += (fmt, lsp)
