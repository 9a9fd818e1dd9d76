"""The outbox relay: committed transitions → an event bus or a broker, at least once, in order
per resource.

Each outbox row is one committed transition of a bound machine (`fsmc.runtime.store`). A relay
pass takes a batch of pending rows (at most `batch` rows), hands each one's `StateChanged`
(rebuilt with `from_dict`: same id, same time) to the target, and marks them delivered. The
target is either

- a **confirming sink** (`fsmc.runtime.confirm.ConfirmingSink`, such as an `AmqpPublisher`):
  the batch goes to `target.send(events)` and a row is marked delivered only once the sink
  confirmed its event (for RabbitMQ: a publisher confirm, so the broker holds it). Rows whose
  events are not confirmed within `confirm_timeout` seconds (broker away) stay pending, the
  pass raises `NotConfirmed`, and they are sent again later; or
- a **bus** (anything with `post`, such as an `EventBus`): a row is marked delivered once
  `bus.post` returned for it. A bus that forwards to a broker through a buffer has not
  delivered anything by then: give the relay the publisher itself.

What it guarantees:

- **At least once.** Nothing is marked before the target has it (confirmed, or `post`
  returned). A relay that dies at any point (crash, kill -9, lost connection) leaves its
  unmarked rows pending and they are handed out again later, so receivers that must not act
  twice deduplicate by event `id`.
- **Commit order per resource.** A resource's rows are handed out in the order their
  transitions committed (their `id`, which grows with the version), and a row is marked only
  if every earlier row of its resource in the batch was, so what stays pending is always the
  tail of a resource's history. Resources are independent.
- **Several relays, one delivery at a time.** Any number of relays (threads, processes, hosts)
  may run against one database; a resource's pending rows are taken by one relay at a time,
  so no row is handed out by two relays at once and order holds across them:
  - PostgreSQL: the first pending row of each resource is locked (`FOR UPDATE SKIP LOCKED`)
    for the transaction that hands out that resource's rows (at most `batch` rows in all); a
    relay that dies drops its connection, and the server releases its locks at once.
  - SQLite (and any other database): a lease. A relay marks the rows it takes with its name
    and a deadline (`lease` seconds); others skip every pending row of a resource with a live
    lease. A relay that dies holds its rows until the lease runs out, except from a relay of
    the same `name` (a restarted one), which takes them over at once: give each relay a
    name of its own that survives its restarts. One slower than its lease (keep
    `confirm_timeout` below it) may see its rows handed out a second time by another relay.

`OutboxRelay(store, bus)` (`bus`: a bus or a confirming sink, the relay's target) runs passes
in a background thread: at once when a bound machine of the same store commits in this
process, otherwise every `interval` seconds (other processes' commits are found by polling);
after a failed pass it backs off.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, tuple_, update
from sqlalchemy.sql import ColumnElement

from .confirm import ConfirmingSink
from .dispatch import Bus
from .errors import FsmcError
from .events import StateChanged
from .store_sql import OUTBOX

if TYPE_CHECKING:
    from .store import SqlStore

__all__ = ["NotConfirmed", "OutboxRelay", "Target", "relay_pass"]

Target = Bus | ConfirmingSink


class NotConfirmed(FsmcError):
    """A relay pass gave up waiting for the sink's confirms: `unconfirmed` rows of the batch
    stay pending (and are handed out again later); the confirmed ones before them were
    marked."""

    def __init__(self, message: str, *, unconfirmed: int) -> None:
        super().__init__(message)
        self.unconfirmed = unconfirmed

    def __reduce__(self) -> tuple[object, ...]:
        return (_not_confirmed, (str(self), self.unconfirmed))


def _not_confirmed(message: str, unconfirmed: int) -> NotConfirmed:
    return NotConfirmed(message, unconfirmed=unconfirmed)

_log = logging.getLogger("fsmc")
_names = itertools.count(1)


def relay_name() -> str:
    """A name unique to one relay: host, process, counter."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{next(_names)}"


