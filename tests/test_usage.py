"""The usage meter against hand-computed cases: running VM hours, volume GB-hours and public
IP hours, clipped to windows, split per account, and the same whatever the order in which
events arrive and however often each is delivered."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.contrib.usage import RULES, UsageMeter
from fsmc.contrib.usage_report import Point, Report, intervals, load_report
from fsmc.runtime import StateChanged
from fsmc.runtime.bus import EventBus

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RULE = {rule.usage_type: rule for rule in RULES}
_ids = itertools.count(1)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ev(machine: str, resource: str, transition: str, hours: float, *, usage: bool = False,
       **payload: object) -> StateChanged:
    """`transition` is "Old -Event-> New"; the event happens `hours` after T0."""
    old, rest = transition.split(" -", 1)
    event, new = rest.split("-> ")
    return StateChanged(machine, resource, event, old, new, ("usage",) if usage else (),
                        dict(payload), id=f"ev-{next(_ids):06d}", time=at(hours))


def vm_events(account: str = "acme", vm: str = "vm-1") -> list[StateChanged]:
    """A VM started at 1 h, stopped (through Stopping) at 6 h, started again at 11 h and
    crashing at 13.5 h: 5 + 2.5 = 7.5 running hours (CloudStack bills Stopping)."""
    a = {"account": account}
    return [
        ev("VirtualMachine", vm, "Stopped -StartRequested-> Starting", 0, **a),
        ev("VirtualMachine", vm, "Starting -OperationSucceeded-> Running", 1, usage=True,
           **a),
        ev("VirtualMachine", vm, "Running -StopRequested-> Stopping", 5, **a),
        ev("VirtualMachine", vm, "Stopping -OperationSucceeded-> Stopped", 6, usage=True,
           **a),
        ev("VirtualMachine", vm, "Stopped -StartRequested-> Starting", 10, **a),
        ev("VirtualMachine", vm, "Starting -AgentReportRunning-> Running", 11, usage=True,
           **a),
        ev("VirtualMachine", vm, "Running -AgentReportStopped-> Stopped", 13.5,
           usage=True, **a),
    ]


def volume_events() -> list[StateChanged]:
    """100 GB Ready from 1 h, grown to 200 GB at 11 h (a failed resize at 15 h changes
    nothing), destroyed at 21 h: 100 * 10 + 200 * 10 = 3000 GB-hours over 20 hours."""
    a = {"account": "acme"}
    return [
        ev("Volume", "vol-1", "Allocated -CreateRequested-> Creating", 0, size_gb=100, **a),
        ev("Volume", "vol-1", "Creating -OperationSucceeded-> Ready", 1, **a),
        ev("Volume", "vol-1", "Ready -ResizeRequested-> Resizing", 10, **a),
        ev("Volume", "vol-1", "Resizing -OperationSucceeded-> Ready", 11, usage=True,
           size_gb=200, **a),
        ev("Volume", "vol-1", "Ready -ResizeRequested-> Resizing", 14, **a),
        ev("Volume", "vol-1", "Resizing -OperationFailed-> Ready", 15, **a),
        ev("Volume", "vol-1", "Ready -DestroyRequested-> Destroy", 21, **a),
        ev("Volume", "vol-1", "Destroy -OperationSucceeded-> Destroy", 22, usage=True, **a),
    ]


def ip_events() -> list[StateChanged]:
    """One address: acme holds it from 0.5 h to 5 h, then globex from 8 h to 10 h."""
    return [
        ev("IpAddress", "ip-1", "Free -AllocateRequested-> Allocating", 0, account="acme"),
        ev("IpAddress", "ip-1", "Allocating -OperationSucceeded-> Allocated", 0.5, usage=True,
           account="acme"),
        ev("IpAddress", "ip-1", "Allocated -ReleaseRequested-> Releasing", 5, usage=True,
           account="acme"),
        ev("IpAddress", "ip-1", "Releasing -OperationSucceeded-> Free", 5.5, account="acme"),
        ev("IpAddress", "ip-1", "Free -AllocateRequested-> Allocating", 7.5,
           account="globex"),
        ev("IpAddress", "ip-1", "Allocating -OperationSucceeded-> Allocated", 8, usage=True,
           account="globex"),
        ev("IpAddress", "ip-1", "Allocated -ReleaseRequested-> Releasing", 10, usage=True,
           account="globex"),
    ]


def meter_report(tmp_path: Path, events: Iterable[StateChanged], start: float | None = 0,
                 end: float | None = 24, **options: str) -> Report:
    db = tmp_path / "usage.db"
    with UsageMeter(db, batch=3) as meter:
        for event in events:
            meter.record(event)
    return load_report(db, start=None if start is None else at(start),
                       end=None if end is None else at(end), **options)


def quantities(report: Report) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(usage type, account, resource) -> (hours, quantity), rounded to the microsecond."""
    return {(r.usage_type, r.account, r.resource_id): (round(r.hours, 6), round(r.quantity, 6))
            for r in report.records}


