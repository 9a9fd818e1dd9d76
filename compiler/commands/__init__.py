"""One module per subcommand; each has `add_parser(subparsers)` that sets `run`."""

from __future__ import annotations

from types import ModuleType

from . import (
    build,
    check,
    demo,
    diff,
    events,
    fmt,
    lsp,
    migrate,
    notify,
    paths,
    render,
    replay,
    review,
    usage,
)

COMMANDS: tuple[ModuleType, ...] = (check, build, render, review, diff, demo, usage, events, notify,
                                    paths, replay, migrate, fmt, lsp)
