"""A set of spec files checked together: discovery, loading, analysis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fsmc.dsl.diagnostics import Diagnostic, Severity, sorted_diagnostics
from fsmc.dsl.loader import LoadResult, SpecError, load_path, paused_gc
from fsmc.dsl.model import SpecFile

from .analyses import analyse
from .parallel import parallel_map

SPEC_SUFFIX = ".fsm"


class UsageError(SpecError):
    """A command-line argument that names nothing usable (missing file, wrong kind)."""


def discover(arguments: Sequence[str | Path]) -> list[Path]:
    """The spec files named by `arguments`: files as given, directories searched for `*.fsm`
    recursively. Sorted within each directory, duplicates dropped."""
    found: dict[Path, None] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            for spec in sorted(path.rglob(f"*{SPEC_SUFFIX}")):
                if spec.is_file():
                    found.setdefault(spec, None)
        elif path.is_file():
            found.setdefault(path, None)
        elif path.exists():
            raise UsageError(f"{path}: not a file or directory")
        else:
            raise UsageError(f"{path}: no such file or directory")
    return list(found)


@dataclass(frozen=True)
class Project:
    """Everything `fsmc check` learnt about a set of files."""

    results: tuple[LoadResult, ...]
    diagnostics: tuple[Diagnostic, ...]
    strict: bool = False

    @property
    def specs(self) -> list[SpecFile]:
        return [r.spec for r in self.results if r.spec is not None]

    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if self.severity(d) is Severity.ERROR]

    def severity(self, diagnostic: Diagnostic) -> Severity:
        return Severity.ERROR if self.strict else diagnostic.level

    @property
    def ok(self) -> bool:
        return not self.errors()

    def failed_paths(self) -> set[str]:
        return {d.span.path for d in self.errors()}


def check(arguments: Sequence[str | Path], *, strict: bool = False) -> Project:
    """Load and analyse every spec named by `arguments`."""
    results = tuple(parallel_map(load_path, discover(arguments)))
    return check_results(results, strict=strict)


def check_results(results: Sequence[LoadResult], *, strict: bool = False) -> Project:
    diagnostics = [d for result in results for d in result.diagnostics]
    # Semantic rules run only on files that parsed; a file whose syntax is broken would only
    # produce follow-on noise.
    clean = [r.spec for r in results if r.spec is not None and not any(
        d.is_error for d in r.diagnostics)]
    with paused_gc():
        diagnostics.extend(analyse(clean))
    return Project(tuple(results), tuple(sorted_diagnostics(diagnostics)), strict)