def test_vm_running_hours_are_tagged_running_intervals(tmp_path: Path) -> None:
    report = meter_report(tmp_path, vm_events())
    assert quantities(report) == {("running_vm", "acme", "vm-1"): (7.5, 7.5)}


def test_window_clips_intervals(tmp_path: Path) -> None:
    # [3, 12): 3 hours of the first interval (3..6) and 1 of the second (11..12).
    report = meter_report(tmp_path, vm_events(), start=3, end=12)
    assert quantities(report) == {("running_vm", "acme", "vm-1"): (4.0, 4.0)}
    # A window between the two intervals bills nothing.
    assert load_report(tmp_path / "usage.db", start=at(7), end=at(10)).records == ()


def test_open_interval_runs_to_the_window_end(tmp_path: Path) -> None:
    events = vm_events()[:2]  # running since 1 h, never stopped
    assert quantities(meter_report(tmp_path, events, end=24)) == {
        ("running_vm", "acme", "vm-1"): (23.0, 23.0)}
    # Without bounds the window runs from the first stored event to the last: 1 h to 1 h.
    assert meter_report(tmp_path, events, start=None, end=None).records == ()


def test_untagged_transitions_do_not_move_the_meter(tmp_path: Path) -> None:
    """Migrating is billed, and (as in CloudStack) an untagged stop from Migrating does not
    end the interval: only the next tagged event does. A tagged start while the interval is
    open reopens it at that moment, so nothing is billed twice."""
    a = {"account": "acme"}
    events = [
        ev("VirtualMachine", "vm-2", "Starting -OperationSucceeded-> Running", 2, usage=True,
           **a),
        ev("VirtualMachine", "vm-2", "Running -MigrationRequested-> Migrating", 3, **a),
        ev("VirtualMachine", "vm-2", "Migrating -AgentReportStopped-> Stopped", 4, **a),
        ev("VirtualMachine", "vm-2", "Starting -OperationSucceeded-> Running", 6, usage=True,
           **a),
        ev("VirtualMachine", "vm-2", "Stopped -DestroyRequested-> Destroyed", 9, usage=True,
           **a),
    ]
    report = meter_report(tmp_path, events)
    assert quantities(report) == {("running_vm", "acme", "vm-2"): (7.0, 7.0)}


def test_volume_gb_hours_follow_size_and_resizes(tmp_path: Path) -> None:
    report = meter_report(tmp_path, volume_events())
    assert quantities(report) == {("volume", "acme", "vol-1"): (20.0, 3000.0)}
    assert report.records[0].size == 200
    # Clipped to [0, 6): 5 hours at 100 GB.
    assert quantities(meter_report(tmp_path, [], start=0, end=6)) == {
        ("volume", "acme", "vol-1"): (5.0, 500.0)}


