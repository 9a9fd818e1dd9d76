"""`AmqpConsumer`: events from a RabbitMQ queue into a local `EventBus`, each at most once per
dedupe window, acknowledged only once the bus has taken it.

A background thread declares the exchange (durable topic), the queue (durable, unless it is a
server-named one for a single reader such as `fsmc events tail`), binds the patterns, and
consumes with manual acknowledgements and a prefetch window. For each message:

- not an fsmc CloudEvent → copied to the dead-letter queue (`<queue>.dead`) with the reason in
  the `x-fsmc-error` header, then acknowledged (it would fail the same way again);
- an event id seen within the last `dedupe_window` events → acknowledged, not posted (the
  publisher resends what the broker did not confirm before a connection dropped);
- else → `bus.post(event)`, then acknowledged. With a synchronous bus every subscriber has run
  by then; if this process dies before the ack, the broker delivers the message again (and,
  the window being in memory, a new process posts it again: at least once).

With `record=`, messages are handed over in batches instead of posted one by one: the thread
takes what the broker has delivered (up to `batch`, or as many as are already waiting in the
client), calls `record(events)` — which returns once the events are durable where they must go
(the notification service's database) — and only then acknowledges the whole batch at once
(`basic.ack` with `multiple`). If `record` raises, the batch is given back to the queue
(`basic.nack` with `requeue`) and the thread waits before it takes more (doubling up to
`max_reconnect_delay`). A process killed at any point leaves every message either recorded or
unacknowledged, and the broker delivers the unacknowledged ones again (at least once). `close`
then drops the connection instead of cancelling the consumer: the broker puts the messages it
had delivered back in their places in the queue as the consumer goes, before a queue with a
single active consumer moves to the next one (after a `basic.cancel` the next consumer starts
on the later messages while these are still held, and gets them after those: out of order).

`queue_arguments` are given to the queue's declaration: `{"x-queue-type": "quorum"}` makes a
quorum queue (replicated where the broker has several nodes; RabbitMQ 3.8 or later). A queue
that already exists with other arguments (a classic queue of the same name) is used as it is,
with a warning saying so, rather than refused.

The thread reconnects with exponential backoff when the connection drops.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pika

from ..cloudevent import MalformedEvent, decode
from ..dispatch import Bus
from ..errors import BusClosed
from ..events import StateChanged
from ..topics import validate_pattern
from .url import parameters

__all__ = ["AmqpConsumer", "declare_queue"]

logger = logging.getLogger("fsmc.amqp")


class AmqpConsumer:
    """Consume `queue` (None: a server-named queue that lives as long as the connection),
    bound to `exchange` with each topic pattern of `bindings`, into `bus`:

        consumer = AmqpConsumer(url, "billing", ["VirtualMachine.#"], bus=bus)
        ...
        consumer.close()
    """

    def __init__(self, url: str, queue: str | None, bindings: Iterable[str] = ("#",),
                 exchange: str = "fsmc.events", *, bus: Bus | None = None,
                 record: Callable[[list[StateChanged]], object] | None = None,
                 batch: int = 256, queue_arguments: Mapping[str, Any] | None = None,
                 prefetch: int = 256, dedupe_window: int = 100_000,
                 dead_letter_queue: str | None = None, reconnect_delay: float = 0.1,
                 max_reconnect_delay: float = 5.0) -> None:
        self.bindings = tuple(bindings)
        for pattern in self.bindings:
            validate_pattern(pattern)
        if not self.bindings:
            raise ValueError("bindings must name at least one topic pattern")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, not {prefetch!r}")
        if not isinstance(dedupe_window, int) or dedupe_window < 0:
            raise ValueError(f"dedupe_window must be an int >= 0, not {dedupe_window!r}")
        if (bus is None) == (record is None):
            raise ValueError("give either bus= (post each event) or record= (batches)")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        if record is not None and queue is None:
            raise ValueError("record= needs a named queue: a server-named one dies with its "
                             "connection, and what it held with it")
        self._parameters = parameters(url)
        self.queue = queue
        self.exchange = exchange
        self._shown = f"queue {queue}" if queue else "a server-named queue"  # for the logs
        self.dead_letter_queue = dead_letter_queue or (f"{queue}.dead" if queue else None)
        self._bus = bus
        self._record = record
        self._batch = min(batch, prefetch)
        self._queue_arguments = dict(queue_arguments or {})
        self._prefetch = prefetch
        self._window = dedupe_window
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._delays = (reconnect_delay, max_reconnect_delay)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._connection: Any = None
        self._channel: Any = None
        self._counts = dict.fromkeys(("received", "delivered", "duplicates", "dead_lettered",
                                      "connects", "batches", "requeued"), 0)
        self.queue_name: str | None = queue  # the server's name for a server-named queue
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fsmc-amqp-consumer-{queue or 'tail'}")
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the queue is declared, bound and consumed (after each reconnect too)."""
        return self._ready.wait(timeout)

    def stats(self) -> dict[str, int]:
        """Counters: `received`, `delivered` (posted to the bus, or recorded), `duplicates`
        (dropped), `dead_lettered`, `connects`, `batches` (recorded), `requeued` (given back
        because `record` failed)."""
        with self._lock:
            return dict(self._counts)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop consuming (messages not yet acknowledged go back to the queue) and disconnect."""
        self._stopped.set()
        with self._lock:
            connection, channel = self._connection, self._channel
        if connection is not None and channel is not None:
            try:
                connection.add_callback_threadsafe(channel.stop_consuming)
            except Exception:
                logger.debug("AMQP consumer: connection already gone at close", exc_info=True)
        self._thread.join(timeout)

    # -- the consuming thread ---------------------------------------------------------------

    def _run(self) -> None:
        delay, failures = self._delays[0], 0
        while not self._stopped.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(self._parameters)
                channel = self._declare(connection.channel())
                with self._lock:
                    self._connection, self._channel = connection, channel
                    self._counts["connects"] += 1
                delay, failures = self._delays[0], 0
                self._ready.set()
                if self._stopped.is_set():
                    pass
                elif self._record is not None:
                    self._consume_batches(channel)
                else:
                    channel.start_consuming()
            except (pika.exceptions.AMQPError, OSError) as error:
                failures += 1
                if not self._stopped.is_set():
                    logger.log(logging.WARNING if failures == 1 else logging.DEBUG,
                               "AMQP consumer of %s: no connection (retrying): %r", self._shown,
                               error)
            finally:
                self._ready.clear()
                with self._lock:
                    self._connection = self._channel = None
                if connection is not None and connection.is_open:
                    try:
                        connection.close()
                    except Exception:
                        logger.debug("AMQP consumer: close failed", exc_info=True)
            if self._stopped.wait(delay):
                break
            delay = min(delay * 2, self._delays[1])

    def _declare(self, channel: Any) -> Any:
        channel.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True)
        if self.queue:
            channel = self._declare_named(channel)
            name = self.queue
        else:
            name = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
            self.queue_name = name
        for pattern in self.bindings:
            channel.queue_bind(queue=name, exchange=self.exchange, routing_key=pattern)
        if self.dead_letter_queue:
            channel.queue_declare(queue=self.dead_letter_queue, durable=True)
            channel.confirm_delivery()  # a dead letter is confirmed before its original is acked
        channel.basic_qos(prefetch_count=self._prefetch)
        if self._record is None:
            channel.basic_consume(queue=name, on_message_callback=self._on_message)
        return channel

    def _declare_named(self, channel: Any) -> Any:
        """Declare the durable named queue with `queue_arguments`; one that exists with
        others is used as it is (a warning says so). Returns the channel to go on with (the
        broker closes a channel whose declaration it refused)."""
        try:
            channel.queue_declare(queue=self.queue, durable=True,
                                  arguments=self._queue_arguments or None)
            return channel
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 406 or not self._queue_arguments:  # PRECONDITION_FAILED
                raise
            logger.warning("AMQP consumer: %s exists with other arguments than %s (%s); "
                           "using it as it is", self._shown, self._queue_arguments,
                           error.reply_text)
        channel = channel.connection.channel()
        channel.queue_declare(queue=self.queue, passive=True)
        return channel

    def _consume_batches(self, channel: Any) -> None:
        """Record what the broker delivers in batches, acknowledging each batch once
        recorded (see the module documentation). Returns when `close` is called."""
        batch: list[tuple[Any, Any, bytes]] = []
        pause = self._delays[0]
        for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.1):
            if method is not None:
                batch.append((method, properties, body))
                if len(batch) < self._batch and channel.get_waiting_message_count():
                    continue
            if batch:
                if self._flush(channel, batch):
                    pause = self._delays[0]
                else:
                    self._stopped.wait(pause)
                    pause = min(pause * 2, self._delays[1])
                batch = []
            if self._stopped.is_set():
                break
        _drop(channel.connection)



    def _flush(self, channel: Any, batch: list[tuple[Any, Any, bytes]]) -> bool:
        """Record `batch` and acknowledge it (True), or give it back to the queue (False)."""
        assert self._record is not None
        events: list[StateChanged] = []
        for method, properties, body in batch:
            try:
                event = decode(body)
            except MalformedEvent as error:
                self._dead_letter(channel, method, properties, body, str(error))
                continue
            if event.id in self._seen:
                with self._lock:
                    self._counts["duplicates"] += 1
                continue
            events.append(event)
        last = batch[-1][0].delivery_tag
        with self._lock:
            self._counts["received"] += len(batch)
        try:
            if events:
                self._record(events)
        except Exception as error:
            logger.error("AMQP consumer of %s: recording %d events failed (they go back to "
                         "the queue): %s: %s", self._shown, len(events), type(error).__name__,
                         error)
            channel.basic_nack(last, multiple=True, requeue=True)
            with self._lock:
                self._counts["requeued"] += len(batch)
            return False
        for event in events:
            self._remember(event.id)
        with self._lock:
            self._counts["delivered"] += len(events)
            self._counts["batches"] += 1
        channel.basic_ack(last, multiple=True)
        return True

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        with self._lock:
            self._counts["received"] += 1
        try:
            event = decode(body)
        except MalformedEvent as error:
            self._dead_letter(channel, method, properties, body, str(error))
            channel.basic_ack(method.delivery_tag)
            return
        if event.id in self._seen:
            with self._lock:
                self._counts["duplicates"] += 1
            channel.basic_ack(method.delivery_tag)
            return
        assert self._bus is not None
        try:
            self._bus.post(event)
        except BusClosed:
            logger.warning("AMQP consumer of %s: the bus is closed; stopping", self._shown)
            channel.basic_nack(method.delivery_tag, requeue=True)
            self._stopped.set()
            channel.stop_consuming()
            return
        except Exception:  # the bus itself failed (its subscribers' errors never get here)
            logger.exception("AMQP consumer of %s: posting %s failed; the message goes back to "
                             "the queue", self._shown, event.id)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        self._remember(event.id)
        with self._lock:
            self._counts["delivered"] += 1
        channel.basic_ack(method.delivery_tag)

    def _remember(self, event_id: str) -> None:
        if not self._window:
            return
        self._seen.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._window:
            self._seen.discard(self._order.popleft())

    def _dead_letter(self, channel: Any, method: Any, properties: Any, body: bytes,
                     reason: str) -> None:
        with self._lock:
            self._counts["dead_lettered"] += 1
        logger.warning("AMQP consumer of %s: malformed message (routing key %s): %s",
                       self._shown, method.routing_key, reason)
        if not self.dead_letter_queue:
            return
        headers = dict(properties.headers or {})
        headers.update({"x-fsmc-error": reason, "x-fsmc-routing-key": method.routing_key,
                        "x-fsmc-exchange": method.exchange})
        channel.basic_publish("", self.dead_letter_queue, body, pika.BasicProperties(
            content_type=properties.content_type, message_id=properties.message_id,
            delivery_mode=2, headers=headers))


def _drop(connection: Any) -> None:
    """Send what is written (the last acknowledgement), then drop the socket without a
    `basic.cancel` or `connection.close` (see the module documentation)."""
    try:
        connection.process_data_events(time_limit=0)
        connection._impl._adapter_disconnect_stream()  # pika has no public abort (1.x)
        connection.process_data_events(time_limit=0)
    except Exception:
        logger.debug("AMQP consumer: the connection was gone already", exc_info=True)


def declare_queue(url: str, queue: str, bindings: Iterable[str] = ("#",),
                  exchange: str = "fsmc.events", *,
                  queue_arguments: Mapping[str, Any] | None = None) -> None:
    """Declare the durable exchange and the durable `queue` (with `queue_arguments`, such as
    `{"x-queue-type": "quorum"}`) bound with `bindings`, now (it waits on the broker): events
    published from then on wait in the queue for a consumer that starts later."""
    patterns = [validate_pattern(pattern) for pattern in bindings]
    connection = pika.BlockingConnection(parameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue=queue, durable=True,
                              arguments=dict(queue_arguments) if queue_arguments else None)
        for pattern in patterns:
            channel.queue_bind(queue=queue, exchange=exchange, routing_key=pattern)
    finally:
        connection.close()
