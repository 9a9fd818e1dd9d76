"""Where webhook subscriptions, their pending deliveries and dead letters, the leases on their
lanes and the replay log are kept: `SubscriptionStore`, on SQLite (a file, so that they survive
a restart, or `":memory:"`, a temporary file removed at close) or on PostgreSQL (a URL: several
service instances share it), safe to share between threads. What it is given was checked
before (`fsmc.notify.subscriptions.validate_subscription`). The replay log's own statements are
in `fsmc.notify.eventlog`, the leases' in `fsmc.notify.leases`; they run on this store's
`Database`.

Pending deliveries are rows, one per (subscription, event), in the order they were recorded
(`seq`): every transaction that adds some first locks the log's head row, so on PostgreSQL too
they commit in `seq` order and a lane reading "after the last one I took" never skips one.

A subscription's dead letters may be bounded: beyond the bound the oldest are removed, and the
subscription's `dropped` count (kept in the file) says how many were. Dead letters are added
one at a time (`add_dead_letter`) or as a batch in one transaction (`add_dead_letters`). A
file written by an earlier version, without that count, is brought up to date when it is
opened. A file that is not a database raises `sqlite3.DatabaseError`, and nothing stays open.

Times are kept as Unix times (`REAL`); `to_json`, what the API shows, writes them as ISO 8601
in UTC (`2026-12-08T01:30:04.250000Z`, like the events' `time`): `iso_time`.
"""

from __future__ import annotations

import builtins
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .database import Database, Sql

__all__ = ["DeadLetter", "Delivery", "Subscription", "SubscriptionStore", "iso_time", "lock_head"]


def iso_time(seconds: float) -> str:
    """A Unix time as the API writes times: ISO 8601 in UTC, to the microsecond, with a `Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Subscription:
    """A tenant's webhook subscription; `created` is a Unix time (ISO 8601 in `to_json`).
    `secret` signs deliveries and is never shown (not in `repr`, not in `to_json`)."""

    id: str
    tenant: str
    topic: str
    kind: str
    url: str
    secret: str = field(repr=False)
    created: float

    def to_json(self) -> dict[str, object]:
        """The subscription as the API shows it: everything but the secret."""
        return {"id": self.id, "tenant": self.tenant, "topic": self.topic, "kind": self.kind,
                "url": self.url, "created": iso_time(self.created)}


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be delivered to `subscription` (its id) after `attempts`
    attempts; `body` is what was sent, `error` the last failure, `time` a Unix time (ISO 8601
    in `to_json`)."""

    subscription: str
    event_id: str
    body: str
    attempts: int
    error: str
    time: float

    def to_json(self) -> dict[str, object]:
        return {"subscription": self.subscription, "event_id": self.event_id,
                "body": self.body, "attempts": self.attempts, "error": self.error,
                "time": iso_time(self.time)}


