"""The CloudEvents wire format of the bridges: what `encode` writes is a valid CloudEvents 1.0
structured JSON message (checked with the official SDK's parser), `decode` gives the same event
back, and anything else is refused with a reason."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from fsmc.runtime import StateChanged
from fsmc.runtime.cloudevent import CONTENT_TYPE, MalformedEvent, decode, encode, envelope
from hypothesis import given
from hypothesis import strategies as st


def sample(**payload: Any) -> StateChanged:
    return StateChanged("VirtualMachine", "vm-42", "StopRequested", "Running", "Stopping",
                        ("usage",), payload)


def test_the_sdk_reads_our_messages_with_every_attribute_of_the_contract() -> None:
    event = sample(account="acme", cpu=2)
    parsed = JSONFormat().read(None, encode(event, "fsmc/test"))
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == event.id
    assert parsed.get_source() == "fsmc/test"
    assert parsed.get_type() == "fsmc.StateChanged"
    assert parsed.get_subject() == "vm-42"
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_time() == event.time
    data = parsed.get_data()
    assert isinstance(data, dict)
    assert data["topic"] == "VirtualMachine.Running.StopRequested.Stopping"
    assert data["payload"] == {"account": "acme", "cpu": 2}
    assert JSONFormat.CONTENT_TYPE == CONTENT_TYPE


def test_decode_gives_the_same_event_back() -> None:
    event = sample(account="acme", note='quotes " and \n newlines')
    again = decode(encode(event, "fsmc"))
    assert again == event and again.id == event.id
    assert again.time == event.time and again.time.tzinfo is not None
    assert (again.machine, again.resource_id, again.event, again.old_state, again.new_state,
            again.tags, dict(again.payload)) == (
        event.machine, event.resource_id, event.event, event.old_state, event.new_state,
        event.tags, dict(event.payload))
    assert b"\n" not in encode(event, "fsmc")  # one line: the spill file relies on it


def test_the_producers_source_is_kept_through_decode_and_encode() -> None:
    event = sample(account="acme")
    assert event.source is None
    came = decode(encode(event, "cloudstack/mgmt-1"))
    assert came.source == "cloudstack/mgmt-1"
    assert json.loads(encode(came, "fsmc"))["source"] == "cloudstack/mgmt-1"  # not rewritten
    assert json.loads(encode(event, "fsmc"))["source"] == "fsmc"  # none of its own
    for copied in (pickle.loads(pickle.dumps(came)), copy.copy(came), copy.deepcopy(came)):
        assert copied.source == "cloudstack/mgmt-1"
    assert pickle.loads(pickle.dumps(event)).source is None
    assert "source='cloudstack/mgmt-1'" in repr(came) and "source=" not in repr(event)
    assert StateChanged.from_dict(came.to_dict(), source="x").source == "x"
    with pytest.raises(ValueError, match="source must be a non-empty string"):
        StateChanged.from_dict(event.to_dict(), source="")


@pytest.mark.parametrize("source", ["", 7, ["a"]])
def test_a_message_without_a_usable_source_is_refused(source: object) -> None:
    with pytest.raises(MalformedEvent, match="source must be a non-empty string"):
        decode(_message(source=source))


def test_values_json_cannot_carry_travel_as_text() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = json.loads(encode(sample(at=when, ratio=1.5), "fsmc"))
    assert body["data"]["payload"] == {"at": str(when), "ratio": 1.5}


def _message(**changes: Any) -> bytes:
    message = envelope(sample(), "fsmc")
    for key, value in changes.items():
        if value is None:
            message.pop(key)
        else:
            message[key] = value
    return json.dumps(message).encode()


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object but list"),
    (_message(specversion=None, id=None), "missing specversion, id"),
    (_message(specversion="0.3"), "unsupported CloudEvents specversion '0.3'"),
    (_message(type="com.example.Other"), "type 'com.example.Other' is not 'fsmc.StateChanged'"),
    (_message(data="text"), "data is not a JSON object"),
    (_message(id="other"), "differs from id 'other'"),
])
def test_what_is_not_an_fsmc_event_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason.replace("(", r"\(").replace("[", r"\[")):
        decode(body)


def test_bad_event_data_is_refused() -> None:
    message = envelope(sample(), "fsmc")
    for field, value, reason in [("machine", 5, "machine must be a non-empty string"),
                                 ("time", "yesterday", "bad StateChanged data"),
                                 ("time", None, "time is not a JSON string"),
                                 ("tags", [1], "tags must be strings"),
                                 ("tags", "abc", "tags is not a JSON array"),
                                 ("payload", None, "payload is not a JSON object")]:
        broken = json.loads(json.dumps(message))
        broken["data"][field] = value
        if field == "machine":
            broken["data"]["topic"] = None
        with pytest.raises(MalformedEvent, match=reason):
            decode(json.dumps(broken))
    missing = json.loads(json.dumps(message))
    del missing["data"]["event"]
    with pytest.raises(MalformedEvent, match="missing field 'event'"):
        decode(json.dumps(missing))


names = st.text(st.characters(codec="utf-8", exclude_characters="."), min_size=1, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3), max_leaves=8)


@given(machine=names, resource=st.text(max_size=20) | st.integers(), event=names,
       old=names, new=names, tags=st.lists(names, max_size=3),
       payload=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_any_event_survives_the_round_trip(machine: str, resource: Any, event: str, old: str,
                                           new: str, tags: list[str],
                                           payload: dict[str, Any]) -> None:
    original = StateChanged(machine, resource, event, old, new, tuple(tags), payload)
    again = decode(encode(original, "fsmc"))
    assert (again.id, again.time, again.topic, again.resource_id, again.tags,
            dict(again.payload)) == (original.id, original.time, original.topic, resource,
                                     tuple(tags), payload)


def test_hostile_text_makes_one_utf8_line_that_decodes_back() -> None:
    """U+2028 and kin stay raw under `ensure_ascii=False` and split the body for
    `str.splitlines` readers; a lone surrogate made `encode` raise UnicodeEncodeError."""
    from tests.hostile import PAYLOAD_TEXTS

    for text in PAYLOAD_TEXTS:
        event = StateChanged("M", text, "E", "A", "B", (text,), {"k": text, text: text},
                             id=f"id {text}")
        body = encode(event, f"source {text}")
        assert len(body.decode("utf-8").splitlines()) == 1, repr(text)
        back = decode(body)
        assert (back.id, back.resource_id, back.tags, dict(back.payload)) == \
            (event.id, text, (text,), {"k": text, text: text})
        assert json.loads(body)["source"] == f"source {text}"
