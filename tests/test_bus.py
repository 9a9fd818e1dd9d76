"""`EventBus` in sync mode: subscribing, dispatch by class and topic, dead events, errors,
re-entrancy, concurrency of subscription changes, counters and closing."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from typing import Any

import pytest
from fsmc.runtime.bus import TOPIC_CACHE_SIZE, EventBus
from fsmc.runtime.errors import BusClosed
from fsmc.runtime.events import DeadEvent, StateChanged
from fsmc.runtime.subscriptions import Registration, Subscription, subscribe


class Base:
    pass


class Child(Base):
    pass


class GrandChild(Child):
    pass


class Other:
    pass


class Topical:
    def __init__(self, topic: object) -> None:
        self.topic = topic


def changed(machine: str = "VM", old: str = "Running", event: str = "StopRequested",
            new: str = "Stopping") -> StateChanged:
    return StateChanged(machine, "vm-1", event, old, new, (), {})


@pytest.fixture
def bus() -> Any:
    bus = EventBus()
    yield bus
    bus.close(timeout=5)


# -- subscribing and dispatch ----------------------------------------------------------------


def test_subscribe_and_post(bus: EventBus) -> None:
    got: list[object] = []
    handle = bus.subscribe(got.append, Base)
    assert isinstance(handle, Subscription)
    assert handle.handler == got.append and handle.event_type is Base and handle.topic is None
    event = Base()
    assert bus.post(event) is None
    assert got == [event]


def test_dispatch_follows_the_class_hierarchy(bus: EventBus) -> None:
    calls: list[tuple[str, type]] = []
    bus.subscribe(lambda e: calls.append(("object", type(e))), object)
    bus.subscribe(lambda e: calls.append(("base", type(e))), Base)
    bus.subscribe(lambda e: calls.append(("child", type(e))), Child)
    bus.subscribe(lambda e: calls.append(("all", type(e))))  # no filter = everything
    for event in (Base(), Child(), GrandChild(), Other(), 3):
        bus.post(event)
    assert calls == [
        ("object", Base), ("base", Base), ("all", Base),
        ("object", Child), ("base", Child), ("child", Child), ("all", Child),
        ("object", GrandChild), ("base", GrandChild), ("child", GrandChild),
        ("all", GrandChild),
        ("object", Other), ("all", Other),
        ("object", int), ("all", int),
    ]


def test_subscribers_are_called_in_subscription_order(bus: EventBus) -> None:
    order: list[int] = []
    for index in range(10):
        bus.subscribe(lambda e, index=index: order.append(index), object if index % 2 else Base)
    bus.post(Child())
    assert order == list(range(10))


def test_same_handler_twice_is_called_twice(bus: EventBus) -> None:
    got: list[object] = []
    bus.subscribe(got.append, Base)
    bus.subscribe(got.append, Base)
    bus.post(Base())
    assert len(got) == 2


def test_unsubscribe(bus: EventBus) -> None:
    got: list[object] = []
    handle = bus.subscribe(got.append, Base)
    bus.post(Base())
    assert bus.unsubscribe(handle) is True
    assert bus.unsubscribe(handle) is False
    bus.post(Base())
    assert len(got) == 1
    assert not handle.active
    with pytest.raises(TypeError):
        bus.unsubscribe("nope")  # type: ignore[arg-type]


def test_unsubscribe_a_handle_of_another_bus(bus: EventBus) -> None:
    other = EventBus()
    handle = other.subscribe(print)
    assert bus.unsubscribe(handle) is False
    assert handle.active


def test_subscribe_checks_its_arguments(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_type must be a class"):
        bus.subscribe(print, "StateChanged")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        bus.subscribe(print, topic=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bytes"):
        bus.subscribe(print, topic="x" * 300)
    assert bus.subscriptions == ()


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        EventBus(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        EventBus(workers=2)
    with pytest.raises(ValueError, match="max_queue"):
        EventBus(max_queue=0)
    with pytest.raises(ValueError, match="overflow"):
        EventBus(overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error"):
        EventBus(on_error=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loop"):
        EventBus(loop=object())  # type: ignore[arg-type]


def test_references_are_strong(bus: EventBus) -> None:
    class Listener:
        def __init__(self, sink: list[object]) -> None:
            self.sink = sink

        def on(self, event: object) -> None:
            self.sink.append(event)

    sink: list[object] = []
    listener = Listener(sink)
    alive = weakref.ref(listener)
    handle = bus.subscribe(listener.on, Base)
    del listener
    gc.collect()
    assert alive() is not None
    bus.post(Base())
    assert len(sink) == 1
    bus.unsubscribe(handle)
    del handle
    gc.collect()
    assert alive() is None


# -- register / unregister -------------------------------------------------------------------


class Service:
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    @subscribe(Base)
    def on_base(self, event: object) -> None:
        self.seen.append(("base", event))

    @subscribe(topic="VM.#")
    def on_vm(self, event: object) -> None:
        self.seen.append(("vm", event))

    @subscribe(Child)
    @subscribe(Other)
    def on_two(self, event: object) -> None:
        self.seen.append(("two", event))

    @subscribe
    def on_all(self, event: object) -> None:
        self.seen.append(("all", event))

    def not_marked(self, event: object) -> None:
        raise AssertionError("not a subscriber")


class SubService(Service):
    def on_base(self, event: object) -> None:  # override without a mark: still subscribed
        self.seen.append(("sub-base", event))

    @subscribe(Other)
    def on_vm(self, event: object) -> None:  # override with new marks: those win
        self.seen.append(("sub-vm", event))


def test_register_subscribes_marked_methods(bus: EventBus) -> None:
    service = Service()
    handle = bus.register(service)
    assert isinstance(handle, Registration)
    assert handle.obj is service and len(handle.subscriptions) == 5 and handle.active
    base, vm_event, other = Base(), changed("VM"), Other()
    for event in (base, vm_event, other):
        bus.post(event)
    assert service.seen == [("base", base), ("all", base),
                            ("vm", vm_event), ("all", vm_event),
                            ("two", other), ("all", other)]


def test_register_follows_overrides(bus: EventBus) -> None:
    service = SubService()
    bus.register(service)
    other = Other()
    bus.post(Base())
    bus.post(other)
    bus.post(changed("VM"))
    kinds = [kind for kind, _ in service.seen]
    assert kinds == ["sub-base", "all", "sub-vm", "two", "all", "all"]


def test_register_twice_or_without_marks(bus: EventBus) -> None:
    service = Service()
    bus.register(service)
    with pytest.raises(ValueError, match="already registered"):
        bus.register(service)
    with pytest.raises(ValueError, match="no method marked"):
        bus.register(object())


def test_unregister_and_unsubscribe_a_registration(bus: EventBus) -> None:
    first, second = Service(), Service()
    bus.register(first)
    handle = bus.register(second)
    assert bus.unregister(first) is True
    assert bus.unregister(first) is False
    assert bus.unregister(object()) is False
    assert bus.unsubscribe(handle) is True
    assert bus.unsubscribe(handle) is False
    assert bus.unregister(second) is False
    bus.post(Base())
    assert first.seen == [] and second.seen == []
    assert bus.subscriptions == ()
    bus.register(first)  # may register again once removed
    bus.post(Base())
    assert len(first.seen) == 2


def test_subscribe_decorator_checks_early() -> None:
    with pytest.raises(TypeError, match="event_type must be a class"):
        subscribe("Base")  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        subscribe(topic="x" * 300)


# -- topics ----------------------------------------------------------------------------------


def test_topic_subscribers(bus: EventBus) -> None:
    got: list[tuple[str, str]] = []
    bus.subscribe(lambda e: got.append(("vm", e.topic)), topic="VM.#")
    bus.subscribe(lambda e: got.append(("stop", e.topic)), topic="*.*.StopRequested.*")
    bus.subscribe(lambda e: got.append(("typed", e.topic)), StateChanged, topic="#.Stopped")
    bus.post(changed("VM", "Running", "StopRequested", "Stopping"))
    bus.post(changed("Volume", "Ready", "StopRequested", "Stopped"))
    bus.post(changed("VM", "Stopping", "OperationSucceeded", "Stopped"))
    bus.post(Topical("Net.Up.StopRequested.Stopped"))  # right topic, wrong class for "typed"
    assert got == [
        ("vm", "VM.Running.StopRequested.Stopping"),
        ("stop", "VM.Running.StopRequested.Stopping"),
        ("stop", "Volume.Ready.StopRequested.Stopped"),
        ("typed", "Volume.Ready.StopRequested.Stopped"),
        ("vm", "VM.Stopping.OperationSucceeded.Stopped"),
        ("typed", "VM.Stopping.OperationSucceeded.Stopped"),
        ("stop", "Net.Up.StopRequested.Stopped"),
    ]


def test_a_suspicious_pattern_is_logged_once_and_keeps_its_meaning(
        bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def on_running(event: Any) -> None:
        got.append(event.topic)

    with caplog.at_level(logging.WARNING, logger="fsmc"):
        bus.subscribe(on_running, topic="VM.#Running")
        bus.subscribe(lambda event: None, topic="VM.#")  # an ordinary pattern: nothing logged
    warnings = [record for record in caplog.records if record.name == "fsmc"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "on_running" in message and "word 2 '#Running' is no wildcard" in message
    assert "did you mean 'VM.#.Running'?" in message and "%23" not in message
    bus.post(changed("VM", "Stopped", "Start", "Running"))
    bus.post(Topical("VM.#Running"))  # the literal word still matches itself
    assert got == ["VM.#Running"]


def test_a_marked_method_with_a_suspicious_pattern_is_logged_when_its_class_is_made(
        bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fsmc"):
        class Watcher:
            @subscribe(topic="VM..Running")
            def seen(self, event: object) -> None:
                pass

        assert len(caplog.records) == 1
        assert "Watcher.seen" in caplog.records[0].getMessage()
        assert "word 2 is empty (two dots in a row)" in caplog.records[0].getMessage()
        bus.register(Watcher())
    assert len(caplog.records) == 1  # registering says it no second time


def test_events_without_a_topic_match_no_pattern(bus: EventBus) -> None:
    got: list[object] = []
    dead: list[object] = []
    bus.subscribe(got.append, topic="#")
    bus.subscribe(dead.append, DeadEvent)
    plain, odd, unhashable = Base(), Topical(42), Topical(["a"])
    for event in (plain, odd, unhashable, Topical(""), Topical("a")):
        bus.post(event)
    assert [getattr(e, "topic", None) for e in got] == ["", "a"]
    assert [d.event for d in dead] == [plain, odd, unhashable]  # type: ignore[attr-defined]


def test_topic_cache_is_bounded(bus: EventBus) -> None:
    got: list[object] = []
    bus.subscribe(got.append, topic="k.*")
    for index in range(TOPIC_CACHE_SIZE * 2 + 5):
        bus.post(Topical(f"k.{index}"))
    assert len(got) == TOPIC_CACHE_SIZE * 2 + 5
    topics = bus._table[Topical][0]
    assert 0 < len(topics) <= TOPIC_CACHE_SIZE


def test_class_and_topic_both_must_match(bus: EventBus) -> None:
    got: list[object] = []
    bus.subscribe(got.append, Child, topic="a.*")
    good = type("T", (Child,), {"topic": "a.b"})()
    wrong_class = Topical("a.b")
    wrong_topic = type("T", (Child,), {"topic": "b.b"})()
    for event in (good, wrong_class, wrong_topic):
        bus.post(event)
    assert got == [good]


# -- dead events -----------------------------------------------------------------------------


def test_dead_events(bus: EventBus) -> None:
    dead: list[DeadEvent] = []
    bus.subscribe(dead.append, DeadEvent)
    unseen = Base()
    bus.post(unseen)
    assert dead == [DeadEvent(unseen)]
    assert bus.stats() == {"posted": 1, "delivered": 1, "failed": 0, "dead": 1, "dropped": 0}


def test_dead_event_without_dead_subscribers_is_dropped(bus: EventBus) -> None:
    bus.post(Base())
    bus.post(DeadEvent(Base()))  # posted by hand, nobody takes it: not wrapped again
    assert bus.stats() == {"posted": 2, "delivered": 0, "failed": 0, "dead": 2, "dropped": 0}


def test_a_subscriber_to_everything_means_no_dead_events(bus: EventBus) -> None:
    dead: list[object] = []
    everything: list[object] = []
    bus.subscribe(dead.append, DeadEvent)
    bus.subscribe(everything.append)
    bus.post(Base())
    assert dead == [] and len(everything) == 1
    assert bus.stats()["dead"] == 0


def test_dead_event_subscriber_errors_are_reported() -> None:
    errors: list[tuple[BaseException, object, object]] = []
    bus = EventBus(on_error=lambda exc, event, handler: errors.append((exc, event, handler)))

    def broken(event: object) -> None:
        raise RuntimeError("dead handler")

    bus.subscribe(broken, DeadEvent)
    bus.post(Base())
    assert len(errors) == 1
    assert isinstance(errors[0][1], DeadEvent) and errors[0][2] is broken
    assert bus.stats() == {"posted": 1, "delivered": 0, "failed": 1, "dead": 1, "dropped": 0}


# -- errors ----------------------------------------------------------------------------------


def test_failing_subscriber_is_isolated() -> None:
    errors: list[tuple[BaseException, object, object]] = []
    bus = EventBus(on_error=lambda exc, event, handler: errors.append((exc, event, handler)))
    got: list[object] = []

    def broken(event: object) -> None:
        raise ValueError("boom")

    bus.subscribe(got.append)
    bus.subscribe(broken)
    bus.subscribe(got.append)
    event = Base()
    bus.post(event)  # does not raise
    assert got == [event, event]
    assert len(errors) == 1
    exc, seen, handler = errors[0]
    assert isinstance(exc, ValueError) and seen is event and handler is broken
    assert bus.stats() == {"posted": 1, "delivered": 2, "failed": 1, "dead": 0, "dropped": 0}


def test_default_on_error_logs_on_the_fsmc_logger(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()

    def broken(event: object) -> None:
        raise ValueError("boom")

    bus.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="fsmc"):
        bus.post(Base())
    record = caplog.records[-1]
    assert record.name == "fsmc" and "failed" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_on_error_that_raises_is_logged_not_propagated(caplog: pytest.LogCaptureFixture) -> None:
    def bad_on_error(exc: BaseException, event: object, handler: object) -> None:
        raise RuntimeError("on_error broke")

    bus = EventBus(on_error=bad_on_error)
    got: list[object] = []
    bus.subscribe(lambda e: 1 / 0)
    bus.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="fsmc"):
        bus.post(Base())
    assert len(got) == 1
    assert any("on_error" in r.getMessage() for r in caplog.records)


def test_base_exceptions_propagate_and_leave_the_bus_usable(bus: EventBus) -> None:
    got: list[object] = []

    def interrupt(event: object) -> None:
        if isinstance(event, Child):
            bus.post(Base())  # queued behind the current event...
            raise KeyboardInterrupt

    bus.subscribe(interrupt)
    bus.subscribe(got.append)
    with pytest.raises(KeyboardInterrupt):
        bus.post(Child())
    later = Other()
    bus.post(later)  # ...and discarded with it: the bus is not left "busy"
    assert got == [later]


# -- re-entrancy -----------------------------------------------------------------------------


def test_nested_posts_are_delivered_after_the_current_event(bus: EventBus) -> None:
    log: list[tuple[str, object]] = []

    def first(event: object) -> None:
        log.append(("first", event))
        if event == 1:
            bus.post(2)
            bus.post(3)
        if event == 2:
            bus.post(4)

    def second(event: object) -> None:
        log.append(("second", event))

    bus.subscribe(first, int)
    bus.subscribe(second, int)
    bus.post(1)
    assert log == [("first", 1), ("second", 1),
                   ("first", 2), ("second", 2),
                   ("first", 3), ("second", 3),
                   ("first", 4), ("second", 4)]
    assert bus.stats()["posted"] == 4


def test_nested_post_resolves_subscribers_when_posted(bus: EventBus) -> None:
    got: list[object] = []

    def adds_a_subscriber(event: object) -> None:
        if event == 1:
            bus.post(2)
            bus.subscribe(got.append, int)

    bus.subscribe(adds_a_subscriber, int)
    bus.post(1)
    bus.post(3)
    assert got == [3]


def test_reentrancy_is_per_thread(bus: EventBus) -> None:
    """While one thread is inside a dispatch, another thread's post is delivered at once in
    that other thread (not queued behind the first)."""
    inside = threading.Event()
    release = threading.Event()
    seen: list[tuple[str, int]] = []

    def handler(event: object) -> None:
        seen.append((threading.current_thread().name, event))  # type: ignore[arg-type]
        if event == 1:
            inside.set()
            assert release.wait(10)

    bus.subscribe(handler, int)
    blocker = threading.Thread(target=bus.post, args=(1,), name="blocker")
    blocker.start()
    assert inside.wait(10)
    bus.post(2)  # returns after delivery although "blocker" is still dispatching
    assert seen[-1] == (threading.current_thread().name, 2)
    release.set()
    blocker.join(10)
    assert not blocker.is_alive()


def test_machine_transitions_from_a_subscriber_keep_order(bus: EventBus) -> None:
    """Two subscribers both see A's event before the event of a transition fired by the
    first subscriber while A's event was being delivered."""
    first_seen: list[str] = []
    second_seen: list[str] = []

    def first(event: StateChanged) -> None:
        first_seen.append(event.event)
        if event.event == "A":
            bus.post(changed(event="B"))

    bus.subscribe(first, StateChanged)
    bus.subscribe(lambda e: second_seen.append(e.event), StateChanged)
    bus.post(changed(event="A"))
    assert first_seen == second_seen == ["A", "B"]


