"""Case 5, compile time: parse + check + emit of one synthetic spec of 1k / 10k / 100k
transitions (100k in the full run only), per phase, with the growth exponent fitted over the
sizes. Baselines of the same run: CPython's own `compile()` of the emitted module (turning the
generated source into bytecode, the work Python does on first import), and, per transition,
the smallest size.

Times are CPU seconds of the running thread (everything runs in it), best and median of the
repeats; the grammar is loaded before timing."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from typing import Any

from fsmc.compiler.project import check_results
from fsmc.compiler.pyemit import module_view, render_module
from fsmc.dsl.loader import load_text
from fsmc.dsl.parser import grammar

from bench.compile import growth_exponent
from bench.report import Section
from bench.synthetic import synthetic_spec
from bench.timing import Settings, Stat, clock

LINEAR = 1.05  # linear: the cost per transition grows by at most ~26 % over two decades
LIMIT_100K = 10.0


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = clock()
    result = function()
    return clock() - start, result


def compile_once(text: str) -> dict[str, float]:
    """Seconds per phase of one compile of `text`."""
    parse, loaded = timed(lambda: load_text(text, "synthetic.fsm"))
    check, project = timed(lambda: check_results([loaded]))
    assert project.ok and not project.diagnostics
    spec = project.specs[0]
    emit, source = timed(lambda: render_module(module_view(spec, "synthetic.fsm"), "bench"))
    python, _ = timed(lambda: compile(source, "synthetic.py", "exec"))
    gc.collect()
    gc.disable()
    try:  # diagnostic: the same emit with the cyclic garbage collector paused
        quiet, _ = timed(lambda: render_module(module_view(spec, "synthetic.fsm"), "bench"))
    finally:
        gc.enable()
    gc.collect()
    return {"parse": parse, "check": check, "emit": emit, "total": parse + check + emit,
            "python": python, "emit without gc": quiet}


NAMES = {"parse": "fsmc parse (lexer, parser, model)", "check": "fsmc check (all analyses)",
         "emit": "fsmc emit (Python module)", "total": "fsmc parse + check + emit",
         "python": "CPython compile() of the emitted module",
         "emit without gc": "diagnostic: fsmc emit with the garbage collector paused"}


def run(settings: Settings) -> Section:
    section = Section("compile", "5. Compile time (one synthetic spec)")
    grammar()
    sizes = [1_000, 10_000] if settings.quick else [1_000, 10_000, 100_000]
    repeats = {1_000: 5, 10_000: 3, 100_000: 2} if not settings.quick else \
        {1_000: 3, 10_000: 2}
    totals: dict[int, Stat] = {}
    phases: dict[str, list[float]] = {}
    for size in sizes:
        text = synthetic_spec(size)
        samples: dict[str, list[float]] = {}
        for _ in range(repeats[size]):
            for phase, seconds in compile_once(text).items():
                samples.setdefault(phase, []).append(seconds)
        stats = {phase: Stat(min(v), statistics.median(v)) for phase, v in samples.items()}
        totals[size] = stats["total"]
        for phase, stat in stats.items():
            phases.setdefault(phase, []).append(stat.min)
        section.add(f"{size:,} transitions ({repeats[size]} repeats)", "s", stats, "python",
                    NAMES)
    per = {f"{size:,}": Stat(totals[size].min / size * 1e6, totals[size].median / size * 1e6)
           for size in sizes}
    section.add("parse + check + emit per transition (ratio 1.00x = linear)",
                "µs/transition", per, f"{sizes[0]:,}",
                {f"{size:,}": f"{size:,} transitions" for size in sizes})
    exponent = growth_exponent(sizes, [totals[size].min for size in sizes])
    section.target(f"compile linear (fitted growth exponent ≤ {LINEAR})", exponent, "<=",
                   LINEAR, f"exponent {exponent:.2f} over {', '.join(f'{s:,}' for s in sizes)}")
    if 100_000 in totals:
        seconds, how = totals[100_000].min, "measured"
    else:
        seconds = totals[sizes[-1]].min * (100_000 / sizes[-1]) ** exponent
        how = "extrapolated from the fit (quick mode does not run 100k)"
    section.target(f"100k transitions compile in < {LIMIT_100K:.0f} s", seconds, "<=",
                   LIMIT_100K, f"{seconds:.1f} s ({how})")
    per_phase = ", ".join(f"{NAMES[phase].removeprefix('diagnostic: ')} "
                          f"{growth_exponent(sizes, values):.2f}"
                          for phase, values in phases.items() if phase != "total")
    section.notes.append(
        f"Growth exponent: least-squares slope of log(time) over log(size), {exponent:.2f} "
        f"(1.0 = linear). Per phase: {per_phase}. The synthetic spec: states S0..Sn in a "
        "ring, ten events each, every state reachable and able to reach the final state "
        "(bench/synthetic.py).")
    return section
