"""`fsmc diff OLD NEW [-o FILE]` and `fsmc diff SPEC --rev REV [-o FILE]`: what changed."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.compatibility import classify
from fsmc.compiler.compatibility import report as compatibility_report
from fsmc.compiler.diagrams.diff import Status, diff_specs, diff_view, summary
from fsmc.compiler.diagrams.dot import to_dot
from fsmc.compiler.diagrams.render import FORMATS, render
from fsmc.compiler.project import UsageError
from fsmc.compiler.report import render_text
from fsmc.dsl.loader import LoadResult, load_bytes, load_path
from fsmc.dsl.spans import SourceText

from .render import output_format

HELP = """\
Compare two versions of a spec: machines by name, states by name, transitions by
(source, event, target). Prints one line per change (`+` added, `-` removed, `~` changed: a
state's kind or doc, a transition's guard, action or tags). With -o, also draws the diff:
both versions in one diagram, added in green, removed in red (dashed), changed in amber.

Then each change is classified as compatible or BREAKING, for live data (rows already stored:
a removed state without `moved` strands them, a move into a final state traps them) and for
code using the generated class (a removed state or event, a (state, event) that no longer
fires or leads elsewhere, a new guard, a new action, `create` starting elsewhere).

With --rev, OLD is SPEC as committed in the git revision REV and NEW is SPEC as it is now; a
spec that did not exist in REV counts as empty.
Exit status: 2 on usage errors (a file that cannot be read or parsed, an unknown revision);
otherwise 1 when --fail-on says so, else 0. --fail-on change (the default): when anything
changed; breaking: when a change breaks live data or code (for CI); data / code: when one
breaks that.

examples:
  fsmc diff old/vm.fsm specs/vm.fsm
  fsmc diff specs/virtual_machine.fsm --rev HEAD~1 -o vm-diff.svg
  fsmc diff specs/volume.fsm --rev origin/main --format dot -o volume-diff.dot
  fsmc diff specs/virtual_machine.fsm --rev origin/main --fail-on breaking
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("diff", help="what changed between two versions of a spec",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="OLD NEW | SPEC")
    parser.add_argument("--rev", metavar="REV", default=None,
                        help="compare SPEC with its version in this git revision")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write the diff diagram here (svg, png, pdf or dot)")
    parser.add_argument("--format", dest="diagram_format", choices=FORMATS, default=None,
                        help="diagram format (default: from FILE's suffix, else svg)")
    parser.add_argument("--fail-on", choices=("change", "breaking", "data", "code"),
                        default="change",
                        help="what makes the exit status 1 (default: any change)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    fmt = None if args.output is None else output_format(args.diagram_format, args.output)
    if args.rev is not None:
        if len(args.paths) != 1:
            raise UsageError("with --rev, give one spec: fsmc diff SPEC --rev REV")
        new = load_path(args.paths[0])
        old = load_revision(Path(args.paths[0]), args.rev)
        old_label = f"{args.paths[0]}@{args.rev}"
    else:
        if len(args.paths) != 2:
            raise UsageError("give two specs (fsmc diff OLD NEW) or one with --rev REV")
        old, new = load_path(args.paths[0]), load_path(args.paths[1])
        old_label = args.paths[0]
    unparsed = [r for r in (old, new) if r is not None and r.spec is None]
    if unparsed:
        _report(unparsed, out)
        err.write("fsmc: cannot compare: fix the syntax errors above first\n")
        return 2
    difference = diff_specs(old.spec if old else None, new.spec,
                            old_label=old_label if old else f"{old_label} (absent)",
                            new_label=args.paths[-1])
    out.write(summary(difference))
    verdicts = classify(difference)
    out.write(compatibility_report(verdicts))
    if args.output is not None and fmt is not None:
        changed = [m for m in difference.machines if m.status is not Status.SAME]
        views = [diff_view(m) for m in changed or difference.machines]
        if views:
            Path(args.output).write_bytes(render(to_dot(views), fmt))
    failing = {"change": difference.changed,
               "breaking": any(v.breaking for v in verdicts),
               "data": any(v.data for v in verdicts),
               "code": any(v.code for v in verdicts)}[args.fail_on]
    return 1 if failing else 0


def load_revision(path: Path, rev: str) -> LoadResult | None:
    """SPEC as committed in `rev`, or None when it did not exist there."""
    folder = path.parent if str(path.parent) else Path(".")
    verify = _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if verify.returncode != 0:
        detail = verify.stderr.decode("utf-8", errors="replace").strip()
        raise UsageError(f"{rev}: not a git revision here" + (f" ({detail})" if detail else ""))
    shown = _git(folder, "show", f"{rev}:./{path.name}")
    if shown.returncode != 0:
        return None
    return load_bytes(shown.stdout, f"{path}@{rev}")


def _git(folder: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True,
                              check=False)
    except OSError as error:
        raise UsageError(f"cannot run git: {error}") from error


def _report(results: list[LoadResult], out: TextIO) -> None:
    for result in results:
        try:
            raw = Path(result.path).read_bytes().decode("utf-8", errors="replace")
        except OSError:  # a revision's text, not on disk
            raw = ""
        text = SourceText(result.path, raw)

        def lookup(path: str, text: SourceText = text) -> SourceText | None:
            return text if path == text.path else None

        out.write(render_text(result.diagnostics, lambda d: d.level, lookup) + "\n")
