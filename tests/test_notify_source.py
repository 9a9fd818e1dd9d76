"""The CloudEvents `source` an application published reaches streams and webhooks as it was
published: from RabbitMQ (the publisher's `source`, through a real broker and `AmqpConsumer`),
and from the in-process bus (an event's own source, as a consumer posts it, else the app's:
"fsmc" by default, as `AmqpPublisher`'s)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from fsmc.notify.store import SubscriptionStore
from fsmc.runtime import EventBus, StateChanged

from tests import rabbit
from tests.notify_server import KEYS, Reader, serving
from tests.test_notify_webhooks import FAST, Receiver, api, config, subscribe


def event(n: int, source: str | None = None) -> StateChanged:
    made = StateChanged("VirtualMachine", f"vm-{n}", "StartRequested", "Stopped", "Starting",
                        (), {"account": "acme"})
    return made if source is None else StateChanged.from_dict(made.to_dict(), source=source)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def sources(reader: Reader, receiver: Receiver, count: int) -> tuple[list[str], list[str]]:
    streamed = [data["source"] for _, data in reader.wait_for(count)]
    delivered = [body["source"] for body in receiver.wait_for(count)]
    return streamed, delivered


def test_in_process_events_keep_their_source_else_get_the_apps(receiver: Receiver) -> None:
    bus = EventBus()
    with serving(bus, config(), webhook_options=FAST) as base:
        subscribe(api(base, "acme"), receiver.url)
        reader = Reader(base, KEYS["acme"]).start()
        bus.post(event(1, "cloudstack/mgmt-1"))
        bus.post(event(2))
        assert sources(reader, receiver, 2) == (["cloudstack/mgmt-1", "fsmc"],) * 2
    bus = EventBus()
    with serving(bus, config(), webhook_options=FAST, source="cloudstack/zone-2") as base:
        reader = Reader(base, KEYS["acme"]).start()
        bus.post(event(3))
        assert [data["source"] for _, data in reader.wait_for(1)] == ["cloudstack/zone-2"]


def test_events_from_the_broker_keep_the_publishers_source(receiver: Receiver) -> None:
    reason = rabbit.available()
    if reason is not None:  # pragma: no cover - depends on the machine
        pytest.skip(reason)
    from fsmc.runtime.amqp import AmqpConsumer, AmqpPublisher

    broker = rabbit.shared()
    exchange = f"fsmc.test.{uuid.uuid4().hex[:8]}"
    bus = EventBus()
    consumer = AmqpConsumer(broker.url, None, ("#",), exchange, bus=bus)
    publisher = AmqpPublisher(broker.url, exchange, source="cloudstack/mgmt-1")
    try:
        assert consumer.wait_ready(30), "consumer did not connect"
        with serving(bus, config(), webhook_options=FAST,
                     subscriptions=SubscriptionStore(":memory:")) as base:
            subscribe(api(base, "acme"), receiver.url)
            reader = Reader(base, KEYS["acme"]).start()
            sent = [event(1), event(2, "cloudstack/elsewhere")]
            for each in sent:
                publisher(each)
            publisher.close(timeout=30)
            assert [ident for ident, _ in reader.wait_for(2)] == [e.id for e in sent]
            assert sources(reader, receiver, 2) == (
                ["cloudstack/mgmt-1", "cloudstack/elsewhere"],) * 2
    finally:
        with contextlib.suppress(Exception):  # closed above unless the test failed first
            publisher.close(timeout=5)
        consumer.close(timeout=10)
