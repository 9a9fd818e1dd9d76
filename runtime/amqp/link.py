"""The publisher's I/O thread: one pika `SelectConnection` at a time, publishing what the
buffer holds with confirms, resending what a lost connection did not confirm.

Everything here runs on the I/O thread except where said. State shared with the firing
threads (`_pending`, `_unconfirmed`, `_in_transit`, the counters, the spill file) is touched
under `_cond`'s lock only; the rest (`_next_tag`, the replay reader) belongs to this thread.
Delivery tags are given to messages only once `basic_publish` returned, so the broker's count
and ours never drift apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any

import pika

from ..events import StateChanged
from .journal import Journal
from .message import Outgoing, outgoing, properties
from .spill import SpillFile, read_messages
from .url import redacted

__all__ = ["BrokerLink", "give_up"]

logger = logging.getLogger("fsmc.amqp")

_DRAIN_BATCH = 256  # messages published per I/O-loop turn, so confirms are read in between
_ABORT_GRACE = 2.0  # seconds a closing connection gets before its socket is dropped


class BrokerLink:
    """The I/O half of `AmqpPublisher` (which sets every attribute below)."""

    url: str
    exchange: str
    source: str
    max_in_flight: int
    confirm_timeout: float
    _parameters: Any
    _delays: tuple[float, float]
    _cond: threading.Condition
    _stopped: threading.Event
    _pending: deque[StateChanged | Outgoing]
    _unconfirmed: OrderedDict[int, Outgoing]
    _in_transit: list[StateChanged | Outgoing]
    _counts: dict[str, int]
    _spill: SpillFile | None
    _journal: Journal | None
    _connection: Any
    _channel: Any
    _wake_scheduled: bool

    def _start_link(self, *, inherited_replay: bool) -> None:
        self._next_tag = 1
        self._progress = 0.0  # when a confirm last arrived (or the window started filling)
        self._blocked = False  # the broker said connection.blocked (a resource alarm)
        self._failures = 0  # connection attempts failed in a row
        self._replay: Iterator[Outgoing | str] | None = None
        self._replay_inherited = inherited_replay
        self._replay_outstanding = 0  # read from the replay file, not yet confirmed
        self._replay_exhausted = False
        self._replay_broken = False  # the replay file could not be read: retry next connect
        self._spill_confirmed = 0  # own spilled events confirmed after their replay

    # -- the thread -------------------------------------------------------------------------

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
                    _abort(connection)
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

    # -- connection callbacks ---------------------------------------------------------------

    def _on_open(self, connection: Any) -> None:
        if self._stopped.is_set():
            give_up(connection)
            return
        connection.add_on_connection_blocked_callback(lambda *_: self._set_blocked(True))
        connection.add_on_connection_unblocked_callback(lambda *_: self._set_blocked(False))
        connection.channel(on_open_callback=self._on_channel)
        connection.ioloop.call_later(self.confirm_timeout, lambda: self._check_ready(connection))

    def _set_blocked(self, blocked: bool) -> None:
        """A broker short of memory or disk blocks publishers: not a stall, just slow."""
        self._blocked = blocked
        self._progress = time.monotonic()
        logger.warning("AMQP publisher: the broker %s publishing", "blocks" if blocked
                       else "accepts again")

    def _check_ready(self, connection: Any) -> None:
        """A connection whose channel is not ready in `confirm_timeout` is given up."""
        if self._channel is None and connection.is_open:
            logger.warning("AMQP publisher: no channel after %.0f s; reconnecting",
                           self.confirm_timeout)
            give_up(connection)

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
        give_up(channel.connection)

    def _on_ready(self, channel: Any) -> None:
        with self._cond:
            self._channel = channel
            self._next_tag = 1
            self._counts["connects"] += 1
            self._cond.notify_all()
        self._failures = 0
        self._replay_broken = False
        self._progress = time.monotonic()
        logger.info("AMQP publisher: connected to %s, exchange %s", redacted(self.url),
                    self.exchange)
        channel.connection.ioloop.call_later(1.0, lambda: self._watch(channel))
        self._drain()

    def _watch(self, channel: Any) -> None:
        """Every second: a connection that holds unconfirmed messages and has confirmed
        nothing for `confirm_timeout` seconds (and is not blocked by the broker) is treated as
        broken, since a broker can keep a socket open while it is frozen or shutting down; it
        is closed, and its messages are resent on the next one."""
        if channel is not self._channel:
            return
        with self._cond:
            stalled = bool(self._unconfirmed) and not self._blocked and \
                time.monotonic() - self._progress > self.confirm_timeout
            if stalled:
                self._counts["stalls"] += 1
        if stalled:
            logger.warning("AMQP publisher: no confirm for %.0f s with %d messages in flight; "
                           "reconnecting", self.confirm_timeout, len(self._unconfirmed))
            give_up(channel.connection)
            return
        channel.connection.ioloop.call_later(1.0, lambda: self._watch(channel))

    # -- publishing -------------------------------------------------------------------------

    def _has_work(self) -> bool:
        """With the lock held: whether a drain would find something to publish."""
        return bool(self._pending) or (
            self._journal is not None and self._journal.has_deferred()) or (
            self._spill is not None and self._spill.pending() and not self._replay_exhausted
            and not self._replay_broken)

    def _drain(self) -> None:
        """Publish what waits, up to the in-flight window."""
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
            self._in_transit = batch  # `close` sees them until they are registered
            if room > 0 and self._journal is not None and self._journal.has_deferred():
                batch.extend(self._journal.read_back(room))
            elif room > 0 and self._has_work():
                batch.extend(self._read_replay(room))
        messages = self._encode(batch)
        sent = 0
        try:
            for message in messages:
                channel.basic_publish(self.exchange, message.routing_key, message.body,
                                      properties(message))
                sent += 1
        except Exception as error:  # the channel is closing: the rest waits for the next
            logger.warning("AMQP publisher: publish failed: %s", error)
        with self._cond:
            self._in_transit = []
            if self._stopped.is_set():  # `close` took the batch over
                return
            if not self._unconfirmed:
                self._progress = time.monotonic()
            for message in messages[:sent]:
                self._unconfirmed[self._next_tag] = message
                self._next_tag += 1
            self._pending.extendleft(reversed(messages[sent:]))
            more = sent == len(messages) and len(self._unconfirmed) < self.max_in_flight \
                and self._has_work()
            self._wake_scheduled = self._wake_scheduled or more
        if sent < len(messages):
            give_up(channel.connection)
        elif more:
            channel.connection.ioloop.call_later(0, self._drain)

    def _encode(self, batch: list[StateChanged | Outgoing]) -> list[Outgoing]:
        messages = []
        for item in batch:
            if isinstance(item, Outgoing):
                messages.append(item)
                continue
            try:
                messages.append(outgoing(item, self.source))
            except Exception as error:
                logger.error("AMQP publisher: cannot send %r (%s); not delivered", item, error)
                with self._cond:
                    self._counts["failed"] += 1
        return messages

    def _read_replay(self, room: int) -> list[Outgoing]:
        """With the lock held: up to `room` messages from the spill file being replayed."""
        assert self._spill is not None
        read: list[Outgoing] = []
        try:
            if self._replay is None:
                path = self._spill.start_replay()
                if path is None:
                    return []
                self._replay = read_messages(path)
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
        except OSError as error:
            logger.error("AMQP publisher: cannot read the spill file (retried on the next "
                         "connection): %s", error)
            self._replay_broken = True
            self._replay = None
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
            wake = not self._wake_scheduled and self._has_work()
            if wake:
                self._wake_scheduled = True
        if wake:
            self._drain()

    def _account(self, confirmed: list[Outgoing]) -> None:
        """With the lock held: take confirmed messages off the books, tell who waits."""
        replayed = recovered = 0
        for message in confirmed:
            if message.ticket is not None:
                message.ticket(True)
            replayed += message.replayed
            recovered += message.recovered
        self._counts["confirmed"] += len(confirmed) - replayed - recovered
        self._counts["recovered"] += recovered
        if replayed:
            self._replay_outstanding -= replayed
            if self._replay_inherited:
                self._counts["replayed"] += replayed
            else:
                self._counts["confirmed"] += replayed
                self._spill_confirmed += replayed
        self._finish_replay_if_done()


def give_up(connection: Any) -> None:
    """Close `connection` (on its I/O thread); if the broker does not answer the close within
    `_ABORT_GRACE` seconds (frozen, or gone without a reset), drop the socket."""
    if connection.is_open:
        connection.close()
    if not connection.is_closed:
        connection.ioloop.call_later(_ABORT_GRACE, lambda: _abort(connection))


def _abort(connection: Any) -> None:
    """Drop the socket now; pika then reports the connection closed (`_on_closed`)."""
    if connection.is_closed:
        return
    try:
        connection._adapter_disconnect_stream()  # pika's own abort (no public one in 1.x)
    except Exception:
        logger.debug("AMQP publisher: abort failed; stopping the I/O loop", exc_info=True)
        connection.ioloop.stop()
