"""The RabbitMQ bridge: `AmqpPublisher` forwards a bus's `StateChanged` events to a durable
topic exchange (at least once, CloudEvents JSON); `AmqpConsumer` feeds them from a queue into
a local bus (duplicates removed by event id). Needs pika (`pip install 'fsmc[amqp]'`).
See docs/broker.md for the delivery guarantees."""

from __future__ import annotations

try:
    import pika  # noqa: F401
except ImportError:  # pragma: no cover - pika is a declared extra
    raise ImportError("fsmc.runtime.amqp needs pika: pip install 'fsmc[amqp]'") from None

from ..cloudevent import MalformedEvent
from .consumer import AmqpConsumer, declare_queue
from .errors import DeliveryError, PublisherClosed
from .publisher import AmqpPublisher

__all__ = ["AmqpConsumer", "AmqpPublisher", "DeliveryError", "MalformedEvent",
           "PublisherClosed", "declare_queue"]
