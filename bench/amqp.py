"""Confirmed events per second through `AmqpPublisher` against raw pika doing the same work, on
a local RabbitMQ broker, in the same run.

    python -m bench.amqp [--quick] [--url AMQP_URL] [--events N]

Every contender publishes the same `StateChanged` events, each as the same CloudEvents JSON
body (`fsmc.runtime.cloudevent.encode`) with the same properties (persistent, message id,
content type) to a durable topic exchange, and is timed until the broker has confirmed every
one (publisher confirms):
- `raw pika, async confirms`: the fastest way to write it with pika: one thread, a
  `SelectConnection`, up to 2,000 unconfirmed messages in flight, acks counted as they come
  (multiple acks included). Nothing else: no buffer, no reconnect, no resend.
- `raw pika, blocking`: the simplest way: `BlockingConnection` + `confirm_delivery()`, each
  `basic_publish` waits for its confirm.
- `AmqpPublisher`: `publisher(event)` for every event from the caller's thread, then
  `close()`, which returns once all are confirmed.
- `cloudevents SDK encode`: for reference, building the same message with the `cloudevents`
  package (`CloudEvent` + `JSONFormat().write`) vs our `encode`, per event.

Unless `--url` names a broker, a private one is started (tests/rabbit.py). Repeats are
interleaved; the figures are the best and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
import uuid
from collections.abc import Callable
from typing import Any

import pika
from fsmc.runtime import StateChanged
from fsmc.runtime.amqp import AmqpPublisher
from fsmc.runtime.amqp.message import outgoing, properties
from fsmc.runtime.cloudevent import encode, envelope

WINDOW = 2_000


def sample_events(count: int) -> list[StateChanged]:
    return [StateChanged("VirtualMachine", f"vm-{i:05d}", "StopRequested", "Running",
                         "Stopping", ("usage",), {"account": f"acct-{i % 10:02d}"})
            for i in range(count)]


def raw_async(url: str, exchange: str, events: list[StateChanged]) -> float:
    """Seconds from the channel being ready to the last confirm."""
    state = {"next": 0, "acked": 0, "started": 0.0, "finished": 0.0}

    def publish_more(channel: Any) -> None:
        while state["next"] < len(events) and state["next"] - state["acked"] < WINDOW:
            message = outgoing(events[int(state["next"])], "fsmc")
            channel.basic_publish(exchange, message.routing_key, message.body,
                                  properties(message))
            state["next"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        state["acked"] = method.delivery_tag if method.multiple else state["acked"] + 1
        if state["acked"] >= len(events):
            state["finished"] = time.perf_counter()
            connection.close()
        else:
            publish_more(channel_box[0])

    channel_box: list[Any] = []

    def ready(channel: Any) -> None:
        channel_box.append(channel)
        state["started"] = time.perf_counter()
        publish_more(channel)

    def on_channel(channel: Any) -> None:
        channel.exchange_declare(exchange, "topic", durable=True, callback=lambda _: (
            channel.confirm_delivery(on_confirm, callback=lambda _: ready(channel))))

    connection = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_close_callback=lambda c, _reason: c.ioloop.stop())
    connection.ioloop.start()
    return state["finished"] - state["started"]


def raw_blocking(url: str, exchange: str, events: list[StateChanged]) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.confirm_delivery()
    started = time.perf_counter()
    for event in events:
        message = outgoing(event, "fsmc")
        channel.basic_publish(exchange, message.routing_key, message.body, properties(message))
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def publisher(url: str, exchange: str, events: list[StateChanged]) -> float:
    bridge = AmqpPublisher(url, exchange, buffer=len(events) + 1)
    if not bridge.wait_connected(30):
        raise RuntimeError("AmqpPublisher did not connect")
    started = time.perf_counter()
    for event in events:
        bridge(event)
    bridge.close(timeout=300)
    return time.perf_counter() - started


CONTENDERS: dict[str, Callable[[str, str, list[StateChanged]], float]] = {
    "raw pika, async confirms": raw_async,
    "AmqpPublisher": publisher,
    "raw pika, blocking": raw_blocking,
}


def encode_costs(repeat: int) -> dict[str, float]:
    """µs per event to build the message body: ours and the cloudevents SDK's."""
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    event = sample_events(1)[0]
    fmt = JSONFormat()

    def sdk() -> bytes:
        attributes = envelope(event, "fsmc")
        data = attributes.pop("data")
        attributes["time"] = event.time
        return fmt.write(CloudEvent(attributes, data))

    def ours() -> bytes:
        return encode(event, "fsmc")

    number = 2_000
    return {name: min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6
            for name, function in (("fsmc encode", ours), ("cloudevents SDK", sdk))}


def run(url: str, count: int, repeat: int) -> dict[str, list[float]]:
    events = sample_events(count)
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(repeat):
        for name, contender in CONTENDERS.items():
            exchange = f"bench.{uuid.uuid4().hex[:8]}"
            subset = events if name != "raw pika, blocking" else events[: max(500, count // 10)]
            rates[name].append(len(subset) / contender(url, exchange, subset))
    return rates


def print_rates(rates: dict[str, list[float]], baseline: str, against: str) -> None:
    """A table of rates: best, median, and each as a ratio to `baseline`'s."""
    best_base, median_base = max(rates[baseline]), statistics.median(rates[baseline])
    print(f"{'contender':<28} {'best':>9} {'median':>9} {against:>14} {'(median)':>9}")
    for name, values in rates.items():
        best, median = max(values), statistics.median(values)
        print(f"{name:<28} {best:>9,.0f} {median:>9,.0f} {best / best_base:>13.0%} "
              f"{median / median_base:>9.0%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--url", help="a broker to use (default: start a private one)")
    parser.add_argument("--events", type=int, help="events per run (default 20,000; quick 5,000)")
    args = parser.parse_args(argv)
    count = args.events or (5_000 if args.quick else 20_000)
    repeat = 3 if args.quick else 5
    server = None
    url = args.url
    if url is None:
        from tests import rabbit

        reason = rabbit.available()
        if reason:
            print(f"bench.amqp: skipped: {reason}")
            return 0
        server = rabbit.start()
        url = server.url
    try:
        rates = run(url, count, repeat)
    finally:
        if server is not None:
            server.stop()
    print(f"confirmed events/s, {count:,} events per run, {repeat} interleaved repeats "
          f"(pika {pika.__version__})")
    print_rates(rates, "raw pika, async confirms", "vs raw (best)")
    costs = encode_costs(5)
    print("building the message body, µs per event: " + ", ".join(
        f"{name} {value:.1f}" for name, value in costs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
