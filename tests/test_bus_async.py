"""`async def` subscribers, in sync and threads mode, on the bus's own loop or on a loop the
caller gives; ordering, errors, overflow, closing, and 100k events end to end."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fsmc.runtime.bus import EventBus
from fsmc.runtime.errors import BusClosed, BusFull
from fsmc.runtime.events import DeadEvent
from fsmc.runtime.subscriptions import is_async_handler, subscribe

from tests.posting import post_from_threads

WAIT = 20.0


@pytest.fixture
def buses() -> Iterator[list[EventBus]]:
    made: list[EventBus] = []
    yield made
    for bus in made:
        bus.close(timeout=WAIT)


def make(buses: list[EventBus], **options: Any) -> EventBus:
    bus = EventBus(**options)
    buses.append(bus)
    return bus


class Recorder:
    def __init__(self) -> None:
        self.seen: list[object] = []
        self.threads: set[str] = set()

    async def __call__(self, event: object) -> None:
        self.threads.add(threading.current_thread().name)
        await asyncio.sleep(0)
        self.seen.append(event)


def test_async_detection() -> None:
    async def coroutine_function(event: object) -> None:
        pass

    class WithAsyncCall:
        async def __call__(self, event: object) -> None:
            pass

    class WithSyncCall:
        def __call__(self, event: object) -> None:
            pass

    class Subclass(WithAsyncCall):
        def __call__(self, event: object) -> None:  # type: ignore[override]
            pass

    assert is_async_handler(coroutine_function)
    assert is_async_handler(functools.partial(coroutine_function))
    assert is_async_handler(WithAsyncCall())
    assert is_async_handler(Recorder().__call__)
    assert not is_async_handler(WithSyncCall())
    assert not is_async_handler(Subclass())
    assert not is_async_handler(print)
    assert not is_async_handler(lambda e: None)


@pytest.mark.parametrize("mode", ["sync", "threads"])
def test_async_handlers_run_in_order_on_the_bus_loop(buses: list[EventBus], mode: str) -> None:
    bus = make(buses, mode=mode)
    first, second = Recorder(), Recorder()
    sync_seen: list[object] = []
    bus.subscribe(first, int)
    bus.subscribe(sync_seen.append, int)
    bus.subscribe(second, int)
    for index in range(500):
        bus.post(index)
    assert bus.close(timeout=WAIT) == 0
    assert first.seen == second.seen == sync_seen == list(range(500))
    assert first.threads == {"fsmc-bus-loop"}
    assert bus.stats() == {"posted": 500, "delivered": 1500, "failed": 0, "dead": 0,
                           "dropped": 0}


@pytest.mark.parametrize("mode", ["sync", "threads"])
def test_async_handlers_on_a_loop_given_to_the_bus(buses: list[EventBus], mode: str) -> None:
    """The loop runs in a thread the test owns; the bus only schedules work on it."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="user-loop", daemon=True)
    runner.start()
    try:
        bus = make(buses, mode=mode, loop=loop)
        recorder = Recorder()
        bus.subscribe(recorder)
        for index in range(200):
            bus.post(index)
        assert bus.close(timeout=WAIT) == 0
        assert recorder.seen == list(range(200))
        assert recorder.threads == {"user-loop"}
        assert loop.is_running()  # not the bus's to stop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(WAIT)
        loop.close()


def test_posting_from_inside_the_given_loop(buses: list[EventBus]) -> None:
    """A coroutine running on the loop posts (sync mode): sync subscribers run at once,
    async ones on the same loop once the coroutine yields."""
    seen: list[tuple[str, int]] = []

    async def main() -> int:
        bus = make(buses, loop=asyncio.get_running_loop())
        done = asyncio.Event()

        async def on_async(event: int) -> None:
            seen.append(("async", event))
            if event == 2:
                done.set()

        bus.subscribe(lambda e: seen.append(("sync", e)), int)
        bus.subscribe(on_async, int)
        for index in range(3):
            bus.post(index)
        assert [kind for kind, _ in seen] == ["sync"] * 3
        await asyncio.wait_for(done.wait(), WAIT)
        return bus.close()

    assert asyncio.run(main()) == 0
    assert [e for kind, e in seen if kind == "async"] == [0, 1, 2]


