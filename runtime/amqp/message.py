"""What the publisher sends: a routing key, a CloudEvents body and the event id, encoded once
(resent as is after a reconnect, written as is to the spill file)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pika

from ..cloudevent import CONTENT_TYPE, EVENT_TYPE, encode
from ..events import StateChanged

__all__ = ["Outgoing", "outgoing", "outgoing_from_body", "properties"]


class Outgoing(NamedTuple):
    routing_key: str
    body: bytes
    id: str
    replayed: bool = False  # read back from the spill file


def outgoing(event: StateChanged, source: str) -> Outgoing:
    return Outgoing(event.topic, encode(event, source), event.id)


def outgoing_from_body(body: bytes, *, replayed: bool = True) -> Outgoing:
    """An `Outgoing` rebuilt from its body (as stored in the spill file)."""
    message: dict[str, Any] = json.loads(body)
    return Outgoing(message["data"]["topic"], body, message["id"], replayed)


def properties(message: Outgoing) -> Any:
    """The AMQP properties of `message`: persistent, typed, with its id."""
    return pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2,
                                message_id=message.id, type=EVENT_TYPE)
