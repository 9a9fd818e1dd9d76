"""`fsmc check SPEC_OR_DIR... [--strict] [--format text|json]`: parse, analyse, report."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from fsmc.compiler.pipeline import check_files

from .common import add_check_options, report, warn_empty_directories

HELP = """\
Parse and analyse specs and print every problem found, sorted by file and position.
Exit status: 0 when there is no error (warnings allowed), 1 when there are errors
(or warnings, with --strict), 2 on usage errors.

examples:
  fsmc check specs/
  fsmc check --strict --format json specs/vm.fsm
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("check", help="check specs and print diagnostics",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR")
    add_check_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    project = check_files(args.paths, strict=args.strict)
    warn_empty_directories(args.paths, err)
    report(project, args, out)
    return 0 if project.ok else 1
