"""The diagrams `fsmc build` writes: `diagrams/<module>.<Machine>.dot`, one per machine.

Registered in `buildplan.EXTRA_EMITTERS`, so `plan()` stays pure and `build --check` compares
these files like the modules. The SVG renderings beside them are best-effort (see `render.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fsmc.compiler.analyses import analyse_spec
from fsmc.dsl.diagnostics import Diagnostic
from fsmc.dsl.model import SpecFile

from .dot import machine_dot

DIAGRAM_DIR = "diagrams"


def diagram_stem(module: str, machine: str) -> str:
    """`diagrams/virtual_machine.VirtualMachine`: the path of a machine's diagram, without the
    suffix, relative to the output directory."""
    return f"{DIAGRAM_DIR}/{module}.{machine}"


def diagram_files(spec: SpecFile, shown: str, module: str,
                  findings: Sequence[Diagnostic] | None = None) -> dict[str, bytes]:
    """The DOT file of every machine of `spec`. The checker's warnings about states (those
    `fsmc check` prints for this machine) grey or highlight their nodes: `findings` are the
    analyses' findings about `spec` (`analyse_spec`), run here when not given."""
    if findings is None:
        findings = analyse_spec(spec)
    return {
        f"{diagram_stem(module, machine.name.text)}.dot":
            machine_dot(machine, findings, source=shown).encode("utf-8")
        for machine in spec.machines
    }
