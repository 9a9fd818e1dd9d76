"""`fsmc`: the command line. `main(argv) -> int` never raises on bad input.

Exit codes: 0 success (warnings allowed), 1 problems found (errors, drift, differences),
2 usage errors (unknown option, missing path).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from fsmc.runtime.errors import FsmcError

from .commands import COMMANDS

EPILOG = """\
examples:
  fsmc check specs/                    check every *.fsm under specs/
  fsmc check --format json vm.fsm      diagnostics as JSON, for editors and CI
  fsmc build specs/ -o generated/      generate Python classes (and diagrams)
  fsmc build --check specs/            exit 1 if generated/ is out of date
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors by raising, so `main` can return 2. Each parser
    leaves itself in the namespace (`parsed_by`); the innermost subcommand's wins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(parsed_by=self)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(self, f"{self.prog}: error: {message}")


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


def _version() -> str:
    try:
        return version("fsmc")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fsmc", description="Resource lifecycles as specs, run as code.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fsmc {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = make_parser()
    try:
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if extra:  # say it with the usage of the (sub)command they were given to
            args.parsed_by.error(f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as error:
        err.write(error.parser.format_usage() + str(error) + "\n")
        return 2
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(out)
        return 2
    try:
        return int(args.run(args, out, err))
    except FsmcError as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    except KeyboardInterrupt:
        err.write("fsmc: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
