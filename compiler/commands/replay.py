"""`fsmc replay LOG... --specs DIR [--format text|json]`: check event logs against the specs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.project import UsageError, check
from fsmc.compiler.replay import replay_files, report_json, report_lines

from .common import positive_int, usable

HELP = """\
Replay event logs against the machines of the specs in DIR: fsmc's audit trail (JSON Lines),
a broker dump of fsmc CloudEvents (one per line) and CloudStack's ResourceStateEvent messages
(their description {resource, id, old-state, new-state, ...}, bare or inside CloudStack's
Event), in any mix. Events are grouped by resource and replayed in log order; the report lists
the resources that conform, the first non-conforming event of each other one (the state it was
in and what the spec allows there), gaps (an old state that is not the state the previous event
left), unknown machines, states and events, unreadable lines, and the fitness (the share of
state changes that conform). Logs are streamed: memory grows with resources, not events.
Exit status: 0 when everything conforms, 1 on any problem, 2 on usage errors.

examples:
  fsmc replay audit.jsonl --specs specs/
  fsmc replay broker-dump.jsonl cloudstack-events.jsonl --specs specs/ --format json
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="check event logs against the specs",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", metavar="LOG")
    parser.add_argument("--specs", required=True, metavar="DIR",
                        help="the specs (a directory or files) the logs are checked against")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="the report as text (default) or JSON")
    parser.add_argument("--keep", type=positive_int, default=100,
                        help="examples kept per kind of problem (default 100)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the spec diagnostics (auto: only on a terminal)")
    parser.set_defaults(run=run, strict=False)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for log in args.logs:
        if not Path(log).is_file():
            raise UsageError(f"{log}: no such file")
    project = check([args.specs])
    if not usable(project, args, out, err,
                  "nothing replayed: fix the errors in the specs first"):
        return 1
    machines = [m for spec in project.specs for m in spec.machines]
    found = replay_files(machines, args.logs, keep=args.keep)
    if args.format == "json":
        out.write(report_json(found) + "\n")
    else:
        out.write("\n".join(report_lines(found)) + "\n")
    return 0 if found.ok else 1
