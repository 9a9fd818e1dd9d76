"""`EventBus(mode="threads")`: ordering per subscriber, overflow policies, closing, counters.

Nothing here asserts durations: waits have generous timeouts so that a broken bus fails the
test instead of hanging it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fsmc.runtime.bus import EventBus
from fsmc.runtime.errors import BusClosed, BusFull
from fsmc.runtime.events import DeadEvent, StateChanged
from fsmc.runtime.threaded import ThreadedEventBus

from tests.posting import post_from_threads

WAIT = 20.0


class Gate:
    """A handler that blocks on its first event until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[object] = []

    def __call__(self, event: object) -> None:
        self.seen.append(event)
        if len(self.seen) == 1:
            self.entered.set()
            assert self.release.wait(WAIT)


@pytest.fixture
def buses() -> Iterator[list[EventBus]]:
    made: list[EventBus] = []
    yield made
    for bus in made:
        bus.close(timeout=WAIT)


def threads_bus(buses: list[EventBus], **options: Any) -> EventBus:
    bus = EventBus(mode="threads", **options)
    buses.append(bus)
    return bus


def test_threads_mode_class_and_repr(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=2)
    assert isinstance(bus, EventBus) and isinstance(bus, ThreadedEventBus)
    assert bus.mode == "threads"
    assert repr(bus) == "<EventBus mode='threads' workers=2 subscriptions=0 open>"
    with pytest.raises(ValueError, match="workers"):
        EventBus(mode="threads", workers=0)


def test_delivers_from_worker_threads(buses: list[EventBus]) -> None:
    bus = threads_bus(buses)
    names: list[str] = []
    done = threading.Event()

    def handler(event: object) -> None:
        names.append(threading.current_thread().name)
        done.set()

    bus.subscribe(handler)
    bus.post(1)
    assert done.wait(WAIT)
    assert names == ["fsmc-bus-worker-0"]


@pytest.mark.parametrize("workers", [1, 3])
def test_per_subscriber_order_with_several_posting_threads(buses: list[EventBus],
                                                          workers: int) -> None:
    bus = threads_bus(buses, workers=workers, max_queue=64)
    received: list[list[tuple[int, int]]] = [[] for _ in range(5)]
    for slot in received:
        bus.subscribe(slot.append, tuple)
    posters, per_poster = 4, 3_000
    post_from_threads(bus, posters, per_poster, WAIT)
    assert bus.close(timeout=WAIT) == 0
    for slot in received:
        assert len(slot) == posters * per_poster
        for poster in range(posters):
            assert [seq for p, seq in slot if p == poster] == list(range(per_poster))
    stats = bus.stats()
    assert stats["posted"] == posters * per_poster
    assert stats["delivered"] == 5 * posters * per_poster


def test_hierarchy_topics_and_dead_events_across_workers(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=3)
    log: dict[str, list[object]] = {"obj": [], "sc": [], "topic": [], "dead": []}
    bus.subscribe(log["obj"].append, StateChanged)
    bus.subscribe(log["sc"].append, StateChanged, topic="VM.*.*.*")
    bus.subscribe(log["topic"].append, topic="#.Stopped")
    bus.subscribe(log["dead"].append, DeadEvent)
    vm = StateChanged("VM", 1, "Stop", "Running", "Stopped", (), {})
    vol = StateChanged("Vol", 1, "Go", "A", "B", (), {})
    for event in (vm, vol, 42):
        bus.post(event)
    assert bus.close(timeout=WAIT) == 0
    assert log == {"obj": [vm, vol], "sc": [vm], "topic": [vm], "dead": [DeadEvent(42)]}
    assert bus.stats() == {"posted": 3, "delivered": 5, "failed": 0, "dead": 1, "dropped": 0}


def test_errors_are_isolated_and_counted(buses: list[EventBus]) -> None:
    errors: list[tuple[BaseException, object, object]] = []
    bus = threads_bus(buses, workers=2,
                      on_error=lambda exc, event, handler: errors.append((exc, event, handler)))
    got: list[object] = []

    def broken(event: object) -> None:
        raise ValueError(event)

    bus.subscribe(broken)
    bus.subscribe(got.append)
    for index in range(10):
        bus.post(index)
    assert bus.close(timeout=WAIT) == 0
    assert got == list(range(10))
    assert [event for _, event, _ in errors] == list(range(10))
    assert all(handler is broken for _, _, handler in errors)
    assert bus.stats() == {"posted": 10, "delivered": 10, "failed": 10, "dead": 0,
                           "dropped": 0}


def test_stats_under_threads(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=4, max_queue=100,
                      on_error=lambda exc, event, handler: None)

    def sometimes(event: object) -> None:
        if isinstance(event, int) and event % 7 == 0:
            raise RuntimeError

    for _ in range(3):
        bus.subscribe(lambda e: None, int)
    bus.subscribe(sometimes, int)
    per_thread = 2_000

    def work() -> None:
        for index in range(per_thread):
            bus.post(index)
        bus.post("nobody")

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert bus.close(timeout=WAIT) == 0
    failures = 5 * len(range(0, per_thread, 7))
    assert bus.stats() == {"posted": 5 * (per_thread + 1),
                           "delivered": 4 * 5 * per_thread - failures,
                           "failed": failures, "dead": 5, "dropped": 0}


