"""Rows of a store against a changed lifecycle: count them, and move rows out of removed states.

`census(conn)` counts the rows of every (machine, state) on the server (`GROUP BY`), so it
costs one scan and no memory per row. `apply_moves(engine, moves)` moves every row of each
(machine, removed state) to its new state in ONE transaction, batch by batch (keyset pages of
`batch` rows in primary-key order: memory is bounded by the batch, not the table):

    UPDATE fsmc_machines SET state = new, version = v + 1, updated_at = t
        WHERE machine = M AND resource_id = R AND state = old AND version = v
    INSERT INTO fsmc_outbox (machine, resource_id, version, body) VALUES (M, R, v + 1, event)

for each row read at version v: the same compare-and-set as a transition, so a row another
writer changed meanwhile is re-read, and moved at its new version only if it is still in a
removed state; nothing is overwritten. (On PostgreSQL a page is one UPDATE joined with the
page's ids and versions as arrays, `RETURNING` the rows it changed, and its outbox rows one
COPY: three round trips per page, not one per row.)

The outbox row is a `StateChanged` whose event is `Migrated` (`MIGRATED`), tagged `migration`,
with payload `{"moved": "Old -> New", "by": "fsmc migrate"}`: topic `Machine.Old.Migrated.New`,
relayed like any transition.

Concurrent writers: on SQLite the transaction takes the write lock first (writers wait for it,
up to their timeout, then find the new versions); on PostgreSQL rows are locked one batch at a
time and writers of other rows go on. Rows that entered a removed state while the pass ran
(an older release still writing) are picked up by another pass, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.engine import URL, make_url

from .events import StateChanged
from .store_bound import encode
from .store_schema import prepare_connection
from .store_sql import MACHINES, HotSql

__all__ = ["MIGRATED", "MIGRATION_TAG", "Census", "MoveResult", "apply_moves", "census",
           "examples", "open_engine"]

MIGRATED = "Migrated"
MIGRATION_TAG = "migration"
_PASSES = 5  # sweeps for rows that entered a removed state while the previous one ran

Census = dict[str, dict[str, int]]


@dataclass(frozen=True)
class MoveResult:
    """What one `moved source -> target` did: `moved` rows (each version + 1, one outbox
    event); `left` rows that another writer took out of `source` before they could move."""

    machine: str
    source: str
    target: str
    moved: int
    left: int = 0


def open_engine(url: str | URL) -> Engine:
    """An engine for `url`; a SQLite file waits up to 30 s for a lock, as a store does."""
    from sqlalchemy import create_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return create_engine(parsed, connect_args={"timeout": 30.0})
    return create_engine(parsed)


def census(conn: Connection) -> Census:
    """Rows per state of every machine, counted by the server: {machine: {state: rows}}."""
    counted: Census = {}
    query = select(MACHINES.c.machine, MACHINES.c.state, func.count()).group_by(
        MACHINES.c.machine, MACHINES.c.state)
    for machine, state, rows in conn.execute(query):
        counted.setdefault(machine, {})[state] = int(rows)
    return counted


def examples(conn: Connection, machine: str, states: Sequence[str], limit: int = 3) -> list[str]:
    """The first `limit` resource ids (in id order) of `machine` in `states`."""
    query = select(MACHINES.c.resource_id).where(MACHINES.c.machine == machine)
    if states:
        query = query.where(MACHINES.c.state.in_(list(states)))
    return list(conn.scalars(query.order_by(MACHINES.c.resource_id).limit(limit)))


def apply_moves(engine: Engine, moves: Mapping[str, Mapping[str, str]], *, batch: int = 2000,
                by: str = "fsmc migrate", where: str = "") -> list[MoveResult]:
    """Move the rows of every `moves[machine][old] = new` in one transaction (see the module
    documentation), after bringing the store's own schema up to date in it; returns one
    result per move, in the order given."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # The write lock first: the pages read below are then the latest, and stay so.
            conn.exec_driver_sql("UPDATE fsmc_machines SET version = version WHERE 0 = 1")
        prepare_connection(conn, create=True, where=where)
        mover = _Mover(conn, by, batch)
        results = [mover.move(machine, source, target)
                   for machine, targets in moves.items() for source, target in targets.items()]
    return results


