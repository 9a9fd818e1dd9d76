"""Diagrams of machines: the DOT emitter (`dot`, `view`), rendering through Graphviz
(`render`), the structural diff (`diff`) and the static review site (`review`).

Only the emitter is imported here; it is what `fsmc build` needs.
"""

from __future__ import annotations

from .dot import machine_dot, to_dot
from .view import MachineView, machine_view

__all__ = ["MachineView", "machine_dot", "machine_view", "to_dot"]
