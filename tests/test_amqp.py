"""The RabbitMQ bridge against a real broker (a private node: tests/rabbit.py): routing,
publisher → broker → consumer → bus, broker outages in the middle of a stream, overflow and the
spill file, dead letters."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsmc.runtime import EventBus, StateChanged, topic_matches

from tests import rabbit

reason = rabbit.available()
if reason is not None:  # pragma: no cover - depends on the machine
    pytest.skip(reason, allow_module_level=True)

import pika  # noqa: E402
from fsmc.runtime.amqp import (  # noqa: E402
    AmqpConsumer,
    AmqpPublisher,
    DeliveryError,
    PublisherClosed,
)


@pytest.fixture(scope="module")
def broker() -> rabbit.Server:
    return rabbit.shared()


@pytest.fixture
def exchange() -> str:
    """An exchange of the test's own, so tests never see each other's events."""
    return f"fsmc.test.{uuid.uuid4().hex[:8]}"


class Collector:
    """A bus subscriber that records events and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.events: list[StateChanged] = []
        self._cond = threading.Condition()

    def __call__(self, event: StateChanged) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> list[StateChanged]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


def consume(broker: rabbit.Server, exchange: str, *bindings: str,
            **options: Any) -> tuple[AmqpConsumer, Collector]:
    bus, collector = EventBus(), Collector()
    bus.subscribe(collector, StateChanged)
    consumer = AmqpConsumer(broker.url, f"q.{uuid.uuid4().hex[:8]}", bindings or ("#",),
                            exchange, bus=bus, **options)
    assert consumer.wait_ready(30), "consumer did not connect"
    return consumer, collector


def event(index: int, machine: str = "VirtualMachine", old: str = "Stopped",
          name: str = "StartRequested", new: str = "Starting") -> StateChanged:
    return StateChanged(machine, f"vm-{index}", name, old, new, ("usage",),
                        {"account": "acme", "n": index})


def publish_during_outage(broker: rabbit.Server, exchange: str, count: int,
                          closing: list[Any], **options: Any) -> tuple[AmqpPublisher,
                                                                      list[StateChanged]]:
    """With the broker stopped: a new publisher (reconnecting quickly) takes `count` events;
    the broker is started again before this returns."""
    broker.stop_node()
    try:
        publisher = AmqpPublisher(broker.url, exchange, reconnect_delay=0.05,
                                  max_reconnect_delay=0.5, **options)
        closing.append(publisher)
        sent = [event(i) for i in range(count)]
        for each in sent:
            publisher(each)
        return publisher, sent
    finally:
        broker.start_node()


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Things to close at the end of a test whatever happens."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        with contextlib.suppress(DeliveryError):
            thing.close(timeout=5) if isinstance(thing, AmqpConsumer) else thing.close(0)