@dataclass(frozen=True)
class Delivery:
    """An event waiting to be delivered to a subscription; `seq` orders a subscription's."""

    seq: int
    subscription: str
    event_id: str
    body: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created {real} NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions (tenant, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq {serial},
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    time {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_subscription ON dead_letters (subscription, seq);
CREATE TABLE IF NOT EXISTS log_head (
    name TEXT PRIMARY KEY,
    seq {bigint} NOT NULL
);
INSERT INTO log_head (name, seq) VALUES ('events', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS events (
    seq {bigint} PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    owner TEXT,
    body TEXT NOT NULL,
    time {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS deliveries (
    seq {serial},
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (subscription, event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_subscription ON deliveries (subscription, seq);
CREATE TABLE IF NOT EXISTS leases (
    subscription TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    owner TEXT PRIMARY KEY,
    seen {real} NOT NULL
)
"""
_TYPES = {"sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL",
                     "bigint": "INTEGER"},
          "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION",
                         "bigint": "BIGINT"}}

_SUB_COLUMNS = "id, tenant, topic, kind, url, secret, created"
_DEAD_COLUMNS = "subscription, event_id, body, attempts, error, time"
_CHUNK = 500  # values in one IN (...) list


def lock_head(sql: Sql) -> int:
    """In a write transaction: lock the replay log's head row (until the transaction ends) and
    return its last `seq`. Every transaction that appends to the log or adds pending
    deliveries takes it first, so those commit one at a time, in `seq` order."""
    sql.execute("UPDATE log_head SET seq = seq WHERE name = 'events'")
    (seq,) = sql.execute("SELECT seq FROM log_head WHERE name = 'events'").fetchone()
    return int(seq)


class SubscriptionStore:
    """Subscriptions, pending deliveries, dead letters (and, through `fsmc.notify.eventlog` and
    `fsmc.notify.leases`, the replay log and the leases) in the database at `target`: an
    SQLite path (`":memory:"` for a store that lives as long as the object) or a PostgreSQL
    URL. An SQLite file is opened in WAL mode. Lists come back in the order things were added.

    Thread-safe: each call takes a connection of the database's pool for all its statements
    (a write's whole transaction included). Every method blocks (disk, network, another
    writer's lock for up to 10 s): call them from worker threads, not from an event loop."""

    def __init__(self, target: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.db = Database(target)
        try:
            schema = _SCHEMA.format(**_TYPES[self.db.dialect])
            if not self._has_schema():
                with self.db.transaction() as sql:
                    if self.db.postgres:  # instances starting at once create the tables once
                        sql.execute("SELECT pg_advisory_xact_lock(74117)")
                    sql.script(schema)
            self._migrate()
        except BaseException:  # not a database, not writable, ...: leave nothing open
            self.db.close()
            raise

    def _has_schema(self) -> bool:
        """Whether every table is there already (on PostgreSQL, then no DDL runs: `CREATE
        INDEX IF NOT EXISTS` locks its table even when the index exists, and deadlocked with
        running instances' transactions when one started)."""
        if not self.db.postgres:
            return False  # SQLite: the script is cheap and takes the write lock only
        with self.db.read() as sql:
            (count,) = sql.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                "current_schema() AND table_name IN ('subscriptions', 'dead_letters', "
                "'log_head', 'events', 'deliveries', 'leases', 'instances')").fetchone()
        return int(count) == 7

    @property
    def durable(self) -> bool:
        """Whether what it holds outlives the process (False for `":memory:"`)."""
        return self.db.durable

    def _migrate(self) -> None:
        """Bring an SQLite file of an earlier version up to this one: it has no `dropped`
        column (added with the bound on dead letters; 0 for every subscription it holds)."""
        if self.db.postgres:
            return

        def missing(sql: Sql) -> bool:
            columns = {row[1] for row in sql.execute("PRAGMA table_info(subscriptions)")}
            return "dropped" not in columns

        with self.db.read() as sql:
            if not missing(sql):
                return
        with self.db.transaction() as sql:
            if missing(sql):  # another process may have added it meanwhile
                sql.execute("ALTER TABLE subscriptions "
                            "ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0")

    def add(self, tenant: str, topic: str, url: str, secret: str) -> Subscription:
        """Store a new webhook subscription (already checked: see `validate_subscription`)."""
        subscription = Subscription(id="sub_" + secrets.token_hex(8), tenant=tenant,
                                    topic=topic, kind="webhook", url=url, secret=secret,
                                    created=self._clock())
        with self.db.transaction() as sql:
            sql.execute(f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (subscription.id, tenant, topic, subscription.kind, url, secret,
                         subscription.created))
        return subscription

    def get(self, id: str) -> Subscription | None:
        """The subscription `id`, or None if there is none."""
        with self.db.read() as sql:
            row = sql.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = ?",
                              (id,)).fetchone()
        return None if row is None else Subscription(*row)

    def update(self, id: str, *, topic: str | None = None, url: str | None = None,
               secret: str | None = None) -> Subscription | None:
        """Change what is given of the subscription `id` (already checked: see
        `validate_changes`), keeping its id, creation time, dead letters and `dropped`; the
        subscription as it now is, or None if there is none."""
        changes = {name: value for name, value in
                   (("topic", topic), ("url", url), ("secret", secret)) if value is not None}
        with self.db.transaction() as sql:
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                sql.execute(f"UPDATE subscriptions SET {assignments} WHERE id = ?",
                            (*changes.values(), id))
            row = sql.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = ?",
                              (id,)).fetchone()
        return None if row is None else Subscription(*row)

    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        """The subscriptions of `tenant`, or of every tenant if None (for the admin), oldest
        first."""
        with self.db.read() as sql:
            if tenant is None:
                rows = sql.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions ORDER BY seq").fetchall()
            else:
                rows = sql.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE tenant = ? ORDER BY seq",
                    (tenant,)).fetchall()
        return [Subscription(*row) for row in rows]

    def delete(self, id: str) -> bool:
        """Delete the subscription `id`, its pending deliveries, dead letters and lease; False
        if there was none."""
        with self.db.transaction() as sql:
            lock_head(sql)  # no batch being recorded adds deliveries for it meanwhile
            deleted: int = sql.execute("DELETE FROM subscriptions WHERE id = ?", (id,)).rowcount
            for table in ("dead_letters", "deliveries", "leases"):
                sql.execute(f"DELETE FROM {table} WHERE subscription = ?", (id,))
        return deleted > 0

    def add_dead_letter(self, letter: DeadLetter, keep: int | None = None) -> int | None:
        """Keep `letter` as the newest dead letter of its subscription. With `keep`, at most
        `keep` are kept: the oldest beyond it are removed, and counted in the subscription's
        `dropped` (in the same transaction). Returns how many were removed (0 when none), or
        None, with nothing kept, if the subscription no longer exists (as when it was deleted
        while the event was being retried)."""
        _check_keep(keep)
        with self.db.transaction() as sql:
            if not _exists(sql, letter.subscription):
                return None
            _insert(sql, [letter])
            return _trim(sql, letter.subscription, keep, 0)

    def add_dead_letters(self, letters: Iterable[DeadLetter],
                         keep: int | None = None) -> dict[str, int]:
        """Keep `letters` (oldest first, of one subscription or several) as the newest dead
        letters of their subscriptions, all in one transaction. With `keep`, at most `keep`
        are kept per subscription, the oldest going first, as `add_dead_letter` does one
        letter at a time: only the newest `keep` of a subscription's `letters` are written,
        the stored ones beyond the bound are removed, and both are counted in its `dropped`.
        Returns how many were dropped for each subscription that exists (0 when none); the
        letters of one that no longer exists are discarded, and it is not in the result."""
        _check_keep(keep)
        with self.db.transaction() as sql:
            return keep_dead_letters(sql, letters, keep)

    def dropped(self, subscription_id: str) -> int:
        """How many dead letters of a subscription were removed to keep within the bound, ever
        (0 for an unknown subscription)."""
        with self.db.read() as sql:
            row = sql.execute("SELECT dropped FROM subscriptions WHERE id = ?",
                              (subscription_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """The dead letters of a subscription, oldest first."""
        with self.db.read() as sql:
            rows = sql.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
                (subscription_id,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def take_dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """Remove and return the dead letters of a subscription, oldest first."""
        with self.db.transaction() as sql:
            return _take_dead_letters(sql, subscription_id)

    def redrive(self, subscription_id: str) -> int:
        """Make the dead letters of a subscription pending deliveries again, oldest first,
        after those already pending (one transaction); how many. A new failure makes a new
        dead letter."""
        with self.db.transaction() as sql:
            lock_head(sql)
            letters = _take_dead_letters(sql, subscription_id)
            add_deliveries(sql, [(letter.subscription, letter.event_id, letter.body)
                                 for letter in letters])
        return len(letters)

    # -- pending deliveries --------------------------------------------------------------

    def pending(self, subscription_id: str, after: int = 0,
                limit: int = 100) -> builtins.list[Delivery]:
        """Up to `limit` pending deliveries of a subscription after `seq` `after`, in order."""
        with self.db.read() as sql:
            rows = sql.execute("SELECT seq, subscription, event_id, body FROM deliveries "
                               "WHERE subscription = ? AND seq > ? ORDER BY seq LIMIT ?",
                               (subscription_id, after, limit)).fetchall()
        return [Delivery(int(seq), *rest) for seq, *rest in rows]

    def waiting(self) -> int:
        """How many deliveries are pending, of every subscription."""
        with self.db.read() as sql:
            (count,) = sql.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        return int(count)

    def finish(self, done: Sequence[int], letters: Sequence[DeadLetter] = (),
               keep: int | None = None) -> dict[str, int]:
        """In one transaction: the pending deliveries `done` (their `seq`) are no longer
        pending, and `letters` are kept as dead letters (as `add_dead_letters` does: returns
        how many were dropped per subscription)."""
        _check_keep(keep)
        with self.db.transaction() as sql:
            for start in range(0, len(done), _CHUNK):
                part = done[start:start + _CHUNK]
                sql.execute(f"DELETE FROM deliveries WHERE seq IN ({_marks(len(part))})", part)
            return keep_dead_letters(sql, letters, keep) if letters else {}

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        self.db.close()


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def add_deliveries(sql: Sql, rows: Sequence[tuple[str, str, str]]) -> None:
    """In a write transaction that holds the head lock (`lock_head`): (subscription, event id,
    body) rows become pending deliveries, in order; one already pending is not added twice."""
    sql.executemany("INSERT INTO deliveries (subscription, event_id, body) VALUES (?, ?, ?) "
                    "ON CONFLICT (subscription, event_id) DO NOTHING", rows)


def keep_dead_letters(sql: Sql, letters: Iterable[DeadLetter],
                      keep: int | None) -> dict[str, int]:
    """In a write transaction: `SubscriptionStore.add_dead_letters`."""
    grouped: dict[str, builtins.list[DeadLetter]] = {}
    for letter in letters:
        grouped.setdefault(letter.subscription, []).append(letter)
    dropped: dict[str, int] = {}
    for subscription, theirs in grouped.items():
        if not _exists(sql, subscription):
            continue
        kept = theirs if keep is None else theirs[-keep:]
        _insert(sql, kept)
        dropped[subscription] = _trim(sql, subscription, keep, len(theirs) - len(kept))
    return dropped


def _take_dead_letters(sql: Sql, subscription_id: str) -> builtins.list[DeadLetter]:
    rows = sql.execute(
        f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
        (subscription_id,)).fetchall()
    sql.execute("DELETE FROM dead_letters WHERE subscription = ?", (subscription_id,))
    return [DeadLetter(*row) for row in rows]


def _check_keep(keep: int | None) -> None:
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")


def _exists(sql: Sql, subscription: str) -> bool:
    return bool(sql.execute("SELECT 1 FROM subscriptions WHERE id = ?",
                            (subscription,)).fetchone() is not None)


def _insert(sql: Sql, letters: Sequence[DeadLetter]) -> None:
    sql.executemany(f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    [(letter.subscription, letter.event_id, letter.body, letter.attempts,
                      letter.error, letter.time) for letter in letters])


def _trim(sql: Sql, subscription: str, keep: int | None, skipped: int) -> int:
    """In a write transaction: remove the oldest dead letters of `subscription` beyond `keep`,
    and add them and `skipped` (letters never written) to its `dropped`; how many that is."""
    excess = 0
    if keep is not None:
        (count,) = sql.execute("SELECT COUNT(*) FROM dead_letters WHERE subscription = ?",
                               (subscription,)).fetchone()
        excess = max(0, int(count) - keep)
    if excess:
        sql.execute("DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM dead_letters "
                    "WHERE subscription = ? ORDER BY seq LIMIT ?)", (subscription, excess))
    if excess + skipped:
        sql.execute("UPDATE subscriptions SET dropped = dropped + ? WHERE id = ?",
                    (excess + skipped, subscription))
    return excess + skipped
