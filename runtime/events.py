"""The event records the runtime posts: `StateChanged` (one per transition) and `DeadEvent`.

`StateChanged` is built on every transition, so building one is kept cheap: the id is a
counter value (formatted as text only when `.id` is read), the time is `time.time_ns()` (turned
into a `datetime` only when `.time` is read), the topic is joined only when `.topic` is read,
and an empty payload shares one read-only empty mapping.

Event ids
---------
An id is a UUID string (RFC 9562 version 8, "custom" layout) made of a 60-bit random prefix
drawn once per process from `os.urandom`, and again in a child after `os.fork`, followed by a
62-bit counter:

- unique within a process (the counter never repeats);
- unique across processes and machines with overwhelming probability (two processes share a
  prefix with probability about n²/2⁶¹ for n processes);
- stable: an event keeps its id when copied, pickled, forked or rebuilt with `from_dict`;
- ordered within one process: the ids of one process compare (as strings) in creation order;
  ids of different processes are not ordered in any meaningful way. Use `time` to order
  events across processes, and the bus to order them within one.
"""

from __future__ import annotations

import itertools
import os
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

__all__ = ["DeadEvent", "StateChanged"]

_COUNTER_BITS = 62
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _new_counter() -> itertools.count[int]:
    """A counter whose values carry this process's random 60-bit prefix in their high bits."""
    prefix = int.from_bytes(os.urandom(8), "big") >> 4
    return itertools.count(prefix << _COUNTER_BITS)


_ids = _new_counter()


def _reseed() -> None:
    global _ids
    _ids = _new_counter()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_reseed)


def _format_id(number: int) -> str:
    """UUIDv8 text of a (prefix << 62 | counter) number: the prefix fills the 48 + 12 custom
    bits around the version nibble, the counter the 62 bits after the variant. The first three
    groups depend on the prefix alone (one per process): they are formatted once."""
    global _head
    prefix = number >> _COUNTER_BITS
    known, head = _head
    if prefix != known:
        high = f"{((prefix >> 12) << 16) | (0x8 << 12) | (prefix & 0xFFF):016x}"
        head = f"{high[:8]}-{high[8:12]}-{high[12:]}-"
        _head = (prefix, head)
    low = hex(_VARIANT | (number & _COUNTER_MASK))  # "0x" + 16 digits: the top bit is set
    return head + low[2:6] + "-" + low[6:]


_VARIANT = 0b10 << 62
_head: tuple[int, str] = (-1, "")


