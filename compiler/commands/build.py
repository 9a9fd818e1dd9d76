"""`fsmc build SPEC_OR_DIR... [-o OUT] [--check] [--strict]`: generate modules and diagrams."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.buildplan import StaleFile, check_and_emit, stale_files
from fsmc.compiler.diagrams.render import MISSING_WARNING, build_svgs, orphan_svgs
from fsmc.compiler.layout import OutputLayout
from fsmc.compiler.watch import changes
from fsmc.runtime.errors import FsmcError

from .common import add_check_options, report, warn_empty_directories

HELP = """\
Check specs and, when there is no error, write one Python module per spec file into OUT
(default generated/) plus an __init__.py, so that `import generated.<module>` works.
Each machine's diagram goes to OUT/diagrams/<module>.<Machine>.dot (or DIR/ with --diagrams),
and .svg when Graphviz's `dot` is installed (best-effort: --check compares the .dot files, not
the SVGs). Nothing is written when any spec has errors. Output is byte-for-byte deterministic
and the same from any working directory: the spec paths it names are relative to the project
root, the nearest folder at or above OUT holding pyproject.toml, setup.cfg, setup.py or .git
(else OUT's parent).

A build removes, and names, the stale files: those fsmc generated earlier from a spec that no
longer exists, or for a machine a built spec no longer has. Output of other specs that exist
is kept, so several builds can share OUT. With --check nothing is written: exit 1 and list
the files that are missing, differ (with a unified diff) or are stale.

examples:
  fsmc build specs/
  fsmc build specs/vm.fsm -o src/myapp/machines
  fsmc build --check specs/
  fsmc build specs/ -o src/myapp/machines --diagrams docs/diagrams
  fsmc build --watch specs/      rebuild on every change until Ctrl-C
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("build", help="generate Python modules from specs",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR")
    parser.add_argument("-o", "--out", default="generated", metavar="OUT",
                        help="output directory (default: generated/)")
    parser.add_argument("--diagrams", metavar="DIR", default=None,
                        help="write the diagrams here instead of into OUT/diagrams/")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 (with a diff) if OUT is not what a build "
                             "would write")
    parser.add_argument("--no-svg", dest="svg", action="store_false",
                        help="do not render SVG diagrams (the .dot files are still written)")
    parser.add_argument("--watch", action="store_true",
                        help="build, then rebuild whenever a spec changes, until Ctrl-C "
                             "(file-system events with watchfiles installed, else polling)")
    parser.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                        help="with --watch: poll every SECONDS instead of using watchfiles")
    add_check_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.watch:
        return watch(args, out, err)
    return build_once(args, out, err)


def watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Build, then rebuild after each burst of changes; one status line per build. Errors in
    the specs (or a spec deleted) are reported and the watch goes on; Ctrl-C stops it."""
    if args.check:
        raise FsmcError("--watch writes files; it cannot be combined with --check")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it like Ctrl-C
    try:
        _status(args, out, err, "initial build")
        for changed in changes(args.paths, args.poll):
            names = ", ".join(sorted(p.name for p in changed))
            _status(args, out, err, f"{len(changed)} changed: {names}")
    except KeyboardInterrupt:
        err.write("fsmc: watch stopped\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt


def _status(args: argparse.Namespace, out: TextIO, err: TextIO, reason: str) -> None:
    started = time.perf_counter()
    try:
        status = build_once(args, out, err)
        verdict = "ok" if status == 0 else "errors: nothing written"
    except FsmcError as error:
        err.write(f"fsmc: error: {error}\n")
        verdict = "error"
    elapsed = time.perf_counter() - started
    out.write(f"[{time.strftime('%H:%M:%S')}] {reason}: {verdict} ({elapsed:.2f} s); "
              "watching (Ctrl-C stops)\n")
    out.flush()


def build_once(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    layout = OutputLayout(Path(args.out), None if args.diagrams is None else Path(args.diagrams))
    build = check_and_emit(args.paths, layout.out_dir, strict=args.strict)
    warn_empty_directories(args.paths, err)
    report(build.project, args, out)
    if not build.project.ok:
        err.write("fsmc: nothing written: fix the errors above first\n")
        return 1
    built = build.plan()
    files = built.files
    stale = stale_files(layout, files, build.modules)
    if args.check:
        return _check_drift(layout, files, stale, err)
    written = _write_all(layout, files)
    for item in stale:
        layout.path(item.name).unlink()
    # SVGs are best-effort (they depend on the Graphviz version): not in the plan, not checked.
    if args.svg:
        svgs = build_svgs(files, built.sources, layout, set(written))
        if svgs is None:
            err.write(MISSING_WARNING)
        else:
            written += [name for name, data in sorted(svgs.items())
                        if write_if_changed(layout.path(name), data)]
            files = {**files, **svgs}
    orphans = orphan_svgs(layout)
    for name in orphans:
        layout.path(name).unlink()
    if args.format == "text":
        for item in stale:
            err.write(f"fsmc: removed {layout.path(item.name)} ({item.reason})\n")
        for name in orphans:
            err.write(f"fsmc: removed {layout.path(name)} (its diagram is gone)\n")
        removed = len(stale) + len(orphans)
        err.write(f"fsmc: {len(files)} files in {_shown_dirs(layout)} ({len(written)} written, "
                  f"{len(files) - len(written)} unchanged, {removed} stale removed)\n")
    return 0


def _shown_dirs(layout: OutputLayout) -> str:
    if layout.diagram_dir is None:
        return f"{layout.out_dir}/"
    return f"{layout.out_dir}/ and {layout.diagram_dir}/"


# A differing file's diff stops after this many lines (a version bump changes every file).
DIFF_LINES = 80


def file_diff(path: Path, old: bytes, new: bytes) -> list[str]:
    """The unified diff from what is at `path` to what a build would write there."""
    try:
        before, after = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return [f"Binary files {path} and what a build writes differ"]
    lines = list(difflib.unified_diff(before.splitlines(keepends=True),
                                      after.splitlines(keepends=True),
                                      f"{path} (on disk)", f"{path} (as built)"))
    text = [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines]
    if len(text) > DIFF_LINES:
        text = [*text[:DIFF_LINES], f"... ({len(text) - DIFF_LINES} more diff lines)\n"]
    return text


def _check_drift(layout: OutputLayout, files: dict[str, bytes], stale: list[StaleFile],
                 err: TextIO) -> int:
    problems = 0
    for name, data in sorted(files.items()):
        path = layout.path(name)
        if not path.exists():
            err.write(f"fsmc: missing: {path}\n")
        elif (present := path.read_bytes()) != data:
            err.write(f"fsmc: differs: {path}\n")
            err.writelines(file_diff(path, present, data))
        else:
            continue
        problems += 1
    for item in stale:
        err.write(f"fsmc: stale:   {layout.path(item.name)} ({item.reason})\n")
    if problems or stale:
        err.write(f"fsmc: {_shown_dirs(layout)} out of date; run `fsmc build` to update\n")
        return 1
    return 0


def _umask() -> int:
    mask = os.umask(0o022)  # read it (there is no other way), then put it back
    os.umask(mask)
    return mask


# What `open(path, "w")` would create: read-write for all, less the umask (taken at import,
# while no other thread of fsmc runs).
FILE_MODE = 0o666 & ~_umask()


def _write_all(layout: OutputLayout, files: dict[str, bytes]) -> list[str]:
    """Write every changed file and name them, sorted. One thread: the time goes to the file
    system creating and renaming files, and threads only contend for it (measured on ext4,
    2,000 new files: 1.8 s from one thread, 1.9 s and 1.7 times the CPU from eight)."""
    for folder in {layout.path(name).parent for name in files}:
        folder.mkdir(parents=True, exist_ok=True)
    return [name for name in sorted(files) if write_if_changed(layout.path(name), files[name])]


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically (a temporary file renamed over the target), so an interrupted build
    never leaves a half-written module. Unchanged files are left alone. The folder must
    exist."""
    if path.exists() and path.read_bytes() == data:
        return False
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files; generated code is for everyone
            os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return True
