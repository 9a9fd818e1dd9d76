"""`fsmc review SPEC_OR_DIR... [-o SITE]`: a static HTML site to review specs in a browser."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from fsmc.compiler.diagrams.render import dot_available, render
from fsmc.compiler.diagrams.review import site_files
from fsmc.compiler.project import check

from .common import add_check_options, only_refutations, report, warn_empty_directories

HELP = """\
Check specs and, when there is no error, write a static site into SITE (default site/):
index.html lists every machine with its doc, counts and warnings; each machine has a page with
its diagram (states link to their row, transitions to their spec line), its table of states,
events, targets, guards, actions and tags, and links to every spec line; each spec file has a
page with its source. Open SITE/index.html in a browser, or serve the folder.

Without Graphviz's `dot` the site is written without diagrams (one warning).
Each machine page lists its assertions (proved, refuted or an expected failure) and draws the
counterexample of each one that does not hold on its own copy of the diagram. A spec whose
only errors are refuted assertions is still written (exit 1).
Exit status: 0 when written, 1 when a spec has errors (nothing is written unless they are all
refuted assertions), 2 on usage errors.

examples:
  fsmc review specs/ -o site/
  python -m http.server -d site/ 8000
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("review", help="write a static HTML site to review specs",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR")
    parser.add_argument("-o", "--out", default="site", metavar="SITE",
                        help="output directory (default: site/)")
    parser.add_argument("--title", default="fsmc review", help="the site's title")
    add_check_options(parser)
    parser.set_defaults(run=run)


def _svg(dot: str) -> bytes:
    return render(dot, "svg")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    project = check(args.paths, strict=args.strict)
    warn_empty_directories(args.paths, err)
    report(project, args, out)
    refuted = only_refutations(project)
    if not project.ok and not refuted:
        err.write("fsmc: nothing written: fix the errors above first\n")
        return 1
    renderer = _svg if dot_available() else None
    if renderer is None:
        err.write("fsmc: warning: Graphviz `dot` not found: the site has no diagrams; install "
                  "Graphviz (Debian/Ubuntu: `apt-get install graphviz`)\n")
    out_dir = Path(args.out)
    files = site_files(project, renderer, out_dir, title=args.title)
    for name, data in sorted(files.items()):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    if args.format == "text":
        err.write(f"fsmc: review site in {out_dir}/ ({len(files)} files); open "
                  f"{out_dir / 'index.html'}\n")
    return 0 if project.ok else 1
