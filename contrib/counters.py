"""Live counters: how many transitions each machine made, per event and per state reached.

A bus subscriber cheap enough to leave on: one dictionary update per event under a lock.
`snapshot()` may be read at any time from any thread (the demo's progress bar reads it while
the bus delivers).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from fsmc.runtime import StateChanged

__all__ = ["Counts", "LiveCounters"]


@dataclass(frozen=True)
class Counts:
    """A consistent copy of the counters."""

    total: int
    by_machine: dict[str, int]
    by_event: dict[tuple[str, str], int]
    by_state: dict[tuple[str, str], int]

    def busiest(self, count: int = 5) -> list[tuple[tuple[str, str], int]]:
        """The (machine, event) pairs seen most, largest first."""
        return sorted(self.by_event.items(), key=lambda item: (-item[1], item[0]))[:count]


class LiveCounters:
    """Counts every `StateChanged` it is given:
    `bus.subscribe(counters.count, StateChanged)`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_event: Counter[tuple[str, str]] = Counter()
        self._by_state: Counter[tuple[str, str]] = Counter()

    def count(self, event: StateChanged) -> None:
        with self._lock:
            self._total += 1
            self._by_event[event.machine, event.event] += 1
            self._by_state[event.machine, event.new_state] += 1

    @property
    def total(self) -> int:
        return self._total

    def snapshot(self) -> Counts:
        with self._lock:
            by_event = dict(self._by_event)
            by_state = dict(self._by_state)
            total = self._total
        by_machine: Counter[str] = Counter()
        for (machine, _), number in by_event.items():
            by_machine[machine] += number
        return Counts(total, dict(by_machine), by_event, by_state)