# -- subscription changes while events flow --------------------------------------------------


def test_subscribe_and_unsubscribe_while_posting_from_another_thread(bus: EventBus) -> None:
    """A subscriber that stays subscribed receives every event in order while another thread
    subscribes and unsubscribes others as fast as it can."""
    steady: list[int] = []
    bus.subscribe(steady.append, int)
    stop = threading.Event()
    churned = 0

    def churn() -> None:
        nonlocal churned
        while not stop.is_set():
            handle = bus.subscribe(lambda e: None, int)
            topical = bus.subscribe(lambda e: None, topic="#")
            bus.unsubscribe(handle)
            bus.unsubscribe(topical)
            churned += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for index in range(20_000):
            bus.post(index)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert churned > 0
    assert steady == list(range(20_000))


def test_subscriber_added_during_dispatch_gets_later_events_only(bus: EventBus) -> None:
    late: list[object] = []

    def adder(event: object) -> None:
        if event == 1:
            bus.subscribe(late.append, int)

    bus.subscribe(adder, int)
    bus.post(1)
    bus.post(2)
    assert late == [2]


def test_subscriber_removed_during_dispatch(bus: EventBus) -> None:
    """Removal while an event is being delivered: that event still reaches the subscribers
    resolved when it was posted; later events do not."""
    got: list[object] = []
    handle: list[Subscription] = []

    def remover(event: object) -> None:
        bus.unsubscribe(handle[0])

    bus.subscribe(remover, int)
    handle.append(bus.subscribe(got.append, int))
    bus.post(1)
    bus.post(2)
    assert got == [1]


