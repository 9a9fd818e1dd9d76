"""The replay log, in the service's database: every event once, numbered (`seq`) in the order it
was recorded, kept for a retention (a number of events and/or an age), shared by every instance
on the database.

`EventLog.record(items)` is how an event enters the service: in one transaction it appends the
events not already in the log (an event id seen again within the retention is a duplicate, and
only counted), and adds a pending delivery for every webhook subscription that wants each one
(or, for a subscription that already has `lane_limit` waiting, a dead letter "not attempted").
Once it returns, the event is durable where it must go: the broker message may be acknowledged.

The transaction starts by locking the log's head row (`fsmc.notify.store.lock_head`), so
recordings commit one at a time in `seq` order, on PostgreSQL too: a reader that asks for
"everything after the last seq I saw" (`after`) never skips an event that commits later with a
smaller seq.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fsmc.runtime.topics import TopicPattern, compile_pattern

from .config import ALL_TENANTS
from .database import Sql
from .store import DeadLetter, SubscriptionStore, add_deliveries, keep_dead_letters, lock_head
from .stream import Item

__all__ = ["EventLog", "Oldest", "Recorded", "Retention"]

_CHUNK = 500  # values in one IN (...) list


@dataclass(frozen=True)
class Retention:
    """How much of the log is kept: the newest `events`, and none older than `age` seconds
    (None: no age limit)."""

    events: int
    age: float | None = None


@dataclass(frozen=True)
class Oldest:
    """The oldest event the log still holds: from when resuming is possible."""

    seq: int
    id: str
    time: float


@dataclass
class Recorded:
    """What `record` did: the events appended (with their seq), the duplicates skipped, and
    the dead letters of full lanes (per subscription: how many kept, how many dropped beyond
    the bound)."""

    items: list[Item] = field(default_factory=list)
    duplicates: int = 0
    dead_lettered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class EventLog:
    """The replay log of `store`'s database (see the module documentation)."""

    def __init__(self, store: SubscriptionStore, retention: Retention, *,
                 clock: Callable[[], float] = time.time) -> None:
        if retention.events < 1 or (retention.age is not None and retention.age <= 0):
            raise ValueError("the retention keeps at least 1 event, for a positive age")
        self.store = store
        self.retention = retention
        self._db = store.db
        self._clock = clock
        self._patterns: dict[str, TopicPattern] = {}

    def record(self, items: Sequence[Item], *, lane_limit: int, keep: int | None,
               not_attempted: str) -> Recorded:
        """Record `items` (their `seq` is ignored: the log numbers them) in one transaction;
        see the module documentation. `keep` bounds each subscription's dead letters."""
        result = Recorded()
        if not items:
            return result
        now = self._clock()
        with self._db.transaction() as sql:
            head = lock_head(sql)
            known: set[str] = set()
            ids = [item.id for item in items]
            for start in range(0, len(ids), _CHUNK):
                part = ids[start:start + _CHUNK]
                known.update(row[0] for row in sql.execute(
                    f"SELECT id FROM events WHERE id IN ({', '.join('?' * len(part))})", part))
            fresh: list[Item] = []
            for item in items:
                if item.id in known:
                    result.duplicates += 1
                    continue
                known.add(item.id)
                head += 1
                fresh.append(Item(head, item.id, item.topic, item.owner, item.body))
            if not fresh:
                return result
            sql.executemany("INSERT INTO events (seq, id, topic, owner, body, time) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [(item.seq, item.id, item.topic, item.owner, item.body, now)
                             for item in fresh])
            sql.execute("UPDATE log_head SET seq = ? WHERE name = 'events'", (head,))
            deliveries, letters = self._fan_out(sql, fresh, lane_limit, not_attempted, now)
            add_deliveries(sql, deliveries)
            if letters:
                result.dropped = keep_dead_letters(sql, letters, keep)
                result.dead_lettered = len(letters)
            self._trim(sql, head, now)
        result.items = fresh
        return result

    def _fan_out(self, sql: Sql, items: list[Item], lane_limit: int, not_attempted: str,
                 now: float) -> tuple[list[tuple[str, str, str]], list[DeadLetter]]:
        """The pending deliveries (subscription, event id, body) and the dead letters of
        full lanes for `items`, from the subscriptions the transaction sees."""
        subscriptions = sql.execute("SELECT id, tenant, topic FROM subscriptions "
                                    "WHERE kind = 'webhook' ORDER BY seq").fetchall()
        if not subscriptions:
            return [], []
        waiting = {row[0]: int(row[1]) for row in sql.execute(
            "SELECT subscription, COUNT(*) FROM deliveries GROUP BY subscription")}
        deliveries: list[tuple[str, str, str]] = []
        letters: list[DeadLetter] = []
        for item in items:
            for ident, tenant, topic in subscriptions:
                if tenant != ALL_TENANTS and item.owner != tenant:
                    continue
                if not self._pattern(topic).matches(item.topic):
                    continue
                count = waiting.get(ident, 0)
                if count < lane_limit:
                    waiting[ident] = count + 1
                    deliveries.append((ident, item.id, item.body))
                else:
                    letters.append(DeadLetter(ident, item.id, item.body, 0, not_attempted, now))
        return deliveries, letters

    def _pattern(self, topic: str) -> TopicPattern:
        pattern = self._patterns.get(topic)
        if pattern is None:
            pattern = self._patterns[topic] = compile_pattern(topic)
        return pattern

    def _trim(self, sql: Sql, head: int, now: float) -> None:
        sql.execute("DELETE FROM events WHERE seq <= ?", (head - self.retention.events,))
        if self.retention.age is not None:
            sql.execute("DELETE FROM events WHERE time < ?", (now - self.retention.age,))

    def head(self) -> int:
        """The seq of the newest event recorded (0: none yet)."""
        with self._db.read() as sql:
            (seq,) = sql.execute("SELECT seq FROM log_head WHERE name = 'events'").fetchone()
        return int(seq)

    def after(self, seq: int, limit: int | None = None) -> builtins.list[Item]:
        """The events after `seq` the log holds, oldest first (at most `limit`)."""
        statement = "SELECT seq, id, topic, owner, body FROM events WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (seq,)
        if limit is not None:
            statement += " LIMIT ?"
            params = (seq, limit)
        with self._db.read() as sql:
            rows = sql.execute(statement, params).fetchall()
        return [Item(int(seq), *rest) for seq, *rest in rows]

    def find(self, event_id: str) -> int | None:
        """The seq of the event `event_id` if the log still holds it."""
        with self._db.read() as sql:
            row = sql.execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else int(row[0])

    def oldest(self) -> Oldest | None:
        """The oldest event held (None: the log is empty)."""
        with self._db.read() as sql:
            row = sql.execute("SELECT seq, id, time FROM events ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else Oldest(int(row[0]), row[1], float(row[2]))

    def trim(self) -> None:
        """Apply the age limit now (recording applies both limits; this is for a quiet log)."""
        if self.retention.age is None:
            return
        with self._db.transaction() as sql:
            sql.execute("DELETE FROM events WHERE time < ?",
                        (self._clock() - self.retention.age,))
