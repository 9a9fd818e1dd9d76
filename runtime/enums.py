"""The enum base of generated `State` and `Event` classes."""

from __future__ import annotations

import enum


class MachineEnum(enum.StrEnum):
    """A string enum whose members are their names: `machine.state == "Allocated"` holds,
    `json.dumps({"state": machine.state})` writes `"Allocated"`, `str()` and f-strings give the
    name.

    Members hash as the strings they are (`str.__hash__`, C-level and cached), not through
    `Enum.__hash__` (a Python-level function, ~70 ns), which keeps the dispatch-table lookup
    of every transition cheap; a table keyed by members is also found by plain names.
    """

    __hash__ = str.__hash__
