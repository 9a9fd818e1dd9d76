"""A machine's spec as data, for tools: what `VirtualMachine.SPEC` holds.

Generated modules build one `MachineSpec` per class from literals; nothing here parses or
checks anything (that is the compiler's job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple


class TransitionSpec(NamedTuple):
    """One (source, event, target) of the spec; a `*` transition appears once per source."""

    source: str
    event: str
    target: str
    guard: str | None = None
    negated: bool = False
    action: str | None = None
    tags: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class MachineSpec:
    """The declared shape of a machine: names in declaration order, docs and transitions."""

    name: str
    doc: str | None
    states: tuple[str, ...]
    events: tuple[str, ...]
    initial: str
    finals: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()
    docs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    transitions: tuple[TransitionSpec, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.docs, MappingProxyType):
            object.__setattr__(self, "docs", MappingProxyType(dict(self.docs)))

    @property
    def start_states(self) -> tuple[str, ...]:
        """Where a new resource may start: the initial state, then the `entry` states."""
        return (self.initial, *(s for s in self.entries if s != self.initial))

    def targets(self, source: str, event: str) -> tuple[TransitionSpec, ...]:
        """The candidate transitions for (source, event), in the order they are tried."""
        return tuple(t for t in self.transitions if t.source == source and t.event == event)
