"""Where a build's output files go: the modules in the output directory, the diagrams in its
`diagrams/` folder or in a directory of their own (`fsmc build --diagrams DIR`).

A build plan names files relative to the output directory (`nic.py`, `diagrams/nic.Nic.dot`);
an `OutputLayout` maps those names to paths and lists what is there already, so writing, the
drift gate (`--check`) and stale-file removal agree on every file's place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .diagrams.emit import DIAGRAM_DIR

DIAGRAM_PREFIX = f"{DIAGRAM_DIR}/"


@dataclass(frozen=True)
class OutputLayout:
    out_dir: Path
    diagram_dir: Path | None = None  # None: OUT/diagrams

    @property
    def diagrams(self) -> Path:
        return self.diagram_dir if self.diagram_dir is not None else self.out_dir / DIAGRAM_DIR

    def path(self, name: str) -> Path:
        """Where the plan's file `name` goes."""
        if name.startswith(DIAGRAM_PREFIX):
            return self.diagrams / name.removeprefix(DIAGRAM_PREFIX)
        return self.out_dir / name

    def existing(self) -> list[tuple[str, Path]]:
        """The files already in the output directory and the diagrams' directory, each by the
        name a plan would give it, sorted by name."""
        found: dict[str, Path] = {}
        for folder, prefix in ((self.out_dir, ""), (self.diagrams, DIAGRAM_PREFIX)):
            if folder.is_dir():
                found.update((f"{prefix}{path.name}", path) for path in folder.iterdir()
                             if path.is_file())
        return sorted(found.items())
