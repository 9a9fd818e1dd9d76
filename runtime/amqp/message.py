"""What the publisher sends: a routing key, a CloudEvents body and the event id, encoded once
(resent as is after a reconnect, written as is to the spill file or the journal), and whom to
tell once the broker confirmed it or the publisher gave it up (its `ticket`)."""

from __future__ import annotations

import json
from collections.abc import Callable
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
    ticket: Callable[[bool], None] | None = None  # called, lock held: confirmed or given up
    recovered: bool = False  # read back from a previous process's journal


# AMQP short strings (routing keys, message ids) hold at most 255 bytes.
_SHORT_STRING = 255


def outgoing(event: StateChanged, source: str,
             ticket: Callable[[bool], None] | None = None) -> Outgoing:
    """`event` ready to publish; `ValueError` if AMQP cannot carry its topic or id."""
    return _checked(Outgoing(event.topic, encode(event, source), event.id, False, ticket))


def outgoing_from_body(body: bytes, *, replayed: bool = True,
                       ticket: Callable[[bool], None] | None = None,
                       recovered: bool = False) -> Outgoing:
    """An `Outgoing` rebuilt from its body (as stored in the spill file or the journal)."""
    message: dict[str, Any] = json.loads(body)
    return _checked(Outgoing(message["data"]["topic"], body, message["id"], replayed, ticket,
                             recovered))


def _checked(message: Outgoing) -> Outgoing:
    for name in ("routing_key", "id"):
        value = getattr(message, name)
        if not isinstance(value, str) or len(value.encode("utf-8")) > _SHORT_STRING:
            raise ValueError(f"{name} must be text of at most {_SHORT_STRING} bytes in UTF-8, "
                             f"not {value!r:.80}")
    return message


def properties(message: Outgoing) -> Any:
    """The AMQP properties of `message`: persistent, typed, with its id."""
    return pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2,
                                message_id=message.id, type=EVENT_TYPE)
