"""`tests/rabbit.py`: the private broker keeps a durable queue's persistent messages across
an outage, both a clean stop of the broker and a crash of its VM, and clients see each
outage as a dropped connection."""

from __future__ import annotations

import secrets

import pytest

from tests import rabbit

REASON = rabbit.available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def test_persistent_messages_survive_broker_restarts() -> None:
    import pika
    from pika.exceptions import AMQPError

    server = rabbit.shared()
    exchange, queue = "fsmc.test.events", f"fsmc.test.{secrets.token_hex(4)}"
    persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)

    def publish(body: bytes) -> pika.BlockingConnection:
        connection = pika.BlockingConnection(pika.URLParameters(server.url))
        channel = connection.channel()
        channel.confirm_delivery()  # basic_publish raises unless the broker confirms
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, routing_key="vm.*.created")
        channel.basic_publish(exchange, "vm.1.created", body, persistent, mandatory=True)
        return connection

    try:
        for crash, body in ((False, b"before a clean stop"), (True, b"before a crash")):
            connection = publish(body)
            server.stop_node(crash=crash)
            assert not server.running()
            with pytest.raises(AMQPError):  # CONNECTION_FORCED, or the stream reset
                connection.process_data_events(time_limit=1)
            server.start_node()
        connection = pika.BlockingConnection(pika.URLParameters(server.url))
        channel = connection.channel()
        bodies = []
        while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(message[2])
        assert bodies == [b"before a clean stop", b"before a crash"]
        channel.queue_delete(queue)
        connection.close()
    finally:
        if not server.running():  # a failure mid-outage: leave the broker up for others
            server.start_node()