def test_close_on_the_loop_thread_cannot_wait(buses: list[EventBus]) -> None:
    """close() from the loop's own thread cannot wait for that loop: it reports (and drops)
    what is still queued."""
    async def main() -> tuple[int, list[int]]:
        bus = make(buses, loop=asyncio.get_running_loop())
        seen: list[int] = []

        async def handler(event: int) -> None:
            seen.append(event)

        bus.subscribe(handler, int)
        for index in range(3):
            bus.post(index)
        left = bus.close(timeout=WAIT)
        await asyncio.sleep(0.01)
        return left, seen

    left, seen = asyncio.run(main())
    assert left == 3 and seen == []


def test_async_errors_go_to_on_error(buses: list[EventBus]) -> None:
    errors: list[tuple[BaseException, object, object]] = []
    bus = make(buses, on_error=lambda exc, event, handler: errors.append((exc, event, handler)))

    async def broken(event: int) -> None:
        if event % 2:
            raise ValueError(event)

    bus.subscribe(broken, int)
    for index in range(6):
        bus.post(index)
    assert bus.close(timeout=WAIT) == 0
    assert [event for _, event, _ in errors] == [1, 3, 5]
    assert all(handler is broken for _, _, handler in errors)
    assert bus.stats() == {"posted": 6, "delivered": 3, "failed": 3, "dead": 0, "dropped": 0}


def test_registered_async_methods_and_dead_events(buses: list[EventBus]) -> None:
    class Service:
        def __init__(self) -> None:
            self.seen: list[object] = []

        @subscribe(DeadEvent)
        async def on_dead(self, event: DeadEvent) -> None:
            self.seen.append(event.event)

    bus = make(buses)
    service = Service()
    bus.register(service)
    bus.post("nobody")
    assert bus.close(timeout=WAIT) == 0
    assert service.seen == ["nobody"]
    assert bus.stats()["dead"] == 1


