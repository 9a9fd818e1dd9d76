"""Case 6, verification: every assertion of a synthetic spec of 1k / 10k / 100k transitions
(100k in the full run only) with the growth exponent fitted, the test-path plan of the same
spec, and `fsmc replay` throughput on JSON Lines.

Baselines of the same run: for assertions and paths, fsmc's structural checks of the same
model (`analyse_machine`: the rules `fsmc check` runs without assertions); for replay,
`json.loads` of the same lines alone (the parsing every replay has to do).

Times are CPU seconds of the running thread, best and median of the repeats."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from fsmc.compiler.analyses import analyse_machine
from fsmc.compiler.analyses.properties import machine_verdicts
from fsmc.compiler.paths import plan
from fsmc.compiler.replay import Replayer
from fsmc.dsl.loader import load_text, paused_gc
from fsmc.dsl.model import Machine

from bench.compile import growth_exponent
from bench.report import Section
from bench.synthetic import synthetic_assertions, synthetic_spec, with_assertions
from bench.timing import Settings, Stat, clock

LINEAR = 1.1
ASSERTIONS_100K = 2.0
PATHS_100K = 5.0
REPLAY_RATE = 200_000


def best(function: Callable[[], object], repeats: int) -> Stat:
    """Best and median of `repeats` runs, the garbage collector paused as `fsmc check` pauses
    it around the analyses (`paused_gc`)."""
    samples = []
    for _ in range(repeats):
        with paused_gc():
            start = clock()
            function()
            samples.append(clock() - start)
    return Stat(min(samples), statistics.median(samples))


def synthetic_machine(size: int) -> Machine:
    text = with_assertions(synthetic_spec(size), synthetic_assertions(size))
    loaded = load_text(text, "synthetic.fsm")
    assert loaded.spec is not None and not loaded.diagnostics
    return loaded.spec.machines[0]


def replay_lines(events: int, resources: int = 1_000) -> list[str]:
    cycle = [("StartRequested", "Stopped", "Starting"),
             ("OperationSucceeded", "Starting", "Running"),
             ("StopRequested", "Running", "Stopping"),
             ("OperationSucceeded", "Stopping", "Stopped")]
    lines = []
    for index in range(events):
        event, old, new = cycle[(index // resources) % 4]
        lines.append(json.dumps({
            "id": f"{index:032x}", "time": "2026-01-01T00:00:00.000000Z",
            "machine": "VirtualMachine", "resource_id": f"vm-{index % resources}",
            "event": event, "old_state": old, "new_state": new, "tags": [], "payload": {},
            "topic": f"VirtualMachine.{event}"}) + "\n")
    return lines


def run(settings: Settings) -> Section:
    section = Section("verify", "6. Verification: assertions, test paths, log replay")
    sizes = [1_000, 10_000] if settings.quick else [1_000, 10_000, 100_000]
    repeats = {1_000: 5, 10_000: 3, 100_000: 3} if not settings.quick else \
        {1_000: 3, 10_000: 2}
    prove: dict[int, Stat] = {}
    paths: dict[int, Stat] = {}
    names = {"assertions": "all 7 assertions (proved or refuted)",
             "paths": "fsmc paths plan (every transition covered)",
             "structural": "fsmc check's structural rules"}
    for size in sizes:
        machine = synthetic_machine(size)
        verdicts = machine_verdicts(machine)
        assert [v.holds for v in verdicts] == [True, True, True, True, True, False, False]
        found = plan(machine)
        assert not found.unreachable
        stats = {"assertions": best(lambda m=machine: machine_verdicts(m), repeats[size]),
                 "paths": best(lambda m=machine: plan(m), repeats[size]),
                 "structural": best(lambda m=machine: analyse_machine(m), repeats[size])}
        prove[size], paths[size] = stats["assertions"], stats["paths"]
        section.add(f"{size:,} transitions ({repeats[size]} repeats)", "s", stats,
                    "structural", names)
    exponent = growth_exponent(sizes, [prove[s].min for s in sizes])
    section.target(f"assertions linear (fitted growth exponent ≤ {LINEAR})", exponent, "<=",
                   LINEAR, f"exponent {exponent:.2f} over {', '.join(f'{s:,}' for s in sizes)}")
    for label, stats, limit in (("all assertions", prove, ASSERTIONS_100K),
                                ("path generation", paths, PATHS_100K)):
        if 100_000 in stats:
            seconds, how = stats[100_000].min, "measured"
        else:
            seconds = stats[sizes[-1]].min * 10 * (2 if label == "path generation" else 1)
            how = "quick mode: 10x the 10k figure, 20x for paths (not measured)"
        section.target(f"{label} of a 100k-transition spec in < {limit:.0f} s", seconds,
                       "<=", limit, f"{seconds:.2f} s ({how})")
    events = 100_000 if settings.quick else 1_000_000
    lines = replay_lines(events)
    spec = Path(__file__).resolve().parents[1] / "specs" / "virtual_machine.fsm"
    loaded = load_text(spec.read_text("utf-8"), "virtual_machine.fsm")
    assert loaded.spec is not None
    machine = loaded.spec.machines[0]

    def replay() -> None:
        replayer = Replayer([machine])
        replayer.feed("bench.jsonl", lines)
        assert replayer.finish().ok

    def parse_only() -> None:
        loads = json.loads
        for line in lines:
            loads(line)

    rounds = 3 if not settings.quick else 2
    replay_stat, parse_stat = best(replay, rounds), best(parse_only, rounds)
    rate = {"replay": Stat(events / replay_stat.min, events / replay_stat.median),
            "json.loads": Stat(events / parse_stat.min, events / parse_stat.median)}
    section.add(f"replay of {events:,} audit-trail lines, 1,000 resources", "events/s", rate,
                "json.loads", {"replay": "fsmc replay (parse + replay)",
                               "json.loads": "json.loads of the same lines alone"})
    section.target(f"replay ≥ {REPLAY_RATE:,} events/s from JSON Lines", rate["replay"].min,
                   ">=", REPLAY_RATE,
                   f"{rate['replay'].min:,.0f} events/s "
                   f"({rate['replay'].min / rate['json.loads'].min:.2f}x json.loads alone)")
    section.notes.append(
        f"Assertions growth exponent {exponent:.2f}; paths "
        f"{growth_exponent(sizes, [paths[s].min for s in sizes]):.2f}. The spec is "
        "bench/synthetic.py's ring with one assertion of each form (synthetic_assertions). "
        "Replay rates are events per CPU second of the thread (higher is better): replay "
        "decodes audit-trail lines with msgspec into the five fields it needs (the whole line "
        "still checked to be JSON), which is why it can beat json.loads building every dict.")
    return section
