"""The demo end to end (small sizes, no timed assertions): the command, its files, that every
event posted reached every subscriber, determinism per seed, and the usage it bills checked
against an independent count from the audit trail."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Generator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.compiler.commands import demo as demo_command
from fsmc.contrib.audit import read_trail
from fsmc.contrib.demo import ORIGIN, DemoConfig, DemoResult, run_demo
from fsmc.contrib.progress import ProgressBar
from fsmc.contrib.simulation import SimulatedTime, Simulation
from fsmc.runtime import StateChanged

from generated.virtual_machine import VirtualMachine
from tests.conftest import ROOT

SMALL = {"accounts": 3, "vms": 40, "days": 4.0, "seconds": 0.0, "seed": 3}


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, DemoResult]:
    """The same seed twice."""
    base = tmp_path_factory.mktemp("demo")
    return (run_demo(DemoConfig(**SMALL, out=base / "one")),  # type: ignore[arg-type]
            run_demo(DemoConfig(**SMALL, out=base / "two")))  # type: ignore[arg-type]


def test_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    code = main(["demo", "--vms", "50", "--accounts", "4", "--days", "5", "--seconds", "2",
                 "--seed", "11", "--out", str(out), "--site", str(tmp_path / "site")])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stdout + stderr
    assert stdout.startswith("fsmc demo: 4 accounts, 50 VMs, 5 simulated days, seed 11\n")
    assert "every event reached every subscriber" in stdout
    assert "invalid transitions attempted on purpose, all rejected" in stdout
    assert "UNEXPECTED" not in stdout
    assert "account  running VM hours  volume GB-hours  public IP hours  resources" in stdout
    assert "VirtualMachine resources by running VM hours (top 10)" in stdout
    assert "100%  day" in stderr  # the progress, as plain lines: not a terminal
    posted = int(stdout.split("bus          ")[1].split(" events posted")[0].replace(",", ""))
    trail = list(read_trail(out / "audit.jsonl"))
    assert len(trail) == posted > 0
    assert (out / "usage.db").is_file()
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "virtual_machine.VirtualMachine.html").is_file()
    assert f"{tmp_path / 'site'}/  the review site of specs" in stdout
    # The usage database answers `fsmc usage report` too.
    assert main(["usage", "report", "--db", str(out / "usage.db"), "--top", "3"]) == 0
    assert "top 3" in capsys.readouterr().out


def test_every_event_posted_reached_every_subscriber(
        small_runs: tuple[DemoResult, DemoResult]) -> None:
    result = small_runs[0]
    stats = result.bus_stats
    assert result.transitions > 1000
    assert stats["posted"] == result.transitions == result.posted_by_machines
    assert stats["delivered"] == 3 * stats["posted"]
    assert (stats["failed"], stats["dead"], stats["dropped"], result.undelivered) == (0, 0, 0, 0)
    assert result.counts.total == result.audit_lines == stats["posted"]
    assert result.unexpected == []
    assert sum(result.rejected.values()) > 0
    assert result.all_delivered and result.ok
    assert result.meter_stats["recorded"] + result.meter_stats["skipped"] == stats["posted"]
    assert result.meter_stats["duplicates"] == 0
    assert set(result.counts.by_machine) == {
        "VirtualMachine", "Volume", "Nic", "IpAddress", "Snapshot", "Network",
        "VirtualMachineTemplate"}


def test_a_seed_gives_the_same_run(small_runs: tuple[DemoResult, DemoResult]) -> None:
    one, two = small_runs
    assert one.transitions == two.transitions
    assert one.rejected == two.rejected
    assert one.counts == two.counts
    assert one.report.records == two.report.records

    def without_ids(path: Path) -> list[dict[str, object]]:
        return [{k: v for k, v in e.to_dict().items() if k != "id"} for e in read_trail(path)]

    assert without_ids(one.files["audit"]) == without_ids(two.files["audit"])


def _hours_in(trail: list[StateChanged], machine: str, billed: set[str],
              end: datetime) -> dict[str, float]:
    """Per resource, the hours spent in `billed` states, from every event (tags ignored)."""
    totals: dict[str, float] = defaultdict(float)
    since: dict[str, datetime] = {}
    for event in trail:
        if event.machine != machine:
            continue
        rid = str(event.resource_id)
        if rid in since and event.new_state not in billed:
            totals[rid] += (event.time - since.pop(rid)) / timedelta(hours=1)
        elif rid not in since and event.new_state in billed:
            since[rid] = event.time
    for rid, start in since.items():
        totals[rid] += (end - start) / timedelta(hours=1)
    return {rid: hours for rid, hours in totals.items() if hours > 0}


def test_usage_matches_an_independent_count(small_runs: tuple[DemoResult, DemoResult]) -> None:
    """In the simulated cloud no VM leaves Migrating for Stopped (the one place where
    CloudStack's tags and the states disagree), so the tag-driven meter must bill exactly the
    time VMs spent Running, Stopping or Migrating, IPs Allocated, volumes between Ready and
    their destruction."""
    result = small_runs[0]
    end = ORIGIN + timedelta(days=SMALL["days"])
    trail = list(read_trail(result.files["audit"]))
    assert all(e.time < end for e in trail)
    billed = {
        "running_vm": _hours_in(trail, "VirtualMachine", {"Running", "Stopping", "Migrating"},
                                end),
        "ip_address": _hours_in(trail, "IpAddress", {"Allocated"}, end),
        "volume": _hours_in(trail, "Volume", {"Ready", "Snapshotting", "Resizing",
                                              "Attaching"}, end),
    }
    for usage_type, expected in billed.items():
        found: dict[str, float] = defaultdict(float)
        for record in result.report.records:
            if record.usage_type == usage_type:
                found[record.resource_id] += record.hours
        assert found.keys() == expected.keys(), usage_type
        for rid, hours in expected.items():
            assert found[rid] == pytest.approx(hours, abs=1e-6), (usage_type, rid)
    # GB-hours = hours x size for volumes never resized.
    resized = {str(e.resource_id) for e in trail if e.event == "ResizeRequested"}
    sizes = {str(e.resource_id): e.payload["size_gb"] for e in trail if "size_gb" in e.payload}
    for record in result.report.records:
        if record.usage_type == "volume" and record.resource_id not in resized:
            assert record.quantity == pytest.approx(record.hours * sizes[record.resource_id])


def test_missing_generated_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def not_there(name: str) -> object:
        raise ModuleNotFoundError(f"No module named {name!r}", name="generated")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_command.importlib, "import_module", not_there)
    assert main(["demo", "--vms", "5"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("fsmc: error: no generated/virtual_machine.py here: run `fsmc build "
                   "specs/` first, from a checkout of fsmc\n")


def test_demo_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (["--vms", "0"], ["--days", "-1"], ["--seconds", "-2"], ["--accounts", "x"]):
        assert main(["demo", *bad]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    monkeypatch.chdir(ROOT)
    (tmp_path / "file").write_text("")
    assert main(["demo", "--vms", "1", "--out", str(tmp_path / "file" / "out")]) == 2
    assert capsys.readouterr().err.startswith("fsmc: error: [Errno 20] Not a directory")


def test_progress_bar_on_a_terminal_and_off() -> None:
    screen = io.StringIO()
    bar = ProgressBar(screen, width=10, tty=True, columns=80)
    bar.update(0.5, "half")
    bar.finish("done")
    assert screen.getvalue() == ("\r[#####-----]  50.0%  half"
                                 "\r[##########] 100.0%  done\n")
    log = io.StringIO()
    bar = ProgressBar(log, tty=False)
    for step in range(101):
        bar.update(step / 100, f"step {step}")
    bar.finish("done")
    assert ProgressBar(screen, width=10, tty=True, columns=30).render(0.5, "x" * 50) == \
        "[#####-----]  50.0%  xxxxxxxx"
    assert log.getvalue().splitlines() == [
        *(f"{p:3d}%  step {p}" for p in range(0, 100, 10)), "100%  step 100", "100%  done"]


def test_simulated_time_restamps_and_misfires_are_counted() -> None:
    posted: list[StateChanged] = []

    class Keep:
        def post(self, event: object) -> None:
            posted.append(event)  # type: ignore[arg-type]

    clock = SimulatedTime(Keep(), ORIGIN)
    sim = Simulation(clock, 3600.0, seed=0)
    vm = VirtualMachine.create("vm-1", bus=clock)

    def life() -> Generator[float, None, None]:
        yield 90.0
        assert sim.fire(vm, "StartRequested", account="acme")
        sim.misfire(vm)  # nothing a Starting VM allows
        assert not sim.fire(vm, "StartRequested")  # a lifecycle bug is counted, not raised
        yield 7200.0  # past the end of the period: the process stops here
        sim.fire(vm, "OperationSucceeded")

    sim.spawn(life())
    sim.run()
    assert [(e.event, e.time) for e in posted] == [
        ("StartRequested", ORIGIN + timedelta(seconds=90))]
    assert vm.state is VirtualMachine.State.Starting
    assert sum(sim.rejected.values()) == 1
    ((machine, state, _),) = sim.rejected
    assert (machine, state) == ("VirtualMachine", "Starting")
    assert len(sim.unexpected) == 1 and sim.transitions == 1