class _Mover:
    """The statements of one `apply_moves` transaction, on its DBAPI cursor."""

    def __init__(self, conn: Connection, by: str, batch: int) -> None:
        self.conn = conn
        self.by = by
        self.batch = batch
        dialect = conn.dialect
        self.sql = HotSql.for_dialect(dialect)
        self.postgres = dialect.name == "postgresql"
        self.sqlite = dialect.name == "sqlite"
        lock = " FOR UPDATE" if self.postgres else ""
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        # Pages are read without locks: the CAS finds the rows that changed since.
        self.page_sql = (
            f"SELECT resource_id, version FROM fsmc_machines WHERE machine = {mark} AND "
            f"state = {mark} AND resource_id > {mark} ORDER BY resource_id LIMIT {mark}")
        self.reread_sql = (f"SELECT state, version FROM fsmc_machines WHERE machine = {mark} "
                           f"AND resource_id = {mark}{lock}")
        self.update_sql = self.sql.update.sql
        # PostgreSQL: one statement per page, the rows passed as arrays (one round trip).
        self.page_update_sql = (
            "UPDATE fsmc_machines AS m SET state = %s, version = m.version + 1, "
            "updated_at = %s FROM (SELECT unnest(%s::text[]) AS resource_id, "
            "unnest(%s::bigint[]) AS version) AS p WHERE m.machine = %s AND "
            "m.resource_id = p.resource_id AND m.state = %s AND m.version = p.version "
            "RETURNING m.resource_id")
        self.page_insert_sql = (
            "INSERT INTO fsmc_outbox (machine, resource_id, version, body) SELECT %s, "
            "unnest(%s::text[]), unnest(%s::bigint[]), unnest(%s::text[])")
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        self.cursor: Any = dbapi.cursor()

    def move(self, machine: str, source: str, target: str) -> MoveResult:
        moved = left = 0
        for _ in range(_PASSES):
            found = 0
            for page in self._pages(machine, source):
                found += len(page)
                done, gone = self._move_page(machine, source, target, page)
                moved += done
                left += gone
            if not found:
                break
        return MoveResult(machine, source, target, moved, left)

    def _pages(self, machine: str, source: str) -> Iterator[list[tuple[str, int]]]:
        after = ""
        while True:
            self.cursor.execute(self.page_sql, (machine, source, after, self.batch))
            page = [(str(key), int(version)) for key, version in self.cursor.fetchall()]
            if not page:
                return
            yield page
            after = page[-1][0]

    def _move_page(self, machine: str, source: str, target: str,
                   page: list[tuple[str, int]]) -> tuple[int, int]:
        """CAS-move one page; rows that lost the race are re-read and moved at their current
        version while still in `source`. Returns (moved, left by others)."""
        now = datetime.now(UTC)
        stamp = self.sql.time(now)
        params = [(target, version + 1, stamp, machine, key, source, version)
                  for key, version in page]
        done = self._cas(params)
        moved = [(key, version + 1) for key, version in page if key in done]
        left = 0
        for key, version in page:
            if key in done:
                continue
            while True:  # lost the race: read the row again, never overwrite it
                self.cursor.execute(self.reread_sql, (machine, key))
                row = self.cursor.fetchone()
                if row is None or row[0] != source:
                    left += 1
                    break
                version = int(row[1])
                if self._cas([(target, version + 1, stamp, machine, key, source, version)]):
                    moved.append((key, version + 1))
                    break
        self._outbox(machine, source, target, moved, now)
        return len(moved), left

    def _cas(self, params: list[tuple[Any, ...]]) -> set[str]:
        """Run the compare-and-set UPDATE for each row; the keys of the rows it changed."""
        cursor = self.cursor
        keys = [p[4] for p in params]
        if self.postgres:
            target, _, stamp, machine, _, source, _ = params[0]
            cursor.execute(self.page_update_sql, (target, stamp, keys, [p[6] for p in params],
                                                  machine, source))
            return {row[0] for row in cursor.fetchall()}
        if self.sqlite:  # under the write lock taken first: no other writer, nothing to lose
            cursor.executemany(self.update_sql, params)
            if cursor.rowcount != len(params):
                raise RuntimeError(f"{cursor.rowcount} of {len(params)} rows changed under "
                                   "SQLite's write lock; nothing was moved")
            return set(keys)
        done: set[str] = set()
        for one in params:
            cursor.execute(self.update_sql, one)
            if cursor.rowcount == 1:
                done.add(one[4])
        return done

    def _outbox(self, machine: str, source: str, target: str,
                moved: list[tuple[str, int]], now: datetime) -> None:
        if not moved:
            return
        payload = {"moved": f"{source} -> {target}", "by": self.by}
        rows = [(machine, key, version, encode(StateChanged(
            machine, key, MIGRATED, source, target, (MIGRATION_TAG,), dict(payload), time=now)))
            for key, version in moved]
        if self.postgres and hasattr(self.cursor, "copy"):  # psycopg 3: COPY, no quoting
            with self.cursor.copy("COPY fsmc_outbox (machine, resource_id, version, body) "
                                  "FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            self.cursor.executemany(self.sql.insert.sql, rows)

