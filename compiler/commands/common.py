"""What several subcommands share: option types, subcommands with actions, reporting a
checked project."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from fsmc.compiler.analyses.properties import REFUTATION_CODES
from fsmc.compiler.project import SPEC_SUFFIX, Project, UsageError, empty_directories
from fsmc.compiler.report import render_json, render_text, summary
from fsmc.dsl.model import Machine
from fsmc.dsl.spans import SourceText


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def not_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def add_actions(subparsers: Any, name: str, help: str, description: str) -> Any:
    """A subcommand `fsmc NAME ACTION ...` (its own help text shown as written); returns the
    group to add each action's parser to."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                 parser_class=type(parser))


def add_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="diagnostics as text (default) or a JSON array")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the text output (auto: only on a terminal)")


def use_colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ


def warn_empty_directories(arguments: list[str], err: TextIO) -> None:
    """Say which directories given hold no spec (when others did: else there is nothing to
    do, and `discover` made that a usage error)."""
    for folder in empty_directories(arguments):
        err.write(f"fsmc: warning: {folder} holds no spec (*{SPEC_SUFFIX} file)\n")


def report(project: Project, args: argparse.Namespace, out: TextIO) -> None:
    """Print the project's diagnostics in the chosen format: in text, each diagnostic and then
    one summary line (`7 files checked: 7 warnings`, `1 file checked: no problems`); in JSON,
    one array and nothing else (`[]` when there are none)."""
    diagnostics = list(project.diagnostics)
    if args.format == "json":
        out.write(render_json(diagnostics, project.severity) + "\n")
        return
    if not diagnostics:
        out.write(summary(diagnostics, project.severity, len(project.paths)) + "\n")
        return
    sources = dict(project.sources)

    def lookup(path: str) -> SourceText | None:
        if path not in sources:
            sources[path] = _reread(path)
        return sources[path]

    out.write(render_text(diagnostics, project.severity, lookup,
                          colour=use_colour(args.color, out)) + "\n")
    out.write(summary(diagnostics, project.severity, len(project.paths)) + "\n")


def _reread(path: str) -> SourceText:
    """The text of a file that did not parse, decoded leniently, for showing its lines."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return SourceText(path, "")
    return SourceText(path, data.decode("utf-8", errors="replace").removeprefix("\ufeff"))


def only_refutations(project: Project) -> bool:
    """Whether the project's errors are all refuted assertions: the specs themselves are
    sound, so they can still be drawn, planned and replayed against."""
    return bool(project.specs) and all(d.code in REFUTATION_CODES for d in project.errors())


def usable(project: Project, args: argparse.Namespace, out: TextIO, err: TextIO,
           refusal: str) -> bool:
    """Report the project's diagnostics; whether a command may go on with its specs: they
    have no errors, or only refuted assertions (reported on `err`, so that `out` carries the
    command's own output). Otherwise says `fsmc: <refusal>` on `err`."""
    if project.ok:
        return True
    if only_refutations(project):
        report(project, args, err)
        return True
    report(project, args, out)
    err.write(f"fsmc: {refusal}\n")
    return False


def chosen_machines(project: Project, spec_path: str, machine: str | None) -> list[Machine]:
    """The machines of the project's one spec, or the one named `machine` (else a usage
    error listing them)."""
    spec = project.specs[0]
    machines = [m for m in spec.machines if machine in (None, m.name.text)]
    if not machines:
        names = ", ".join(m.name.text for m in spec.machines) or "none"
        raise UsageError(f"{spec_path}: no machine named {machine} (machines: {names})")
    return machines