# -- counters and closing --------------------------------------------------------------------


def test_stats_from_many_posting_threads() -> None:
    bus = EventBus(on_error=lambda exc, event, handler: None)
    counted = [0]
    lock = threading.Lock()

    def handler(event: object) -> None:
        with lock:
            counted[0] += 1
        if event == -1:
            raise RuntimeError

    bus.subscribe(handler, int)
    bus.subscribe(lambda e: None, int)

    def work() -> None:
        for index in range(5_000):
            bus.post(index)
        bus.post(-1)
        bus.post("dead")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert counted[0] == 6 * 5_001
    assert bus.stats() == {"posted": 6 * 5_002, "delivered": 2 * 6 * 5_001 - 6,
                           "failed": 6, "dead": 6, "dropped": 0}


def test_close() -> None:
    bus = EventBus()
    got: list[object] = []
    bus.subscribe(got.append)
    bus.post(1)
    assert not bus.closed
    assert bus.close() == 0
    assert bus.closed
    with pytest.raises(BusClosed):
        bus.post(2)
    with pytest.raises(BusClosed):
        bus.subscribe(print)
    assert bus.close() == 0  # idempotent
    assert got == [1]
    assert bus.stats()["posted"] == 1


def test_post_from_a_handler_after_close_fails_in_that_handler() -> None:
    errors: list[BaseException] = []
    bus = EventBus(on_error=lambda exc, event, handler: errors.append(exc))

    def closer(event: object) -> None:
        if event == 1:
            bus.close()
            bus.post(2)

    bus.subscribe(closer, int)
    bus.post(1)
    assert [type(e) for e in errors] == [BusClosed]


def test_context_manager() -> None:
    with EventBus() as bus:
        bus.subscribe(print, Other)
    assert bus.closed


def test_repr() -> None:
    bus = EventBus()
    bus.subscribe(print)
    assert repr(bus) == "<EventBus mode='sync' subscriptions=1 open>"
    bus.close()
    assert repr(bus) == "<EventBus mode='sync' subscriptions=1 closed>"
    assert bus.mode == "sync"
