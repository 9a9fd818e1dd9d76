"""`fsmc lsp`: the language server, on standard input and output."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

HELP = """\
Run the fsmc language server on standard input and output (the Language Server Protocol):
diagnostics as you type (the codes and positions of `fsmc check`), hover, go to definition,
references, rename, completion, document symbols, formatting (as `fsmc fmt`), quick fixes
for the did-you-mean hints and a "Show diagram" code lens. Editors start it themselves; see
docs/editing.md for Neovim and VS Code. Needs the `lsp` extra: pip install 'fsmc[lsp]'.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("lsp", help="run the language server (stdio)",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stdio", action="store_true",
                        help="accepted for editors that pass it (stdio is the only transport)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from fsmc.compiler.lsp.server import serve
    except ImportError as error:
        err.write(f"fsmc: error: the language server needs pygls ({error.name} is missing): "
                  "pip install 'fsmc[lsp]'\n")
        return 2
    try:
        release = version("fsmc")
    except PackageNotFoundError:
        release = "unknown"
    serve(release)
    return 0