def test_volume_recovered_and_uploaded(tmp_path: Path) -> None:
    a = {"account": "acme"}
    events = [
        # A 50 GB upload is billed from the (tagged) copy into Ready at 4 h.
        ev("Volume", "vol-2", "NotUploaded -UploadRequested-> UploadInProgress", 1,
           size_gb=50, **a),
        ev("Volume", "vol-2", "UploadInProgress -OperationSucceeded-> Uploaded", 2, **a),
        ev("Volume", "vol-2", "Uploaded -CopyRequested-> Copying", 3, **a),
        ev("Volume", "vol-2", "Copying -OperationSucceeded-> Ready", 4, usage=True, **a),
        # Destroyed at 6 h, recovered at 8 h, expunged from 12 h: 2 + 4 hours.
        ev("Volume", "vol-2", "Ready -DestroyRequested-> Destroy", 6, **a),
        ev("Volume", "vol-2", "Destroy -RecoverRequested-> Ready", 8, **a),
        ev("Volume", "vol-2", "Ready -DestroyRequested-> Destroy", 12, **a),
        ev("Volume", "vol-2", "Destroy -ExpungingRequested-> Expunging", 13, **a),
        ev("Volume", "vol-2", "Expunging -OperationSucceeded-> Expunged", 14, **a),
    ]
    assert quantities(meter_report(tmp_path, events)) == {
        ("volume", "acme", "vol-2"): (6.0, 300.0)}


def test_ip_hours_split_per_account(tmp_path: Path) -> None:
    report = meter_report(tmp_path, ip_events())
    assert quantities(report) == {("ip_address", "acme", "ip-1"): (4.5, 4.5),
                                  ("ip_address", "globex", "ip-1"): (2.0, 2.0)}
    accounts = {name: (row, count) for name, row, count in report.accounts()}
    assert accounts["acme"] == ({"running_vm": 0.0, "volume": 0.0, "ip_address": 4.5}, 1)
    assert report.for_account("globex").total("ip_address") == pytest.approx(2.0)


