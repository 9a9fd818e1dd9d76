"""Leases on webhook lanes: each subscription's lane runs in one live service instance at a time,
so its deliveries stay in order when several instances share a database.

A lease is a row (subscription, owner, expires), `expires` on the database's clock. An
instance calls `Leases.keep()` every third of the lease's length: in one transaction it says
it is alive (the `instances` table), renews every lease it holds, and takes free ones (none, or
expired) up to its share: the subscriptions divided by the instances seen alive within one
lease length, rounded up (the first instance to start takes them all; one that joins later
takes what is free, such as the lanes of an instance that died). An instance that stops
releases its leases (`release`) so another takes them at its next `keep`; one that dies holds
them until they expire. Leases of deleted subscriptions go with them.
"""

from __future__ import annotations

import math
import os
import secrets
import socket

from .database import Sql
from .store import SubscriptionStore

__all__ = ["Leases", "instance_name"]


def instance_name() -> str:
    """A name unique to one service instance: host, process, random."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """The leases of `owner` in `store`'s database, each `seconds` long."""

    def __init__(self, store: SubscriptionStore, seconds: float, owner: str | None = None
                 ) -> None:
        if seconds <= 0:
            raise ValueError(f"a lease lasts a positive number of seconds, not {seconds!r}")
        self.seconds = seconds
        self.owner = owner or instance_name()
        self._db = store.db

    def keep(self) -> set[str]:
        """Renew what this instance holds, take free leases up to its share; the ids of the
        subscriptions whose lease it holds now (for `seconds` from the start of the call)."""
        now, owner, seconds = self._db.now, self.owner, self.seconds
        with self._db.transaction() as sql:
            sql.execute(f"INSERT INTO instances (owner, seen) VALUES (?, {now}) "
                        f"ON CONFLICT (owner) DO UPDATE SET seen = {now}", (owner,))
            sql.execute(f"DELETE FROM instances WHERE seen < {now} - ?", (seconds * 10,))
            sql.execute("DELETE FROM leases WHERE subscription NOT IN "
                        "(SELECT id FROM subscriptions)")
            sql.execute(f"UPDATE leases SET expires = {now} + ? WHERE owner = ?",
                        (seconds, owner))
            (alive,) = sql.execute(f"SELECT COUNT(*) FROM instances WHERE seen >= {now} - ?",
                                   (seconds,)).fetchone()
            (total,) = sql.execute("SELECT COUNT(*) FROM subscriptions").fetchone()
            held = _held(sql, owner)
            room = math.ceil(int(total) / max(1, int(alive))) - len(held)
            if room > 0:
                free = [row[0] for row in sql.execute(
                    f"SELECT s.id FROM subscriptions s LEFT JOIN leases l "
                    f"ON l.subscription = s.id WHERE l.subscription IS NULL "
                    f"OR l.expires < {now} ORDER BY s.seq LIMIT ?", (room,))]
                for subscription in free:
                    sql.execute(f"INSERT INTO leases (subscription, owner, expires) "
                                f"VALUES (?, ?, {now} + ?) ON CONFLICT (subscription) DO UPDATE "
                                f"SET owner = excluded.owner, expires = excluded.expires "
                                f"WHERE leases.expires < {now}", (subscription, owner, seconds))
                held = _held(sql, owner)
        return held

    def release(self, subscriptions: set[str] | None = None) -> None:
        """Give up the leases on `subscriptions` (None: all this instance holds), and say
        this instance is gone, so others take them at once."""
        with self._db.transaction() as sql:
            if subscriptions is None:
                sql.execute("DELETE FROM leases WHERE owner = ?", (self.owner,))
                sql.execute("DELETE FROM instances WHERE owner = ?", (self.owner,))
            else:
                for subscription in subscriptions:
                    sql.execute("DELETE FROM leases WHERE owner = ? AND subscription = ?",
                                (self.owner, subscription))


def _held(sql: Sql, owner: str) -> set[str]:
    return {row[0] for row in sql.execute("SELECT subscription FROM leases WHERE owner = ?",
                                          (owner,))}