def relay_pass(store: SqlStore, bus: Target, *, batch: int = 100, limit: int | None = None,
               lease: float = 60.0, name: str | None = None,
               counted: Callable[[int], object] | None = None, confirm_timeout: float = 30.0,
               abandon: Callable[[], bool] | None = None) -> int:
    """Deliver pending rows until none is left that this relay may take (or `limit` rows were
    taken); return how many were marked delivered. `counted(n)` is told of every batch
    marked, also when a later batch fails and the pass raises.

    With a confirming sink, the next batch is taken and sent while the previous one waits for
    its confirms (two batches in flight, so the database and the broker work at the same
    time); a batch waits up to `confirm_timeout` seconds for its confirms, less if `abandon()`
    turns true meanwhile (checked every 0.1 s); then `NotConfirmed` is raised."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if confirm_timeout <= 0:
        raise ValueError(f"confirm_timeout must be positive, got {confirm_timeout}")
    rows_of: Source = _Locks(store) if store._row_locks else _Leases(store, lease,
                                                                     name or relay_name())
    if isinstance(bus, ConfirmingSink):
        sink = bus

        def hand_out(rows: Sequence[Row]) -> Outcome:
            return _Confirmed(sink, rows, confirm_timeout, abandon or _never)
        depth = 2
    else:
        plain = bus

        def hand_out(rows: Sequence[Row]) -> Outcome:
            return _Posted(plain, rows)
        depth = 1
    in_flight: deque[tuple[Taken, Outcome]] = deque()
    blocked: set[tuple[str, str]] = set()  # resources with a row left pending in this pass
    taken = marked = 0
    drained = False
    try:
        while True:
            if len(in_flight) < depth and not drained and (limit is None or taken < limit):
                size = batch if limit is None else min(batch, limit - taken)
                next_batch = rows_of.take(size, [each for each, _ in in_flight])
                if next_batch is None:
                    drained = not in_flight  # else what the batches in flight hold may free
                else:
                    taken += len(next_batch.rows)
                    in_flight.append((next_batch, hand_out(next_batch.rows)))
                    continue
            if not in_flight:
                return marked
            done, outcome = in_flight[0]
            ids = outcome.delivered(blocked, wait=True)
            in_flight.popleft()
            rows_of.settle(done, ids)
            marked += len(ids)
            if ids and counted is not None:
                counted(len(ids))
            outcome.raise_if_failed(len(ids))
    finally:
        while in_flight:  # a batch failed: mark what the others have delivered by now
            done, outcome = in_flight.popleft()
            ids = outcome.delivered(blocked, wait=False)
            rows_of.settle(done, ids)
            if ids and counted is not None:
                counted(len(ids))


def _never() -> bool:
    return False


Row = Sequence[Any]  # (id, machine, resource_id, body), in id order


def _event(row: Row) -> StateChanged:
    return StateChanged.from_dict(json.loads(row[3]))


class Outcome:
    """What became of one batch handed out: which rows the target has."""

    def delivered(self, blocked: set[tuple[str, str]], *, wait: bool) -> list[int]:
        """The ids of the rows delivered that have no undelivered row of their resource
        before them (in this batch or an earlier one: `blocked`, which this extends)."""
        raise NotImplementedError

    def raise_if_failed(self, marked: int) -> None:
        raise NotImplementedError


def _prefix(rows: Sequence[Row], has: Sequence[bool], blocked: set[tuple[str, str]]) -> list[int]:
    ids = []
    for (row_id, machine, resource, _body), delivered in zip(rows, has, strict=False):
        if delivered and (machine, resource) not in blocked:
            ids.append(row_id)
        else:
            blocked.add((machine, resource))
    for _row_id, machine, resource, _body in rows[len(has):]:
        blocked.add((machine, resource))
    return ids


class _Posted(Outcome):
    """Posted to a bus now, in order, until a post raised."""

    def __init__(self, bus: Bus, rows: Sequence[Row]) -> None:
        self.rows = rows
        self.posted: list[bool] = []
        self.error: BaseException | None = None
        try:
            for row in rows:
                bus.post(_event(row))
                self.posted.append(True)
        except BaseException as error:
            self.error = error

    def delivered(self, blocked: set[tuple[str, str]], *, wait: bool) -> list[int]:
        return _prefix(self.rows, self.posted, blocked)

    def raise_if_failed(self, marked: int) -> None:
        if self.error is not None:
            raise self.error


class _Confirmed(Outcome):
    """Sent to a confirming sink as one batch; delivered once confirmed."""

    def __init__(self, sink: ConfirmingSink, rows: Sequence[Row], timeout: float,
                 abandon: Callable[[], bool]) -> None:
        self.sink = sink
        self.rows = rows
        self.abandon = abandon
        self.deadline = time.monotonic() + timeout
        self.confirmation = sink.send([_event(row) for row in rows])

    def delivered(self, blocked: set[tuple[str, str]], *, wait: bool) -> list[int]:
        confirmation = self.confirmation
        while wait and not confirmation.wait(
                min(0.1, max(0.0, self.deadline - time.monotonic()))):
            if confirmation.done or self.abandon() or time.monotonic() >= self.deadline:
                break
        return _prefix(self.rows, confirmation.confirmed_flags(), blocked)

    def raise_if_failed(self, marked: int) -> None:
        left = len(self.rows) - marked
        if left:
            raise NotConfirmed(f"{left} of {len(self.rows)} outbox rows not confirmed by "
                               f"{self.sink!r} ({self.confirmation!r}); they stay pending",
                               unconfirmed=left)


def _pending() -> ColumnElement[bool]:
    return OUTBOX.c.delivered_at.is_(None)


_ROW = (OUTBOX.c.id, OUTBOX.c.machine, OUTBOX.c.resource_id, OUTBOX.c.body)


def _mark(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(
            delivered_at=datetime.now(UTC), claimed_until=None))


class Taken:
    """Rows a relay took, and what it holds them with (a transaction or a lease token)."""

    def __init__(self, rows: Sequence[Row], token: str = "",
                 conn: Connection | None = None) -> None:
        self.rows = rows
        self.token = token
        self.conn = conn


class Source:
    """Where a relay takes rows from, and marks them."""

    def take(self, size: int, in_flight: list[Taken]) -> Taken | None:
        raise NotImplementedError

    def settle(self, taken: Taken, ids: list[int]) -> None:
        raise NotImplementedError


# -- PostgreSQL: row locks -----------------------------------------------------------------------

def _among(resources: Sequence[tuple[Any, ...]]) -> ColumnElement[bool]:
    return tuple_(OUTBOX.c.machine, OUTBOX.c.resource_id).in_(resources)


class _Locks(Source):
    """Lock the first pending row of up to `size` resources and take the first `size` of
    those resources' pending rows (locked too), in a transaction that marks them and commits
    once they are delivered (`settle`)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def take(self, size: int, in_flight: list[Taken]) -> Taken | None:
        # Each resource's first pending row, oldest first (one pass over the pending rows'
        # index), then locked unless another relay holds it (or has delivered it meanwhile:
        # a resource's first pending row changes only by being delivered).
        first = (select(func.min(OUTBOX.c.id)).where(_pending())
                 .group_by(OUTBOX.c.machine, OUTBOX.c.resource_id)
                 .order_by(func.min(OUTBOX.c.id)).limit(size))
        heads = (select(OUTBOX.c.machine, OUTBOX.c.resource_id)
                 .where(OUTBOX.c.id.in_(first.scalar_subquery()), _pending())
                 .with_for_update(skip_locked=True))
        # Resources whose heads a batch in flight has locked: this batch may take their
        # rows after those in flight, locking them (so that once that batch commits, no
        # other relay takes them: their first pending row is locked by this transaction).
        ours = {(row[1], row[2]) for each in in_flight for row in each.rows}
        sent = [row[0] for each in in_flight for row in each.rows]
        conn = self.store.engine.connect()
        try:
            conn.begin()
            owned = [tuple(row) for row in conn.execute(heads)]
            wanted: ColumnElement[bool] | None = _among(owned) if owned else None
            if ours:
                continuing = _among(sorted(ours)) & OUTBOX.c.id.not_in(sent)
                wanted = continuing if wanted is None else wanted | continuing
            rows = [] if wanted is None else conn.execute(
                select(*_ROW).where(_pending(), wanted).order_by(OUTBOX.c.id).limit(size)
                .with_for_update(of=OUTBOX)).all()
        except BaseException:
            conn.close()
            raise
        if not rows:
            conn.close()
            return None
        return Taken(rows, conn=conn)

    def settle(self, taken: Taken, ids: list[int]) -> None:
        conn = taken.conn
        assert conn is not None
        try:
            _mark(conn, ids)
            conn.commit()
        finally:
            conn.close()  # rolls back what was not committed: the rows stay pending


