"""Spread independent per-file work over the machine's cores.

Loading and emitting one spec file depend on nothing but that file, so a build of hundreds of
files runs them in worker processes (forked, so nothing is re-imported). Small inputs, and
platforms without `fork`, run in this process: the result is the same list either way.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a pool costs more than it saves (start-up is ~50 ms).
MIN_PARALLEL = 32


def workers() -> int:
    """How many worker processes to use: FSMC_JOBS if set, else the usable CPU count."""
    configured = os.environ.get("FSMC_JOBS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def parallel_map(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[function(item) for item in items]`, in order, using worker processes when it pays.
    `function` must be a module-level function (it is pickled by name)."""
    count = workers()
    if count < 2 or len(items) < MIN_PARALLEL or "fork" not in \
            multiprocessing.get_all_start_methods():
        return [function(item) for item in items]
    chunk = max(1, len(items) // (count * 4))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        return list(pool.map(function, items, chunksize=chunk))