def test_overflow_block_blocks_then_proceeds(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, max_queue=4)
    gate = Gate()
    bus.subscribe(gate)
    bus.post(0)
    assert gate.entered.wait(WAIT)  # worker 0 is stuck inside event 0
    for index in range(1, 5):
        bus.post(index)  # fills the queue
    poster = threading.Thread(target=bus.post, args=(5,))
    poster.start()
    poster.join(0.2)
    assert poster.is_alive()  # blocked: the queue is full
    gate.release.set()
    poster.join(WAIT)
    assert not poster.is_alive()
    assert bus.close(timeout=WAIT) == 0
    assert gate.seen == [0, 1, 2, 3, 4, 5]
    assert bus.stats()["dropped"] == 0


def test_overflow_drop_oldest_counts(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, max_queue=4, overflow="drop-oldest")
    gate = Gate()
    bus.subscribe(gate)
    bus.post(0)
    assert gate.entered.wait(WAIT)
    for index in range(1, 11):
        bus.post(index)  # never blocks
    gate.release.set()
    assert bus.close(timeout=WAIT) == 0
    assert gate.seen == [0, 7, 8, 9, 10]
    assert bus.stats() == {"posted": 11, "delivered": 5, "failed": 0, "dead": 0, "dropped": 6}


def test_overflow_raise(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, max_queue=2, overflow="raise")
    gate = Gate()
    bus.subscribe(gate)
    bus.post(0)
    assert gate.entered.wait(WAIT)
    bus.post(1)
    bus.post(2)
    with pytest.raises(BusFull, match="full"):
        bus.post(3)
    gate.release.set()
    assert bus.close(timeout=WAIT) == 0
    assert gate.seen == [0, 1, 2]
    assert bus.stats()["posted"] == 3


def test_blocked_poster_gets_bus_closed(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, max_queue=2)
    gate = Gate()
    bus.subscribe(gate)
    bus.post(0)
    assert gate.entered.wait(WAIT)
    bus.post(1)
    bus.post(2)
    outcome: list[BaseException] = []

    def post() -> None:
        try:
            bus.post(3)
        except BaseException as error:
            outcome.append(error)

    poster = threading.Thread(target=post)
    poster.start()
    poster.join(0.2)
    assert poster.is_alive()
    closer = threading.Thread(target=bus.close, kwargs={"timeout": WAIT})
    closer.start()
    poster.join(WAIT)
    assert [type(e) for e in outcome] == [BusClosed]
    gate.release.set()
    closer.join(WAIT)
    assert gate.seen == [0, 1, 2]


def test_a_worker_posting_into_its_own_full_queue_does_not_deadlock(
        buses: list[EventBus]) -> None:
    bus = threads_bus(buses, max_queue=2)
    got: list[int] = []
    posted = threading.Event()

    def fan_out(event: int) -> None:
        got.append(event)
        if event == 0:
            for index in range(1, 20):
                bus.post(index)  # exceeds the bound rather than waiting for itself
            posted.set()

    bus.subscribe(fan_out, int)
    bus.post(0)
    assert posted.wait(WAIT)
    assert bus.close(timeout=WAIT) == 0
    assert got == list(range(20))


def test_close_delivers_everything_then_refuses(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=2)
    got: list[int] = []
    bus.subscribe(got.append, int)
    for index in range(1_000):
        bus.post(index)
    assert bus.close() == 0
    assert got == list(range(1_000))
    with pytest.raises(BusClosed):
        bus.post(1)
    assert bus.close() == 0
    assert all(not w.thread.is_alive() for w in bus._workers)  # type: ignore[union-attr]


def test_close_timeout_returns_what_was_not_delivered(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=2)
    gate = Gate()
    bus.subscribe(gate)
    bus.post(0)
    assert gate.entered.wait(WAIT)
    bus.post(1)
    bus.post(2)
    assert bus.close(timeout=0.2) == 3  # one inside the handler, two queued
    gate.release.set()
    for worker in bus._workers:
        worker.thread.join(WAIT)  # type: ignore[union-attr]
    assert gate.seen == [0]  # the queued ones were discarded
    assert bus.stats()["posted"] == 3


def test_close_from_a_handler_does_not_hang(buses: list[EventBus]) -> None:
    bus = threads_bus(buses)
    result: list[int] = []
    done = threading.Event()

    def closer(event: object) -> None:
        result.append(bus.close(timeout=WAIT))
        done.set()

    bus.subscribe(closer)
    bus.post(1)
    assert done.wait(WAIT)
    assert result == [1]  # the event being handled (by the closing handler itself)


def test_subscribe_and_unsubscribe_during_flow(buses: list[EventBus]) -> None:
    bus = threads_bus(buses, workers=3, max_queue=128)
    steady: list[int] = []
    bus.subscribe(steady.append, int)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            handles = [bus.subscribe(lambda e: None, int), bus.subscribe(lambda e: None,
                                                                          topic="#")]
            for handle in handles:
                bus.unsubscribe(handle)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for index in range(20_000):
            bus.post(index)
    finally:
        stop.set()
        thread.join(WAIT)
    assert bus.close(timeout=WAIT) == 0
    assert steady == list(range(20_000))


def test_context_manager_closes_the_workers() -> None:
    with EventBus(mode="threads", workers=2) as bus:
        got: list[object] = []
        bus.subscribe(got.append)
        bus.post(1)
    assert got == [1]
    assert bus.closed
    assert all(not w.thread.is_alive() for w in bus._workers)  # type: ignore[attr-defined]
