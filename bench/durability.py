"""What durability costs on the way to the broker, each against its in-memory counterpart in the
same run, on a private RabbitMQ and a SQLite file (and PostgreSQL when its binaries are here).

    python -m bench.durability [--quick] [--events N] [--no-pg]

1. Outbox relay with confirms vs `AmqpPublisher`: confirmed events/s.
   - `AmqpPublisher`: `publisher(event)` for every event, then `close()`, which returns once
     the broker confirmed all (as in `python -m bench.amqp`).
   - `relay, SQLite` / `relay, PostgreSQL`: N committed transitions pending in the outbox;
     timed from the first `store.relay(publisher)` pass until every row is marked delivered,
     which each batch is only once the broker confirmed it (`batch` rows per pass). The rows
     are made pending again between repeats (not timed).
   Target: the relay with confirms >= 70 % of the publisher's confirmed rate.
2. Crash-safe publishing: `publisher(event)` returns once the event is fsynced in the journal
   (group commit) vs the in-memory buffer; posts/s and per-post latency (p50, p99), 1 poster
   and 8 posters, the broker connected, on the folder of `--journal-dir` (default: a
   temporary folder; its file system decides the fsync cost).

Repeats are interleaved; figures are the best and the median. The last lines starting with
`@target` are read by `python -m bench` into its target verdicts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fsmc.runtime import StateChanged
from fsmc.runtime.amqp import AmqpPublisher
from fsmc.runtime.store import SqlStore
from fsmc.runtime.store_sql import OUTBOX
from sqlalchemy import update

from bench.amqp import print_rates, publisher, sample_events
from generated.virtual_machine import VirtualMachine

BATCH = 500
TARGET = 0.70


def publisher_rate(url: str, events: list[StateChanged]) -> float:
    return len(events) / publisher(url, f"bench.{uuid.uuid4().hex[:8]}", events)


def filled_store(url: str, count: int) -> SqlStore:
    """A store with `count` committed transitions pending (100 resources)."""
    store = SqlStore(url, sqlite_pragmas={"synchronous": "NORMAL"})
    machines = [store.create(VirtualMachine, f"vm-{i:03d}") for i in range(100)]
    steps = ("start_requested", "operation_succeeded", "stop_requested", "operation_succeeded")
    for index in range(count):
        machine = machines[index % 100]
        getattr(machine, steps[(index // 100) % 4])()
    return store


def relay_rate(url: str, store: SqlStore, count: int) -> float:
    with store.engine.begin() as conn:  # pending again (not timed)
        conn.execute(update(OUTBOX).values(delivered_at=None, claimed_by=None,
                                           claimed_until=None))
    bridge = AmqpPublisher(url, f"bench.{uuid.uuid4().hex[:8]}", buffer=4 * BATCH)
    try:
        if not bridge.wait_connected(30):
            raise RuntimeError("AmqpPublisher did not connect")
        started = time.perf_counter()
        delivered = store.relay(bridge, batch=BATCH)
        elapsed = time.perf_counter() - started
    finally:
        bridge.close(timeout=60)
    if delivered != count or store.pending():
        raise RuntimeError(f"the relay delivered {delivered} of {count}")
    return count / elapsed


def posting(url: str, events: list[StateChanged], posters: int,
            journal: Path | None) -> tuple[float, list[float]]:
    """Posts/s and each post's latency (s) with `posters` threads sharing `events`."""
    bridge = AmqpPublisher(url, f"bench.{uuid.uuid4().hex[:8]}", buffer=len(events) + 1,
                              journal_path=journal)
    if not bridge.wait_connected(30):
        raise RuntimeError("AmqpPublisher did not connect")
    latencies: list[list[float]] = [[] for _ in range(posters)]
    start = threading.Barrier(posters + 1)

    def poster(index: int) -> None:
        mine, clock, post = latencies[index], time.perf_counter, bridge.publish
        start.wait()
        for event in events[index::posters]:
            before = clock()
            post(event)
            mine.append(clock() - before)

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(posters)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    rate = len(events) / (time.perf_counter() - started)
    bridge.close(timeout=300)
    return rate, [value for values in latencies for value in values]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def interleave(contenders: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, contender in contenders.items():
            rates[name].append(contender())
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, help="events per run (default 20,000; quick 5,000)")
    parser.add_argument("--no-pg", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--journal-dir", type=Path, help="where the journal goes")
    args = parser.parse_args(argv)
    count = args.events or (5_000 if args.quick else 20_000)
    repeat = 3 if args.quick else 5
    from tests import pg, rabbit

    reason = rabbit.available()
    if reason:
        print(f"bench.durability: skipped: {reason}")
        return 0
    broker = rabbit.start()
    database = None if args.no_pg or pg.binaries() is None else pg.start()
    folder = Path(tempfile.mkdtemp(prefix="fsmc-durability-"))
    stores: dict[str, tuple[str, SqlStore]] = {}
    try:
        stores["relay, SQLite"] = (broker.url, filled_store(f"sqlite:///{folder}/outbox.db",
                                                             count))
        if database is not None:
            stores["relay, PostgreSQL"] = (broker.url, filled_store(database.url, count))
        events = sample_events(count)
        contenders: dict[str, Callable[[], float]] = {
            "AmqpPublisher": lambda: publisher_rate(broker.url, events)}
        for name, (url, store) in stores.items():
            contenders[name] = (lambda u=url, s=store: relay_rate(u, s, count))
        rates = interleave(contenders, repeat)

        journal_dir = args.journal_dir or folder
        post_events = events[: count // 2]
        modes = {f"{mode}, {posters} poster{'s' if posters > 1 else ''}": (posters, journal)
                 for posters in (1, 8) for mode, journal in (
                     ("in memory", None), ("journal", journal_dir / "bench.journal"))}
        posts: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in modes}
        for _ in range(repeat):
            for name, (posters, journal) in modes.items():
                posts[name].append(posting(broker.url, post_events, posters, journal))
    finally:
        for _url, store in stores.values():
            store.close()
        broker.stop()
        if database is not None:
            database.stop()

    base, base_median = max(rates["AmqpPublisher"]), statistics.median(rates["AmqpPublisher"])
    print(f"confirmed events/s, {count:,} events per run, {repeat} interleaved repeats, "
          f"relay batch {BATCH}")
    print_rates(rates, "AmqpPublisher", "vs publisher")
    print(f"\nposting to AmqpPublisher, {len(post_events):,} events per run, broker connected "
          f"(journal on {journal_dir})")
    print(f"{'mode':<24} {'posts/s best':>13} {'median':>9} {'p50 µs':>8} {'p99 µs':>8}")
    for name, runs in posts.items():
        values = [rate for rate, _ in runs]
        latencies = [value for _, run in runs for value in run]
        print(f"{name:<24} {max(values):>13,.0f} {statistics.median(values):>9,.0f} "
              f"{percentile(latencies, 0.5) * 1e6:>8.1f} {percentile(latencies, 0.99) * 1e6:>8.1f}")
    for name in stores:
        ratio = max(rates[name]) / base
        print("@target " + json.dumps({
            "text": f"{name} with confirms >= {TARGET:.0%} of AmqpPublisher's confirmed rate",
            "value": ratio, "op": ">=", "limit": TARGET,
            "measured": f"{ratio:.0%} (best; median "
                        f"{statistics.median(rates[name]) / base_median:.0%})"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
