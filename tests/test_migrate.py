"""`fsmc migrate`: counting a store against the specs, refusing while rows are stranded, moving
rows with a CAS, version + 1 and an outbox event each, on SQLite and PostgreSQL, with an
application on the old spec firing transitions while `--apply` runs."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fsmc.compiler.cli import main
from fsmc.runtime.bus import EventBus
from fsmc.runtime.store import SqlStore, UnknownStoredState
from fsmc.runtime.store_migrate import MIGRATED, apply_moves, census, open_engine
from fsmc.runtime.store_sql import MACHINES, SCHEMA
from sqlalchemy import insert, select

from tests import pg
from tests import store_workers as workers
from tests.generation import compile_spec
from tests.test_store import outbox, rows

OLD = """\
machine Door {
    initial Closed
    states Open, Ajar
    Closed -> Open : Push
    Open -> Closed : Pull
    Open -> Ajar : Wind
    Ajar -> Closed : Pull
    Ajar -> Open : Push
}
"""

NEW = """\
machine Door {
    initial Closed
    state Open
    moved Ajar -> Closed
    Closed -> Open : Push
    Open -> Closed : Pull
}
"""

STRANDING = NEW.replace("    moved Ajar -> Closed\n", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg.database_url(request.param, tmp_path)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "door.fsm").write_text(NEW)
    return folder


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with SqlStore(url) as opened:
        yield opened


def fill(store: SqlStore, states: dict[str, int], machine: str = "Door",
         version: int = 5) -> None:
    """Rows straight into the table: `states[state]` rows each, ids `<state>-<n>` (zero-padded,
    so id order is number order), all at `version`."""
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        for state, count in states.items():
            values = [{"machine": machine, "resource_id": f"{state.lower()}-{n:07d}",
                       "state": state, "version": version, "updated_at": now}
                      for n in range(count)]
            for start in range(0, len(values), 5000):
                conn.execute(insert(MACHINES), values[start:start + 5000])


def migrate(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    code = main(["migrate", *arguments])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_report_counts_and_shows_stranded_rows_and_undeclared_machines(
        store: SqlStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(store, {"Closed": 3, "Open": 2, "Ajar": 4, "Wedged": 5})
    fill(store, {"Shut": 2}, machine="Gate")
    (tmp_path / "door.fsm").write_text(NEW)
    before = rows(store)
    code, out = migrate(capsys, "--db", url, str(tmp_path / "door.fsm"), "--apply")
    assert code == 1
    assert out.splitlines() == [
        f"store {url} (store schema 2)",
        f"machine Door ({tmp_path / 'door.fsm'}): 14 rows",
        "  Closed  3",
        "  Open    2",
        "  Ajar    4  moved -> Closed",
        "  Wedged  5  STRANDED: neither declared nor moved (e.g. wedged-0000000, wedged-0000001, "
        "wedged-0000002)",
        "rows of machines no spec declares:",
        "  Gate: 2 rows (e.g. shut-0000000, shut-0000001)",
        "blocked: 5 rows stranded in 1 state and 2 rows of 1 machine no spec declares; nothing "
        "changed",
        "  declare each stranded state again, or add `moved State -> NewState` to its machine",
        "  give the spec of every machine stored in this database",
    ]
    assert rows(store) == before and outbox(store) == []


def test_dry_run_says_what_apply_then_does(store: SqlStore, url: str, specs: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fill(store, {"Closed": 3, "Open": 2, "Ajar": 40})
    code, dry = migrate(capsys, "--db", url, str(specs), "--dry-run")
    assert code == 0
    assert dry.endswith("moves:\n  Door: Ajar -> Closed: 40 rows\n"
                        "dry run: nothing changed; --apply moves 40 rows in one transaction\n")
    assert outbox(store) == []
    code, applied = migrate(capsys, "--db", url, str(specs), "--apply", "--batch", "7")
    assert code == 0
    assert applied.split("moves:\n")[0] == dry.split("moves:\n")[0]
    plan = dry.split("moves:\n")[1].splitlines()[:-1]
    assert applied.split("moves:\n")[1].splitlines()[:-2] == plan
    assert applied.endswith("applied in one transaction: 40 rows moved (each version + 1 and "
                            "one `Migrated` outbox event)\nthe store matches the specs\n")
    stored = {key: (state, version) for _, key, state, version in rows(store)}
    assert [stored[f"ajar-{n:07d}"] for n in range(40)] == [("Closed", 6)] * 40
    assert stored["open-0000000"] == ("Open", 5)
    events = outbox(store)
    assert sorted(e["resource_id"] for e in events) == [f"ajar-{n:07d}" for n in range(40)]
    for event in events:
        body = event["event"]
        assert event["version"] == 6 and not event["delivered"]
        assert (body["event"], body["old_state"], body["new_state"], body["tags"],
                body["payload"], body["topic"]) == (
            MIGRATED, "Ajar", "Closed", ["migration"],
            {"moved": "Ajar -> Closed", "by": "fsmc migrate"}, "Door.Ajar.Migrated.Closed")
    heard: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda e: heard.append(e.resource_id), topic="Door.*.Migrated.#")
    assert store.relay(bus) == 40
    bus.close()
    assert sorted(heard) == [f"ajar-{n:07d}" for n in range(40)]
    door = compile_spec(NEW, "door").Door
    assert store.load(door, "ajar-0000039").state.name == "Closed"
    code, again = migrate(capsys, "--db", url, str(specs), "--apply")
    assert code == 0 and "applied in one transaction: 0 rows moved" in again


def test_a_stranded_row_blocks_and_loading_it_names_the_command(
        store: SqlStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(store, {"Closed": 1, "Ajar": 1})
    (tmp_path / "door.fsm").write_text(STRANDING)
    code, out = migrate(capsys, "--db", url, str(tmp_path))
    assert code == 1 and "Ajar    1  STRANDED" in out
    with pytest.raises(UnknownStoredState, match="fsmc migrate --db"):
        store.load(compile_spec(STRANDING, "door").Door, "ajar-0000000")


def test_apply_migrates_an_old_store_schema_in_the_same_transaction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "v1.db"
    shutil.copyfile(Path(__file__).parent / "cases" / "store" / "store_v1.db", copy)
    spec = tmp_path / "vm.fsm"
    text = (Path(__file__).parent.parent / "specs" / "virtual_machine.fsm").read_text()
    spec.write_text(text)
    code, out = migrate(capsys, "--db", f"sqlite:///{copy}", str(spec))
    assert code == 0 and "store schema 1, older than this fsmc's 2: --apply migrates it" in out
    assert out.endswith("dry run: nothing changed; --apply moves 0 rows in one transaction and "
                        "migrates the store schema\n")
    code, out = migrate(capsys, "--db", f"sqlite:///{copy}", str(spec), "--apply")
    assert code == 0 and "; store schema migrated to 2\n" in out
    with SqlStore(f"sqlite:///{copy}", create_tables=False) as opened, \
            opened.engine.connect() as conn:
        assert list(conn.execute(select(SCHEMA.c.version))) == [(2,)]


def test_usage_errors(tmp_path: Path, specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = migrate(capsys, "--db", f"sqlite:///{tmp_path}/none.db", str(specs))
    assert code == 2 and "no fsmc store here" in out
    code, out = migrate(capsys, "--db", "nosuchdb://x", str(specs))
    assert code == 2 and "--db nosuchdb://x" in out
    (tmp_path / "bad.fsm").write_text("machine M {\n    initial A\n    moved A -> A\n}\n")
    code, out = migrate(capsys, "--db", f"sqlite:///{tmp_path}/none.db",
                        str(tmp_path / "bad.fsm"))
    assert code == 2 and "error[E501]" in out and "fix the errors in the specs first" in out
    code, out = migrate(capsys, str(specs))
    assert code == 2 and "--db" in out
    code, out = migrate(capsys, "--db", "sqlite://", "--dry-run", "--apply", str(specs))
    assert code == 2


def test_apply_moves_batches_and_keeps_other_machines(store: SqlStore) -> None:
    fill(store, {"Ajar": 2500, "Closed": 10})
    fill(store, {"Ajar": 3}, machine="Window")
    results = apply_moves(store.engine, {"Door": {"Ajar": "Closed"}}, batch=1000)
    assert [(r.machine, r.moved, r.left) for r in results] == [("Door", 2500, 0)]
    with store.engine.connect() as conn:
        assert census(conn) == {"Door": {"Closed": 2510}, "Window": {"Ajar": 3}}


def test_an_application_on_the_old_spec_racing_apply(
        store: SqlStore, url: str, specs: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Four processes fire transitions (Ajar included) through stale machines while --apply
    moves every Ajar row: every row's history in the outbox is exactly versions 1..v, each
    transition leaving the state the previous one entered (nothing overwritten), versions
    count every transition, and the moves are exactly the Migrated events."""
    keys = [f"door-{n:05d}" for n in range(4000)]
    initial = {key: ("Closed", "Open", "Ajar", "Ajar")[n % 4] for n, key in enumerate(keys)}
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(insert(MACHINES), [
            {"machine": "Door", "resource_id": key, "state": state, "version": 0,
             "updated_at": now} for key, state in initial.items()])
    stop, writers = tmp_path / "stop", []
    context = multiprocessing.get_context("spawn")
    for seed in range(4):
        out = str(tmp_path / f"writer-{seed}.json")
        mine = keys[seed::4][:200]  # a few hot rows each: races are certain
        process = context.Process(target=workers.old_writer,
                                  args=(url, OLD, mine, seed, str(stop), out))
        process.start()
        writers.append((process, Path(out)))
    deadline = time.monotonic() + 60
    while not all(Path(str(p) + ".ready").exists() for _, p in writers):
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.05)
    time.sleep(0.3)
    code, out = migrate(capsys, "--db", url, str(specs), "--apply", "--batch", "100")
    time.sleep(0.3)
    stop.touch()
    for process, _ in writers:
        process.join(60)
        assert process.exitcode == 0
    assert code in (0, 1), out
    if code == 1:
        assert "entered moved states while --apply ran" in out
    wins: dict[str, int] = dict.fromkeys(keys, 0)
    losses = 0
    for _, path in writers:
        result: dict[str, Any] = json.loads(path.read_text())
        for key, count in result["wins"].items():
            wins[key] += count
        losses += result["losses"]
    assert sum(wins.values()) > 0 and losses > 0  # they raced
    stored = {key: (state, version) for _, key, state, version in rows(store)}
    history: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for event in outbox(store):
        history[event["resource_id"]].append(event)
    moves = 0
    for key in keys:
        events = history[key]
        state, version = stored[key]
        assert [e["version"] for e in events] == list(range(1, version + 1)), key
        current = initial[key]
        for event in events:
            body = event["event"]
            assert body["old_state"] == current, (key, body)
            current = body["new_state"]
            if body["event"] == MIGRATED:
                assert (body["old_state"], body["new_state"]) == ("Ajar", "Closed")
                moves += 1
        assert current == state
        migrated = sum(1 for e in events if e["event"]["event"] == MIGRATED)
        assert version == wins[key] + migrated, key
    assert moves >= 1600  # at least the rows in Ajar that no writer touched


def test_open_engine_of_sqlite_waits_for_locks(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_the_worked_example_of_docs_storage_runs_as_written(tmp_path: Path) -> None:
    """docs/storage.md, "A worked example": `fsm`/`py` blocks with `file=` are written, each
    `$ command` of a `console` block runs (in order, in one folder) and prints exactly the
    lines shown under it."""
    import os
    import re
    import subprocess
    import sys

    page = (Path(__file__).resolve().parents[1] / "docs" / "storage.md").read_text("utf-8")
    section = page.split("### A worked example\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)( file=\S+)?\n(.*?)```", section, flags=re.DOTALL)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path), "NO_COLOR": "1"}
    commands = 0
    for kind, file, body in blocks:
        if file:
            (tmp_path / file.removeprefix(" file=")).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / file.removeprefix(" file=")).write_text(body)
            continue
        assert kind == "console"
        for chunk in body.split("$ ")[1:]:
            command, _, expected = chunk.partition("\n")
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.stdout == expected, (command, done.stderr)
            commands += 1
    assert commands == 11
