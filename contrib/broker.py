"""The demo across processes: events printed or billed from the broker.

`tail(url, bindings, ...)` prints each event a server-named queue receives (one line, or its
CloudEvents JSON) until stopped; `bill(url, db, ...)` feeds the usage meter from the durable
queue `fsmc.billing`, so that a billing process can run beside `fsmc demo --amqp URL` (which
declares that queue before it publishes, so nothing is missed whichever starts first).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from fsmc.runtime import EventBus, StateChanged
from fsmc.runtime.amqp import AmqpConsumer
from fsmc.runtime.cloudevent import envelope

from .usage import UsageMeter

__all__ = ["BILLING_QUEUE", "bill", "format_line", "tail"]

BILLING_QUEUE = "fsmc.billing"


def format_line(event: StateChanged) -> str:
    """One line per event: time, machine, resource, `old --event--> new`, tags, payload."""
    tags = f" [{', '.join(event.tags)}]" if event.tags else ""
    payload = f" {json.dumps(dict(event.payload), default=str)}" if event.payload else ""
    return (f"{event.time.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} "
            f"{event.machine} {event.resource_id} {event.old_state} --{event.event}--> "
            f"{event.new_state}{tags}{payload}")


def tail(url: str, bindings: Sequence[str], out: TextIO, *, exchange: str = "fsmc.events",
         as_json: bool = False, count: int | None = None,
         stop: threading.Event | None = None) -> int:
    """Print events as they arrive until `count` were printed or `stop` is set; returns how
    many were printed."""
    done = stop or threading.Event()
    printed = 0
    lock = threading.Lock()

    def show(event: StateChanged) -> None:
        nonlocal printed
        with lock:
            if count is not None and printed >= count:
                return
            line = json.dumps(envelope(event, "fsmc"), default=str) if as_json \
                else format_line(event)
            out.write(line + "\n")
            out.flush()
            printed += 1
            if count is not None and printed >= count:
                done.set()

    bus = EventBus()
    bus.subscribe(show, StateChanged)
    consumer = AmqpConsumer(url, None, bindings, exchange, bus=bus, dedupe_window=10_000)
    try:
        done.wait()
    finally:
        consumer.close()
    return printed


def bill(url: str, db: Path, *, queue: str = BILLING_QUEUE, exchange: str = "fsmc.events",
         idle: float | None = None, stop: threading.Event | None = None,
         progress: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
    """Record usage from `queue` into the database `db` until `stop` is set or, with `idle`,
    until no event came for `idle` seconds after the first one. Returns the consumer's
    counters plus the meter's `recorded`."""
    done = stop or threading.Event()
    bus = EventBus()
    meter = UsageMeter(db)
    bus.subscribe(meter.record, StateChanged)
    consumer = AmqpConsumer(url, queue, ("#",), exchange, bus=bus)
    last, seen = time.monotonic(), 0
    try:
        while not done.wait(0.2):
            received = consumer.stats()["received"]
            if received != seen:
                last, seen = time.monotonic(), received
                if progress is not None:
                    progress(consumer.stats())
            elif idle is not None and seen and time.monotonic() - last >= idle:
                break
    finally:
        consumer.close(timeout=60)  # before the meter: nothing is posted to a closed meter
        meter.close()
    return {**consumer.stats(), "recorded": meter.stats()["recorded"]}