def test_events_cross_the_broker_with_every_field(broker: rabbit.Server, exchange: str,
                                                  closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    publisher = AmqpPublisher(broker.url, exchange, source="fsmc/test")
    closing += [consumer, publisher]
    bus = EventBus()
    bus.subscribe(publisher, topic="#")
    sent = [event(i) for i in range(50)]
    for each in sent:
        bus.post(each)
    publisher.close(timeout=30)
    received = collector.wait_for(50)
    assert [e.id for e in received] == [e.id for e in sent]  # one publisher: in order
    first, original = received[0], sent[0]
    assert (first.time, first.topic, first.resource_id, first.tags, dict(first.payload)) == (
        original.time, original.topic, original.resource_id, original.tags,
        dict(original.payload))
    assert publisher.stats()["confirmed"] == 50


def test_the_message_is_a_persistent_cloudevent_routed_by_topic(broker: rabbit.Server,
                                                                exchange: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "VirtualMachine.#")
    publisher = AmqpPublisher(broker.url, exchange, source="fsmc/test")
    sent = event(1)
    publisher(sent)
    publisher.close(timeout=30)
    method, properties, body = None, None, None
    for _ in range(100):
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            break
        time.sleep(0.05)
    connection.close()
    assert method is not None and method.routing_key == sent.topic
    assert properties.delivery_mode == 2
    assert properties.message_id == sent.id
    assert properties.content_type == "application/cloudevents+json"
    message = json.loads(body)
    assert (message["specversion"], message["type"], message["source"], message["subject"],
            message["id"]) == ("1.0", "fsmc.StateChanged", "fsmc/test", "vm-1", sent.id)


def test_bindings_follow_the_amqp_wildcard_rules(broker: rabbit.Server, exchange: str,
                                                 closing: list[Any]) -> None:
    patterns = ["VirtualMachine.*.StartRequested.*", "Volume.#", "#.Error", "*.Running.#"]
    consumers = {pattern: consume(broker, exchange, pattern) for pattern in patterns}
    closing.extend(consumer for consumer, _ in consumers.values())
    sent = [event(0), event(1, "Volume", "Ready", "Destroy", "Destroy"),
            event(2, "VirtualMachine", "Running", "OperationFailed", "Error"),
            event(3, "Nic", "Running", "Detach", "Detached"),
            event(4, "VirtualMachine", "Running", "StartRequested", "Running")]
    publisher = AmqpPublisher(broker.url, exchange)
    for each in sent:
        publisher(each)
    publisher.close(timeout=30)
    for pattern, (_, collector) in consumers.items():
        expected = [e.id for e in sent if topic_matches(pattern, e.topic)]
        assert expected, pattern
        assert [e.id for e in collector.wait_for(len(expected), 10)] == expected, pattern
    time.sleep(0.3)  # nothing else arrives
    for pattern, (_, collector) in consumers.items():
        assert len(collector.events) == sum(topic_matches(pattern, e.topic) for e in sent)


@pytest.mark.parametrize("crash", [False, True], ids=["clean stop", "killed"])
def test_a_broker_restart_in_the_middle_of_20k_events_loses_nothing(
        broker: rabbit.Server, exchange: str, closing: list[Any], crash: bool) -> None:
    total = 20_000
    consumer, collector = consume(broker, exchange, "VirtualMachine.#", prefetch=500)
    publisher = AmqpPublisher(broker.url, exchange, buffer=total)
    closing += [consumer, publisher]
    assert publisher.wait_connected(30)
    sent = [event(i) for i in range(total)]
    for each in sent[:8_000]:
        publisher(each)
    while publisher.stats()["confirmed"] < 3_000:
        time.sleep(0.01)
    broker.stop_node(crash)  # the broker goes away with events in flight and waiting
    try:
        started = time.perf_counter()
        for each in sent[8_000:]:
            publisher(each)  # the firing side does not wait for the broker
        assert time.perf_counter() - started < 5
    finally:
        broker.start_node()
    publisher.close(timeout=120)  # raises DeliveryError unless all 20k were confirmed
    received = collector.wait_for(total, 120)
    assert len(received) == total
    assert {e.id for e in received} == {e.id for e in sent}
    stats = consumer.stats()
    assert stats["delivered"] == total
    assert stats["received"] == total + stats["duplicates"]
    assert publisher.stats()["connects"] >= 2


def test_events_buffered_while_the_broker_is_away_arrive_after_it_returns(
        broker: rabbit.Server, exchange: str, closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    publisher, sent = publish_during_outage(broker, exchange, 300, closing)
    assert publisher.stats()["accepted"] == 300 and publisher.stats()["spilled"] == 0
    publisher.close(timeout=60)
    assert {e.id for e in collector.wait_for(300)} == {e.id for e in sent}


def test_a_full_buffer_without_spill_file_is_reported_by_close(
        broker: rabbit.Server, exchange: str) -> None:
    broker.stop_node()
    try:
        publisher = AmqpPublisher(broker.url, exchange, buffer=100, block_timeout=0.2)
        started = time.perf_counter()
        for i in range(250):
            publisher(event(i))
        waited = time.perf_counter() - started
        stats = publisher.stats()
        assert (stats["accepted"], stats["pending"], stats["overflowed"]) == (250, 100, 150)
        assert waited >= 0.2  # the first overflowing event waited for room once, not 150x
        with pytest.raises(DeliveryError, match=r"250 of 250 accepted events were not "
                                                r"confirmed.*150 overflowed") as caught:
            publisher.close(timeout=0.5)
        assert caught.value.undelivered == 250 and caught.value.spilled == 0
        with pytest.raises(PublisherClosed):
            publisher(event(0))
    finally:
        broker.start_node()


def test_the_spill_file_keeps_overflow_and_leftovers_for_the_next_publisher(
        broker: rabbit.Server, exchange: str, tmp_path: Path, closing: list[Any]) -> None:
    spill = tmp_path / "spill" / "events.jsonl"
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    sent = [event(i) for i in range(250)]
    broker.stop_node()
    try:
        first = AmqpPublisher(broker.url, exchange, buffer=100, block_timeout=0.1,
                              spill_path=spill)
        for each in sent:
            first(each)
        assert first.stats()["spilled"] == 150
        with pytest.raises(DeliveryError, match=r"250 of them wait in .*events\.jsonl") as caught:
            first.close(timeout=0.3)
        assert (caught.value.undelivered, caught.value.spilled) == (250, 250)
        assert len(spill.read_bytes().splitlines()) == 250
    finally:
        broker.start_node()
    second = AmqpPublisher(broker.url, exchange, spill_path=spill)
    closing.append(second)
    second.close(timeout=60)  # nothing of its own: returns once the replay is confirmed
    assert second.stats()["replayed"] == 250
    assert not spill.exists() and not spill.with_name("events.jsonl.replay").exists()
    assert {e.id for e in collector.wait_for(250)} == {e.id for e in sent}


def test_spilled_events_are_replayed_by_the_same_publisher_once_connected(
        broker: rabbit.Server, exchange: str, tmp_path: Path, closing: list[Any]) -> None:
    spill = tmp_path / "events.jsonl"
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    publisher, sent = publish_during_outage(broker, exchange, 200, closing, buffer=50,
                                            block_timeout=0.05, spill_path=spill)
    assert publisher.stats()["spilled"] == 150
    publisher.close(timeout=60)
    stats = publisher.stats()
    assert (stats["confirmed"], stats["replayed"]) == (200, 0)
    assert {e.id for e in collector.wait_for(200)} == {e.id for e in sent}
    assert not spill.exists()


def test_malformed_messages_go_to_the_dead_letter_queue_with_the_reason(
        broker: rabbit.Server, exchange: str, closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.basic_publish(exchange, "VirtualMachine.a.b.c", b"{not json")
    channel.basic_publish(exchange, "VirtualMachine.a.b.c", json.dumps(
        {"specversion": "1.0", "id": "x", "source": "s", "type": "other", "data": {}}).encode())
    publisher = AmqpPublisher(broker.url, exchange)
    good = event(7)
    publisher(good)
    publisher.close(timeout=30)
    assert [e.id for e in collector.wait_for(1)] == [good.id]  # it kept consuming
    assert consumer.dead_letter_queue is not None
    dead = []
    for _ in range(100):
        method, properties, body = channel.basic_get(consumer.dead_letter_queue, auto_ack=True)
        if method is not None:
            dead.append((properties.headers, body))
        elif len(dead) == 2:
            break
        else:
            time.sleep(0.05)
    connection.close()
    assert [body for _, body in dead] == [b"{not json", dead[1][1]]
    assert dead[0][0]["x-fsmc-error"].startswith("not JSON")
    assert dead[0][0]["x-fsmc-routing-key"] == "VirtualMachine.a.b.c"
    assert "type 'other' is not 'fsmc.StateChanged'" in dead[1][0]["x-fsmc-error"]
    assert consumer.stats()["dead_lettered"] == 2


def test_the_consumer_drops_duplicates_within_its_window(
        broker: rabbit.Server, exchange: str, closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    publisher = AmqpPublisher(broker.url, exchange)
    once = event(1)
    for _ in range(3):
        publisher(once)
    publisher(event(2))
    publisher.close(timeout=30)
    received = collector.wait_for(2)
    time.sleep(0.2)
    assert [e.resource_id for e in collector.events] == ["vm-1", "vm-2"]
    assert consumer.stats()["duplicates"] == 2 and len(received) == 2


def test_arguments_are_checked_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="buffer must be a positive int"):
        AmqpPublisher("amqp://localhost", buffer=0)
    with pytest.raises(ValueError, match=r"not an AMQP URL .*'https://u:\*\*\*@host/'"):
        AmqpPublisher("https://u:secret@host/")
    with pytest.raises(ValueError, match="AMQP limits routing and binding keys to 255"):
        AmqpConsumer("amqp://localhost", "q", ["x" * 256], bus=EventBus())
    publisher = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F", block_timeout=0)
    with pytest.raises(TypeError, match="publishes StateChanged events"):
        publisher("not an event")
    publisher(event(1))
    with pytest.raises(DeliveryError, match="1 of 1 accepted"):
        publisher.close(timeout=0.1)


def test_events_tail_prints_one_line_per_matching_event(broker: rabbit.Server,
                                                        exchange: str) -> None:
    import io

    from fsmc.compiler.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["events", "tail", "--amqp", broker.url, "--exchange", exchange,
            "--bind", "VirtualMachine.*.OperationFailed.#", "--count", "2"]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(argv, stdout=out, stderr=err)))
    runner.start()
    time.sleep(1.5)  # its queue is declared when it connects
    publisher = AmqpPublisher(broker.url, exchange)
    failed = [event(n, "VirtualMachine", "Starting", "OperationFailed", "Stopped")
              for n in (3, 6)]
    for each in [event(1), failed[0], event(4, "Volume", "Ready", "OperationFailed", "Ready"),
                 failed[1], event(5)]:
        publisher(each)
    publisher.close(timeout=30)
    runner.join(30)
    assert result == [0]
    assert out.getvalue().splitlines() == [
        f"{each.time.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} VirtualMachine "
        f'vm-{n} Starting --OperationFailed--> Stopped [usage] {{"account": "acme", "n": {n}}}'
        for each, n in zip(failed, (3, 6), strict=True)]
    assert "following VirtualMachine.*.OperationFailed.# on" in err.getvalue()


def test_events_commands_refuse_bad_arguments() -> None:
    import io

    from fsmc.compiler.cli import main

    err = io.StringIO()
    assert main(["events", "tail", "--amqp", "http://x"], stdout=io.StringIO(), stderr=err) == 2
    assert "--amqp: not an AMQP URL (amqp://user:password@host:port/vhost): 'http://x'" \
        in err.getvalue()
    err = io.StringIO()
    assert main(["events", "tail", "--amqp", "amqp://x", "--bind", "a" * 300],
                stdout=io.StringIO(), stderr=err) == 2
    assert "--bind: topic pattern is 300 bytes long" in err.getvalue()


def test_the_demo_bills_the_same_through_the_broker(broker: rabbit.Server,
                                                     tmp_path: Path) -> None:
    """`fsmc demo --amqp` in one place, `fsmc events bill` in another: the same usage."""
    from fsmc.contrib.broker import bill
    from fsmc.contrib.demo import ORIGIN, DemoConfig, run_demo
    from fsmc.contrib.usage_report import format_report, load_report
    from fsmc.runtime.amqp import declare_queue

    queue = f"billing.{uuid.uuid4().hex[:6]}"
    declare_queue(broker.url, queue)
    result = run_demo(DemoConfig(vms=40, accounts=3, days=5, seconds=0, out=tmp_path / "demo",
                                 amqp=broker.url))
    assert result.ok and result.broker is not None
    assert result.broker["confirmed"] == result.transitions
    stats = bill(broker.url, tmp_path / "billing.db", queue=queue, idle=1.0)
    assert stats["delivered"] == result.transitions
    window = {"start": ORIGIN, "end": result.report.end}
    assert format_report(load_report(tmp_path / "billing.db", **window)) == format_report(
        load_report(result.files["usage"], **window))


def test_the_broker_page_examples_run(broker: rabbit.Server,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs" / "broker.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert blocks
    namespace: dict[str, Any] = {"__name__": "broker_md", "URL": broker.url}
    for block in blocks:
        exec(compile(block, "docs/broker.md", "exec", dont_inherit=True), namespace)
    assert len(namespace["seen"]) == 2


def test_a_broker_that_hangs_is_left_and_the_events_resent(
        broker: rabbit.Server, exchange: str, closing: list[Any]) -> None:
    """A frozen broker keeps the socket open and confirms nothing: after `confirm_timeout`
    the publisher gives the connection up and, once the broker answers again, resends."""
    import os
    import signal

    consumer, collector = consume(broker, exchange)
    publisher = AmqpPublisher(broker.url, exchange, confirm_timeout=1.0)
    closing += [consumer, publisher]
    assert publisher.wait_connected(30)
    vm = int(Path(broker.env["RABBITMQ_PID_FILE"]).read_text().split()[0])
    os.kill(vm, signal.SIGSTOP)
    try:
        sent = [event(i) for i in range(200)]
        for each in sent:
            publisher(each)
        deadline = time.monotonic() + 20
        while publisher.stats()["stalls"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert publisher.stats()["stalls"] >= 1
        deadline = time.monotonic() + 10  # the frozen broker never answers the close:
        while publisher.stats()["resent"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # the socket is dropped after a grace, the messages requeued
        assert publisher.stats()["resent"] == 200
    finally:
        os.kill(vm, signal.SIGCONT)
    publisher.close(timeout=60)
    assert {e.id for e in collector.wait_for(200)} == {e.id for e in sent}


def test_an_event_amqp_cannot_carry_is_reported_and_the_others_still_arrive(
        broker: rabbit.Server, exchange: str, closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    publisher = AmqpPublisher(broker.url, exchange)
    closing += [consumer, publisher]
    sent = [event(i) for i in range(30)]
    sent[5] = StateChanged("VirtualMachine", "vm-5", "StartRequested", "Stopped", "Starting",
                           (), {}, id="x" * 300)  # message ids are AMQP short strings
    for each in sent:
        publisher(each)
    with pytest.raises(DeliveryError, match=r"1 of 30 .* 1 could not be encoded") as caught:
        publisher.close(timeout=30)
    assert caught.value.undelivered == 1
    expected = [e.id for e in sent if e is not sent[5]]
    assert [e.id for e in collector.wait_for(29)] == expected


def test_events_that_waited_for_room_are_sent(broker: rabbit.Server, exchange: str,
                                             closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    publisher = AmqpPublisher(broker.url, exchange, buffer=5, block_timeout=5)
    closing += [consumer, publisher]
    assert publisher.wait_connected(30)
    sent = [event(i) for i in range(40)]
    for each in sent:
        publisher(each)
    publisher.close(timeout=30)
    assert publisher.stats()["overflowed"] == 0
    assert [e.id for e in collector.wait_for(40)] == [e.id for e in sent]


def test_spilled_events_are_replayed_while_connected_with_a_small_window(
        broker: rabbit.Server, exchange: str, tmp_path: Path, closing: list[Any]) -> None:
    consumer, collector = consume(broker, exchange)
    closing.append(consumer)
    publisher, sent = publish_during_outage(broker, exchange, 30, closing, buffer=10,
                                            max_in_flight=10, block_timeout=0.05,
                                            spill_path=tmp_path / "s.jsonl")
    assert publisher.stats()["spilled"] == 20
    publisher.close(timeout=60)
    assert {e.id for e in collector.wait_for(30)} == {e.id for e in sent}


def test_a_torn_line_left_by_a_crash_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    from fsmc.runtime.amqp.message import outgoing
    from fsmc.runtime.amqp.spill import SpillFile, read_messages

    path = tmp_path / "events.jsonl"
    good = [outgoing(event(i), "fsmc") for i in range(2)]
    path.with_name("events.jsonl.replay").write_bytes(good[0].body + b"\n" +
                                                      good[1].body[:40])  # torn by a crash
    path.write_bytes(good[1].body + b"\n")
    spill = SpillFile(path)
    assert spill.adopt_previous()
    found = list(read_messages(spill.replay_path))
    assert [item.id for item in found if not isinstance(item, str)] == [good[0].id, good[1].id]
    assert len([item for item in found if isinstance(item, str)]) == 1
