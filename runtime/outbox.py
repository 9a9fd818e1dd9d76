"""The outbox relay: committed transitions → an event bus, at least once, in order per resource.

Each outbox row is one committed transition of a bound machine (`fsmc.runtime.store`). A relay
pass takes pending rows, posts each one's `StateChanged` (rebuilt with `from_dict`: same id,
same time) to the bus, and marks them delivered. What it guarantees:

- **At least once.** A row is marked delivered only after `bus.post` returned for it. A relay
  that dies in between (crash, kill -9, lost connection) leaves its rows pending and they are
  posted again later, so subscribers that must not act twice deduplicate by event `id`.
- **Commit order per resource.** A resource's rows are posted in the order their transitions
  committed (their `id`, which grows with the version). Resources are independent.
- **Several relays, one delivery at a time.** Any number of relays (threads, processes, hosts)
  may run against one database; a resource's pending rows are taken by one relay at a time,
  whole, so no row is posted by two relays at once and order holds across them:
  - PostgreSQL: the first pending row of each resource is locked (`FOR UPDATE SKIP LOCKED`)
    for the transaction that posts that resource's rows; a relay that dies drops its
    connection, and the server releases its locks at once.
  - SQLite (and any other database): a lease. A relay marks the rows it takes with its name
    and a deadline (`lease` seconds); others skip every pending row of a resource with a live
    lease. A relay that dies holds its rows until the lease runs out; one that is slower than
    its lease may see them posted a second time by another relay.

`OutboxRelay(store, bus)` runs passes in a background thread: at once when a bound machine of
the same store commits in this process, otherwise every `interval` seconds (other processes'
commits are found by polling).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, exists, select, tuple_, update
from sqlalchemy.sql import ColumnElement

from .dispatch import Bus
from .events import StateChanged
from .store_sql import OUTBOX

if TYPE_CHECKING:
    from .store import SqlStore

__all__ = ["OutboxRelay", "relay_pass"]

_log = logging.getLogger("fsmc")
_names = itertools.count(1)


def relay_name() -> str:
    """A name unique to one relay: host, process, counter."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{next(_names)}"


