"""Timing helpers shared by the cases: calibrated, interleaved repeats; the run's settings;
the environment (versions, machine, load) recorded with every result."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Timer = Callable[[int], float]
"""Runs the measured operation `n` times (calls), returns the seconds it took."""

clock = time.thread_time
"""Single-threaded cases are timed in CPU time of the running thread: on a shared machine, the
time other processes hold the CPU is not counted (wall time would count it). Cases that
involve several threads use `time.perf_counter` (wall time) instead."""

LIBRARIES = ("fsmc", "blinker", "pyee", "pypubsub", "transitions", "python-statemachine",
             "lark", "jinja2", "networkx")


@dataclass(frozen=True)
class Settings:
    """How hard to measure. `quick` keeps the whole suite under a minute."""

    quick: bool
    rounds: int          # interleaved repeats of each timer
    sample_s: float      # wall time aimed at by one repeat of one timer
    instances: int       # memory: instances of the light contenders
    heavy_instances: int  # memory: instances of transitions / python-statemachine
    events: int          # async: events per run
    async_rounds: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(True, rounds=7, sample_s=0.01, instances=20_000, heavy_instances=300,
                       events=20_000, async_rounds=3)
        return cls(False, rounds=25, sample_s=0.04, instances=100_000, heavy_instances=3_000,
                   events=200_000, async_rounds=7)


@dataclass(frozen=True)
class Stat:
    """min and median of the repeats, in the unit of the case (ns per operation...)."""

    min: float
    median: float

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(min(values), statistics.median(values))


def call_timer(run: Callable[[], object]) -> Timer:
    """A timer calling `run()` n times in a tight loop."""
    def timer(n: int) -> float:
        loop = range(n)
        start = clock()
        for _ in loop:
            run()
        return clock() - start
    return timer


def stmt_timer(code: str, namespace: dict[str, Any]) -> Timer:
    """A timer running the statement `code` n times (`timeit`: no call per repeat)."""
    return timeit.Timer(code, globals=namespace, timer=clock).timeit


def calibrate(timer: Timer, seconds: float) -> int:
    """How many calls make one repeat last about `seconds`."""
    n = 1
    while True:
        elapsed = timer(n)
        if elapsed >= seconds / 5 or n >= 10_000_000:
            return max(1, int(n * seconds / max(elapsed, 1e-9)))
        n *= 10 if elapsed < seconds / 100 else 2


def interleaved(timers: dict[str, tuple[Timer, int]], settings: Settings,
                scale: float = 1e9) -> dict[str, Stat]:
    """Run each timer (`(timer, operations per call)`) round-robin `settings.rounds` times and
    return (min, median) per operation, in ns by default. Interleaving makes a noisy machine
    disturb every contender alike. The garbage collector is off while timing (as `timeit`)."""
    numbers = {name: calibrate(timer, settings.sample_s) for name, (timer, _) in timers.items()}
    samples: dict[str, list[float]] = {name: [] for name in timers}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(settings.rounds):
            for name, (timer, ops) in timers.items():
                n = numbers[name]
                samples[name].append(timer(n) / (n * ops) * scale)
    finally:
        if enabled:
            gc.enable()
    return {name: Stat.of(values) for name, values in samples.items()}


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def environment(settings: Settings) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average(),
        "versions": versions(),
        "mode": "quick" if settings.quick else "full",
        "rounds": settings.rounds,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
