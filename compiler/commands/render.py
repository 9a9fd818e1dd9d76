"""`fsmc render SPEC [--format svg|png|pdf|dot] [-o FILE] [--machine NAME]`: one spec's diagram."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.analyses.properties import machine_verdicts
from fsmc.compiler.buildplan import display_path, project_root
from fsmc.compiler.diagrams.dot import header, to_dot
from fsmc.compiler.diagrams.render import FORMATS, render
from fsmc.compiler.diagrams.view import machine_view
from fsmc.compiler.project import UsageError, check

from .common import chosen_machines, positive_int, usable

HELP = """\
Draw the state diagram of one spec file: states (the initial one and entry states marked by an
arrow from a dot, finals double-bordered), one arrow per pair of states listing its
transitions, self-transitions inside their state, `*` transitions from one "any non-final
state" box, and the checker's warnings (unreachable or unused states greyed, dead ends
highlighted). A file with several machines gives one diagram with a box per machine, unless
--machine picks one. The counterexamples of refuted assertions are highlighted (the spec is
drawn even then: those are its only errors, printed on standard error), and --assertion LINE
highlights the counterexample of the assertion on that line, proved `[refuted]` ones included.

The format is the one FILE's suffix names (.svg, .png, .pdf or .dot; a --format that
contradicts it is refused); else what --format says (needed for any other suffix), else svg.
Without -o the diagram goes to standard output. svg, png and pdf need Graphviz's `dot`; dot
does not. For several specs run render once per spec, or `fsmc review` for all of them.
Exit status: 0 when drawn, 1 when the spec has errors (drawn anyway when they are refuted
assertions), 2 on usage errors (and when `dot` is needed but not installed).

examples:
  fsmc render specs/volume.fsm -o volume.svg
  fsmc render specs/volume.fsm --format dot | less
  fsmc render specs/two.fsm --machine Door -o door.png
  fsmc render specs/volume.fsm -o volume.pdf
  fsmc render specs/volume.fsm --assertion 142 -o finding.svg
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
    parser.add_argument("--assertion", metavar="LINE", type=positive_int, default=None,
                        help="highlight the counterexample of the assertion on this line")
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
    if not usable(project, args, out, err, "nothing drawn: fix the errors above first"):
        return 1
    spec = project.specs[0]
    machines = chosen_machines(project, spec_path, args.machine)
    traces = {m.name.text: [v.trace for v in machine_verdicts(m)
                            if v.trace and v.assertion.line == args.assertion]
              for m in machines}
    if args.assertion is not None and not any(traces.values()):
        raise UsageError(f"{spec_path}: no refuted assertion on line {args.assertion}")
    views = [machine_view(m, project.diagnostics, traces=traces[m.name.text])
             for m in machines]
    # The spec's path as a build would write it: relative to the project of the output file
    # (to standard output: of the spec), never to the working directory.
    where = Path(args.output) if args.output is not None else Path(spec.path)
    shown = display_path(spec.path, project_root(where.parent))
    data = render(to_dot(views, comment=header(shown)), fmt)
    if args.output is not None:
        Path(args.output).write_bytes(data)
        return 0 if project.ok else 1
    if fmt in ("png", "pdf"):
        if out.isatty():
            raise UsageError(f"refusing to write {fmt.upper()} to a terminal; use -o FILE")
        binary = getattr(out, "buffer", None) or sys.stdout.buffer
        binary.write(data)
        binary.flush()
        return 0
    out.write(data.decode("utf-8"))
    return 0 if project.ok else 1
