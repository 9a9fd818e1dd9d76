"""`fsmc replay`: the three log formats, each kind of planted violation, exit codes, JSON, and
memory that stays flat as the log grows."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from fsmc.compiler.project import check
from fsmc.compiler.replay import Replayer, replay_files
from fsmc.runtime import StateChanged
from fsmc.runtime.cloudevent import encode

from tests.conftest import ROOT
from tests.test_assertions import run

SPECS = str(ROOT / "specs")


def audit(machine: str, rid: object, event: str, old: str, new: str) -> str:
    return json.dumps(StateChanged(machine, rid, event, old, new, (), {}).to_dict())


def cloudstack(resource: str, rid: str, old: str, new: str, **extra: str) -> str:
    return json.dumps({"resource": resource, "id": rid, "old-state": old, "new-state": new,
                       "eventDateTime": "2025-10-30 10:00:00 +0000", **extra})


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_conforming_logs_of_every_format(tmp_path: Path) -> None:
    trail = write(tmp_path / "audit.jsonl", [
        audit("VirtualMachine", "vm-1", "StartRequested", "Stopped", "Starting"),
        audit("VirtualMachine", "vm-1", "OperationSucceeded", "Starting", "Running"),
        json.dumps({"type": "DeadEvent", "repr": "<DeadEvent>"}),
    ])
    broker = write(tmp_path / "broker.jsonl", [
        encode(StateChanged("Volume", "v-1", "CreateRequested", "Allocated", "Creating", (), {}),
               "fsmc").decode(),
        encode(StateChanged("Volume", "v-1", "OperationSucceeded", "Creating", "Ready", (), {}),
               "fsmc").decode(),
    ])
    envelope = {"eventType": "ImplementNetwork", "resourceType": "Network",
                "description": cloudstack("Network", "n-1", "Allocated", "Implementing")}
    ours = write(tmp_path / "cloudstack.jsonl", [
        cloudstack("VirtualMachine", "vm-2", "Stopped", "Starting",
                   status="preStateTransitionEvent"),
        cloudstack("VirtualMachine", "vm-2", "Stopped", "Starting",
                   status="postStateTransitionEvent"),
        # Network: published twice by two listeners, before and after the write.
        *[json.dumps(envelope)] * 4,
        cloudstack("Network", "n-1", "Implementing", "Implemented"),
        cloudstack("Network", "n-1", "Implementing", "Implemented"),
    ])
    code, out = run("replay", trail, broker, ours, "--specs", SPECS)
    assert code == 0, out
    assert "conforming: 4 resources" in out
    assert "fitness: 7 of 7 state changes conform (100.0%); 4 of 4 resources conform" in out
    assert "4 duplicates dropped" in out


def test_planted_violations_of_each_kind(tmp_path: Path) -> None:
    log = write(tmp_path / "bad.jsonl", [
        audit("VirtualMachine", "ok", "StartRequested", "Stopped", "Starting"),
        # non-conforming: a running VM cannot be destroyed (twice: only the first is shown)
        audit("VirtualMachine", "vm-1", "StartRequested", "Stopped", "Starting"),
        audit("VirtualMachine", "vm-1", "OperationSucceeded", "Starting", "Running"),
        audit("VirtualMachine", "vm-1", "DestroyRequested", "Running", "Destroyed"),
        audit("VirtualMachine", "vm-1", "StartRequested", "Destroyed", "Starting"),
        # gap: the previous event left it in Creating
        audit("Volume", "v-1", "CreateRequested", "Allocated", "Creating"),
        audit("Volume", "v-1", "ResizeRequested", "Ready", "Resizing"),
        audit("Kettle", "k-1", "Boil", "Cold", "Hot"),
        audit("Volume", "v-2", "CreateRequested", "Allocated", "Creatin"),
        audit("Volume", "v-3", "Explode", "Ready", "Destroy"),
        "this is not JSON",
        cloudstack("Snapshot", "s-1", "Allocated", "BackedUp"),
    ])
    code, out = run("replay", log, "--specs", SPECS, "--color", "never")
    assert code == 1
    lines = out.splitlines()
    assert "conforming: 1 resource: VirtualMachine ok" in lines
    assert "non-conforming: 2" in lines
    assert any(line.startswith(f"  {log}:4: VirtualMachine vm-1: `Running --DestroyRequested-->"
                               " Destroyed` is not a transition of `VirtualMachine`; in "
                               "`Running` the spec allows MigrationRequested -> Migrating,")
               for line in lines), out
    assert f"  {log}:12: Snapshot s-1: `Allocated -> BackedUp` is not a transition of " \
           "`Snapshot`; in `Allocated` the spec allows CreateRequested -> Creating" in lines
    assert f"  {log}:7: Volume v-1: old state `Ready`, but the previous event left it in " \
           "`Creating`" in lines
    assert f"  {log}:8: Kettle k-1: no spec declares machine `Kettle`" in lines
    assert f"  {log}:9: Volume v-2: state `Creatin` is not a state of `Volume`" in lines
    assert f"  {log}:10: Volume v-3: event `Explode` is not an event of `Volume`" in lines
    assert any(line.startswith(f"  {log}:11: not a JSON line") for line in lines)
    assert lines[-1].startswith("fitness: 5 of 10 state changes conform (50.0%); 1 of 6")
    code, out = run("replay", log, "--specs", SPECS, "--format", "json")
    found = json.loads(out)
    assert code == 1 and not found["ok"]
    assert found["counts"] == {"non-conforming": 2, "gap": 1, "unknown-machine": 1,
                               "unknown-state": 1, "unknown-event": 1, "unreadable": 1}
    [first, _] = found["problems"]["non-conforming"]
    assert (first["state"], first["resource"]) == ("Running", "vm-1")
    assert "MigrationRequested -> Migrating" in first["allowed"]


def test_lines_of_the_wrong_shape_are_unreadable(tmp_path: Path) -> None:
    log = write(tmp_path / "odd.jsonl", [
        json.dumps({"machine": 5, "resource_id": "x", "event": "E", "old_state": "A",
                    "new_state": "B"}),
        json.dumps({"machine": "Nic", "event": "ReservationRequested",
                    "old_state": "Allocated", "new_state": "Reserving"}),
        "[1, 2]", "{\"machine\": \"Nic\"", json.dumps({"hello": "world"}),
        audit("Nic", 7, "ReservationRequested", "Allocated", "Reserving"),
    ])
    code, out = run("replay", log, "--specs", SPECS, "--format", "json")
    found = json.loads(out)
    assert code == 1
    assert found["counts"]["unreadable"] == 5
    assert found["conforming"] == [{"machine": "Nic", "resource": "7"}]


def test_usage_errors(tmp_path: Path) -> None:
    code, _ = run("replay", str(tmp_path / "missing.jsonl"), "--specs", SPECS)
    assert code == 2


def _big_log(path: Path, events: int, resources: int = 500) -> None:
    cycle = [("StartRequested", "Stopped", "Starting"),
             ("OperationSucceeded", "Starting", "Running"),
             ("StopRequested", "Running", "Stopping"),
             ("OperationSucceeded", "Stopping", "Stopped")]
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(events):
            event, old, new = cycle[(index // resources) % 4]
            handle.write(json.dumps({"machine": "VirtualMachine",
                                     "resource_id": f"vm-{index % resources}", "event": event,
                                     "old_state": old, "new_state": new}) + "\n")


@pytest.mark.slow
def test_memory_stays_flat_as_the_log_grows(tmp_path: Path) -> None:
    machines = [m for spec in check([SPECS]).specs for m in spec.machines]
    peaks = []
    for events in (50_000, 500_000):
        path = tmp_path / f"{events}.jsonl"
        _big_log(path, events)
        tracemalloc.start()
        found = replay_files(machines, [str(path)])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert found.ok and found.events == events and found.resources == 500
        peaks.append(peak)
    # Ten times the events, the same 500 resources: the peak stays within 20 %.
    assert peaks[1] < peaks[0] * 1.2, peaks


def test_replayer_accepts_any_iterable_of_lines() -> None:
    machines = [m for spec in check([SPECS]).specs for m in spec.machines]
    replayer = Replayer(machines)
    replayer.feed("<memory>", (audit("Nic", "n", "ReservationRequested", "Allocated",
                                     "Reserving") for _ in range(1)))
    assert replayer.finish().ok
