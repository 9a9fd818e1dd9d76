"""`AmqpPublisher`: a bus subscriber that forwards `StateChanged` events to a RabbitMQ topic
exchange, with publisher confirms, and never loses an accepted event silently.

The firing thread only appends to an in-memory buffer (and, when the I/O thread is idle, wakes
it); one background thread owns the connection (pika's `SelectConnection`), publishes up to
`max_in_flight` unconfirmed messages at a time and takes them off the books when the broker
confirms them. What was published but not confirmed when a connection drops is published again
on the next one (so the broker can see an event twice; consumers drop duplicates by id).

When `buffer` events are held (waiting or unconfirmed), the firing thread waits for room up to
`block_timeout` seconds (backpressure); then the event goes to the spill file if there is one,
else it is counted as overflowed. While the buffer stays full, later events do not wait again:
they go straight to the spill file (or are counted), so an outage does not turn every
transition into a `block_timeout` stall. Spilled events are replayed once the broker is back;
`close()` also spills what it could not get confirmed, for the next publisher on that file.

What a crash (kill -9, power cut) loses: without a journal, every accepted event not yet
confirmed (the buffer is memory; the spill file is flushed to the OS, not fsynced, per
event). With `journal_path`, `publish` returns only once the event is fsynced in the journal
(group commit: concurrent posters share an fsync), a full buffer leaves events in the journal
only, and a new publisher on the same journal sends what the last one did not get confirmed:
a crash loses nothing accepted.

`send(events)` is for callers that keep the events themselves until they are confirmed (the
outbox relay): it returns a `Confirmation` that says, per event, when the broker confirmed it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..confirm import Confirmation
from ..events import StateChanged
from .errors import DeliveryError, PublisherClosed
from .journal import Journal
from .link import BrokerLink, give_up
from .message import Outgoing, outgoing
from .spill import SpillFile
from .url import parameters

__all__ = ["AmqpPublisher"]

logger = logging.getLogger("fsmc.amqp")


class AmqpPublisher(BrokerLink):
    """Forward events to the durable topic exchange `exchange` at `url` (an AMQP URL such as
    `amqp://guest:guest@localhost:5672/%2F`). Subscribe it to a bus:

        publisher = AmqpPublisher(url)
        bus.subscribe(publisher, topic="#")
        ...
        publisher.close(timeout=10)     # raises DeliveryError if not all were confirmed

    Constructing it never waits on the broker: it connects in a background thread and
    reconnects, with exponential backoff, whenever the connection drops. A connection that
    confirms nothing for `confirm_timeout` seconds while messages wait is given up too.

    `journal_path` (instead of `spill_path`) makes it crash-safe: see the module documentation
    and docs/broker.md; `journal_segment` messages per journal file.
    """

    def __init__(self, url: str, exchange: str = "fsmc.events", *, source: str = "fsmc",
                 buffer: int = 10_000, block_timeout: float = 5.0,
                 spill_path: str | Path | None = None, max_in_flight: int = 2_000,
                 reconnect_delay: float = 0.1, max_reconnect_delay: float = 5.0,
                 confirm_timeout: float = 15.0, journal_path: str | Path | None = None,
                 journal_segment: int = 4096) -> None:
        if not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be a positive int, not {buffer!r}")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, not {max_in_flight!r}")
        if block_timeout < 0 or reconnect_delay <= 0 or max_reconnect_delay < reconnect_delay \
                or confirm_timeout <= 0:
            raise ValueError("block_timeout must be >= 0, confirm_timeout > 0 and "
                             "0 < reconnect_delay <= max_reconnect_delay")
        if journal_path is not None and spill_path is not None:
            raise ValueError("give journal_path or spill_path, not both: the journal keeps "
                             "what the buffer cannot hold")
        self._parameters = parameters(url)
        self.url = url
        self.exchange = exchange
        self.source = source
        self.buffer = buffer
        self.block_timeout = block_timeout
        self.max_in_flight = max_in_flight
        self.confirm_timeout = confirm_timeout
        self._delays = (reconnect_delay, max_reconnect_delay)
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[StateChanged | Outgoing] = deque()
        self._unconfirmed: OrderedDict[int, Outgoing] = OrderedDict()
        self._in_transit: list[StateChanged | Outgoing] = []
        self._connection: Any = None
        self._channel: Any = None
        self._wake_scheduled = False
        self._overflowing = False
        self._closing = False
        self._stopped = threading.Event()
        self._counts = dict.fromkeys(("accepted", "confirmed", "spilled", "overflowed",
                                      "failed", "resent", "nacked", "replayed",
                                      "unreadable", "connects", "stalls", "refused",
                                      "deferred", "recovered"), 0)
        self._spill = SpillFile(spill_path) if spill_path is not None else None
        self._journal = Journal(journal_path, segment_entries=journal_segment) \
            if journal_path is not None else None
        self._start_link(inherited_replay=bool(self._spill and self._spill.adopt_previous()))
        self._thread = threading.Thread(target=self._run, name=f"fsmc-amqp-publisher-{exchange}",
                                        daemon=True)
        self._thread.start()

    # -- the bus side (any thread) ----------------------------------------------------------

    def __call__(self, event: object) -> None:
        self.publish(event)

    def publish(self, event: object) -> None:
        """Accept `event` (a `StateChanged`) for delivery; returns without waiting on the
        network unless the buffer is full (see the module documentation); with a journal,
        once the event is fsynced in it (`OSError` if it cannot be written: not accepted).
        Raises `PublisherClosed` after `close()` (the event is then not accepted)."""
        if not isinstance(event, StateChanged):
            raise TypeError(f"AmqpPublisher publishes StateChanged events, not {event!r}")
        if self._journal is not None:
            self._publish_journaled(event, self._journal)
            return
        with self._cond:
            self._refuse_if_closing(event)
            if self._full(1) and not self._room_came(1):
                connection = self._overflow(event)
            else:
                self._overflowing = False
                self._pending.append(event)
                self._counts["accepted"] += 1
                connection = self._schedule_drain()
        if connection is not None:
            self._wake(connection)

    def _publish_journaled(self, event: StateChanged, journal: Journal) -> None:
        with self._cond:
            self._refuse_if_closing(event)
        try:
            message = outgoing(event, self.source)
        except ValueError as error:
            logger.error("AMQP publisher: cannot send %r (%s); not delivered", event, error)
            with self._cond:
                self._counts["accepted"] += 1
                self._counts["failed"] += 1
            return
        place, number = journal.append(message.body)
        journal.wait_durable(number)
        message = message._replace(ticket=place.segment.ticket)
        connection = None
        with self._cond:
            self._counts["accepted"] += 1
            if self._closing:  # `close` took the books over: the journal keeps it
                return
            if self._full(1) and not self._room_came(1):
                self._overflowing = True
                self._counts["deferred"] += 1
                journal.defer(place)
            else:
                self._overflowing = False
                self._pending.append(message)
                connection = self._schedule_drain()
        if connection is not None:
            self._wake(connection)

    def send(self, events: Sequence[StateChanged]) -> Confirmation:
        """Accept `events` for delivery, in order, and return their `Confirmation`: it says,
        per event, once the broker confirmed it (`wait(timeout)` is True when all were). For
        callers that keep the events until then, such as the outbox relay: they are not
        journaled, and those the buffer has no room for (after waiting `block_timeout`
        seconds for it) or AMQP cannot carry fail at once instead of going to the spill
        file or the journal. Those not confirmed when `close()` ends fail then. Raises
        `PublisherClosed` after `close()`."""
        confirmation = Confirmation(len(events), self._cond)
        messages: list[Outgoing] = []
        unsendable: list[int] = []
        for index, event in enumerate(events):
            if not isinstance(event, StateChanged):
                raise TypeError(f"AmqpPublisher publishes StateChanged events, not {event!r}")
            try:
                messages.append(outgoing(event, self.source, confirmation.ticket(index)))
            except ValueError as error:
                logger.error("AMQP publisher: cannot send %r (%s); refused", event, error)
                unsendable.append(index)
        connection = None
        with self._cond:
            if self._closing:
                raise PublisherClosed(f"publisher to {self.exchange} is closed; "
                                      f"{len(events)} events were not accepted")
            if self._full(len(messages)):
                self._room_came(len(messages))
            room = max(0, self.buffer - len(self._pending) - len(self._unconfirmed))
            taken, refused = messages[:room], messages[room:]
            for index in unsendable:
                confirmation.ticket(index)(False)
            for message in refused:
                assert message.ticket is not None
                message.ticket(False)
            self._counts["refused"] += len(refused) + len(unsendable)
            if taken:
                self._pending.extend(taken)
                self._counts["accepted"] += len(taken)
                connection = self._schedule_drain()
        if connection is not None:
            self._wake(connection)
        return confirmation

    def _refuse_if_closing(self, event: StateChanged) -> None:
        if self._closing:
            raise PublisherClosed(f"publisher to {self.exchange} is closed; "
                                  f"{event.topic} ({event.id}) was not accepted")

    def _schedule_drain(self) -> Any:
        """With the lock held: the connection to wake, if a drain should be scheduled."""
        if self._channel is None or self._wake_scheduled:
            return None
        self._wake_scheduled = True
        return self._connection

    def _full(self, count: int) -> bool:
        """With the lock held: whether `count` more events would exceed the buffer."""
        return len(self._pending) + len(self._unconfirmed) + count > self.buffer

    def _room_came(self, count: int) -> bool:
        """With the lock held and the buffer full: unless it stayed full since the last
        wait, wait up to `block_timeout` for room for `count` events; whether there is."""
        if self._overflowing or self.block_timeout <= 0:
            return False
        self._cond.wait_for(lambda: self._closing or not self._full(count), self.block_timeout)
        if self._closing:
            raise PublisherClosed(f"publisher to {self.exchange} was closed while waiting "
                                  "for room; not accepted")
        return not self._full(count)

    def _overflow(self, event: StateChanged) -> Any:
        """With the lock held, the buffer full and waited for: spill or count."""
        self._overflowing = True
        self._counts["accepted"] += 1
        if self._spill is not None and self._spilled(event):
            return None
        self._counts["overflowed"] += 1
        if self._counts["overflowed"] in (1, 10, 100) or self._counts["overflowed"] % 1000 == 0:
            logger.error("AMQP publisher buffer full (%d events): %d events will not be "
                         "delivered (latest %s)", self.buffer, self._counts["overflowed"],
                         event.id)
        return None

    def _spilled(self, item: StateChanged | Outgoing) -> bool:
        """With the lock held: append to the spill file; False if it cannot be written."""
        assert self._spill is not None
        try:
            self._spill.append(item if isinstance(item, Outgoing) else
                               outgoing(item, self.source))
        except (OSError, ValueError) as error:
            logger.error("AMQP publisher: cannot spill %r: %s", item, error)
            return False
        self._counts["spilled"] += 1
        return True

    def _wake(self, connection: Any) -> None:
        try:
            connection.ioloop.add_callback_threadsafe(self._drain)
        except Exception:  # the connection is going away: the next one drains the buffer
            with self._cond:
                self._wake_scheduled = False

    # -- reading ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a channel in confirm mode is open now."""
        return self._channel is not None

    def wait_connected(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._channel is not None, timeout)

    def stats(self) -> dict[str, int]:
        """Counters: `accepted`, `confirmed`, `spilled`, `overflowed` (counted, not sent),
        `failed` (could not be encoded), `resent` (published again after a reconnect or a
        nack), `nacked`, `replayed` (confirmed from a previous process's spill file),
        `unreadable` (spill lines skipped), `connects`, `stalls` (connections dropped for
        confirming nothing in `confirm_timeout`), `refused` (events of `send` not taken),
        `deferred` (journaled events the buffer could not hold, sent from the journal later),
        `recovered` (confirmed from a previous process's journal); and `pending` /
        `in_flight` now; with a journal, also `journaled` and `syncs` (fsyncs: group commit
        makes them fewer than the events)."""
        with self._cond:
            journal = {} if self._journal is None else {
                "journaled": self._journal.counts["journaled"],
                "syncs": self._journal.counts["syncs"],
                "unreadable": self._counts["unreadable"] + self._journal.counts["unreadable"]}
            return {**self._counts, **journal, "pending": len(self._pending),
                    "in_flight": len(self._unconfirmed)}

    # -- closing ----------------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting events, wait up to `timeout` seconds (None: no limit) until every
        accepted event is confirmed, then disconnect. Raises `DeliveryError` if some were
        not; with a spill file, those not yet confirmed are saved in it for the next
        publisher (the broker may already have some of them: consumers drop duplicates).
        Only the first call does this; later ones return at once."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            connection = self._schedule_drain()  # e.g. a spill file to replay
        if connection is not None:
            self._wake(connection)
        with self._cond:
            self._cond.wait_for(self._idle, timeout)
            self._stopped.set()
            state = (f"at close: {len(self._pending) + len(self._in_transit)} not sent, "
                     f"{len(self._unconfirmed)} sent and not confirmed, "
                     f"{'connected' if self._channel is not None else 'not connected'}")
            leftovers = [*self._in_transit, *self._pending, *self._unconfirmed.values()]
            self._in_transit = []
            self._pending.clear()
            self._unconfirmed.clear()
            connection = self._connection
        if connection is not None:
            self._wake_close(connection)
        self._thread.join(timeout=10)
        self._finish(leftovers, state)

    def _idle(self) -> bool:
        return not self._pending and not self._unconfirmed and not self._in_transit and not (
            self._spill is not None and self._spill.pending()) and not (
            self._journal is not None and self._journal.has_deferred())

    def _wake_close(self, connection: Any) -> None:
        def stop() -> None:
            if connection.is_open:
                give_up(connection)
            else:
                connection.ioloop.stop()

        try:
            connection.ioloop.add_callback_threadsafe(stop)
        except Exception:
            logger.debug("AMQP publisher: connection already gone at close", exc_info=True)

    def _finish(self, leftovers: list[StateChanged | Outgoing], state: str) -> None:
        with self._cond:
            if self._spill is not None:
                for item in leftovers:
                    if not (isinstance(item, Outgoing) and item.replayed):  # else in .replay
                        self._spilled(item)
                self._spill.close()
            for item in leftovers:
                if isinstance(item, Outgoing) and item.ticket is not None:
                    item.ticket(False)
            counts = dict(self._counts)
            journal = self._journal
            if journal is not None:
                journal.close()
        undelivered = counts["accepted"] - counts["confirmed"]
        if undelivered <= 0:
            return
        if journal is not None:
            waiting = journal.pending()
            where = f"; {waiting} events wait in the journal {journal.path}.* for the next " \
                "publisher"
        elif self._spill is not None:
            waiting = counts["spilled"] - self._spill_confirmed
            where = f"; {waiting} of them wait in {self._spill.path} for the next publisher"
        else:
            waiting, where = 0, ""
        raise DeliveryError(
            f"AMQP publisher to {self.exchange}: {undelivered} of {counts['accepted']} accepted "
            f"events were not confirmed by the broker ({counts['overflowed']} overflowed the "
            f"buffer, {counts['failed']} could not be encoded; {state}){where}",
            undelivered=undelivered, spilled=waiting)
