"""The notification service end to end, on loopback, in one run:

    python -m bench.notify [--quick]

- latency from a transition fired (a generated `VirtualMachine` posting to the bus) to each of
  100 connected SSE clients receiving it (uvicorn + httpx readers in threads), p50 / p99 /
  max, at a steady rate; against the raw bus delivering the same event to a plain subscriber;
- webhook events/s to a receiver on loopback (one subscription, in order, signed), against
  raw httpx POSTs of the same bodies to the same receiver from one thread.

Everything shares the machine's cores: the 100 readers parse the streams in Python, so the SSE
figures include the clients' own time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from fsmc.runtime import EventBus, StateChanged

from generated.virtual_machine import VirtualMachine
from tests.notify_server import KEYS, Reader, config, serving
from tests.test_notify_webhooks import Receiver

KEY = KEYS["admin"]
LIMITS = {"client_queue": 100_000, "rate": 1000, "burst": 1000}


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1e3:8.2f} ms   p99 {p99 * 1e3:8.2f} ms   max {ordered[-1] * 1e3:8.2f} ms"


def sse_latency(clients: int, events: int, rate: float) -> tuple[list[float], list[float]]:
    bus = EventBus()
    fired: dict[str, float] = {}
    direct: list[float] = []

    def stamp(event: StateChanged) -> None:  # first subscriber: the moment it was posted
        fired[event.id] = time.perf_counter()

    def plain(event: StateChanged) -> None:  # the raw bus delivery, for comparison
        direct.append(time.perf_counter() - fired[event.id])

    bus.subscribe(stamp, StateChanged)
    bus.subscribe(plain, StateChanged)
    received: list[float] = []
    with serving(bus, config(**LIMITS)) as base:
        arrivals: list[dict[str, float]] = [{} for _ in range(clients)]
        readers = [Reader(base, KEY, on_event=lambda ident, seen=seen: seen.__setitem__(
            ident, time.perf_counter())).start() for seen in arrivals]
        vm = VirtualMachine("vm-bench", bus=bus)
        cycle = [vm.start_requested, vm.operation_succeeded, vm.stop_requested,
                 vm.operation_succeeded]
        start = time.perf_counter()
        for index in range(events):
            cycle[index % 4]()
            delay = start + (index + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        for reader in readers:
            reader.wait_for(events, timeout=120)
        for seen in arrivals:
            received.extend(seen[ident] - fired[ident] for ident in seen)
    return received, direct


def webhook_rate(events: int) -> tuple[float, float]:
    receiver = Receiver()
    bus = EventBus()
    sent = [StateChanged("VirtualMachine", f"vm-{n}", "StartRequested", "Stopped", "Starting",
                         (), {"account": "acct-01"}) for n in range(events)]
    try:
        with serving(bus, config(allow="127.0.0.1", **LIMITS)) as base:
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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    clients, events, rate = (20, 200, 100.0) if args.quick else (100, 1000, 100.0)
    received, direct = sse_latency(clients, events, rate)
    print(f"transition fired -> received, {events:,} transitions at {rate:.0f}/s")
    print(f"  {clients} SSE clients ({len(received):,} deliveries)   {percentiles(received)}")
    print(f"  raw bus, 1 plain subscriber       {percentiles(direct)}")
    hooks = 500 if args.quick else 2000
    service, raw = webhook_rate(hooks)
    print(f"webhook deliveries to a loopback receiver, {hooks:,} events, one subscription")
    print(f"  fsmc notify (signed, in order)    {service:8,.0f} events/s")
    print(f"  raw httpx POST loop, same bodies  {raw:8,.0f} events/s "
          f"({service / raw:.0%} of raw)")
    statistics.mean(received)  # all deliveries arrived (an empty list raises)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
