"""The notification service end to end, on loopback, in one run:

    python -m bench.notify [--quick]

- SSE latency: from a transition fired (a generated `VirtualMachine` posting to the service's
  bus, a sync `EventBus` as `fsmc notify serve` builds it) to each of 100 SSE clients
  receiving it (20 with `--quick`), at a steady 100 transitions/s (1,000; 200 with `--quick`):
  p50 / p99 / max, and the events lost, duplicated or reordered on any stream (each must be
  0). Against it, the raw bus delivering the same event to a plain subscriber.
- Webhook events/s to a receiver on loopback (one subscription, in order, signed), against
  raw httpx POSTs of the same bodies to the same receiver from one thread.
- End to end (`bench.notify_e2e`): persisted transition -> broker -> service -> receiver,
  everything durable, against the same path with in-memory service hops (target >= 50 %).

The service (`BackgroundServer(create_app(bus, config))`) runs in this process; the SSE
clients run in another (`python -m bench.sse_readers`: one asyncio loop, raw HTTP/1.1
connections), so that reading 100 streams in Python does not take the service's GIL. Each
event's send time is taken here by the bus's first subscriber, its receive time there as the
socket read returns, both with `time.perf_counter_ns()`: CLOCK_MONOTONIC on Linux, one clock
for every process of the machine (checked by `bench.sse_readers`, and again here for each
run). Transitions are fired only once the hub counts every client connected.

Both processes still share the machine's cores (2 here): the figures include the readers'
own time, less of it than with readers in the service's process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fsmc.notify.app import create_app
from fsmc.notify.config import NotifyConfig
from fsmc.notify.server import BackgroundServer
from fsmc.runtime import EventBus, StateChanged

from generated.virtual_machine import VirtualMachine
from tests.notify_server import KEYS, config, serving
from tests.test_notify_webhooks import Receiver

ROOT = Path(__file__).resolve().parents[1]
KEY = KEYS["admin"]


def service_config(allow: str | None = None) -> NotifyConfig:
    """The test tenants and keys, with room enough that no stream overflows and no request is
    rate limited (`allow`: a webhook host)."""
    return config(allow, client_queue=100_000, rate=1000, burst=1000)


@dataclass
class SseRun:
    """What one SSE run measured: every delivery's latency, the raw bus's, and what went
    wrong on the streams (all counts summed over the clients)."""

    clients: int
    events: int
    rate: float
    latencies_ns: list[int]  # one per delivery: received (reader process) - posted (here)
    direct_ns: list[int]  # the raw bus: the plain subscriber called - posted
    lost: int  # events a client never received
    reordered: int  # received after an event posted later
    duplicated: int
    unexpected: int  # ids this run never posted
    errors: dict[str, int]  # how streams ended other than complete, with how many


def summary(values_ns: list[int]) -> dict[str, float]:
    """p50, p99 and max, in milliseconds."""
    ordered = sorted(values_ns)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50": ordered[len(ordered) // 2] / 1e6, "p99": p99 / 1e6, "max": ordered[-1] / 1e6}


def percentiles(values_ns: list[int]) -> str:
    figures = summary(values_ns)
    return (f"p50 {figures['p50']:8.3f} ms   p99 {figures['p99']:8.3f} ms   "
            f"max {figures['max']:8.3f} ms")


def wait_for_clients(hub: Any, clients: int, reader: subprocess.Popen[str],
                     timeout: float) -> None:
    """Until the hub counts `clients` streams (RuntimeError if the reader process exits or
    `timeout` seconds pass first)."""
    deadline = time.monotonic() + timeout
    while hub.clients < clients:
        if reader.poll() is not None:
            _, err = reader.communicate()
            raise RuntimeError(f"the reader process exited ({reader.returncode}) with "
                               f"{hub.clients}/{clients} streams open: {err.strip()[-500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {hub.clients}/{clients} streams opened in {timeout} s")
        time.sleep(0.005)


def fire(bus: EventBus, events: int, rate: float) -> None:
    """`events` transitions of one machine, at `rate` per second (on a schedule: a late one
    does not delay the next)."""
    vm = VirtualMachine("vm-bench", bus=bus)
    cycle = [vm.start_requested, vm.operation_succeeded, vm.stop_requested,
             vm.operation_succeeded]
    start = time.perf_counter()
    for index in range(events):
        cycle[index % 4]()
        delay = start + (index + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def sse_latency(clients: int, events: int, rate: float) -> SseRun:
    """The service on a free port, `clients` streams in a reader process, `events`
    transitions at `rate`/s once they are all connected."""
    bus = EventBus()  # sync, as `fsmc notify serve` builds it
    sent: dict[str, int] = {}
    order: dict[str, int] = {}
    direct: list[int] = []

    def stamp(event: StateChanged) -> None:  # first subscriber: the moment it was posted
        sent[event.id] = time.perf_counter_ns()
        order[event.id] = len(order)

    def plain(event: StateChanged) -> None:  # the raw bus delivery, for comparison
        direct.append(time.perf_counter_ns() - sent[event.id])

    bus.subscribe(stamp, StateChanged)
    bus.subscribe(plain, StateChanged)
    app = create_app(bus, service_config())
    timeout = events / rate + 60
    with BackgroundServer(app) as server:
        spawned_ns = time.perf_counter_ns()
        reader = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_readers", "--url", server.url, "--key", KEY,
             "--clients", str(clients), "--events", str(events), "--timeout", str(timeout)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_clients(app.state.hub, clients, reader, timeout=30)
            fire(bus, events, rate)
            out, err = reader.communicate(timeout=timeout + 30)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        joined_ns = time.perf_counter_ns()
    bus.close()
    if reader.returncode != 0:
        raise RuntimeError(f"the reader process failed ({reader.returncode}): "
                           f"{err.strip()[-500:]}")
    report = json.loads(out)
    check_clock(report, spawned_ns, joined_ns)
    return tally(report, clients, events, rate, sent, order, direct)


def check_clock(report: dict[str, Any], spawned_ns: int, joined_ns: int) -> None:
    """The reader's stamps are on this process's clock: the same implementation, and its
    start between our spawning it and joining it."""
    ours = time.get_clock_info("perf_counter").implementation
    if report["clock"] != ours or not spawned_ns < report["started_ns"] < joined_ns:
        raise RuntimeError(f"the reader's clock ({report['clock']}, started at "
                           f"{report['started_ns']}) is not this process's ({ours}, "
                           f"{spawned_ns}..{joined_ns}): latencies would be meaningless")


def tally(report: dict[str, Any], clients: int, events: int, rate: float,
          sent: dict[str, int], order: dict[str, int], direct: list[int]) -> SseRun:
    latencies: list[int] = []
    lost = reordered = duplicated = unexpected = 0
    errors: Counter[str] = Counter()
    for client in report["clients"]:
        if client["error"] is not None:
            errors[client["error"]] += 1
        seen: set[str] = set()
        latest = -1
        for ident, received in zip(client["ids"], client["received_ns"], strict=True):
            index = order.get(ident)
            if index is None:
                unexpected += 1
                continue
            if ident in seen:
                duplicated += 1
                continue
            seen.add(ident)
            if index < latest:
                reordered += 1
            latest = max(latest, index)
            latencies.append(received - sent[ident])
        lost += len(order) - len(seen)
    lost += (clients - len(report["clients"])) * len(order)
    if latencies and min(latencies) < 0:
        raise RuntimeError(f"an event was received {-min(latencies)} ns before it was posted: "
                           "the two processes' clocks differ")
    return SseRun(clients, events, rate, latencies, direct, lost, reordered, duplicated,
                  unexpected, dict(errors))


def webhook_rate(events: int) -> tuple[float, float]:
    receiver = Receiver()
    bus = EventBus()
    sent = [StateChanged("VirtualMachine", f"vm-{n}", "StartRequested", "Stopped", "Starting",
                         (), {"account": "acct-01"}) for n in range(events)]
    try:
        with serving(bus, service_config("127.0.0.1")) as base:
            created = httpx.post(f"{base}/v1/subscriptions", timeout=10,
                                 headers={"Authorization": f"Bearer {KEY}"},
                                 json={"topic": "#", "kind": "webhook", "url": receiver.url,
                                       "secret": "s"})
            assert created.status_code == 201, created.text
            start = time.perf_counter()
            for each in sent:
                bus.post(each)
            receiver.wait_for(events, timeout=300)
            service = events / (time.perf_counter() - start)
        bodies = [body for _, body in receiver.received]
        receiver.received.clear()
        with httpx.Client(timeout=10) as client:
            start = time.perf_counter()
            for body in bodies:
                client.post(receiver.url, content=body,
                            headers={"Content-Type": "application/cloudevents+json"})
            raw = len(bodies) / (time.perf_counter() - start)
    finally:
        receiver.server.shutdown()
    return service, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="20 clients x 200 events, 500 webhooks (default 100 x 1,000, 2,000)")
    args = parser.parse_args(argv)
    clients, events, rate = (20, 200, 100.0) if args.quick else (100, 1000, 100.0)
    run = sse_latency(clients, events, rate)
    print(f"transition fired -> received, {events:,} transitions at {rate:.0f}/s; "
          f"SSE clients in a reader process")
    print(f"  {clients} SSE clients ({len(run.latencies_ns):,} deliveries)  "
          f"{percentiles(run.latencies_ns)}")
    print(f"  raw bus, 1 plain subscriber          {percentiles(run.direct_ns)}")
    print(f"  lost {run.lost}, reordered {run.reordered}, duplicated {run.duplicated}, "
          f"unexpected {run.unexpected}")
    for error, count in sorted(run.errors.items()):
        print(f"  {count} stream(s): {error}")
    hooks = 500 if args.quick else 2000
    service, raw = webhook_rate(hooks)
    print(f"webhook deliveries to a loopback receiver, {hooks:,} events, one subscription")
    print(f"  fsmc notify (signed, in order)    {service:8,.0f} events/s")
    print(f"  raw httpx POST loop, same bodies  {raw:8,.0f} events/s "
          f"({service / raw:.0%} of raw)")
    from bench import notify_e2e  # here: it builds on this module's helpers

    notify_e2e.main(["--quick"] if args.quick else [])
    if run.lost or run.reordered or run.duplicated or run.unexpected or run.errors:
        print(f"SSE streams incomplete: {run.lost} lost, {run.reordered} reordered, "
              f"{run.duplicated} duplicated, {run.unexpected} unexpected, "
              f"{sum(run.errors.values())} stream error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
