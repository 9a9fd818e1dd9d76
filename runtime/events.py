"""Provisional StateChanged (replaced by the event module being written)."""

from __future__ import annotations

import itertools
import time as _time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

_ids = itertools.count()


class StateChanged:
    __slots__ = ("_n", "_ns", "event", "machine", "new_state", "old_state", "payload",
                 "resource_id", "tags")

    def __init__(self, machine: str, resource_id: object, event: str, old_state: str,
                 new_state: str, tags: tuple[str, ...], payload: Mapping[str, Any]) -> None:
        self.machine = machine
        self.resource_id = resource_id
        self.event = event
        self.old_state = old_state
        self.new_state = new_state
        self.tags = tags
        self.payload = MappingProxyType(dict(payload))
        self._n = next(_ids)
        self._ns = _time.time_ns()

    @property
    def id(self) -> str:
        return f"x-{self._n}"

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self._ns / 1e9, UTC)

    @property
    def topic(self) -> str:
        return f"{self.machine}.{self.old_state}.{self.event}.{self.new_state}"


class DeadEvent:
    def __init__(self, event: object) -> None:
        self.event = event