class Blocking:
    """An async handler that holds its first event until released (from any thread)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[object] = []

    async def __call__(self, event: object) -> None:
        self.seen.append(event)
        if len(self.seen) == 1:
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.001)


def test_async_queue_overflow_raise_is_a_failed_delivery(buses: list[EventBus]) -> None:
    errors: list[BaseException] = []
    bus = make(buses, max_queue=2, overflow="raise",
               on_error=lambda exc, event, handler: errors.append(exc))
    handler = Blocking()
    bus.subscribe(handler)
    bus.post(0)
    assert handler.entered.wait(WAIT)
    for index in range(1, 5):
        bus.post(index)  # the publisher is not told: the event was accepted by the bus
    handler.release.set()
    assert bus.close(timeout=WAIT) == 0
    assert handler.seen == [0, 1, 2]
    assert [type(e) for e in errors] == [BusFull, BusFull]
    assert bus.stats() == {"posted": 5, "delivered": 3, "failed": 2, "dead": 0, "dropped": 0}


def test_async_queue_overflow_drop_oldest(buses: list[EventBus]) -> None:
    bus = make(buses, max_queue=2, overflow="drop-oldest")
    handler = Blocking()
    bus.subscribe(handler)
    bus.post(0)
    assert handler.entered.wait(WAIT)
    for index in range(1, 6):
        bus.post(index)
    handler.release.set()
    assert bus.close(timeout=WAIT) == 0
    assert handler.seen == [0, 4, 5]
    assert bus.stats()["dropped"] == 3


def test_async_queue_overflow_block(buses: list[EventBus]) -> None:
    bus = make(buses, max_queue=2)
    handler = Blocking()
    bus.subscribe(handler)
    bus.post(0)
    assert handler.entered.wait(WAIT)
    bus.post(1)
    bus.post(2)
    poster = threading.Thread(target=bus.post, args=(3,))
    poster.start()
    poster.join(0.2)
    assert poster.is_alive()
    handler.release.set()
    poster.join(WAIT)
    assert not poster.is_alive()
    assert bus.close(timeout=WAIT) == 0
    assert handler.seen == [0, 1, 2, 3]


def test_async_handler_posting_back_into_a_full_queue_does_not_deadlock(
        buses: list[EventBus]) -> None:
    bus = make(buses, max_queue=2)
    seen: list[int] = []
    done = threading.Event()

    async def echo(event: int) -> None:
        seen.append(event)
        if event == 0:
            for index in range(1, 10):
                bus.post(index)  # on the loop thread: exceeds the bound, never waits
        if event == 9:
            done.set()

    bus.subscribe(echo, int)
    bus.post(0)
    assert done.wait(WAIT)
    assert bus.close(timeout=WAIT) == 0
    assert seen == list(range(10))


def test_close_timeout_with_a_stuck_async_handler(buses: list[EventBus]) -> None:
    bus = make(buses)
    handler = Blocking()
    bus.subscribe(handler)
    for index in range(4):
        bus.post(index)
    assert handler.entered.wait(WAIT)
    assert bus.close(timeout=0.2) == 4  # one being awaited, three queued
    handler.release.set()
    with pytest.raises(BusClosed):
        bus.post(5)


def test_a_closed_loop_is_a_failed_delivery(buses: list[EventBus]) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    errors: list[BaseException] = []
    bus = make(buses, loop=loop, on_error=lambda exc, event, handler: errors.append(exc))
    bus.subscribe(Recorder())
    bus.post(1)
    assert [type(e) for e in errors] == [BusClosed]
    assert bus.stats()["failed"] == 1


def test_100k_events_through_threads_mode_with_async_handlers() -> None:
    """100k events, two async subscribers and a sync one on a 3-worker bus, posted by 4
    threads: after close() nothing is lost and each subscriber saw each poster's events in
    order."""
    bus = EventBus(mode="threads", workers=3, max_queue=1_000)
    first, second = Recorder(), Recorder()
    sync_seen: list[tuple[int, int]] = []
    bus.subscribe(first, tuple)
    bus.subscribe(second, tuple)
    bus.subscribe(sync_seen.append, tuple)
    posters, per_poster = 4, 25_000
    post_from_threads(bus, posters, per_poster, 60)
    assert bus.close(timeout=60) == 0
    total = posters * per_poster
    for seen in (first.seen, second.seen, sync_seen):
        assert len(seen) == total
        for poster in range(posters):
            assert [s for p, s in seen if p == poster] == list(range(per_poster))  # type: ignore[misc]
    assert bus.stats() == {"posted": total, "delivered": 3 * total, "failed": 0, "dead": 0,
                           "dropped": 0}


@pytest.mark.parametrize("overflow", ["block", "drop-oldest", "raise"])
def test_a_small_async_queue_under_four_posting_threads(overflow: str) -> None:
    """The subscriber's queue (8 events) is taken in batches while 4 threads post 5,000 events
    each: every event is delivered, dropped or refused (never stranded between a batch and the
    queue), and each poster's events that arrive keep their order."""
    refused: list[object] = []
    bus = EventBus(max_queue=8, overflow=overflow,  # type: ignore[arg-type]
                   on_error=lambda exc, event, handler: refused.append(event))
    handler = Recorder()
    bus.subscribe(handler, tuple)
    posters, per_poster = 4, 5_000
    post_from_threads(bus, posters, per_poster, 60)
    assert bus.close(timeout=60) == 0
    stats = bus.stats()
    total = posters * per_poster
    seen = handler.seen
    assert stats["posted"] == total
    assert stats["delivered"] == len(seen)
    assert len(seen) + stats["dropped"] + len(refused) == total
    if overflow == "block":
        assert len(seen) == total
    for poster in range(posters):
        mine = [seq for who, seq in seen if who == poster]  # type: ignore[misc]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)
