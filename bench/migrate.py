"""`fsmc migrate` on a store of 1,000,000 rows: counting, and applying a move of 100,000 rows.

    python -m bench.migrate [--quick] [--rows N] [--moved N] [--pg-url URL | --no-pg]

The store holds `--rows` VirtualMachine rows (default 1,000,000), `--moved` of them (default
100,000) in `Unknown`, a state the spec then removes with `moved Unknown -> Stopped`; the rest
spread over the declared states. Timed, each against a plain statement on the same table in the
same run (the baseline):

- `count`: `fsmc migrate --db URL SPEC` end to end (load the spec, the server's GROUP BY over
  every row, the report) against `SELECT count(*) FROM fsmc_machines` (one scan, no grouping).
- `apply`: `fsmc migrate --apply` end to end (census, then in one transaction keyset batches of
  2,000: per-row compare-and-set on the version, version + 1, one outbox row with its JSON event
  each, the census again) against one `UPDATE ... SET state = 'Stopped', version = version + 1
  WHERE machine = 'VirtualMachine' AND state = 'Unknown'` (rolled back: no CAS per row, no
  outbox).

Targets (issue 25): counting < 5 s and applying < 30 s, on a SQLite file (WAL, synchronous=FULL)
and on PostgreSQL (a private server with default durability, unless `--pg-url` or `--no-pg`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsmc.compiler.cli import main as fsmc_main
from fsmc.runtime.store import SqlStore

from bench.store import postgres

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"count": 5.0, "apply": 30.0}
DECLARED = ("Stopped", "Running", "Starting", "Stopping", "Destroyed", "Expunging", "Migrating",
            "Error")


def moved_spec(folder: Path) -> Path:
    """The real VirtualMachine spec without its `Unknown` state, moved to `Stopped`."""
    text = (ROOT / "specs" / "virtual_machine.fsm").read_text()
    line = next(line for line in text.splitlines(keepends=True)
                if line.strip().startswith("state Unknown "))
    spec = folder / "virtual_machine.fsm"
    spec.write_text(text.replace(line, "    moved Unknown -> Stopped\n"))
    return spec


def fill(store: SqlStore, rows: int, moved: int) -> None:
    """`rows` rows, `moved` of them (every rows/moved-th) in Unknown, the others round-robin
    in the declared states, inserted in batches through the driver (COPY on PostgreSQL)."""
    now = datetime.now(UTC)
    step = rows // moved
    states = itertools.cycle(DECLARED)

    def state_of(n: int) -> str:
        return "Unknown" if n % step == 0 and n // step < moved else next(states)

    proxy = store.engine.raw_connection()
    try:
        dbapi: Any = proxy.dbapi_connection
        cursor = dbapi.cursor()
        if store.engine.dialect.name == "postgresql":
            with cursor.copy("COPY fsmc_machines (machine, resource_id, state, version, "
                             "updated_at) FROM STDIN") as copy:
                for n in range(rows):
                    copy.write_row(("VirtualMachine", f"vm-{n:07d}", state_of(n), 3, now))
        else:
            stamp = now.replace(tzinfo=None).isoformat(" ", "microseconds")
            for start in range(0, rows, 50_000):
                cursor.executemany(
                    "INSERT INTO fsmc_machines (machine, resource_id, state, version, "
                    "updated_at) VALUES (?, ?, ?, ?, ?)",
                    [("VirtualMachine", f"vm-{n:07d}", state_of(n), 3, stamp)
                     for n in range(start, min(rows, start + 50_000))])
        dbapi.commit()
        if store.engine.dialect.name == "postgresql":
            cursor.execute("ANALYZE fsmc_machines")
            dbapi.commit()
    finally:
        proxy.close()


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_cli(*arguments: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = fsmc_main(["migrate", *arguments])
    if code != 0:
        raise RuntimeError(f"fsmc migrate {' '.join(arguments)} exited {code}:\n{out.getvalue()}")


def measure(store: SqlStore, url: str, spec: Path, rows: int, moved: int) -> dict[str, float]:
    fill(store, rows, moved)
    figures = {}
    with store.engine.connect() as conn:
        figures["count baseline"] = timed(
            lambda: conn.exec_driver_sql("SELECT count(*) FROM fsmc_machines").scalar())
        conn.rollback()
    figures["count"] = timed(lambda: run_cli("--db", url, str(spec)))
    with store.engine.connect() as conn:
        figures["apply baseline"] = timed(lambda: conn.exec_driver_sql(
            "UPDATE fsmc_machines SET state = 'Stopped', version = version + 1 "
            "WHERE machine = 'VirtualMachine' AND state = 'Unknown'"))
        conn.rollback()
    figures["apply"] = timed(lambda: run_cli("--db", url, str(spec), "--apply"))
    with store.engine.connect() as conn:
        outbox = conn.exec_driver_sql("SELECT count(*) FROM fsmc_outbox").scalar()
        left = conn.exec_driver_sql(
            "SELECT count(*) FROM fsmc_machines WHERE state = 'Unknown'").scalar()
    if outbox != moved or left != 0:
        raise RuntimeError(f"apply wrote {outbox} outbox rows and left {left} rows in Unknown")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 10,000 moved")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--moved", type=int, default=None)
    parser.add_argument("--pg-url", help="a PostgreSQL URL (postgresql+psycopg://...)")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    moved = args.moved or rows // 10
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="fsmc-bench-migrate-") as folder:
        spec = moved_spec(Path(folder))
        url = f"sqlite:///{folder}/migrate.db"
        with SqlStore(url) as store:
            results.append(("SQLite file, WAL, synchronous=FULL",
                            measure(store, url, spec, rows, moved)))
        if not args.no_pg:
            with postgres(args.pg_url) as pg_url, SqlStore(pg_url) as store:
                results.append(("PostgreSQL (TCP 127.0.0.1)",
                                measure(store, pg_url, spec, rows, moved)))
    print(f"fsmc migrate on {rows:,} rows, a move of {moved:,} rows")
    print(f"{'database':36} {'step':6} {'seconds':>8} {'baseline':>9} {'ratio':>7} "
          f"{'target':>8}  verdict")
    for name, figures in results:
        for step in ("count", "apply"):
            seconds, baseline = figures[step], figures[f"{step} baseline"]
            target = TARGETS[step]
            verdict = "met" if seconds < target else "NOT MET"
            print(f"{name:36} {step:6} {seconds:8.2f} {baseline:9.2f} "
                  f"{seconds / baseline:7.1f} {'< ' + format(target, 'g') + ' s':>8}  {verdict}")


if __name__ == "__main__":
    main()
