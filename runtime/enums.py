"""The enum base of generated `State` and `Event` classes."""

from __future__ import annotations

import enum


class MachineEnum(enum.Enum):
    """An `Enum` whose members hash by identity.

    Members are singletons compared by identity, so this changes no result; it replaces
    `Enum.__hash__` (a Python-level function, ~70 ns) by the C-level object hash, which makes
    the dispatch-table lookup on every transition several times cheaper.
    """

    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.name
