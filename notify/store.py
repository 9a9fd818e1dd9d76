"""Where webhook subscriptions and their dead letters are kept: `SubscriptionStore`, on SQLite
(a file, so that they survive a restart, or `":memory:"`), safe to share between threads.
What it is given was checked before (`fsmc.notify.subscriptions.validate_subscription`).

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["DeadLetter", "Subscription", "SubscriptionStore", "iso_time"]


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created REAL NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions (tenant, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_subscription ON dead_letters (subscription, seq);
"""

_SUB_COLUMNS = "id, tenant, topic, kind, url, secret, created"
_DEAD_COLUMNS = "subscription, event_id, body, attempts, error, time"


class SubscriptionStore:
    """Subscriptions and dead letters in SQLite at `path` (`":memory:"` for a store that lives
    as long as the object). A file is opened in WAL mode. Lists come back in the order things
    were added.

    Thread-safe: one connection (opened with `check_same_thread=False`) and one lock, held by
    every method around all its statements (a write's whole transaction included), so any
    thread may call any method and no two threads ever use the connection at once, whatever
    `sqlite3.threadsafety` is. Every method blocks (disk, the lock, another process's write
    lock for up to 10 s): call them from worker threads, not from an event loop."""

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        name = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(name, check_same_thread=False, isolation_level=None,
                                     timeout=10.0)
        try:
            if name != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            self._migrate()
        except BaseException:  # not a database, not writable, ...: leave nothing open
            self._conn.close()
            raise

    def _migrate(self) -> None:
        """Bring a file of an earlier version up to this one: it has no `dropped` column
        (added with the bound on dead letters; 0 for every subscription it holds)."""
        def missing() -> bool:
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(subscriptions)")}
            return "dropped" not in columns

        if missing():
            with self._transaction() as conn:
                if missing():  # another process may have added it meanwhile
                    conn.execute("ALTER TABLE subscriptions "
                                 "ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, tenant: str, topic: str, url: str, secret: str) -> Subscription:
        """Store a new webhook subscription (already checked: see `validate_subscription`)."""
        subscription = Subscription(id="sub_" + secrets.token_hex(8), tenant=tenant,
                                    topic=topic, kind="webhook", url=url, secret=secret,
                                    created=self._clock())
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (subscription.id, tenant, topic, subscription.kind, url, secret,
                          subscription.created))
        return subscription

    def get(self, id: str) -> Subscription | None:
        """The subscription `id`, or None if there is none."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = ?",
                                     (id,)).fetchone()
        return None if row is None else Subscription(*row)

    def update(self, id: str, *, topic: str | None = None, url: str | None = None,
               secret: str | None = None) -> Subscription | None:
        """Change what is given of the subscription `id` (already checked: see
        `validate_changes`), keeping its id, creation time, dead letters and `dropped`; the
        subscription as it now is, or None if there is none."""
        changes = {name: value for name, value in
                   (("topic", topic), ("url", url), ("secret", secret)) if value is not None}
        with self._transaction() as conn:
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                conn.execute(f"UPDATE subscriptions SET {assignments} WHERE id = ?",
                             (*changes.values(), id))
            row = conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = ?",
                               (id,)).fetchone()
        return None if row is None else Subscription(*row)

    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        """The subscriptions of `tenant`, or of every tenant if None (for the admin), oldest
        first."""
        with self._lock:
            if tenant is None:
                rows = self._conn.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions ORDER BY seq").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE tenant = ? ORDER BY seq",
                    (tenant,)).fetchall()
        return [Subscription(*row) for row in rows]

    def delete(self, id: str) -> bool:
        """Delete the subscription `id` and its dead letters; False if there was none."""
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM subscriptions WHERE id = ?", (id,)).rowcount
            conn.execute("DELETE FROM dead_letters WHERE subscription = ?", (id,))
        return deleted > 0

    def add_dead_letter(self, letter: DeadLetter, keep: int | None = None) -> int | None:
        """Keep `letter` as the newest dead letter of its subscription. With `keep`, at most
        `keep` are kept: the oldest beyond it are removed, and counted in the subscription's
        `dropped` (in the same transaction). Returns how many were removed (0 when none), or
        None, with nothing kept, if the subscription no longer exists (as when it was deleted
        while the event was being retried)."""
        _check_keep(keep)
        with self._transaction() as conn:
            if not _exists(conn, letter.subscription):
                return None
            _insert(conn, [letter])
            return _trim(conn, letter.subscription, keep, 0)

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
        grouped: dict[str, builtins.list[DeadLetter]] = {}
        for letter in letters:
            grouped.setdefault(letter.subscription, []).append(letter)
        dropped: dict[str, int] = {}
        if not grouped:
            return dropped
        with self._transaction() as conn:
            for subscription, theirs in grouped.items():
                if not _exists(conn, subscription):
                    continue
                kept = theirs if keep is None else theirs[-keep:]
                _insert(conn, kept)
                dropped[subscription] = _trim(conn, subscription, keep,
                                              len(theirs) - len(kept))
        return dropped

    def dropped(self, subscription_id: str) -> int:
        """How many dead letters of a subscription were removed to keep within the bound, ever
        (0 for an unknown subscription)."""
        with self._lock:
            row = self._conn.execute("SELECT dropped FROM subscriptions WHERE id = ?",
                                     (subscription_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """The dead letters of a subscription, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
                (subscription_id,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def take_dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """Remove and return the dead letters of a subscription, oldest first (for a redrive:
        the caller delivers them again, and a new failure makes a new dead letter)."""
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
                (subscription_id,)).fetchall()
            conn.execute("DELETE FROM dead_letters WHERE subscription = ?", (subscription_id,))
        return [DeadLetter(*row) for row in rows]

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        with self._lock:
            self._conn.close()


def _check_keep(keep: int | None) -> None:
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")


def _exists(conn: sqlite3.Connection, subscription: str) -> bool:
    return conn.execute("SELECT 1 FROM subscriptions WHERE id = ?",
                        (subscription,)).fetchone() is not None


def _insert(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
    conn.executemany(f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                     [(letter.subscription, letter.event_id, letter.body, letter.attempts,
                       letter.error, letter.time) for letter in letters])


def _trim(conn: sqlite3.Connection, subscription: str, keep: int | None, skipped: int) -> int:
    """In a write transaction: remove the oldest dead letters of `subscription` beyond `keep`,
    and add them and `skipped` (letters never written) to its `dropped`; how many that is."""
    excess = 0
    if keep is not None:
        (count,) = conn.execute("SELECT COUNT(*) FROM dead_letters WHERE subscription = ?",
                                (subscription,)).fetchone()
        excess = max(0, int(count) - keep)
    if excess:
        conn.execute("DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM dead_letters "
                     "WHERE subscription = ? ORDER BY seq LIMIT ?)", (subscription, excess))
    if excess + skipped:
        conn.execute("UPDATE subscriptions SET dropped = dropped + ? WHERE id = ?",
                     (excess + skipped, subscription))
    return excess + skipped