# -- SQLite and others: leases -------------------------------------------------------------------

class _Leases(Source):
    """Claim up to `size` rows (one statement) under a token of `owner`'s; hand them out with
    no transaction open; then mark them delivered and give back any left unmarked. Leases
    taken under `owner` before (by an earlier life of this relay), other than those of the
    batches in flight, count as free."""

    def __init__(self, store: SqlStore, lease: float, owner: str) -> None:
        self.store = store
        self.lease = lease
        self.owner = owner

    def take(self, size: int, in_flight: list[Taken]) -> Taken | None:
        token = f"{self.owner}#{time.monotonic_ns()}"
        busy = [each.token for each in in_flight]
        now = time.time()
        leased = OUTBOX.alias("leased")
        # The resources others hold, found once (one pass over the pending rows), not once
        # per candidate row. Rows of this relay's batches in flight are not others': the
        # next batch may take the rows after them (they are sent after them, in order).
        held = select(leased.c.machine, leased.c.resource_id).where(
            leased.c.delivered_at.is_(None), leased.c.claimed_until > now,
            ~leased.c.claimed_by.startswith(f"{self.owner}#", autoescape=True))
        free: ColumnElement[bool] = tuple_(OUTBOX.c.machine, OUTBOX.c.resource_id).not_in(held)
        if busy:
            free = free & (OUTBOX.c.claimed_by.is_(None) | OUTBOX.c.claimed_by.not_in(busy))
        claimable = select(OUTBOX.c.id).where(_pending(), free).order_by(OUTBOX.c.id) \
            .limit(size)
        mine: ColumnElement[bool] = OUTBOX.c.claimed_by.startswith(f"{self.owner}#",
                                                                   autoescape=True)
        if busy:
            mine = mine & OUTBOX.c.claimed_by.not_in(busy)
        unleased = OUTBOX.c.claimed_until.is_(None) | (OUTBOX.c.claimed_until <= now) | mine
        with self.store._connection(join=False) as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(claimable), _pending(), unleased)
                         .values(claimed_by=token, claimed_until=now + self.lease))
            rows = conn.execute(select(*_ROW)
                                .where(OUTBOX.c.claimed_by == token, _pending())
                                .order_by(OUTBOX.c.id)).all()
        return Taken(rows, token=token) if rows else None

    def settle(self, taken: Taken, ids: list[int]) -> None:
        with self.store._connection(join=False) as conn:
            _mark(conn, ids)
            if len(ids) < len(taken.rows):
                conn.execute(update(OUTBOX)
                             .where(OUTBOX.c.claimed_by == taken.token, _pending())
                             .values(claimed_by=None, claimed_until=None))


