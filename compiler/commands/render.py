"""`fsmc render SPEC [--format svg|png|dot] [-o FILE] [--machine NAME]`: one spec's diagram."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.buildplan import display_path, project_root
from fsmc.compiler.diagrams.dot import header, to_dot
from fsmc.compiler.diagrams.render import FORMATS, render
from fsmc.compiler.diagrams.view import machine_view
from fsmc.compiler.project import UsageError, check

from .common import report

HELP = """\
Draw the state diagram of one spec file: states (the initial one and entry states marked by an
arrow from a dot, finals double-bordered), one arrow per pair of states listing its
transitions, self-transitions inside their state, `*` transitions from one "any non-final
state" box, and the checker's warnings (unreachable or unused states greyed, dead ends
highlighted). A file with several machines gives one diagram with a box per machine, unless
--machine picks one.

The format defaults to the suffix of FILE, else svg; without -o the diagram goes to standard
output. svg and png need Graphviz's `dot`; dot does not.
Exit status: 0 when drawn, 1 when the spec has errors, 2 on usage errors (and when `dot` is
needed but not installed).

examples:
  fsmc render specs/volume.fsm -o volume.svg
  fsmc render specs/volume.fsm --format dot | less
  fsmc render specs/two.fsm --machine Door -o door.png
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("render", help="draw one spec's state diagram",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--format", dest="diagram_format", choices=FORMATS, default=None,
                        help="svg, png or dot (default: from FILE's suffix, else svg)")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write here instead of to standard output")
    parser.add_argument("--machine", metavar="NAME", default=None,
                        help="draw only this machine of the file")
    # --format names the diagram's format here, so diagnostics (errors only) are always text.
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the diagnostics (auto: only on a terminal)")
    parser.set_defaults(run=run, format="text")


def output_format(choice: str | None, output: str | None) -> str:
    if choice is not None:
        return choice
    suffix = Path(output).suffix.lstrip(".").lower() if output else ""
    return suffix if suffix in FORMATS else "svg"


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if Path(args.spec).is_dir():
        raise UsageError(f"{args.spec}: render takes one spec file, not a directory")
    fmt = output_format(args.diagram_format, args.output)
    project = check([args.spec], strict=args.strict)
    if not project.ok:
        report(project, args, out)
        err.write("fsmc: nothing drawn: fix the errors above first\n")
        return 1
    spec = project.specs[0]
    machines = [m for m in spec.machines if args.machine in (None, m.name.text)]
    if not machines:
        names = ", ".join(m.name.text for m in spec.machines) or "none"
        raise UsageError(f"{args.spec}: no machine named {args.machine} (machines: {names})")
    views = [machine_view(m, project.diagnostics) for m in machines]
    # The spec's path as a build would write it: relative to the project of the output file.
    where = Path(args.output).parent if args.output is not None else Path.cwd()
    shown = display_path(spec.path, project_root(where))
    data = render(to_dot(views, comment=header(shown)), fmt)
    if args.output is not None:
        Path(args.output).write_bytes(data)
        return 0
    if fmt == "png":
        if out.isatty():
            raise UsageError("refusing to write PNG to a terminal; use -o FILE")
        binary = getattr(out, "buffer", None) or sys.stdout.buffer
        binary.write(data)
        binary.flush()
        return 0
    out.write(data.decode("utf-8"))
    return 0
