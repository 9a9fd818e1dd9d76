"""Persisted transition -> broker -> notification service -> webhook receiver, everything
durable, one service instance, against the same path with in-memory hops, in the same run:

    python -m bench.notify_e2e [--quick] [--url AMQP_URL] [--events N]

- `durable`: a bound `VirtualMachine` commits each transition with its outbox row (a SQLite
  file); an `OutboxRelay` posts the rows to an
  `AmqpPublisher` (persistent messages, publisher confirms) into the service's durable named
  queue; the service (`create_app` on an SQLite file, as `fsmc notify serve` runs it) consumes
  it with `AmqpConsumer(record=journal.record)`: each batch is recorded (replay log + pending
  deliveries, one transaction) before it is acknowledged; the subscription's lane POSTs each
  event, signed, in order, to a loopback receiver and writes what it delivered in batches.
- `in-memory hops`: the same persisted transitions, outbox, relay and publisher, into a
  server-named queue; an `AmqpConsumer` posts them to a bus (acknowledging once posted) whose
  subscriber queues them in memory for one thread that POSTs each, signed, in order, to the
  same receiver: the service's path before it recorded anything.

Both are run twice: with the outbox's SQLite file at `synchronous=FULL` (an fsync per
committed transition: everything durable, as the target asks) and at `NORMAL` (no fsync per
commit), where the outbox no longer bounds the rate and the service's own hops show.

Transitions are fired as fast as they commit; each carries its firing time
(`perf_counter_ns`) in its payload, the receiver (in this process) stamps its arrival.
Figures: events/s from the first firing to the last arrival, and the p50/p99 latency from
firing to arrival (under that full load, so they include the backlog). The target: durable
>= 50 % of the in-memory throughput. Unless `--url` names a broker, a private one is started
(tests/rabbit.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fsmc.notify.app import create_app
from fsmc.notify.webhooks import signature
from fsmc.runtime import EventBus, StateChanged
from fsmc.runtime.amqp import AmqpConsumer, AmqpPublisher
from fsmc.runtime.cloudevent import encode
from fsmc.runtime.outbox import OutboxRelay
from fsmc.runtime.store import SqlStore

from bench.notify import service_config, summary
from generated.virtual_machine import VirtualMachine

TARGET = 0.5


class Arrivals:
    """A loopback webhook receiver: for each event id, when it first arrived and when it was
    fired (from its payload)."""

    def __init__(self) -> None:
        self.latencies: dict[str, int] = {}
        self.last_ns = 0
        self.lock = threading.Lock()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # the http.server API names it
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.perf_counter_ns()
                with arrivals.lock:
                    arrivals.latencies.setdefault(body["id"], now - body["data"]["payload"]["t"])
                    arrivals.last_ns = now
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.latencies) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.latencies)} of {count} events arrived")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fire(vm: VirtualMachine, events: int) -> int:
    """`events` transitions, each stamped; the first firing time."""
    cycle = (vm.start_requested, vm.operation_succeeded, vm.stop_requested,
             vm.operation_succeeded)
    first = time.perf_counter_ns()
    for index in range(events):
        cycle[index % 4](account="acme", t=time.perf_counter_ns())
    return first


def result(arrivals: Arrivals, first_ns: int, events: int) -> dict[str, float]:
    figures = summary(list(arrivals.latencies.values()))
    return {"rate": events / ((arrivals.last_ns - first_ns) / 1e9), "p50": figures["p50"],
            "p99": figures["p99"]}


class Source:
    """Persisted transitions of one machine, relayed from the outbox to the broker:
    `SqlStore` (SQLite file, `synchronous=sync`) -> `OutboxRelay` -> `AmqpPublisher`."""

    def __init__(self, url: str, folder: Path, sync: str, events: int) -> None:
        self.store = SqlStore(f"sqlite:///{folder}/outbox-{uuid.uuid4().hex[:6]}.db",
                              sqlite_pragmas={"synchronous": sync})
        self.publisher = AmqpPublisher(url, buffer=events + 1)
        self.relay = OutboxRelay(self.store, EventBus(), interval=0.01)  # its bus: the broker
        self.relay.bus.subscribe(self.publisher, StateChanged)

    def fire(self, events: int) -> int:
        vm = self.store.create(VirtualMachine, "vm-bench")
        self.relay.start()
        return fire(vm, events)

    def close(self) -> None:
        self.relay.stop(10)
        self.publisher.close(timeout=30)
        self.store.close()


def measure(consumer: AmqpConsumer, source: Source, arrivals: Arrivals,
            events: int) -> dict[str, float]:
    """Once `consumer` is ready: fire `events`, wait for them all at the receiver."""
    if not consumer.wait_ready(30):
        raise RuntimeError("the consumer did not connect")
    first = source.fire(events)
    arrivals.wait(events, timeout=events / 20 + 60)
    return result(arrivals, first, events)


def durable(url: str, events: int, folder: Path, sync: str) -> dict[str, float]:
    arrivals = Arrivals()
    bus = EventBus()
    app = create_app(bus, service_config("127.0.0.1"), subscriptions=folder / "notify.db")
    app.state.store.add("acme", "#", arrivals.url, "s")
    app.state.webhooks.refresh()
    queue = f"bench.notify.{uuid.uuid4().hex[:8]}"
    consumer = AmqpConsumer(url, queue, ["VirtualMachine.#"], record=app.state.journal.record)
    source = Source(url, folder, sync, events)
    try:
        return measure(consumer, source, arrivals, events)
    finally:
        source.close()
        consumer.close()
        app.state.journal.close()
        app.state.webhooks.close()
        app.state.store.close()
        bus.close()
        arrivals.close()


def in_memory(url: str, events: int, folder: Path, sync: str) -> dict[str, float]:
    arrivals = Arrivals()
    waiting: deque[StateChanged] = deque()
    ready = threading.Condition()
    stop = threading.Event()

    def lane() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                with ready:
                    ready.wait_for(lambda: bool(waiting) or stop.is_set(), 0.5)
                    if not waiting:
                        continue
                    event = waiting.popleft()
                body = encode(event, "fsmc.notify")
                client.post(arrivals.url, content=body, headers={
                    "Content-Type": "application/cloudevents+json",
                    "X-Fsmc-Signature": signature("s", body), "X-Fsmc-Event-Id": event.id})

    def queue(event: StateChanged) -> None:
        with ready:
            waiting.append(event)
            ready.notify()

    service_bus = EventBus()
    service_bus.subscribe(queue, StateChanged)
    consumer = AmqpConsumer(url, None, ["VirtualMachine.#"], bus=service_bus)
    source = Source(url, folder, sync, events)
    poster = threading.Thread(target=lane, daemon=True)
    poster.start()
    try:
        return measure(consumer, source, arrivals, events)
    finally:
        stop.set()
        poster.join(5)
        source.close()
        consumer.close()
        service_bus.close()
        arrivals.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 events (default 3,000)")
    parser.add_argument("--url", help="an AMQP URL (default: a private broker)")
    parser.add_argument("--events", type=int, help="events per run")
    args = parser.parse_args(argv)
    events = args.events or (500 if args.quick else 3000)
    url = args.url
    if url is None:
        from tests import rabbit

        url = rabbit.shared().url
    print(f"persisted transition -> broker -> service -> webhook receiver, {events:,} events, "
          "one instance, one subscription")
    for sync, what in (("FULL", "outbox fsync per commit: everything durable"),
                       ("NORMAL", "outbox without fsync per commit: the service's hops show")):
        with tempfile.TemporaryDirectory(prefix="fsmc-bench-notify-") as folder:
            fast = in_memory(url, events, Path(folder), sync)
            slow = durable(url, events, Path(folder), sync)
        ratio = slow["rate"] / fast["rate"]
        print(f"  SQLite outbox synchronous={sync} ({what})")
        for name, row in (("durable service (ack after record)", slow),
                          ("in-memory service hops", fast)):
            print(f"    {name:35} {row['rate']:8,.0f} events/s   p50 {row['p50']:8.1f} ms   "
                  f"p99 {row['p99']:8.1f} ms")
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"    target: durable >= {TARGET:.0%} of in-memory throughput: {ratio:.0%} "
              f"({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
