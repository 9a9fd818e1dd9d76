"""The warnings about dead letters dropped beyond a subscription's bound: at most one per
subscription a minute (by default), each with the count since the last one, so that a receiver
that is down for hours does not flood the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

__all__ = ["DropWarnings"]

logger = logging.getLogger("fsmc.notify")


class DropWarnings:
    """The warnings about dropped dead letters: at most one per subscription every `interval`
    seconds, each with how many were dropped since the last one. A count noted too soon after
    a warning waits for `flush` (the dead-letter thread calls it when it is due)."""

    def __init__(self, keep: int, interval: float) -> None:
        self._keep = keep
        self._interval = interval
        self._lock = threading.Lock()
        self._warned: dict[str, float] = {}  # subscription -> time.monotonic() of its last one
        self._pending: dict[str, int] = {}  # subscription -> dropped since its last warning

    def note(self, subscription: str, dropped: int) -> None:
        """`dropped` more letters of `subscription` were dropped: warn now if it may be."""
        if dropped <= 0:
            return
        with self._lock:
            self._pending[subscription] = self._pending.get(subscription, 0) + dropped
            last = self._warned.get(subscription)
            due = last is None or time.monotonic() - last >= self._interval
            told = self._take([subscription]) if due else []
        self._log(told)

    def flush(self, everything: bool = False) -> float | None:
        """Log the counts whose warning is due (all of them if `everything`); the seconds
        until the next one is, or None when none waits."""
        now = time.monotonic()
        with self._lock:
            due = [subscription for subscription in self._pending
                   if everything or now - self._warned[subscription] >= self._interval]
            told = self._take(due)
            for subscription, last in list(self._warned.items()):  # forget the quiet ones
                if subscription not in self._pending and now - last >= self._interval:
                    del self._warned[subscription]
            wait = min((self._warned[subscription] + self._interval - now
                        for subscription in self._pending), default=None)
        self._log(told)
        return None if wait is None else max(0.0, wait)

    def _take(self, subscriptions: Iterable[str]) -> list[tuple[str, int, bool]]:
        """With the lock: (subscription, count, warned before) of each, now warned."""
        now = time.monotonic()
        told = []
        for subscription in subscriptions:
            told.append((subscription, self._pending.pop(subscription),
                         subscription in self._warned))
            self._warned[subscription] = now
        return told

    def _log(self, told: list[tuple[str, int, bool]]) -> None:
        for subscription, count, again in told:  # the id only: never the URL or the secret
            logger.warning("webhook %s: more than %d dead letters; dropped the %d oldest%s",
                           subscription, self._keep, count,
                           " since the last warning" if again else "")
