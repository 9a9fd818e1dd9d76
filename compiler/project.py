"""A set of spec files checked together: discovery, loading, analysis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fsmc.dsl.diagnostics import Diagnostic, Severity, sorted_diagnostics
from fsmc.dsl.loader import LoadResult, SpecError, load_path, paused_gc
from fsmc.dsl.model import SpecFile
from fsmc.dsl.spans import SourceText

from .analyses import analyse
from .parallel import parallel_map

SPEC_SUFFIX = ".fsm"


class UsageError(SpecError):
    """A command-line argument that names nothing usable (missing file, wrong kind)."""


def discover(arguments: Sequence[str | Path]) -> list[Path]:
    """The spec files named by `arguments`: files as given, directories searched for `*.fsm`
    recursively. Sorted within each directory, duplicates dropped. Raises `UsageError` when
    they name no spec at all (`empty_directories` names the folders that hold none)."""
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
    if not found:
        named = ", ".join(str(argument) for argument in arguments) or "no path"
        raise UsageError(f"nothing to check: {named} holds no spec (*{SPEC_SUFFIX} file)")
    return list(found)


def empty_directories(arguments: Sequence[str | Path]) -> list[Path]:
    """The directories among `arguments` that hold no spec."""
    return [Path(argument) for argument in arguments if Path(argument).is_dir()
            and not any(path.is_file() for path in Path(argument).rglob(f"*{SPEC_SUFFIX}"))]


@dataclass(frozen=True)
class Project:
    """Everything a check learnt about a set of files: their diagnostics, their texts (to quote
    in reports) and, when the check kept them, their models.

    `check` keeps the models of the files that parsed (`render`, `review` and the tests read
    them); `fsmc check` and `fsmc build` leave them in the worker processes that loaded them
    (`pipeline.py`), so their projects have no `specs`."""

    paths: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    strict: bool = False
    specs: tuple[SpecFile, ...] = ()
    sources: Mapping[str, SourceText] = field(default_factory=dict)

    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if self.severity(d) is Severity.ERROR]

    def severity(self, diagnostic: Diagnostic) -> Severity:
        return Severity.ERROR if self.strict else diagnostic.level

    @property
    def ok(self) -> bool:
        return not self.errors()

    def failed_paths(self) -> set[str]:
        return {d.span.path for d in self.errors()}


def is_clean(result: LoadResult) -> bool:
    """Whether the semantic rules run on a file: it parsed. (A file whose syntax is broken
    would only produce follow-on noise.) The builder's errors (a keyword used as a name, a
    second guard, a bad escape) leave a sound model, so the rules run and every problem of
    the file is reported at once."""
    return result.spec is not None


def new_findings(findings: Iterable[Diagnostic],
                 front_end: Sequence[Diagnostic]) -> list[Diagnostic]:
    """The rules' `findings` less those at a place the front end already reported an error
    (`state if` is a keyword used as a name; that it is no Python name adds nothing)."""
    taken = {(d.span.path, d.span.line, d.span.column) for d in front_end if d.is_error}
    return [d for d in findings if (d.span.path, d.span.line, d.span.column) not in taken]


def check(arguments: Sequence[str | Path], *, strict: bool = False) -> Project:
    """Load and analyse every spec named by `arguments`, keeping the models."""
    results = tuple(parallel_map(load_path, discover(arguments)))
    return check_results(results, strict=strict)


def check_results(results: Sequence[LoadResult], *, strict: bool = False) -> Project:
    front_end = [d for result in results for d in result.diagnostics]
    parsed = [(r.path, r.spec) for r in results if r.spec is not None]
    clean = [r.spec for r in results if r.spec is not None and is_clean(r)]
    with paused_gc():
        diagnostics = [*front_end, *new_findings(analyse(clean), front_end)]
    return Project(tuple(r.path for r in results), tuple(sorted_diagnostics(diagnostics)),
                   strict, tuple(spec for _, spec in parsed),
                   {path: spec.source for path, spec in parsed})
