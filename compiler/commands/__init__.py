"""One module per subcommand; each has `add_parser(subparsers)` that sets `run`."""

from __future__ import annotations

from types import ModuleType

from . import build, check, diff, render, review

COMMANDS: tuple[ModuleType, ...] = (check, build, render, review, diff)
