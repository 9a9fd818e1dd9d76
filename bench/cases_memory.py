"""Case 2, memory and construction time per instance: `tracemalloc` over many instances
(100,000 of the light contenders in a full run; fewer of transitions and python-statemachine,
scaled per instance), against an object with two `__slots__` fields.

Memory is what stays allocated once the instances are built and the garbage collector has run,
divided by their number; the resource ids are made beforehand (not counted). Construction time
is measured apart (without tracemalloc), in CPU time, min and median of repeats."""

from __future__ import annotations

import gc
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench import competitors as c
from bench import machines as m
from bench.report import Section
from bench.timing import Settings, Stat, clock

Factory = Callable[[str], Any]


def _generated_moved(resource_id: str) -> Any:
    vm = m.VirtualMachine(resource_id)
    vm.start_requested()
    return vm


def _same(factory: Factory) -> Callable[[], Factory]:
    return lambda: factory


def contenders() -> dict[str, tuple[str, Callable[[], Factory], bool]]:
    """name → (label, setup returning the factory (not measured), heavy)."""
    return {
        "slots": ("two-field __slots__ object (state, id)", _same(m.Slots2), False),
        "hand": ("hand-written, no lock", _same(m.Hand), False),
        "hand+lock": ("hand-written + lock", _same(m.HandLocked), False),
        "generated": ("generated VirtualMachine, as constructed", _same(m.VirtualMachine),
                      False),
        "generated moved": ("generated, after one transition (stripe assigned)",
                            _same(_generated_moved), False),
        "transitions own": ("transitions, Machine per object", _same(c.transitions_own), True),
        "transitions shared": ("transitions, one Machine, many models",
                               c.transitions_shared_factory, True),
        "statemachine": ("python-statemachine", _same(lambda _id: c.statemachine()), True),
    }


def bytes_per_instance(factory: Factory, ids: list[str]) -> float:
    held: list[Any] = [None] * len(ids)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index, resource_id in enumerate(ids):
            held[index] = factory(resource_id)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return (after - before) / len(ids)


def construction_ns(factory: Factory, ids: list[str], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        held: list[Any] = [None] * len(ids)
        gc.collect()
        enabled = gc.isenabled()
        gc.disable()
        start = clock()
        for index, resource_id in enumerate(ids):
            held[index] = factory(resource_id)
        elapsed = clock() - start
        if enabled:
            gc.enable()
        samples.append(elapsed / len(ids) * 1e9)
        del held
    return samples


def run(settings: Settings) -> Section:
    section = Section("memory", "2. Memory and construction time per instance")
    light = [f"vm-{i}" for i in range(settings.instances)]
    heavy = light[:settings.heavy_instances]
    c.statemachine_class()  # built once, not per instance
    memory: dict[str, list[float]] = {}
    build: dict[str, list[float]] = {}
    labels = {}
    counts = {}
    table = contenders()
    repeats = 3 if settings.quick else 5
    for _ in range(2 if settings.quick else 3):  # memory is exact; repeat to see it is stable
        for key, (label, setup, is_heavy) in table.items():
            ids = heavy if is_heavy else light
            labels[key] = label
            counts[key] = len(ids)
            memory.setdefault(key, []).append(bytes_per_instance(setup(), ids))
    for _ in range(repeats):  # interleaved, like the timers
        for key, (_label, setup, is_heavy) in table.items():
            ids = heavy if is_heavy else light
            build.setdefault(key, []).extend(construction_ns(setup(), ids, 1))
    mem = {key: Stat(min(v), statistics.median(v)) for key, v in memory.items()}
    ctor = {key: Stat.of(v) for key, v in build.items()}
    notes = {key: f"{counts[key]:,} instances" for key in table}
    section.add("memory per instance", "bytes", mem, "slots", labels, notes)
    section.add("construction time per instance", "ns", ctor, "slots", labels, notes)
    for key in ("generated", "generated moved"):
        value = mem[key].min / mem["slots"].min
        section.target(f"memory per instance ≤ 2x a two-field __slots__ object: "
                       f"{labels[key]}", value, "<=", 2.0,
                       f"{value:.2f}x ({mem[key].min:.0f} vs {mem['slots'].min:.0f} B)")
    section.notes.append(
        "Sizes are as tracemalloc sees them: the object, its garbage-collector header and "
        "whatever it allocates (a `threading.Lock` is a Python object plus a `sem_t` from "
        "the raw allocator). A generated instance allocates nothing on its first transition: "
        "it is given one of 256 shared stripes (`fsmc.runtime.exclusion`); the construction "
        "time of that row includes the transition. The shared transitions Machine (a fresh "
        "one for each run, so that its model list does not grow across runs) and the "
        "python-statemachine class are built beforehand and not counted.")
    return section