def test_all_kinds_together_per_account(tmp_path: Path) -> None:
    events = vm_events() + volume_events() + ip_events() + vm_events("globex", "vm-9")[1:4]
    report = meter_report(tmp_path, events)
    assert [(name, {k: round(v, 6) for k, v in row.items()}, count)
            for name, row, count in report.accounts()] == [
        ("acme", {"running_vm": 7.5, "volume": 3000.0, "ip_address": 4.5}, 3),
        ("globex", {"running_vm": 5.0, "volume": 0.0, "ip_address": 2.0}, 2),
    ]
    only = meter_report(tmp_path, [], account="globex")
    assert {r.account for r in only.records} == {"globex"}


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_and_duplicate_delivery_change_nothing(tmp_path: Path, seed: int) -> None:
    events = vm_events() + volume_events() + ip_events()
    (tmp_path / "ordered").mkdir()
    expected = quantities(meter_report(tmp_path / "ordered", events))
    rng = random.Random(seed)
    messy = events + rng.sample(events, len(events) // 2)  # half delivered twice
    rng.shuffle(messy)
    db = tmp_path / "messy.db"
    meter = UsageMeter(db, batch=4)
    for event in messy:
        meter.record(event)
    meter.close()
    # Every event delivered twice is stored once (the skipped ones were never stored).
    billable = [e for e in events if e.machine != "VirtualMachine" or e.tags
                if e.machine != "IpAddress" or e.tags]
    assert meter.stats()["recorded"] - meter.stats()["duplicates"] == len(billable)
    assert quantities(load_report(db, start=at(0), end=at(24))) == expected
    # A second delivery in a later session is ignored too.
    with UsageMeter(db) as again:
        for event in events:
            again.record(event)
    assert again.stats()["duplicates"] == again.stats()["recorded"]
    assert quantities(load_report(db, start=at(0), end=at(24))) == expected


def test_duplicates_through_the_threaded_bus(tmp_path: Path) -> None:
    meter = UsageMeter(tmp_path / "bus.db")
    bus = EventBus(mode="threads", workers=2)
    bus.subscribe(meter.record, StateChanged)
    events = vm_events()
    for event in events + events[::-1] + events:
        bus.post(event)
    assert bus.close() == 0
    meter.close()
    assert meter.stats() == {"recorded": 12, "skipped": 9, "duplicates": 8}
    report = load_report(tmp_path / "bus.db", start=at(0), end=at(24))
    assert quantities(report) == {("running_vm", "acme", "vm-1"): (7.5, 7.5)}


def test_machines_and_events_no_rule_needs_are_skipped(tmp_path: Path) -> None:
    meter = UsageMeter(tmp_path / "skip.db")
    meter.record(ev("Network", "net-1", "Allocated -ImplementNetwork-> Implementing", 0))
    meter.record(ev("VirtualMachine", "vm-1", "Running -StopRequested-> Stopping", 0))
    meter.record(ev("Volume", "vol-1", "Allocated -CreateRequested-> Creating", 0))
    meter.close()
    assert meter.stats() == {"recorded": 1, "skipped": 2, "duplicates": 0}
    with pytest.raises(RuntimeError, match="closed"):
        meter.record(ev("Volume", "vol-1", "Creating -OperationSucceeded-> Ready", 1))


def test_intervals_is_a_pure_function_of_ordered_points() -> None:
    points = [Point(0, "a", "Ready", False, "acme", 10.0),
              Point(5, "b", "Ready", True, None, 20.0),  # restarted: new size from here
              Point(9, "c", "Destroy", False, None, None),
              Point(12, "d", "Ready", False, "other", None)]
    found = intervals(points, RULE["volume"])
    assert [(i.start_us, i.end_us, i.account, i.size) for i in found] == [
        (0, 5, "acme", 10.0), (5, 9, "acme", 20.0), (12, None, "other", 20.0)]
    # Untagged points do not count for a tagged-only rule; a stop with nothing open is a no-op.
    vm = [Point(0, "a", "Running", False), Point(1, "b", "Stopped", True),
          Point(2, "c", "Running", True), Point(3, "d", "Stopped", False)]
    assert [(i.start_us, i.end_us) for i in intervals(vm, RULE["running_vm"])] == [(2, None)]


def test_account_falls_back_to_the_first_one_seen() -> None:
    points = [Point(0, "a", "Running", True), Point(4, "b", "Stopped", True, "late")]
    assert [i.account for i in intervals(points, RULE["running_vm"])] == ["late"]


def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meter_report(tmp_path, vm_events() + volume_events() + ip_events())
    db = str(tmp_path / "usage.db")
    assert main(["usage", "report", "--db", db, "--from", "2025-03-01T00:00:00Z",
                 "--to", "2025-03-02T00:00:00"]) == 0
    out = capsys.readouterr().out
    assert "usage from 2025-03-01T00:00:00Z to 2025-03-02T00:00:00Z (24.0 hours)" in out
    assert out.splitlines()[3].split() == ["acme", "7.50", "3,000.00", "4.50", "3"]
    assert ["vol-1", "acme", "20.00", "200", "3,000.00"] in [line.split() for line in
                                                             out.splitlines()]
    assert main(["usage", "report", "--db", db, "--account", "globex", "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert "acme" not in out and "globex" in out
    assert main(["usage", "report", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no usage database" in capsys.readouterr().err
    assert main(["usage", "report", "--db", db, "--from", "soon"]) == 2
    assert main(["usage", "report", "--db", db, "--from", "2025-03-02", "--to",
                 "2025-03-01"]) == 2


def test_load_command_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fsmc.contrib.audit import AuditTrail

    trail = tmp_path / "audit.jsonl"
    with AuditTrail(trail) as audit:
        for event in vm_events() + ip_events():
            audit.write(event)
    db = str(tmp_path / "loaded.db")
    assert main(["usage", "load", "--db", db, str(trail)]) == 0
    assert "8 usage events read, 8 new, 0 already there; 6 events not billable" in \
        capsys.readouterr().out
    assert main(["usage", "load", "--db", db, str(trail)]) == 0
    assert "0 new, 8 already there" in capsys.readouterr().out
    assert quantities(load_report(db, start=at(0), end=at(24))) == {
        ("running_vm", "acme", "vm-1"): (7.5, 7.5), ("ip_address", "acme", "ip-1"): (4.5, 4.5),
        ("ip_address", "globex", "ip-1"): (2.0, 2.0)}
