"""`fsmc paths SPEC [--machine M] [--format text|json|pytest] [-o FILE]`: test paths that
cover every transition and guard outcome."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.buildplan import display_path
from fsmc.compiler.naming import module_name
from fsmc.compiler.paths import plan
from fsmc.compiler.pathtests import plan_text, plans_json, pytest_module
from fsmc.compiler.project import UsageError, check

from .common import chosen_machines, usable

HELP = """\
Plan a small set of event sequences that, from the initial state and the entry states,
together take every transition and every guard outcome (a guard answering yes, and no: the
next candidate, or a refusal) of each machine of SPEC, shortest first. Guard answers are named
in each step (`StopRequested [can_stop=yes]`); transitions no answers can take, and outcomes in
states no path reaches, are listed as not covered.

--format pytest writes a test module that drives the generated class (imported from
PACKAGE.<module>, default generated.<module>) along each path through its event methods,
asserting the state after each step; guards are stubbed by a subclass that answers what the
plan needs (passed as the payload entry named after the guard), actions are recorded and
checked.
Exit status: 0 when written, 1 when the spec has errors, 2 on usage errors.

examples:
  fsmc paths specs/volume.fsm
  fsmc paths specs/virtual_machine.fsm --format pytest -o tests/test_vm_paths.py
  fsmc paths specs/two.fsm --machine Door --format json
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("paths", help="test paths covering every transition",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--machine", metavar="NAME", default=None,
                        help="only this machine of the file")
    parser.add_argument("--format", dest="paths_format", choices=("text", "json", "pytest"),
                        default="text", help="text (default), json or a pytest module")
    parser.add_argument("--package", default="generated",
                        help="the package the generated classes are imported from "
                             "(pytest format; default: generated)")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write here instead of to standard output")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the diagnostics (auto: only on a terminal)")
    parser.set_defaults(run=run, format="text", strict=False)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if Path(args.spec).is_dir():
        raise UsageError(f"{args.spec}: paths takes one spec file, not a directory")
    project = check([args.spec])
    if not usable(project, args, out, err, "no paths: fix the errors above first"):
        return 1
    spec = project.specs[0]
    machines = chosen_machines(project, args.spec, args.machine)
    plans = [(machine, plan(machine)) for machine in machines]
    if args.paths_format == "text":
        text = "\n".join(plan_text(p) for _, p in plans) + "\n"
    elif args.paths_format == "json":
        text = plans_json([p for _, p in plans]) + "\n"
    else:
        text = pytest_module(plans, source=display_path(spec.path, Path.cwd()),
                             module=module_name(Path(spec.path).stem), package=args.package)
    if args.output is None:
        out.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0
