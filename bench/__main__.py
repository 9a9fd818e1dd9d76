"""The fsmc benchmark suite: every figure a ratio against a baseline measured in the same run.

    python -m bench                 # full run (a few minutes): writes bench/results.json and
                                    # bench/RESULTS.md
    python -m bench --quick         # under a minute; writes files only when asked
    python -m bench --only bus --only async --json out.json
    python -m bench --store         # also run `python -m bench.store` (persisted transitions,
                                    # then `fsmc migrate` on 1,000,000 rows: bench.migrate)
    python -m bench --amqp          # also run `python -m bench.amqp` (RabbitMQ publisher)
    python -m bench --amqp --store  # both, and `python -m bench.durability` (outbox relay
                                    # with confirms, crash-safe journal)
    python -m bench --notify        # also run `python -m bench.notify` (SSE latency, webhooks)
    python -m bench --editing       # also run `python -m bench.editing` (fmt, LSP latency)

Cases: transition (1), memory (2), bus (3), async (4), compile (5), verify (6: assertions,
test paths, log replay). The table and the target
verdicts are printed; the exit status is 0 whatever the verdicts (a benchmark reports, it does
not fail on noise), 1 if a case crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench.report import Section, markdown, text_table, to_json, write_json
from bench.timing import Settings, environment, load_average

HERE = Path(__file__).resolve().parent
CASES = {
    "transition": "bench.cases_transition",
    "memory": "bench.cases_memory",
    "bus": "bench.cases_bus",
    "async": "bench.cases_async",
    "compile": "bench.cases_compile",
    "verify": "bench.cases_verify",
}


# Benchmarks that need a server run in a subprocess with their own baselines and output,
# shown as is: flag → (module, section title).
EXTERNAL = {
    "store": ("bench.store", "6. Persisted transitions and fsmc migrate on 1,000,000 rows "
                             "(python -m bench.store)"),
    "amqp": ("bench.amqp", "7. Broker: confirmed events/s (python -m bench.amqp)"),
    "notify": ("bench.notify", "8. Notification service: SSE latency, webhook rate "
                               "(python -m bench.notify)"),
    "editing": ("bench.editing", "9. Editing: fsmc fmt, LSP diagnostics after an edit "
                                 "(python -m bench.editing)"),
}
# Run when all of their flags are given.
COMBINED = {
    "durability": (("amqp", "store"), "bench.durability",
                   "9. Durability: relay with confirms, crash-safe journal "
                   "(python -m bench.durability)"),
}


def run_external(name: str, quick: bool) -> Section:
    module, title = EXTERNAL[name] if name in EXTERNAL else COMBINED[name][1:]
    section = Section(name, title)
    command = [sys.executable, "-m", module, *(["--quick"] if quick else [])]
    try:
        done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True,
                              timeout=900, check=False)
    except subprocess.TimeoutExpired:
        section.notes.append(f"python -m {module} timed out after 900 s")
        return section
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        section.notes.append(f"python -m {module} failed (exit {done.returncode}): {tail[0]}")
    else:
        read_output(section, done.stdout)
    return section


def read_output(section: Section, output: str) -> None:
    """A script's output shown as is, but its `@target {json}` lines (text, value, op, limit,
    measured) become the section's target verdicts."""
    kept = []
    for line in output.rstrip().splitlines():
        if line.startswith("@target "):
            target = json.loads(line.removeprefix("@target "))
            section.target(target["text"], target["value"], target["op"], target["limit"],
                           target["measured"])
        else:
            kept.append(line)
    section.raw = "\n".join(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (< 60 s)")
    parser.add_argument("--only", action="append", choices=sorted(CASES), metavar="CASE",
                        help=f"run only this case (repeatable): {', '.join(CASES)}")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report here")
    parser.add_argument("--store", action="store_true",
                        help="also run bench/store.py (persisted transitions)")
    parser.add_argument("--amqp", action="store_true",
                        help="also run bench/amqp.py (RabbitMQ publisher vs raw pika)")
    parser.add_argument("--notify", action="store_true",
                        help="also run bench/notify.py (notification service end to end)")
    parser.add_argument("--editing", action="store_true",
                        help="also run bench/editing.py (fsmc fmt, LSP diagnostics latency)")
    args = parser.parse_args(argv)
    settings = Settings.make(args.quick)
    env = environment(settings)
    print(f"fsmc bench ({env['mode']}): Python {env['python']}, {env['cpu']}, "
          f"{env['cpus']} CPUs, load average {env['load_average_at_start']}", flush=True)
    sections: list[Section] = []
    failed = False
    for name in args.only or list(CASES):
        print(f"running {name}...", flush=True)
        start = time.perf_counter()
        try:
            section: Section = importlib.import_module(CASES[name]).run(settings)
        except Exception:
            traceback.print_exc()
            failed = True
            continue
        section.seconds = time.perf_counter() - start
        sections.append(section)
    for name in [*EXTERNAL, *COMBINED]:
        if all(getattr(args, flag) for flag in COMBINED[name][0]) if name in COMBINED \
                else getattr(args, name):
            print(f"running {name}...", flush=True)
            start = time.perf_counter()
            sections.append(run_external(name, args.quick))
            sections[-1].seconds = time.perf_counter() - start
    env["load_average_at_end"] = load_average()
    print(text_table(sections))
    json_path, md_path = args.json, args.markdown
    if not args.quick and not args.only:
        json_path = json_path or HERE / "results.json"
        md_path = md_path or HERE / "RESULTS.md"
    if json_path:
        write_json(json_path, to_json(env, sections))
        print(f"wrote {os.path.relpath(json_path)}")
    if md_path:
        md_path.write_text(markdown(env, sections), encoding="utf-8")
        print(f"wrote {os.path.relpath(md_path)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
