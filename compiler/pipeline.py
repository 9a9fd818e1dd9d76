"""`fsmc check` and `fsmc build` file by file, each file start to finish in one worker process.

A worker loads a spec, runs the analyses that need only that file and, for a build, emits its
output files; the model never leaves the worker. Only small results cross back to the parent:
the diagnostics, the machines' names (for the rules that look across files), the text (to
quote it in reports) and the output bytes. Sending the models to the parent and out again to
the emitting workers cost more than building them.

The parent adds the cross-file findings (`project_of`); whether any output may be written is
its decision (`buildplan.Build`), since one file's error stops the whole build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fsmc.dsl.diagnostics import Diagnostic, sorted_diagnostics
from fsmc.dsl.loader import load_path, paused_gc
from fsmc.dsl.model import Name, SpecFile
from fsmc.dsl.parser import grammar
from fsmc.dsl.spans import SourceText

from .analyses import analyse_across, analyse_spec
from .parallel import parallel_map
from .project import Project, discover, is_clean, new_findings

# One spec and the analyses' findings about it → its output files (name → bytes). It travels
# to the worker inside a `Job`, so it must pickle: a module-level function, or an instance of
# a module-level class.
Emitter = Callable[[SpecFile, Sequence[Diagnostic]], dict[str, bytes]]


@dataclass(frozen=True)
class Job:
    path: Path
    strict: bool = False
    emit: Emitter | None = None


@dataclass(frozen=True)
class FileOutcome:
    """What the parent needs of one file.

    `machines` names the machines of a clean file (parsed without errors; the only files the
    semantic rules judge). `outputs` holds the emitted files when there is an emitter and the
    file passed on its own (no diagnostic that counts as an error); the cross-file rules may
    still fail the project."""

    path: str
    diagnostics: tuple[Diagnostic, ...]
    source: SourceText | None = None
    machines: tuple[Name, ...] = ()
    outputs: dict[str, bytes] | None = None


def process(jobs: Sequence[Job]) -> list[FileOutcome]:
    """Every job, in order, spread over worker processes when there are enough of them."""
    grammar()  # built before the workers fork, so that they share it instead of each building it
    return parallel_map(process_one, jobs)


def process_one(job: Job) -> FileOutcome:
    result = load_path(job.path)
    spec = result.spec
    if spec is None or not is_clean(result):
        return FileOutcome(result.path, tuple(result.diagnostics),
                           spec.source if spec is not None else None)
    with paused_gc():  # see `paused_gc`: a big model would make every collection traverse it
        findings = new_findings(analyse_spec(spec), result.diagnostics)
        diagnostics = (*result.diagnostics, *findings)
        passed = not diagnostics if job.strict else not any(d.is_error for d in diagnostics)
        outputs = job.emit(spec, findings) if job.emit is not None and passed else None
    return FileOutcome(result.path, diagnostics, spec.source,
                       tuple(machine.name for machine in spec.machines), outputs)


def project_of(outcomes: Sequence[FileOutcome], *, strict: bool = False) -> Project:
    """The project the outcomes make together: their diagnostics and the cross-file ones."""
    diagnostics = [d for outcome in outcomes for d in outcome.diagnostics]
    diagnostics.extend(analyse_across(name for outcome in outcomes for name in outcome.machines))
    return Project(tuple(outcome.path for outcome in outcomes),
                   tuple(sorted_diagnostics(diagnostics)), strict,
                   sources={o.path: o.source for o in outcomes if o.source is not None})


def check_files(arguments: Sequence[str | Path], *, strict: bool = False) -> Project:
    """What `project.check` finds, without bringing the models back (`fsmc check`)."""
    return project_of(process([Job(path, strict) for path in discover(arguments)]),
                      strict=strict)
