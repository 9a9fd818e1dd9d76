"""Requests per second per caller: one token bucket per key.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one token or is
refused with the seconds until the next token (the caller's `Retry-After`, rounded up). A bucket
left idle until full again is the same as no bucket, so such buckets are forgotten whenever the
table grows past a bound: memory follows the callers active in the last `burst / rate` seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets keyed by any string (a key's hash, a tenant id: the caller's choice).
    Safe to share between threads."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 *, prune_above: int = 10_000) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not "
                             f"{rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a positive integer, not {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._prune_above = prune_above
        self._next_prune = prune_above
        self._lock = threading.Lock()
        # key -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str) -> float:
        """Take a token for `key`: 0.0 if one was there, else the seconds until one will be
        (nothing is taken then)."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                tokens = float(self.burst)
                if len(self._buckets) >= self._next_prune:
                    self._prune(now)
            else:
                tokens = self._refilled(bucket, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        """How many keys have a bucket (forgotten full ones not counted)."""
        with self._lock:
            return len(self._buckets)

    def _refilled(self, bucket: tuple[float, float], now: float) -> float:
        tokens, then = bucket
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)

    def _prune(self, now: float) -> None:
        """Forget every full bucket. If most are still filling, wait until the table has
        doubled before trying again, so that pruning costs O(1) per request on average."""
        full = [key for key, bucket in self._buckets.items()
                if self._refilled(bucket, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        self._next_prune = max(self._prune_above, 2 * len(self._buckets))
