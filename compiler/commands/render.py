"""`fsmc render SPEC [--format svg|png|pdf|dot] [-o FILE] [--machine NAME]`: one spec's diagram."""

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

The format is the one FILE's suffix names (.svg, .png, .pdf or .dot; a --format that
contradicts it is refused); else what --format says (needed for any other suffix), else svg.
Without -o the diagram goes to standard output. svg, png and pdf need Graphviz's `dot`; dot
does not. For several specs run render once per spec, or `fsmc review` for all of them.
Exit status: 0 when drawn, 1 when the spec has errors, 2 on usage errors (and when `dot` is
needed but not installed).

examples:
  fsmc render specs/volume.fsm -o volume.svg
  fsmc render specs/volume.fsm --format dot | less
  fsmc render specs/two.fsm --machine Door -o door.png
  fsmc render specs/volume.fsm -o volume.pdf
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("render", help="draw one spec's state diagram",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", metavar="SPEC", help="one spec file")
    # More than one SPEC is a mistake that deserves its own message (see `run`).
    parser.add_argument("more_specs", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--format", dest="diagram_format", choices=FORMATS, default=None,
                        help="svg, png, pdf or dot (default: from FILE's suffix, else svg)")
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
    """The format to render: the one the output file's suffix names, else `choice` (--format),
    else svg. Raises `UsageError` for a suffix that names no format when --format does not say
    one, and for a --format that the suffix contradicts: one format is never written under
    another's name."""
    suffix = Path(output).suffix if output else ""
    named = suffix.lstrip(".").lower()
    if named not in FORMATS:
        if suffix and choice is None:
            raise UsageError(f"-o {output}: cannot draw a `{suffix}` file; name it .svg, .png, "
                             f".pdf or .dot, or say --format {'|'.join(FORMATS)}")
        named = ""
    if choice is not None and named and choice != named:
        raise UsageError(f"-o {output} names a {named.upper()} file but --format is {choice}; "
                         f"drop --format or name the file .{choice}")
    return named or choice or "svg"


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.more_specs:
        given = [args.spec, *args.more_specs]
        raise UsageError(f"render draws one spec file, not {len(given)} ({', '.join(given)}): "
                         f"run it once per spec, or `fsmc review {' '.join(given)}` for a site "
                         "with all of them")
    spec_path = args.spec
    if Path(spec_path).is_dir():
        raise UsageError(f"{spec_path}: render takes one spec file, not a directory")
    fmt = output_format(args.diagram_format, args.output)
    project = check([spec_path], strict=args.strict)
    if not project.ok:
        report(project, args, out)
        err.write("fsmc: nothing drawn: fix the errors above first\n")
        return 1
    spec = project.specs[0]
    machines = [m for m in spec.machines if args.machine in (None, m.name.text)]
    if not machines:
        names = ", ".join(m.name.text for m in spec.machines) or "none"
        raise UsageError(f"{spec_path}: no machine named {args.machine} (machines: {names})")
    views = [machine_view(m, project.diagnostics) for m in machines]
    # The spec's path as a build would write it: relative to the project of the output file
    # (to standard output: of the spec), never to the working directory.
    where = Path(args.output) if args.output is not None else Path(spec.path)
    shown = display_path(spec.path, project_root(where.parent))
    data = render(to_dot(views, comment=header(shown)), fmt)
    if args.output is not None:
        Path(args.output).write_bytes(data)
        return 0
    if fmt in ("png", "pdf"):
        if out.isatty():
            raise UsageError(f"refusing to write {fmt.upper()} to a terminal; use -o FILE")
        binary = getattr(out, "buffer", None) or sys.stdout.buffer
        binary.write(data)
        binary.flush()
        return 0
    out.write(data.decode("utf-8"))
    return 0
