"""Persisted transitions: a bound `VirtualMachine` (`fsmc.runtime.store`) against a hand-written
compare-and-set with the same driver, on the same tables, in the same run.

    python -m bench.store [--quick] [--pg-url URL | --no-pg] [--no-migrate]

Each row times the cycle Stopped → Starting → Running → Stopping → Stopped on one resource:
- `fsmc`: `store.load(VirtualMachine, ...)`, then its event methods. Every transition: the
  machine's full path (event built), the payload encoded as JSON, `UPDATE … WHERE state = old
  AND version = v`, `INSERT` of the outbox row, commit, then the state changes.
- `hand`: the DBAPI connection of the same driver (sqlite3 / psycopg), no SQLAlchemy: a dict
  `{state: target}` lookup, the same `UPDATE … WHERE` (rowcount checked) and an `INSERT` of an
  outbox row with the same columns and a JSON body of the same fields (uuid4 id, UTC time), one
  commit per transition. It is what one would write by hand to get the same guarantees.

On PostgreSQL the store sends both as one statement (`WITH moved AS (UPDATE … RETURNING …)
INSERT … SELECT … FROM moved`) in autocommit: one round trip instead of four (BEGIN, UPDATE,
INSERT, COMMIT). `hand 1-stmt` is the same trick written by hand, to show what the Python side
costs on its own.

Databases: a SQLite file in WAL mode, with `synchronous=FULL` (SQLite's default: one fsync per
commit) and `synchronous=NORMAL` (no fsync per commit: the case where Python overhead shows
most); PostgreSQL (a private server started from Debian's binaries with default durability,
over TCP on 127.0.0.1, unless `--pg-url` names one or `--no-pg`). Figures: transitions per
second, the best and the median of interleaved repeats, and each as a ratio to `hand`.

Then `bench.migrate` (unless `--no-migrate`): `fsmc migrate` counting 1,000,000 rows and
applying a move of 100,000 of them, with its targets (100,000 and 10,000 with `--quick`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsmc.runtime.store import SqlStore

from generated.virtual_machine import VirtualMachine

CYCLE = (("Stopped", "StartRequested", "Starting"), ("Starting", "OperationSucceeded", "Running"),
         ("Running", "StopRequested", "Stopping"), ("Stopping", "OperationSucceeded", "Stopped"))


def fsmc_runner(store: SqlStore, resource: str) -> Callable[[int], None]:
    vm = store.load(VirtualMachine, resource)

    def run(cycles: int) -> None:
        for _ in range(cycles):
            vm.start_requested()
            vm.operation_succeeded()
            vm.stop_requested()
            vm.operation_succeeded()

    return run


def hand_runner(store: SqlStore, resource: str, *, one_statement: bool = False,
                ) -> tuple[Callable[[int], None], Callable[[], None]]:
    """The hand-written baseline on a raw DBAPI connection (returns run and close).
    `one_statement` (PostgreSQL): the UPDATE and the INSERT as one statement in autocommit,
    the way the store runs them there."""
    proxy = store.engine.raw_connection()
    conn = proxy.dbapi_connection
    assert conn is not None
    cursor = conn.cursor()
    sqlite = store.engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    update = (f"UPDATE fsmc_machines SET state = {mark}, version = {mark}, updated_at = {mark} "
              f"WHERE machine = {mark} AND resource_id = {mark} AND state = {mark} "
              f"AND version = {mark}")
    insert = (f"INSERT INTO fsmc_outbox (machine, resource_id, version, body) "
              f"VALUES ({mark}, {mark}, {mark}, {mark})")
    cursor.execute(f"SELECT state, version FROM fsmc_machines WHERE machine = {mark} "
                   f"AND resource_id = {mark}", ("VirtualMachine", resource))
    state, version = cursor.fetchone()
    conn.rollback()
    if one_statement:
        conn.autocommit = True
        update = (f"WITH moved AS ({update} RETURNING machine, resource_id, version) "
                  "INSERT INTO fsmc_outbox (machine, resource_id, version, body) "
                  "SELECT machine, resource_id, version, %s FROM moved")
    position = {"Stopped": 0, "Starting": 1, "Running": 2, "Stopping": 3}[state]
    steps = [(CYCLE * 2)[position + i] for i in range(4)]
    current = {"version": int(version)}

    def run(cycles: int) -> None:
        v = current["version"]
        for _ in range(cycles):
            for old, event, new in steps:
                now = datetime.now(UTC)
                body = json.dumps({
                    "id": str(uuid.uuid4()), "time": now.isoformat(), "machine": "VirtualMachine",
                    "resource_id": resource, "event": event, "old_state": old, "new_state": new,
                    "tags": [], "payload": {},
                    "topic": f"VirtualMachine.{old}.{event}.{new}"})
                stamp: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now
                if one_statement:
                    cursor.execute(update, (new, v + 1, stamp, "VirtualMachine", resource, old,
                                            v, body))
                    if cursor.rowcount != 1:
                        raise RuntimeError("lost a race")
                else:
                    cursor.execute(update, (new, v + 1, stamp, "VirtualMachine", resource,
                                            old, v))
                    if cursor.rowcount != 1:
                        conn.rollback()
                        raise RuntimeError("lost a race")
                    cursor.execute(insert, ("VirtualMachine", resource, v + 1, body))
                    conn.commit()
                v += 1
        current["version"] = v

    def close() -> None:
        if one_statement:
            conn.autocommit = False
        proxy.close()

    return run, close


def measure(store: SqlStore, cycles: int, repeats: int) -> dict[str, list[float]]:
    """Transitions per second of each runner, repeats interleaved."""
    one = store.engine.dialect.name == "postgresql"
    runners: dict[str, Callable[[int], None]] = {}
    closers = []
    store.create(VirtualMachine, "bench-fsmc")
    runners["fsmc"] = fsmc_runner(store, "bench-fsmc")
    for label, one_statement in (("hand", False), ("hand 1-stmt", True))[:1 + one]:
        store.create(VirtualMachine, f"bench-{label}")
        run, close = hand_runner(store, f"bench-{label}", one_statement=one_statement)
        runners[label] = run
        closers.append(close)
    for run in runners.values():
        run(max(1, cycles // 10))  # warm up: connections, caches, prepared statements
    rates: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(repeats):
        for label, run in runners.items():
            start = time.perf_counter()
            run(cycles)
            rates[label].append(cycles * 4 / (time.perf_counter() - start))
    for close in closers:
        close()
    return rates


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """`url`, or the URL of a private server started for the block (and stopped after it)."""
    if url is not None:
        yield url
        return
    from tests import pg

    server = pg.start()
    try:
        yield server.url
    finally:
        server.stop()


def sqlite_store(folder: Path, synchronous: str) -> SqlStore:
    return SqlStore(f"sqlite:///{folder}/bench-{synchronous.lower()}.db",
                    sqlite_pragmas={"synchronous": synchronous})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument("--pg-url", help="a PostgreSQL URL (postgresql+psycopg://...)")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--no-migrate", action="store_true", help="skip bench.migrate")
    args = parser.parse_args(argv)
    cycles, repeats = (100, 3) if args.quick else (500, 5)
    results: list[tuple[str, dict[str, list[float]]]] = []
    with tempfile.TemporaryDirectory(prefix="fsmc-bench-") as folder:
        for synchronous in ("FULL", "NORMAL"):
            store = sqlite_store(Path(folder), synchronous)
            results.append((f"SQLite WAL synchronous={synchronous}",
                            measure(store, cycles, repeats)))
            store.close()
    if not args.no_pg:
        with postgres(args.pg_url) as url:
            store = SqlStore(url)
            results.append(("PostgreSQL (TCP 127.0.0.1)", measure(store, cycles, repeats)))
            store.close()
    print(f"{'database':30} {'runner':12} {'best/s':>9} {'median/s':>9} {'vs hand':>8} "
          f"{'(median)':>8}")
    for name, rates in results:
        best_hand, median_hand = max(rates["hand"]), statistics.median(rates["hand"])
        for label, values in rates.items():
            best, median = max(values), statistics.median(values)
            print(f"{name:30} {label:12} {best:9,.0f} {median:9,.0f} {best / best_hand:8.2f} "
                  f"{median / median_hand:8.2f}")
    if not args.no_migrate:
        from bench import migrate

        print()
        migrate.main([*(["--quick"] if args.quick else []),
                      *(["--pg-url", args.pg_url] if args.pg_url else []),
                      *(["--no-pg"] if args.no_pg else [])])


if __name__ == "__main__":
    main()
