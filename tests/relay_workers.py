"""Code that the broker reliability tests run in child processes (spawned: each imports this
light module only): an `OutboxRelay` into an `AmqpPublisher`, a publisher on a journal, and
a consumer that counts what reached a queue."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
from pathlib import Path

import pika
from fsmc.runtime import StateChanged
from fsmc.runtime.amqp import AmqpPublisher, DeliveryError
from fsmc.runtime.outbox import OutboxRelay
from fsmc.runtime.store import SqlStore

FAST_SQLITE = {"synchronous": "NORMAL"}
QUICK = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.5, "confirm_timeout": 3.0}


def relay_into_broker(url: str, amqp_url: str, exchange: str, name: str, ready: str,
                      lease: float) -> None:
    """Relay the outbox into the broker until SIGTERM; then stop the relay (a last pass,
    confirms waited for up to 10 s) and close the publisher; exit 0. A fixed `name`, so a
    restarted relay takes over the leases of the one killed before it."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SqlStore(url, create_tables=False, sqlite_pragmas=FAST_SQLITE) as store:
        publisher = AmqpPublisher(amqp_url, exchange, **QUICK)
        relay = OutboxRelay(store, publisher, interval=0.02, batch=100, lease=lease,
                            name=name, confirm_timeout=5.0, max_backoff=0.5,
                            on_error=lambda error: None).start()
        Path(ready).write_text(str(os.getpid()))
        stop.wait()
        relay.stop(timeout=10)
        with contextlib.suppress(DeliveryError):  # what it holds is pending in the outbox
            publisher.close(timeout=10)


def publish_journaled(amqp_url: str, exchange: str, journal: str, count: int,
                      accepted: str) -> None:
    """Publish `count` events through a journaled publisher, writing each one's id to
    `accepted` once `publish` returned; then wait to be killed."""
    publisher = AmqpPublisher(amqp_url, exchange, journal_path=journal, buffer=count // 4 + 1,
                              block_timeout=0.05, **QUICK)
    fd = os.open(accepted, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for index in range(count):
        event = StateChanged("VirtualMachine", f"vm-{index % 50}", "StartRequested",
                             "Stopped", "Starting", (), {"n": index})
        publisher(event)
        os.write(fd, f"{event.id}\n".encode())
    threading.Event().wait()


def drain(amqp_url: str, queue: str, idle: float = 2.0) -> collections.Counter[str]:
    """Every message in `queue` (consumed and acknowledged), counted by message id, once
    none arrived for `idle` seconds."""
    seen: collections.Counter[str] = collections.Counter()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1000)
        for method, properties, _body in channel.consume(queue, inactivity_timeout=idle):
            if method is None:
                break
            seen[properties.message_id] += 1
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    finally:
        connection.close()
    return seen
