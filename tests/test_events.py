"""`StateChanged` and `DeadEvent`: fields, immutability, ids, time, serialisation."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fsmc.runtime.events import DeadEvent, StateChanged
from hypothesis import given, settings
from hypothesis import strategies as st


def make(**payload: object) -> StateChanged:
    return StateChanged("VirtualMachine", "vm-1", "StopRequested", "Running", "Stopping",
                        ("usage",), payload)


def test_fields() -> None:
    event = make(host="h1")
    assert event.machine == "VirtualMachine"
    assert event.resource_id == "vm-1"
    assert event.event == "StopRequested"
    assert event.old_state == "Running"
    assert event.new_state == "Stopping"
    assert event.tags == ("usage",)
    assert dict(event.payload) == {"host": "h1"}
    assert event.topic == "VirtualMachine.Running.StopRequested.Stopping"
    assert event.topic is event.topic  # computed once
    assert isinstance(event.id, str) and event.id


def test_time_is_aware_utc_and_lazy() -> None:
    before = datetime.now(UTC)
    event = make()
    after = datetime.now(UTC)
    moment = event.time
    assert moment.tzinfo is UTC
    assert moment.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= moment <= after + timedelta(milliseconds=1)
    assert event.time is moment
    assert event.time_ns // 1000 == (moment - datetime(1970, 1, 1, tzinfo=UTC)) \
        // timedelta(microseconds=1)


def test_immutable() -> None:
    event = make()
    for name in ("id", "time", "machine", "resource_id", "event", "old_state", "new_state",
                 "tags", "payload", "topic", "time_ns"):
        with pytest.raises(AttributeError):
            setattr(event, name, "x")
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del event.machine
    with pytest.raises(TypeError):
        event.payload["x"] = 1  # type: ignore[index]
    assert not hasattr(event, "__dict__")


def test_payload_is_a_read_only_view_and_empty_is_shared() -> None:
    assert make().payload is make().payload
    assert len(make().payload) == 0
    event = make(a=1)
    assert event.payload["a"] == 1
    with pytest.raises(TypeError):
        event.payload["b"] = 2  # type: ignore[index]


def test_equality_and_hash_by_id() -> None:
    first, second = make(), make()
    assert first != second
    assert first == first
    assert len({first, second, first}) == 2
    rebuilt = StateChanged.from_dict(first.to_dict())
    assert rebuilt == first and hash(rebuilt) == hash(first)
    assert first != object()
    assert (first == "x") is False


def test_ids_are_unique_and_ordered_in_a_process() -> None:
    events = [make() for _ in range(20_000)]
    ids = [event.id for event in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_ids_are_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(8)]

    def build(slot: list[str]) -> None:
        slot.extend(make().id for _ in range(5_000))

    threads = [threading.Thread(target=build, args=(slot,)) for slot in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [i for slot in found for i in slot]
    assert len(ids) == 40_000 and len(set(ids)) == 40_000


def test_id_is_a_uuid_version_8() -> None:
    import uuid

    parsed = uuid.UUID(make().id)
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_ids_after_fork() -> None:
    """A child draws a new prefix: its new ids differ from the parent's (whose counter it
    shares at the fork), and an event made before the fork keeps its id in both."""
    before = make()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read)
            payload = json.dumps({"before": before.id, "new": [make().id for _ in range(100)]})
            os.write(write, payload.encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    child = json.loads(b"".join(chunks))
    parent_new = [make().id for _ in range(100)]
    assert child["before"] == before.id
    assert not set(child["new"]) & set(parent_new)
    assert child["new"][0][:18] != parent_new[0][:18]  # a different random prefix


def test_to_dict_is_json_ready() -> None:
    event = make(host="h1", size=3)
    data = event.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["id"] == event.id
    assert data["time"].endswith("Z")
    assert datetime.fromisoformat(data["time"]) == event.time
    assert data["tags"] == ["usage"]
    assert data["payload"] == {"host": "h1", "size": 3}
    assert data["resource_id"] == "vm-1"
    assert data["topic"] == event.topic


def test_from_dict_checks() -> None:
    data = make().to_dict()
    with pytest.raises(ValueError, match="missing field 'machine'"):
        StateChanged.from_dict({k: v for k, v in data.items() if k != "machine"})
    with pytest.raises(ValueError, match="topic"):
        StateChanged.from_dict({**data, "topic": "a.b.c.d"})
    with pytest.raises(ValueError, match="timezone-aware"):
        StateChanged.from_dict({**data, "time": "2024-01-02T03:04:05"})
    with pytest.raises(ValueError, match="non-empty string"):
        StateChanged.from_dict({**data, "id": ""})
    # `topic` is optional; `time` may be a datetime; another offset is converted to UTC
    moment = datetime(2024, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    rebuilt = StateChanged.from_dict({**{k: v for k, v in data.items() if k != "topic"},
                                      "time": moment})
    assert rebuilt.time == moment and rebuilt.time.tzinfo is UTC
    assert rebuilt.to_dict()["time"] == "2024-01-02T03:04:05.123456Z"


def test_rebuild_with_id_and_time() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    event = StateChanged("M", 1, "E", "A", "B", (), {}, id="my-id", time=moment)
    assert event.id == "my-id"
    assert event.time == moment
    assert event.to_dict()["time"] == "2024-05-06T07:08:09.000000Z"
    with pytest.raises(TypeError):
        StateChanged("M", 1, "E", "A", "B", (), {}, time="2024")  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
names = st.text(min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(machine=names, resource_id=st.integers() | st.text(max_size=10), event=names,
       old_state=names, new_state=names, tags=st.lists(names, max_size=3),
       payload=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
       micros=st.integers(min_value=0, max_value=253_402_300_799_999_999))
def test_dict_round_trip(machine: str, resource_id: object, event: str, old_state: str,
                         new_state: str, tags: list[str], payload: dict[str, object],
                         micros: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    original = StateChanged(machine, resource_id, event, old_state, new_state, tuple(tags),
                            payload, time=moment)
    for data in (original.to_dict(), json.loads(json.dumps(original.to_dict()))):
        rebuilt = StateChanged.from_dict(data)
        assert rebuilt == original
        assert rebuilt.to_dict() == original.to_dict()
        assert (rebuilt.id, rebuilt.time, rebuilt.machine, rebuilt.resource_id, rebuilt.event,
                rebuilt.old_state, rebuilt.new_state, rebuilt.tags, rebuilt.topic) == \
            (original.id, original.time, original.machine, original.resource_id,
             original.event, original.old_state, original.new_state, original.tags,
             original.topic)


def test_dict_round_trip_of_a_fresh_event_keeps_its_time_to_the_microsecond() -> None:
    original = make(a=[1, 2])
    rebuilt = StateChanged.from_dict(original.to_dict())
    assert rebuilt.time == original.time
    assert rebuilt.id == original.id


def test_pickle_and_copy() -> None:
    original = make(nested={"a": [1]})
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(original, protocol))
        assert clone == original
        assert clone.to_dict() == original.to_dict()
        assert clone.time_ns == original.time_ns
    assert copy.copy(original) is original
    deep = copy.deepcopy(original)
    assert deep == original and deep.payload == original.payload
    assert deep.payload["nested"] is not original.payload["nested"]
    rebuilt = StateChanged.from_dict(original.to_dict())
    assert pickle.loads(pickle.dumps(rebuilt)).id == rebuilt.id


def test_repr() -> None:
    event = StateChanged("VM", 7, "Go", "A", "B", ("usage",), {"x": 1}, id="abc",
                         time=datetime(2024, 1, 1, tzinfo=UTC))
    assert repr(event) == ("StateChanged(machine='VM', resource_id=7, event='Go', "
                           "old_state='A', new_state='B', tags=('usage',), payload={'x': 1}, "
                           "id='abc', time='2024-01-01T00:00:00.000000Z')")


def test_slots_keep_it_small() -> None:
    assert sys.getsizeof(make()) < 200


def test_dead_event() -> None:
    dead = DeadEvent(42)
    assert dead.event == 42
    assert dead == DeadEvent(42)
    assert repr(dead) == "DeadEvent(event=42)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        dead.event = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(dead)) == dead


@given(st.lists(st.integers(min_value=0, max_value=(1 << 122) - 1), min_size=1, max_size=20))
def test_id_text_is_the_uuid_of_the_layout(numbers: list[int]) -> None:
    """`_format_id` (which formats the prefix's groups once and reuses them) against the
    layout written out with `uuid.UUID`, for numbers of changing prefixes."""
    import uuid

    from fsmc.runtime.events import _format_id

    for number in numbers:
        prefix, counter = number >> 62, number & ((1 << 62) - 1)
        value = ((prefix >> 12) << 80) | (0x8 << 76) | ((prefix & 0xFFF) << 64) | \
            (0b10 << 62) | counter
        assert _format_id(number) == str(uuid.UUID(int=value))