# -- the background relay ----------------------------------------------------------------------

class OutboxRelay:
    """Runs `relay_pass(store, bus)` (a bus or a confirming sink) in a daemon thread until `stop()`.

    A pass starts at once when a bound machine of `store` commits in this process, otherwise
    every `interval` seconds. A failing pass (database away, a bus that raises, a broker that
    does not confirm within `confirm_timeout`) is reported to `on_error(exc)` (default:
    logged on the `fsmc` logger) and retried after a pause that doubles from `interval` up to
    `max_backoff` seconds, each pause drawn between half and all of that (jitter, so relays
    that failed together do not retry together). `delivered` counts the rows marked
    delivered so far."""

    def __init__(self, store: SqlStore, bus: Target, *, interval: float = 1.0,
                 batch: int = 100, lease: float = 60.0, max_backoff: float = 30.0,
                 on_error: Callable[[Exception], object] | None = None,
                 name: str | None = None, confirm_timeout: float = 30.0) -> None:
        self.store = store
        self.bus = bus  # an event bus, or a confirming sink such as an AmqpPublisher
        self.interval = interval
        self.batch = batch
        self.lease = lease
        self.max_backoff = max_backoff
        self.confirm_timeout = confirm_timeout
        self.name = name or relay_name()
        self.delivered = 0
        self._on_error = on_error or _log_error
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
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
        """Finish the current pass, run one last pass unless that one failed, and stop the
        thread. With a `timeout`, a batch still waiting for confirms after it is given up:
        its rows stay pending for the next relay (nothing unconfirmed is ever marked)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._abandon.set()
                self._thread.join(1.0)
        self.store._remove_waker(self._wake)

    def run_once(self) -> int:
        """One pass in the calling thread."""
        return relay_pass(self.store, self.bus, batch=self.batch, lease=self.lease,
                          name=self.name, counted=self._count,
                          confirm_timeout=self.confirm_timeout, abandon=self._abandon.is_set)

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
            if stopping or (failures and self._stopping.is_set()):
                return
            if not posted:
                self._wake.wait(self.interval if not failures else self.backoff(failures))

    def backoff(self, failures: int) -> float:
        """The pause after `failures` failed passes in a row."""
        ceiling = min(self.max_backoff, self.interval * 2 ** min(failures - 1, 60))
        return random.uniform(ceiling / 2, ceiling)

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
