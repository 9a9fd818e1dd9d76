"""Case 4, asynchronous delivery throughput: the time to post N events and have every one
handled (end to end, wall time, ns per event), the bus against the bare minimum that does the
same hand-over:

- `mode="threads"` (defaults: one worker, bounded queue, `block`) with a sync handler, against
  a `queue.SimpleQueue` and one worker thread (no bound, no counting, no routing);
- an `async def` subscriber on the bus's own loop (a daemon thread), posts from the main
  thread, against an `asyncio.Queue` on a loop in a thread, fed with
  `loop.call_soon_threadsafe(queue.put_nowait, event)`;
- an `async def` subscriber on a loop the caller runs (`loop=`), posts from a coroutine on that
  loop, against `asyncio.Queue.put_nowait` and a consumer task on the same loop.

Throughput ratio = bare time / bus time (the target is ≥ 0.70).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from fsmc.runtime import EventBus

from bench.report import Section
from bench.timing import Settings, Stat

STOP = object()


def noop(event: Any) -> None:
    pass


def work(event: Any, box: list[int] = [0]) -> None:  # noqa: B006 - a cheap sink
    """About a microsecond of Python: what a light real handler does."""
    total = 0
    for value in range(40):
        total += value
    box[0] = total


def bare_threads(handler: Callable[[Any], None], events: int) -> float:
    queue: SimpleQueue[Any] = SimpleQueue()

    def consume() -> None:
        get = queue.get
        while (item := get()) is not STOP:
            handler(item)

    worker = threading.Thread(target=consume)
    worker.start()
    put, event = queue.put, object()
    start = time.perf_counter()
    for _ in range(events):
        put(event)
    put(STOP)
    worker.join()
    return time.perf_counter() - start


def bus_threads(handler: Callable[[Any], None], events: int) -> float:
    bus = EventBus(mode="threads")
    bus.subscribe(handler)
    post, event = bus.post, object()
    start = time.perf_counter()
    for _ in range(events):
        post(event)
    bus.close()
    elapsed = time.perf_counter() - start
    assert bus.stats()["delivered"] == events
    return elapsed


class Counter:
    """An `async def` handler that counts and says when it has seen `expected` events."""

    def __init__(self, expected: int, done: Callable[[], object]) -> None:
        self.expected, self.seen, self.done = expected, 0, done

    async def __call__(self, event: Any) -> None:
        self.seen += 1
        if self.seen == self.expected:
            self.done()


def bare_asyncio_thread(events: int) -> float:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    finished = threading.Event()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    handler = Counter(events, finished.set)

    async def consume() -> None:
        while (item := await queue.get()) is not STOP:
            await handler(item)

    consumer = asyncio.run_coroutine_threadsafe(consume(), loop)
    call, put, event = loop.call_soon_threadsafe, queue.put_nowait, object()
    start = time.perf_counter()
    for _ in range(events):
        call(put, event)
    finished.wait()
    call(put, STOP)
    consumer.result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    elapsed = time.perf_counter() - start
    loop.close()
    return elapsed


def bus_async_thread(events: int) -> float:
    bus = EventBus()
    finished = threading.Event()
    bus.subscribe(Counter(events, finished.set))
    post, event = bus.post, object()
    start = time.perf_counter()
    for _ in range(events):
        post(event)
    bus.close()
    elapsed = time.perf_counter() - start
    assert finished.is_set()
    return elapsed


def on_loop(events: int, use_bus: bool) -> float:
    async def main() -> float:
        finished = asyncio.Event()
        handler = Counter(events, finished.set)
        event = object()
        if use_bus:
            bus = EventBus(loop=asyncio.get_running_loop())
            bus.subscribe(handler)
            post: Callable[[Any], None] = bus.post
        else:
            queue: asyncio.Queue[Any] = asyncio.Queue()

            async def consume() -> None:
                while True:
                    await handler(await queue.get())

            task = asyncio.create_task(consume())
            post = queue.put_nowait
        start = time.perf_counter()
        for index in range(events):
            post(event)
            if index % 1000 == 999:  # a producer that also lets others run
                await asyncio.sleep(0)
        await finished.wait()
        elapsed = time.perf_counter() - start
        if use_bus:
            bus.close()
        else:
            task.cancel()
        return elapsed

    return asyncio.run(main())


def run(settings: Settings) -> Section:
    section = Section("async", "4. Asynchronous delivery throughput")
    n = settings.events
    pairs: dict[str, tuple[str, Callable[[], float], Callable[[], float]]] = {
        "threads, no-op handler": ("SimpleQueue + 1 thread", lambda: bare_threads(noop, n),
                                   lambda: bus_threads(noop, n)),
        "threads, ~1 µs handler": ("SimpleQueue + 1 thread", lambda: bare_threads(work, n),
                                   lambda: bus_threads(work, n)),
        "async def subscriber, posts from another thread": (
            "asyncio.Queue via call_soon_threadsafe", lambda: bare_asyncio_thread(n),
            lambda: bus_async_thread(n)),
        "async def subscriber, posts on the loop": (
            "asyncio.Queue + consumer task", lambda: on_loop(n, False), lambda: on_loop(n, True)),
    }
    for group, (bare_name, bare, ours) in pairs.items():
        samples: dict[str, list[float]] = {"bare": [], "bus": []}
        for _ in range(settings.async_rounds):
            samples["bare"].append(bare() / n * 1e9)
            samples["bus"].append(ours() / n * 1e9)
        stats = {key: Stat(min(v), statistics.median(v)) for key, v in samples.items()}
        section.add(f"{group} ({n:,} events, end to end)", "ns/event", stats, "bare",
                    {"bare": bare_name, "bus": "fsmc EventBus"})
        share = stats["bare"].min / stats["bus"].min
        section.target(f"async ≥ 70 % of bare queue throughput: {group}", share, ">=", 0.70,
                       f"{share:.0%} ({stats['bus'].min:.0f} vs {stats['bare'].min:.0f} "
                       "ns/event)")
    section.notes.append(
        "Wall time (several threads take part): the most exposed to other processes. The "
        "bus's queues are bounded (`max_queue=10_000`, the poster waits for room), count "
        "deliveries and isolate errors; the bare queues do none of this.")
    return section