def _datetime_from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _ns_from_datetime(moment: datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"event time must be timezone-aware, got naive {moment!r}")
    return ((moment - _EPOCH) // timedelta(microseconds=1)) * 1000


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class StateChanged:
    """One transition of one resource: immutable, hashable and equal by `id`.

    Fields: `id` (str), `time` (aware UTC `datetime`), `machine`, `resource_id`, `event`,
    `old_state`, `new_state`, `tags` (tuple of str, spec order), `payload` (read-only mapping),
    `topic` (`machine.old_state.event.new_state`, the AMQP routing key) and `source` (the
    CloudEvents `source` of the producer that sent it through a broker, as `from_dict` was
    given it; None for an event made in this process, which the bridges give their own).

    `payload` is a read-only view of the mapping given (not a copy): the machine passes the
    fresh keyword dict of `fire(**payload)`, so nothing else holds it. Pass `id=` and `time=`
    only to rebuild an event that already happened (`from_dict` does, and sets `source`).
    """

    __slots__ = ("_event", "_id", "_machine", "_n", "_new_state", "_ns", "_old_state",
                 "_payload", "_resource_id", "_source", "_tags", "_time", "_topic")

    _machine: str
    _resource_id: object
    _event: str
    _old_state: str
    _new_state: str
    _tags: tuple[str, ...]
    _payload: Mapping[str, Any]
    _n: int
    _ns: int
    _id: str | None
    _time: datetime | None
    _topic: str | None
    _source: str  # set by `from_dict` only: building an event never spends time on it

    def __init__(self, machine: str, resource_id: object, event: str, old_state: str,
                 new_state: str, tags: tuple[str, ...], payload: Mapping[str, Any], *,
                 id: str | None = None, time: datetime | None = None) -> None:
        self._n = next(_ids)
        self._ns = _time.time_ns()
        self._machine = machine
        self._resource_id = resource_id
        self._event = event
        self._old_state = old_state
        self._new_state = new_state
        self._tags = tags
        self._payload = MappingProxyType(payload) if payload else _EMPTY
        self._id = id
        self._time = time
        self._topic = None
        if id is not None or time is not None:
            self._rebuilt(id, time)

    def _rebuilt(self, id: str | None, time: datetime | None) -> None:
        if id is not None and (not isinstance(id, str) or not id):
            raise ValueError(f"event id must be a non-empty string, got {id!r}")
        if time is not None:
            if not isinstance(time, datetime):
                raise TypeError(f"event time must be a datetime, got {time!r}")
            self._ns = _ns_from_datetime(time)
            self._time = time.astimezone(UTC)

    # -- fields (read-only properties over private slots: assignment raises AttributeError) --

    @property
    def id(self) -> str:
        """Unique id (see the module documentation for what it guarantees)."""
        text = self._id
        if text is None:
            text = self._id = _format_id(self._n)
        return text

    @property
    def time(self) -> datetime:
        """When the transition happened: an aware `datetime` in UTC (microsecond precision)."""
        moment = self._time
        if moment is None:
            moment = self._time = _datetime_from_ns(self._ns)
        return moment

    @property
    def time_ns(self) -> int:
        """`time` as integer nanoseconds since the Unix epoch (full clock precision)."""
        return self._ns

    @property
    def machine(self) -> str:
        return self._machine

    @property
    def resource_id(self) -> object:
        return self._resource_id

    @property
    def event(self) -> str:
        return self._event

    @property
    def old_state(self) -> str:
        return self._old_state

    @property
    def new_state(self) -> str:
        return self._new_state

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @property
    def payload(self) -> Mapping[str, Any]:
        return self._payload

    @property
    def source(self) -> str | None:
        """The CloudEvents `source` it came with (from a broker, or given), else None."""
        try:
            return self._source
        except AttributeError:
            return None

    @property
    def topic(self) -> str:
        """The routing key `<machine>.<old_state>.<event>.<new_state>`."""
        topic = self._topic
        if topic is None:
            topic = self._topic = \
                f"{self._machine}.{self._old_state}.{self._event}.{self._new_state}"
        return topic

    # -- identity, text, serialisation ------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StateChanged):
            return self.id == other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (f"StateChanged(machine={self._machine!r}, resource_id={self._resource_id!r}, "
                f"event={self._event!r}, old_state={self._old_state!r}, "
                f"new_state={self._new_state!r}, tags={self._tags!r}, "
                f"payload={dict(self._payload)!r}, id={self.id!r}, "
                f"time={_format_time(self.time)!r}"
                + ("" if self.source is None else f", source={self.source!r}") + ")")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: `time` as ISO 8601 text in UTC with a `Z`, `tags` as a list,
        `payload` as a plain dict, `resource_id` as it is; `topic` is included for readers and
        ignored (checked) by `from_dict`."""
        return {
            "id": self.id,
            "time": _format_time(self.time),
            "machine": self._machine,
            "resource_id": self._resource_id,
            "event": self._event,
            "old_state": self._old_state,
            "new_state": self._new_state,
            "tags": list(self._tags),
            "payload": dict(self._payload),
            "topic": self.topic,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> StateChanged:
        """Rebuild the event `to_dict` described: same id, same time (to the microsecond);
        `source`, which `to_dict` does not carry (a CloudEvent carries it beside `data`)."""
        try:
            time = data["time"]
            if isinstance(time, str):
                time = datetime.fromisoformat(time)
            event = cls(data["machine"], data["resource_id"], data["event"], data["old_state"],
                        data["new_state"], tuple(data["tags"]), dict(data["payload"]),
                        id=data["id"], time=time)
        except KeyError as missing:
            raise ValueError(f"StateChanged.from_dict: missing field {missing}") from None
        if source is not None:
            event._set_source(source)
        topic = data.get("topic")
        if topic is not None and topic != event.topic:
            raise ValueError(f"StateChanged.from_dict: topic {topic!r} does not match the "
                             f"fields (expected {event.topic!r})")
        return event

    def _set_source(self, source: object) -> None:
        if not isinstance(source, str) or not source:
            raise ValueError(f"event source must be a non-empty string, got {source!r}")
        self._source = source

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle, (self._machine, self._resource_id, self._event, self._old_state,
                            self._new_state, self._tags, dict(self._payload),
                            self._n if self._id is None else self._id, self._ns, self.source))

    def __copy__(self) -> StateChanged:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> StateChanged:
        return self if not self._payload else _deep_copy(self, memo)


def _unpickle(machine: str, resource_id: object, event: str, old_state: str, new_state: str,
              tags: tuple[str, ...], payload: dict[str, Any], ident: int | str,
              ns: int, source: str | None = None) -> StateChanged:
    record = StateChanged(machine, resource_id, event, old_state, new_state, tags, payload)
    if source is not None:
        record._set_source(source)
    if isinstance(ident, int):
        record._n = ident
    else:
        record._id = ident
    record._ns = ns
    return record


def _deep_copy(record: StateChanged, memo: dict[int, Any]) -> StateChanged:
    import copy

    maker, args = record.__reduce__()
    return maker(*copy.deepcopy(args, memo))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """An event that was posted while nobody subscribed to it, as delivered to the
    subscribers of `DeadEvent`."""

    event: object
