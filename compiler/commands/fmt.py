"""`fsmc fmt [--check] [--diff] SPEC_OR_DIR...`: rewrite specs in the canonical layout."""

from __future__ import annotations

import argparse
import difflib
from typing import Any, TextIO

from fsmc.compiler.project import discover
from fsmc.compiler.report import render_text, summary
from fsmc.dsl.diagnostics import Diagnostic
from fsmc.dsl.formatter import format_text
from fsmc.dsl.loader import load_bytes
from fsmc.dsl.spans import SourceText

from .build import write_if_changed
from .common import use_colour

HELP = """\
Rewrite specs in the one canonical layout (docs/editing.md lists the rules): comments, blank
lines between groups, doc strings and the order of statements are kept; the parser reads the
same tokens and statements before and after, so the model is the same (checked: otherwise
the file is left alone and fmt exits 1).
A file with errors is never rewritten: its diagnostics are printed instead.

Exit status: 0 when every file is formatted (or, with --check, already was); 1 when a file has
errors or (with --check) would change; 2 on usage errors.

examples:
  fsmc fmt specs/
  fsmc fmt --check --diff specs/
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("fmt", help="rewrite specs in the canonical layout",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file would change")
    parser.add_argument("--diff", action="store_true",
                        help="print a unified diff of each change (with --check: write nothing)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the diagnostics (auto: only on a terminal)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    status = 0
    changed = unchanged = 0
    for path in discover(args.paths):
        shown = str(path)
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            _refuse(shown, data, load_bytes(data, shown).diagnostics, args, out, err)
            status = 1
            continue
        result = format_text(text, shown)
        if result.meaning_changed:
            err.write(f"fsmc: {shown}: not formatted: the layout would change its meaning "
                      "(a bug in fsmc fmt; please report it with the file)\n")
            status = 1
            continue
        if result.text is None:
            _refuse(shown, data, list(result.diagnostics), args, out, err)
            status = 1
            continue
        if result.text == text:
            unchanged += 1
            continue
        changed += 1
        if args.diff:
            out.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), result.text.splitlines(keepends=True),
                f"{shown} (before)", f"{shown} (formatted)"))
        if args.check:
            err.write(f"fsmc: would reformat {shown}\n")
            status = 1
        else:
            write_if_changed(path, result.text.encode("utf-8"))
    verb = "would be reformatted" if args.check else "reformatted"
    err.write(f"fsmc: {changed} file{'s' if changed != 1 else ''} {verb}, "
              f"{unchanged} already formatted\n")
    return status


def _refuse(shown: str, data: bytes, diagnostics: list[Diagnostic], args: argparse.Namespace,
            out: TextIO, err: TextIO) -> None:
    source = SourceText(shown, data.decode("utf-8", errors="replace").removeprefix("\ufeff"))
    out.write(render_text(diagnostics, lambda d: d.level, lambda _: source,
                          colour=use_colour(args.color, out)) + "\n")
    out.write(summary(diagnostics, lambda d: d.level, 1) + "\n")
    err.write(f"fsmc: {shown}: not formatted: fix the errors above first\n")