def relay_pass(store: SqlStore, bus: Bus, *, batch: int = 100, limit: int | None = None,
               lease: float = 60.0, name: str | None = None,
               counted: Callable[[int], object] | None = None) -> int:
    """Deliver pending rows until none is left that this relay may take (or `limit` rows were
    posted); return how many were posted. `counted(n)` is told of every batch marked
    delivered, also when a later post fails and the pass raises."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    deliver = _deliver_locked if store._row_locks else _deliver_leased
    owner = name or relay_name()
    total = 0
    while limit is None or total < limit:
        size = batch if limit is None else min(batch, limit - total)
        posted: list[int] = []
        try:
            deliver(store, bus, size, lease, owner, posted)
        finally:
            if posted and counted is not None:
                counted(len(posted))
        if not posted:
            break
        total += len(posted)
    return total


def _pending() -> ColumnElement[bool]:
    return OUTBOX.c.delivered_at.is_(None)


def _same_resource(other: Any) -> ColumnElement[bool]:
    return and_(other.c.machine == OUTBOX.c.machine,
                other.c.resource_id == OUTBOX.c.resource_id, other.c.delivered_at.is_(None))


def _post_all(bus: Bus, rows: Iterable[Sequence[Any]], posted: list[int]) -> None:
    """Post (id, body) rows in order, noting each id once its post returned."""
    for row_id, body in rows:
        bus.post(StateChanged.from_dict(json.loads(body)))
        posted.append(row_id)


def _mark(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(
            delivered_at=datetime.now(UTC), claimed_until=None))


# -- PostgreSQL: row locks -----------------------------------------------------------------------

def _deliver_locked(store: SqlStore, bus: Bus, size: int, lease: float, owner: str,
                    posted: list[int]) -> None:
    """Lock the first pending row of up to `size` resources, post those resources' pending
    rows, mark them, commit: all in one transaction. `posted` gets the ids marked."""
    earlier = OUTBOX.alias("earlier")
    heads = (select(OUTBOX.c.machine, OUTBOX.c.resource_id)
             .where(_pending(), ~exists().where(_same_resource(earlier),
                                                 earlier.c.id < OUTBOX.c.id))
             .order_by(OUTBOX.c.id).limit(size).with_for_update(skip_locked=True))
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            owned = [tuple(row) for row in conn.execute(heads)]
            if not owned:
                transaction.rollback()
                return
            rows = conn.execute(
                select(OUTBOX.c.id, OUTBOX.c.body)
                .where(_pending(), tuple_(OUTBOX.c.machine, OUTBOX.c.resource_id).in_(owned))
                .order_by(OUTBOX.c.id)).all()
            try:
                _post_all(bus, rows, posted)
            finally:
                _mark(conn, posted)
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
                posted.clear()  # not marked after all: they will be posted again
            raise


# -- SQLite and others: leases -------------------------------------------------------------------

def _deliver_leased(store: SqlStore, bus: Bus, size: int, lease: float, owner: str,
                    posted: list[int]) -> None:
    """Claim up to `size` rows (one statement), post them with no transaction open, then mark
    them delivered (and give back any left unposted). `posted` gets the ids marked."""
    token = f"{owner}#{time.monotonic_ns()}"
    now = time.time()
    leased = OUTBOX.alias("leased")
    free = ~exists().where(_same_resource(leased), leased.c.claimed_until > now,
                           leased.c.claimed_by != token)
    claimable = select(OUTBOX.c.id).where(_pending(), free).order_by(OUTBOX.c.id).limit(size)
    unleased = OUTBOX.c.claimed_until.is_(None) | (OUTBOX.c.claimed_until <= now)
    with store._connection(join=False) as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(claimable), _pending(), unleased)
                     .values(claimed_by=token, claimed_until=now + lease))
        rows = conn.execute(select(OUTBOX.c.id, OUTBOX.c.body)
                            .where(OUTBOX.c.claimed_by == token, _pending())
                            .order_by(OUTBOX.c.id)).all()
    if not rows:
        return
    done: list[int] = []
    try:
        _post_all(bus, rows, done)
    finally:
        with store._connection(join=False) as conn:
            _mark(conn, done)
            conn.execute(update(OUTBOX)
                         .where(OUTBOX.c.claimed_by == token, _pending())
                         .values(claimed_by=None, claimed_until=None))
        posted.extend(done)


# -- the background relay ----------------------------------------------------------------------

class OutboxRelay:
    """Runs `store.relay(bus)` in a daemon thread until `stop()`.

    A pass starts at once when a bound machine of `store` commits in this process, otherwise
    every `interval` seconds. A failing pass (database away, a bus that raises) is reported to
    `on_error(exc)` (default: logged on the `fsmc` logger) and retried after a pause that
    doubles up to `max_backoff` seconds. `delivered` counts the events posted so far."""

    def __init__(self, store: SqlStore, bus: Bus, *, interval: float = 1.0, batch: int = 100,
                 lease: float = 60.0, max_backoff: float = 30.0,
                 on_error: Callable[[Exception], object] | None = None,
                 name: str | None = None) -> None:
        self.store = store
        self.bus = bus
        self.interval = interval
        self.batch = batch
        self.lease = lease
        self.max_backoff = max_backoff
        self.name = name or relay_name()
        self.delivered = 0
        self._on_error = on_error or _log_error
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> OutboxRelay:
        if self._thread is not None:
            raise RuntimeError("this relay was started already")
        self._thread = threading.Thread(target=self._run, name=f"fsmc-relay {self.name}",
                                        daemon=True)
        self.store._add_waker(self._wake)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish the current pass, run one last pass, and stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store._remove_waker(self._wake)

    def run_once(self) -> int:
        """One pass in the calling thread."""
        return relay_pass(self.store, self.bus, batch=self.batch, lease=self.lease,
                          name=self.name, counted=self._count)

    def _count(self, posted: int) -> None:
        self.delivered += posted

    def _run(self) -> None:
        failures = 0
        while True:
            stopping = self._stopping.is_set()
            self._wake.clear()
            try:
                posted = self.run_once()
                failures = 0
            except Exception as error:
                failures += 1
                _report(self._on_error, error)
                posted = 0
            if stopping:
                return
            if not posted:
                pause = self.interval if not failures else min(
                    self.max_backoff, self.interval * 2 ** (failures - 1))
                self._wake.wait(pause)

    def __enter__(self) -> OutboxRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _log_error(error: Exception) -> None:
    _log.error("outbox relay pass failed", exc_info=error)


def _report(on_error: Callable[[Exception], object], error: Exception) -> None:
    try:
        on_error(error)
    except Exception:
        _log.exception("outbox relay on_error raised")
