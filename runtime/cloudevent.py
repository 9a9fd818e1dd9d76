"""`StateChanged` as a CloudEvents 1.0 structured-mode JSON message, and back.

The wire format of every bridge (the broker, the notification service):

    {"specversion": "1.0", "id": "<event id>", "source": "<source>",
     "type": "fsmc.StateChanged", "subject": "<resource id>", "time": "<RFC 3339, UTC>",
     "datacontenttype": "application/json", "data": {<StateChanged.to_dict()>}}

`encode` is written here rather than with the `cloudevents` SDK: the format is eight fixed
attributes, and the SDK's model + conversion costs several times the `json.dumps` this does
(the broker bench measures the SDK). The tests check our output with the SDK's parser.
Payload values JSON cannot carry travel as their `str()`. `source` is the producer's: `decode`
keeps it on the event (`StateChanged.source`), and `encode` writes an event's own source when
it has one, so a bridge passing an event on never rewrites where it came from.
"""

from __future__ import annotations

import json
from typing import Any

from . import jsonline
from .errors import FsmcError
from .events import StateChanged

__all__ = ["CONTENT_TYPE", "EVENT_TYPE", "MalformedEvent", "decode", "encode", "envelope"]

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE = "fsmc.StateChanged"
SPEC_VERSION = "1.0"
_REQUIRED = ("specversion", "id", "source", "type", "data")
_JSON_NAMES = {str: "string", list: "array", dict: "object"}


class MalformedEvent(FsmcError):
    """A message that is not an fsmc CloudEvent; the message says what is wrong."""


def envelope(event: StateChanged, source: str) -> dict[str, Any]:
    """The CloudEvent of `event` as a JSON-ready dict. Its `source` is the event's own (the
    producer's, when it came through a broker: `decode` keeps it), else `source`."""
    data = event.to_dict()
    return {
        "specversion": SPEC_VERSION,
        "id": data["id"],
        "source": event.source or source,
        "type": EVENT_TYPE,
        "subject": str(event.resource_id),
        "time": data["time"],
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(event: StateChanged, source: str) -> bytes:
    """The CloudEvent of `event` as compact UTF-8 JSON (one line: no raw newlines)."""
    return jsonline.dumps(envelope(event, source)).encode("utf-8")


def decode(body: bytes | str) -> StateChanged:
    """The `StateChanged` a message carries, with the message's `source`. Raises
    `MalformedEvent` saying what is wrong."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedEvent(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise MalformedEvent(f"not a JSON object but {type(message).__name__}")
    missing = [name for name in _REQUIRED if name not in message]
    if missing:
        raise MalformedEvent(f"not a CloudEvent: missing {', '.join(missing)}")
    if message["specversion"] != SPEC_VERSION:
        raise MalformedEvent(f"unsupported CloudEvents specversion {message['specversion']!r}")
    if message["type"] != EVENT_TYPE:
        raise MalformedEvent(f"type {message['type']!r} is not {EVENT_TYPE!r}")
    source = message["source"]
    if not isinstance(source, str) or not source:
        raise MalformedEvent(f"source must be a non-empty string, not {source!r}")
    data = message["data"]
    if not isinstance(data, dict):
        raise MalformedEvent("data is not a JSON object")
    for name, kind in (("time", str), ("tags", list), ("payload", dict)):
        if name in data and not isinstance(data[name], kind):
            raise MalformedEvent(f"bad StateChanged data: {name} is not a JSON "
                                 f"{_JSON_NAMES[kind]}")
    if data.get("id") != message["id"]:
        raise MalformedEvent(f"data.id {data.get('id')!r} differs from id {message['id']!r}")
    try:
        return _checked(StateChanged.from_dict(data, source=source))
    except (TypeError, ValueError) as error:
        raise MalformedEvent(f"bad StateChanged data: {error}") from None


def _checked(event: StateChanged) -> StateChanged:
    for name in ("machine", "event", "old_state", "new_state"):
        value = getattr(event, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    if not all(isinstance(tag, str) for tag in event.tags):
        raise ValueError(f"tags must be strings: {list(event.tags)!r}")
    return event
