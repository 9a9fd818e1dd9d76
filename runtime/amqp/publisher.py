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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika

from ..events import StateChanged
from .errors import DeliveryError, PublisherClosed
from .message import Outgoing, outgoing, properties
from .spill import SpillFile, read_messages
from .url import parameters, redacted

__all__ = ["AmqpPublisher"]

logger = logging.getLogger("fsmc.amqp")

_DRAIN_BATCH = 256  # messages published per I/O-loop turn, so confirms are read in between


class AmqpPublisher:
    """Forward events to the durable topic exchange `exchange` at `url` (an AMQP URL such as
    `amqp://guest:guest@localhost:5672/%2F`). Subscribe it to a bus:

        publisher = AmqpPublisher(url)
        bus.subscribe(publisher, topic="#")
        ...
        publisher.close(timeout=10)     # raises DeliveryError if not all were confirmed

    Constructing it never waits on the broker: it connects in a background thread and
    reconnects, with exponential backoff, whenever the connection drops.
    """

    def __init__(self, url: str, exchange: str = "fsmc.events", *, source: str = "fsmc",
                 buffer: int = 10_000, block_timeout: float = 5.0,
                 spill_path: str | Path | None = None, max_in_flight: int = 2_000,
                 reconnect_delay: float = 0.1, max_reconnect_delay: float = 5.0,
                 confirm_timeout: float = 15.0) -> None:
        if not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be a positive int, not {buffer!r}")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, not {max_in_flight!r}")
        if block_timeout < 0 or reconnect_delay <= 0 or max_reconnect_delay < reconnect_delay \
                or confirm_timeout <= 0:
            raise ValueError("block_timeout must be >= 0, confirm_timeout > 0 and "
                             "0 < reconnect_delay <= max_reconnect_delay")
        self._parameters = parameters(url)
        self.url = url
        self.exchange = exchange
        self.source = source
        self.buffer = buffer
        self.block_timeout = block_timeout
        self.max_in_flight = max_in_flight
        self._delays = (reconnect_delay, max_reconnect_delay)
        self.confirm_timeout = confirm_timeout
        self._progress = 0.0  # when a confirm last arrived (or the window started filling)
        self._cond = threading.Condition(threading.Lock())
        self._pending: deque[StateChanged | Outgoing] = deque()
        self._unconfirmed: OrderedDict[int, Outgoing] = OrderedDict()
        self._next_tag = 1
        self._connection: Any = None
        self._channel: Any = None
        self._wake_scheduled = False
        self._overflowing = False
        self._closing = False
        self._stopped = threading.Event()
        self._counts = dict.fromkeys(("accepted", "confirmed", "spilled", "overflowed",
                                      "failed", "resent", "nacked", "replayed",
                                      "unreadable", "connects", "stalls"), 0)
        self._spill = SpillFile(spill_path) if spill_path is not None else None
        self._replay: Iterator[Outgoing | str] | None = None
        self._replay_inherited = bool(self._spill and self._spill.adopt_previous())
        self._replay_outstanding = 0  # read from the replay file, not yet confirmed
        self._replay_exhausted = False
        self._spill_confirmed = 0  # own spilled events confirmed after their replay
        self._in_transit: list[StateChanged | Outgoing] = []
        self._failures = 0  # connection attempts failed in a row
        self._thread = threading.Thread(target=self._run, name=f"fsmc-amqp-publisher-{exchange}",
                                        daemon=True)
        self._thread.start()

    # -- the bus side (any thread) ----------------------------------------------------------

    def __call__(self, event: object) -> None:
        self.publish(event)

    def publish(self, event: object) -> None:
        """Accept `event` (a `StateChanged`) for delivery; returns without waiting on the
        network unless the buffer is full (see the module documentation)."""
        if not isinstance(event, StateChanged):
            raise TypeError(f"AmqpPublisher publishes StateChanged events, not {event!r}")
        with self._cond:
            if self._closing:
                raise PublisherClosed(f"publisher to {self.exchange} is closed; "
                                      f"{event.topic} ({event.id}) was not accepted")
            if len(self._pending) + len(self._unconfirmed) >= self.buffer:
                self._overflow(event)
                return
            self._overflowing = False
            self._pending.append(event)
            self._counts["accepted"] += 1
            connection = self._connection if self._channel is not None and \
                not self._wake_scheduled else None
            if connection is not None:
                self._wake_scheduled = True
        if connection is not None:
            self._wake(connection)

    def _overflow(self, event: StateChanged) -> None:
        """Called with the lock held and the buffer full."""
        if not self._overflowing and self.block_timeout > 0:
            self._cond.wait_for(lambda: self._closing or len(self._pending) + len(
                self._unconfirmed) < self.buffer, self.block_timeout)
            if len(self._pending) + len(self._unconfirmed) < self.buffer:
                self._pending.append(event)
                self._counts["accepted"] += 1
                return
        self._overflowing = True
        self._counts["accepted"] += 1
        if self._spill is not None:
            self._spill.append(outgoing(event, self.source))
            self._counts["spilled"] += 1
            return
        self._counts["overflowed"] += 1
        if self._counts["overflowed"] in (1, 10, 100) or self._counts["overflowed"] % 1000 == 0:
            logger.error("AMQP publisher buffer full (%d events) and no spill file: %d events "
                         "will not be delivered (latest %s)", self.buffer,
                         self._counts["overflowed"], event.id)

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
        confirming nothing in `confirm_timeout`); and `pending` / `in_flight` now."""
        with self._cond:
            return {**self._counts, "pending": len(self._pending),
                    "in_flight": len(self._unconfirmed)}

    # -- closing ----------------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop accepting events, wait up to `timeout` seconds (None: no limit) until every
        accepted event is confirmed, then disconnect. Raises `DeliveryError` if some were
        not; with a spill file, those not yet confirmed are saved in it for the next
        publisher (the broker may already have some of them: consumers drop duplicates)."""
        with self._cond:
            if self._stopped.is_set():
                return
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(self._idle, timeout)
            self._stopped.set()
            state = (f"at close: {len(self._pending) + len(self._in_transit)} not sent, "
                     f"{len(self._unconfirmed)} sent and not confirmed, "
                     f"{'connected' if self._channel is not None else 'not connected'}")
            leftovers = [*self._in_transit, *self._pending, *self._unconfirmed.values()]
            self._pending.clear()
            self._unconfirmed.clear()
            connection = self._connection
        if connection is not None:
            self._wake_close(connection)
        self._thread.join(timeout=10)
        self._finish(leftovers, state)

    def _idle(self) -> bool:
        return not self._pending and not self._unconfirmed and not (
            self._spill is not None and self._spill.pending())

    def _wake_close(self, connection: Any) -> None:
        def stop() -> None:
            if connection.is_open:
                connection.close()
            else:
                connection.ioloop.stop()

        try:
            connection.ioloop.add_callback_threadsafe(stop)
        except Exception:
            logger.debug("AMQP publisher: connection already gone at close", exc_info=True)

    def _finish(self, leftovers: list[StateChanged | Outgoing], state: str) -> None:
        for item in leftovers:
            if isinstance(item, StateChanged):
                try:
                    item = outgoing(item, self.source)
                except Exception:
                    continue  # it can never be sent; counted in `undelivered`
            if self._spill is not None and not item.replayed:  # replayed: still in .replay
                self._spill.append(item)
                self._counts["spilled"] += 1
        if self._spill is not None:
            self._spill.close()
        counts = self._counts
        undelivered = counts["accepted"] - counts["confirmed"]
        if undelivered <= 0:
            return
        waiting = counts["spilled"] - self._spill_confirmed
        where = f"; {waiting} of them wait in {self._spill.path} for the next publisher" \
            if self._spill is not None else ""
        raise DeliveryError(
            f"AMQP publisher to {self.exchange}: {undelivered} of {counts['accepted']} accepted "
            f"events were not confirmed by the broker ({counts['overflowed']} overflowed the "
            f"buffer, {counts['failed']} could not be encoded; {state}){where}",
            undelivered=undelivered, spilled=waiting if self._spill is not None else 0)

    # -- the I/O thread ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._delays[0]
        while not self._stopped.is_set():
            try:
                connection = pika.SelectConnection(
                    self._parameters, on_open_callback=self._on_open,
                    on_open_error_callback=self._on_open_error,
                    on_close_callback=self._on_closed)
            except Exception:  # nothing sent yet: try again later
                logger.exception("AMQP publisher: cannot set up a connection")
                connection = None
            with self._cond:
                if self._stopped.is_set():  # `close` saw no connection to stop: none runs
                    break
                self._connection = connection
            if connection is not None:
                try:
                    connection.ioloop.start()
                except Exception:
                    logger.exception("AMQP publisher: I/O loop failed")
            with self._cond:
                opened = self._channel is not None  # it worked: retry soon
                self._connection = self._channel = None
                self._wake_scheduled = False
                self._requeue_unconfirmed()
            if opened:
                delay = self._delays[0]
            if self._stopped.wait(delay):
                break
            delay = min(delay * 2, self._delays[1])

    def _requeue_unconfirmed(self) -> None:
        """With the lock held: what the lost channel did not confirm goes out again first."""
        if self._unconfirmed:
            self._counts["resent"] += len(self._unconfirmed)
            self._pending.extendleft(reversed(self._unconfirmed.values()))
            self._unconfirmed.clear()
        self._cond.notify_all()

    def _on_open(self, connection: Any) -> None:
        if self._stopped.is_set():
            connection.close()
            return
        connection.channel(on_open_callback=self._on_channel)
        connection.ioloop.call_later(self.confirm_timeout, lambda: self._check_ready(connection))

    def _check_ready(self, connection: Any) -> None:
        """A connection whose channel is not ready in `confirm_timeout` is given up."""
        if self._channel is None and connection.is_open:
            logger.warning("AMQP publisher: no channel after %.0f s; reconnecting",
                           self.confirm_timeout)
            connection.close()

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG  # no log flood
        logger.log(level, "AMQP publisher: cannot connect to %s (retrying until it answers): "
                   "%s", redacted(self.url), error)
        connection.ioloop.stop()

    def _on_closed(self, connection: Any, reason: BaseException) -> None:
        if not self._stopped.is_set():
            logger.warning("AMQP publisher: connection lost: %s", reason)
        connection.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.exchange_declare(
            exchange=self.exchange, exchange_type="topic", durable=True,
            callback=lambda _frame: channel.confirm_delivery(
                self._on_confirm, callback=lambda _frame: self._on_ready(channel)))

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        logger.log(logging.DEBUG if self._stopped.is_set() else logging.WARNING,
                   "AMQP publisher: channel closed: %s", reason)
        connection = channel.connection
        if connection.is_open:
            connection.close()

    def _on_ready(self, channel: Any) -> None:
        with self._cond:
            self._channel = channel
            self._next_tag = 1
            self._counts["connects"] += 1
            self._failures = 0
            self._cond.notify_all()
        logger.info("AMQP publisher: connected to %s, exchange %s", redacted(self.url),
                    self.exchange)
        self._progress = time.monotonic()
        channel.connection.ioloop.call_later(1.0, lambda: self._watch(channel))
        self._drain()

    def _watch(self, channel: Any) -> None:
        """Every second on the I/O thread: a connection that holds unconfirmed messages and
        has confirmed nothing for `confirm_timeout` seconds is treated as broken (a broker
        can keep a socket open while it shuts down): closed, so its messages are resent on
        a new one."""
        if channel is not self._channel:
            return
        with self._cond:
            stalled = bool(self._unconfirmed) and \
                time.monotonic() - self._progress > self.confirm_timeout
            if stalled:
                self._counts["stalls"] += 1
        if stalled:
            logger.warning("AMQP publisher: no confirm for %.0f s with %d messages in flight; "
                           "reconnecting", self.confirm_timeout, len(self._unconfirmed))
            channel.connection.close()
            return
        channel.connection.ioloop.call_later(1.0, lambda: self._watch(channel))

    def _drain(self) -> None:
        """Publish what waits, up to the in-flight window (on the I/O thread)."""
        channel = self._channel
        with self._cond:
            self._wake_scheduled = False
            if channel is None or self._stopped.is_set():
                return
            room = min(self.max_in_flight - len(self._unconfirmed), _DRAIN_BATCH)
            batch: list[StateChanged | Outgoing] = []
            while room > 0 and self._pending:
                batch.append(self._pending.popleft())
                room -= 1
            if room > 0 and self._spill is not None and self._spill.pending():
                batch.extend(self._read_replay(room))
            self._in_transit = batch  # `close` sees them while they are encoded
        messages = self._encode(batch)
        with self._cond:
            self._in_transit = []
            if self._stopped.is_set():  # `close` took them over
                return
            if not self._unconfirmed:
                self._progress = time.monotonic()
            first = self._next_tag
            self._next_tag += len(messages)
            self._unconfirmed.update(zip(range(first, first + len(messages)), messages,
                                         strict=True))
            more = len(self._unconfirmed) < self.max_in_flight and bool(
                self._pending or self._replay is not None)
            self._wake_scheduled = self._wake_scheduled or more
        try:
            for message in messages:
                channel.basic_publish(self.exchange, message.routing_key, message.body,
                                      properties(message))
        except Exception as error:  # the channel is closing: they are resent on reconnect
            logger.warning("AMQP publisher: publish failed: %s", error)
            return
        if more:
            channel.connection.ioloop.call_later(0, self._drain)

    def _encode(self, batch: list[StateChanged | Outgoing]) -> list[Outgoing]:
        messages = []
        for item in batch:
            if isinstance(item, Outgoing):
                messages.append(item)
                continue
            try:
                messages.append(outgoing(item, self.source))
            except Exception:
                logger.exception("AMQP publisher: cannot encode %s (%s); not delivered",
                                 item.topic, item.id)
                with self._cond:
                    self._counts["failed"] += 1
        return messages

    def _read_replay(self, room: int) -> list[Outgoing]:
        """With the lock held: up to `room` messages from the spill file being replayed."""
        assert self._spill is not None
        if self._replay is None:
            path = self._spill.start_replay()
            if path is None:
                return []
            self._replay = read_messages(path)
        read: list[Outgoing] = []
        for item in self._replay:
            if isinstance(item, str):
                logger.error("AMQP publisher: %s", item)
                self._counts["unreadable"] += 1
                continue
            read.append(item)
            if len(read) >= room:
                break
        else:
            self._replay_exhausted = True
        self._replay_outstanding += len(read)
        self._finish_replay_if_done()
        return read

    def _finish_replay_if_done(self) -> None:
        """With the lock held: once the replay file is read and all of it confirmed, it goes."""
        if self._replay_exhausted and self._replay_outstanding == 0:
            assert self._spill is not None
            self._spill.finish_replay()
            self._replay = None
            self._replay_exhausted = False
            self._replay_inherited = False

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        with self._cond:
            self._progress = time.monotonic()
            if method.multiple:
                done = []
                while self._unconfirmed and next(iter(self._unconfirmed)) <= method.delivery_tag:
                    done.append(self._unconfirmed.popitem(last=False)[1])
            else:
                single = self._unconfirmed.pop(method.delivery_tag, None)
                done = [] if single is None else [single]
            if isinstance(method, pika.spec.Basic.Nack):
                self._counts["nacked"] += len(done)
                self._counts["resent"] += len(done)
                self._pending.extendleft(reversed(done))
            else:
                self._account(done)
            self._cond.notify_all()
            wake = not self._wake_scheduled and bool(self._pending or self._replay is not None)
            if wake:
                self._wake_scheduled = True
        if wake:
            self._drain()

    def _account(self, confirmed: list[Outgoing]) -> None:
        """With the lock held: take confirmed messages off the books."""
        replayed = sum(1 for message in confirmed if message.replayed)
        self._counts["confirmed"] += len(confirmed) - replayed
        if replayed:
            self._replay_outstanding -= replayed
            if self._replay_inherited:
                self._counts["replayed"] += replayed
            else:
                self._counts["confirmed"] += replayed
                self._spill_confirmed += replayed
        self._finish_replay_if_done()
