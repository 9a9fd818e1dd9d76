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

`OutboxRelay(store, target)` runs passes in a background thread: at once when a bound machine
of the same store commits in this process, otherwise every `interval` seconds (other
processes' commits are found by polling); after a failed pass it backs off.
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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, exists, select, tuple_, update
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


def relay_pass(store: SqlStore, target: Target, *, batch: int = 100, limit: int | None = None,
               lease: float = 60.0, name: str | None = None,
               counted: Callable[[int], object] | None = None, confirm_timeout: float = 30.0,
               abandon: Callable[[], bool] | None = None) -> int:
    """Deliver pending rows until none is left that this relay may take (or `limit` rows were
    delivered); return how many were delivered. `counted(n)` is told of every batch marked
    delivered, also when a later batch fails and the pass raises. With a confirming sink, a
    batch waits up to `confirm_timeout` seconds for its confirms, less if `abandon()` turns
    true meanwhile (checked every 0.1 s); then `NotConfirmed` is raised."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if confirm_timeout <= 0:
        raise ValueError(f"confirm_timeout must be positive, got {confirm_timeout}")
    deliver = _deliver_locked if store._row_locks else _deliver_leased
    hand_out = _confirmed_by(target, confirm_timeout, abandon or _never) \
        if isinstance(target, ConfirmingSink) else _posted_to(target)
    owner = name or relay_name()
    total = 0
    while limit is None or total < limit:
        size = batch if limit is None else min(batch, limit - total)
        posted: list[int] = []
        try:
            deliver(store, hand_out, size, lease, owner, posted)
        finally:
            if posted and counted is not None:
                counted(len(posted))
        if not posted:
            break
        total += len(posted)
    return total


def _never() -> bool:
    return False


Row = Sequence[Any]  # (id, machine, resource_id, body), in id order
HandOut = Callable[[Sequence[Row], list[int]], None]


def _posted_to(bus: Bus) -> HandOut:
    def hand_out(rows: Sequence[Row], done: list[int]) -> None:
        """Post rows in order, noting each id once its post returned."""
        for row_id, _machine, _resource, body in rows:
            bus.post(StateChanged.from_dict(json.loads(body)))
            done.append(row_id)

    return hand_out


def _confirmed_by(sink: ConfirmingSink, timeout: float, abandon: Callable[[], bool]) -> HandOut:
    def hand_out(rows: Sequence[Row], done: list[int]) -> None:
        """Send the rows as one batch and wait for its confirms; note the ids of the
        confirmed rows that have no unconfirmed row of their resource before them."""
        confirmation = sink.send([StateChanged.from_dict(json.loads(row[3])) for row in rows])
        deadline = time.monotonic() + timeout
        while not confirmation.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if confirmation.done or abandon() or time.monotonic() >= deadline:
                break
        blocked: set[tuple[str, str]] = set()
        for (row_id, machine, resource, _body), confirmed in zip(
                rows, confirmation.confirmed_flags(), strict=True):
            if confirmed and (machine, resource) not in blocked:
                done.append(row_id)
            else:
                blocked.add((machine, resource))
        left = len(rows) - len(done)
        if left:
            raise NotConfirmed(f"{left} of {len(rows)} outbox rows not confirmed by {sink!r} "
                               f"({confirmation!r}); they stay pending", unconfirmed=left)

    return hand_out


def _pending() -> ColumnElement[bool]:
    return OUTBOX.c.delivered_at.is_(None)


def _same_resource(other: Any) -> ColumnElement[bool]:
    return and_(other.c.machine == OUTBOX.c.machine,
                other.c.resource_id == OUTBOX.c.resource_id, other.c.delivered_at.is_(None))


_ROW = (OUTBOX.c.id, OUTBOX.c.machine, OUTBOX.c.resource_id, OUTBOX.c.body)


def _mark(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(
            delivered_at=datetime.now(UTC), claimed_until=None))


# -- PostgreSQL: row locks -----------------------------------------------------------------------

def _deliver_locked(store: SqlStore, hand_out: HandOut, size: int, lease: float, owner: str,
                    posted: list[int]) -> None:
    """Lock the first pending row of up to `size` resources, hand out the first `size` of
    those resources' pending rows, mark them, commit: all in one transaction. `posted` gets
    the ids marked."""
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
                select(*_ROW)
                .where(_pending(), tuple_(OUTBOX.c.machine, OUTBOX.c.resource_id).in_(owned))
                .order_by(OUTBOX.c.id).limit(size)).all()
            try:
                hand_out(rows, posted)
            finally:
                _mark(conn, posted)
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
                posted.clear()  # not marked after all: they will be handed out again
            raise


# -- SQLite and others: leases -------------------------------------------------------------------

def _deliver_leased(store: SqlStore, hand_out: HandOut, size: int, lease: float, owner: str,
                    posted: list[int]) -> None:
    """Claim up to `size` rows (one statement), hand them out with no transaction open, then
    mark them delivered (and give back any left unmarked). `posted` gets the ids marked.
    Leases taken under `owner` before (by an earlier life of this relay) count as free."""
    token = f"{owner}#{time.monotonic_ns()}"
    mine = OUTBOX.c.claimed_by.startswith(f"{owner}#", autoescape=True)
    now = time.time()
    leased = OUTBOX.alias("leased")
    free = ~exists().where(_same_resource(leased), leased.c.claimed_until > now,
                           ~leased.c.claimed_by.startswith(f"{owner}#", autoescape=True))
    claimable = select(OUTBOX.c.id).where(_pending(), free).order_by(OUTBOX.c.id).limit(size)
    unleased = OUTBOX.c.claimed_until.is_(None) | (OUTBOX.c.claimed_until <= now) | mine
    with store._connection(join=False) as conn:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(claimable), _pending(), unleased)
                     .values(claimed_by=token, claimed_until=now + lease))
        rows = conn.execute(select(*_ROW)
                            .where(OUTBOX.c.claimed_by == token, _pending())
                            .order_by(OUTBOX.c.id)).all()
    if not rows:
        return
    done: list[int] = []
    try:
        hand_out(rows, done)
    finally:
        with store._connection(join=False) as conn:
            _mark(conn, done)
            conn.execute(update(OUTBOX)
                         .where(OUTBOX.c.claimed_by == token, _pending())
                         .values(claimed_by=None, claimed_until=None))
        posted.extend(done)


# -- the background relay ----------------------------------------------------------------------

class OutboxRelay:
    """Runs `relay_pass(store, target)` in a daemon thread until `stop()`.

    A pass starts at once when a bound machine of `store` commits in this process, otherwise
    every `interval` seconds. A failing pass (database away, a bus that raises, a broker that
    does not confirm within `confirm_timeout`) is reported to `on_error(exc)` (default:
    logged on the `fsmc` logger) and retried after a pause that doubles from `interval` up to
    `max_backoff` seconds, each pause drawn between half and all of that (jitter, so relays
    that failed together do not retry together). `delivered` counts the rows marked
    delivered so far."""

    def __init__(self, store: SqlStore, target: Target, *, interval: float = 1.0,
                 batch: int = 100, lease: float = 60.0, max_backoff: float = 30.0,
                 on_error: Callable[[Exception], object] | None = None,
                 name: str | None = None, confirm_timeout: float = 30.0) -> None:
        self.store = store
        self.target = target
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

    @property
    def bus(self) -> Target:
        """The target (the name from when it could only be a bus)."""
        return self.target

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
        return relay_pass(self.store, self.target, batch=self.batch, lease=self.lease,
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
