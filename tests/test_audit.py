"""The audit trail: every delivered event as one JSON line, read back as the same events."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fsmc.contrib.audit import AuditTrail, read_trail
from fsmc.runtime import DeadEvent, StateChanged
from fsmc.runtime.bus import EventBus

from generated.virtual_machine import VirtualMachine


def fields(event: StateChanged) -> tuple[object, ...]:
    return (event.id, event.time, event.machine, event.resource_id, event.event,
            event.old_state, event.new_state, event.tags, dict(event.payload), event.topic)


@pytest.mark.parametrize("mode", ["sync", "threads"])
def test_round_trip_from_a_running_machine(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path)
    posted: list[StateChanged] = []
    bus = EventBus(mode=mode)  # type: ignore[arg-type]
    bus.subscribe(trail.write)
    bus.subscribe(posted.append, StateChanged)
    vm = VirtualMachine("vm-1", bus=bus)
    vm.start_requested(account="acme", host={"id": 7, "name": "h-7"})
    vm.operation_succeeded(account="acme", note="déjà vu")
    vm.stop_requested()
    assert bus.close() == 0
    trail.close()
    read = list(read_trail(path))
    assert read == posted  # equal by id, in posting order
    assert [fields(e) for e in read] == [fields(e) for e in posted]
    assert read[1].tags == ("usage",) and read[1].topic == \
        "VirtualMachine.Starting.OperationSucceeded.Running"
    assert trail.written == 3
    assert "déjà vu" in path.read_text(encoding="utf-8")  # written as UTF-8, not escaped


def test_each_line_is_to_dict_as_json(tmp_path: Path) -> None:
    event = StateChanged("Volume", "vol-1", "CreateRequested", "Allocated", "Creating", (),
                         {"size_gb": 20}, id="e-1",
                         time=datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC))
    with AuditTrail(tmp_path / "a.jsonl") as trail:
        trail.write(event)
    line = (tmp_path / "a.jsonl").read_text(encoding="utf-8")
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == event.to_dict()
    assert json.loads(line)["time"] == "2025-01-02T03:04:05.600000Z"


def test_values_json_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    event = StateChanged("Nic", "nic-1", "ReservationRequested", "Allocated", "Reserving", (),
                         {"when": moment, "path": Path("/x")}, id="e-2", time=moment)
    with AuditTrail(tmp_path / "a.jsonl") as trail:
        trail.write(event)
    (back,) = read_trail(tmp_path / "a.jsonl")
    assert dict(back.payload) == {"when": str(moment), "path": "/x"}


def test_other_events_are_kept_but_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    bus = EventBus()
    with AuditTrail(path) as trail:
        bus.subscribe(trail.write)
        bus.post("not an event")
        bus.post(DeadEvent(42))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"type": "str", "repr": "'not an event'"},
                     {"type": "DeadEvent", "repr": "DeadEvent(event=42)"}]
    assert list(read_trail(path)) == []


def test_a_trail_grows_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = StateChanged("Nic", "nic-1", "ReservationRequested", "Allocated", "Reserving",
                         (), {})
    second = StateChanged("Nic", "nic-1", "OperationCompleted", "Reserving", "Reserved", (),
                          {})
    with AuditTrail(path) as trail:
        trail.write(first)
    trail = AuditTrail(path, flush_interval=0)  # flushed after every event
    trail.write(second)
    assert [e.id for e in read_trail(path)] == [first.id, second.id]  # before close()
    trail.close()
    trail.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        trail.write(first)
    with pytest.raises(ValueError):
        AuditTrail(path, flush_interval=-1)


def test_many_threads_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    trail = AuditTrail(path)

    def burst(n: int) -> None:
        for i in range(500):
            trail.write(StateChanged("Nic", f"nic-{n}", "E", "A", "B", (), {"i": i,
                                                                              "pad": "x" * 200}))

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    trail.close()
    events = list(read_trail(path))
    assert len(events) == 4000 == trail.written
    for n in range(8):  # each thread's events in its order
        assert [e.payload["i"] for e in events if e.resource_id == f"nic-{n}"] == \
            list(range(500))


def test_a_broken_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"type": "str", "repr": "x"}\n\n{broken\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.jsonl:3: not a JSON line"):
        list(read_trail(path))


def test_hostile_text_is_one_line_and_comes_back(tmp_path: Path) -> None:
    """Every line break (U+2028 and kin, which `str.splitlines` honours), NUL, quotes and lone
    surrogates in payloads, ids and resource ids: one line per event for any reader, UTF-8
    encodable (a lone surrogate made `write` raise), and read back exactly."""
    from tests.hostile import PAYLOAD_TEXTS

    path = tmp_path / "audit.jsonl"
    events = [StateChanged("VirtualMachine", text, "Go", "A", "B", ("usage",),
                           {"text": text, text: [text]}, id=f"id-{n}-{text}")
              for n, text in enumerate(PAYLOAD_TEXTS)]
    with AuditTrail(path) as trail:
        for event in events:
            trail.write(event)
    raw = path.read_bytes()
    raw.decode("utf-8")  # strict: no surrogate reached the file
    assert len(raw.decode("utf-8").splitlines()) == len(events)
    assert [fields(e) for e in read_trail(path)] == [fields(e) for e in events]
