"""The store's schema version: a store written by the release before versions (the committed
`tests/cases/store/store_v1.db`) is migrated when opened, or refused with a message saying
how; a store written by a newer fsmc is refused; concurrent openers migrate it once. And a row
in a state its class does not declare is an error naming the command that fixes it."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import pytest
from fsmc.runtime.bus import EventBus
from fsmc.runtime.store import (
    STORE_SCHEMA,
    SqlStore,
    StoreSchemaError,
    UnknownStoredState,
)
from fsmc.runtime.store_schema import stored_version
from fsmc.runtime.store_sql import MACHINES, SCHEMA
from sqlalchemy import create_engine, insert, inspect, select, update

from generated.virtual_machine import VirtualMachine
from tests import pg
from tests.test_store import outbox, rows

V1 = Path(__file__).parent / "cases" / "store" / "store_v1.db"
V1_ROWS = [("VirtualMachine", "vm-1", "Running", 2), ("VirtualMachine", "vm-2", "Stopped", 0),
           ("VirtualMachine", "vm-3", "Stopped", 4)]


@pytest.fixture
def v1_url(tmp_path: Path) -> str:
    copy = tmp_path / "store_v1.db"
    shutil.copyfile(V1, copy)
    return f"sqlite:///{copy}"


def versions(url: str) -> list[tuple[str, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                select(SCHEMA.c.component, SCHEMA.c.version))]
    finally:
        engine.dispose()


def version_of(url: str) -> int | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return stored_version(conn)
    finally:
        engine.dispose()


def test_the_committed_v1_store_is_what_the_old_release_wrote(v1_url: str) -> None:
    assert version_of(v1_url) == 1 and STORE_SCHEMA == 2


def test_opening_a_v1_store_migrates_it_and_keeps_every_row(v1_url: str) -> None:
    with SqlStore(v1_url) as store:
        assert rows(store) == V1_ROWS
        events = outbox(store)
        assert [(e["resource_id"], e["version"], e["delivered"]) for e in events] == [
            ("vm-1", 1, True), ("vm-1", 2, True), ("vm-3", 1, False), ("vm-3", 2, False),
            ("vm-3", 3, False), ("vm-3", 4, False)]
        assert store.pending() == 4
        seen: list[str] = []
        bus = EventBus()
        bus.subscribe(lambda e: seen.append(e.topic), topic="#")
        assert store.relay(bus) == 4
        bus.close()
        assert seen == ["VirtualMachine.Stopped.StartRequested.Starting",
                        "VirtualMachine.Starting.OperationFailed.Stopped"] * 2
        vm = store.load(VirtualMachine, "vm-1")
        vm.stop_requested()
        assert SqlStore.version(vm) == 3
    assert versions(v1_url) == [("store", STORE_SCHEMA)]
    with SqlStore(v1_url, create_tables=False) as again:  # now current: opens without change
        assert again.load(VirtualMachine, "vm-1").state.name == "Stopping"


def test_a_v1_store_is_refused_without_create_tables_and_the_message_says_how(
        v1_url: str) -> None:
    with pytest.raises(StoreSchemaError) as caught:
        SqlStore(v1_url, create_tables=False)
    message = str(caught.value)
    assert "older fsmc (store schema 1; this fsmc uses 2)" in message
    assert "SqlStore(url)" in message and "fsmc migrate --db URL SPEC_DIR --apply" in message
    assert version_of(v1_url) == 1  # nothing changed


@pytest.mark.parametrize("create", [True, False])
def test_a_store_of_a_newer_fsmc_is_refused(tmp_path: Path, create: bool) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    SqlStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(update(SCHEMA).values(version=STORE_SCHEMA + 1))
    engine.dispose()
    with pytest.raises(StoreSchemaError, match=r"newer fsmc \(store schema 3; this fsmc knows "
                                                r"up to 2\): upgrade fsmc"):
        SqlStore(url, create_tables=create)
    assert versions(url) == [("store", STORE_SCHEMA + 1)]


def _open(url: str) -> int:
    with SqlStore(url) as store:
        return len(rows(store))


def test_concurrent_openers_migrate_once(tmp_path: Path) -> None:
    copy = tmp_path / "store_v1.db"
    shutil.copyfile(V1, copy)
    url = f"sqlite:///{copy}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_open, [url] * 6) == [3] * 6
    assert versions(url) == [("store", STORE_SCHEMA)]


def test_postgresql_v1_store_is_migrated_by_concurrent_openers(tmp_path: Path) -> None:
    url = pg.database_url("postgresql", tmp_path)
    with SqlStore(url) as store:  # the v1 layout: the same tables, no fsmc_schema
        store.create(VirtualMachine, "vm-1").start_requested()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE fsmc_schema")
    assert version_of(url) == 1
    with pytest.raises(StoreSchemaError, match="older fsmc"):
        SqlStore(url, create_tables=False)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_open, [url] * 6) == [1] * 6
    assert versions(url) == [("store", STORE_SCHEMA)]


def test_a_fresh_database_is_stamped_and_an_empty_one_needs_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    SqlStore(url, create_tables=False).close()  # no fsmc tables: nothing to check or create
    assert version_of(url) is None
    SqlStore(url).close()
    assert versions(url) == [("store", STORE_SCHEMA)]


# -- a row in a state the class does not know -------------------------------------------------

def test_loading_a_row_in_an_unknown_state_names_machine_state_resource_and_command(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with SqlStore(url) as store:
        vm = store.create(VirtualMachine, "vm-7")
        with store.engine.begin() as conn:
            conn.execute(update(MACHINES).values(state="Teleporting"))
            conn.execute(insert(MACHINES).values(
                machine="VirtualMachine", resource_id="vm-8", state="Hibernated", version=3,
                updated_at=conn.scalar(select(MACHINES.c.updated_at))))
        with pytest.raises(UnknownStoredState) as caught:
            store.load(VirtualMachine, "vm-7")
        error = caught.value
        assert (error.machine, error.state, error.resource_id) == (
            "VirtualMachine", "Teleporting", "vm-7")
        message = str(error)
        assert message.startswith(
            "VirtualMachine vm-7 is stored in state 'Teleporting', which VirtualMachine does "
            "not declare (its states: Starting, Running, ")
        assert f"`fsmc migrate --db '{url}' SPEC_DIR`" in message
        assert "`moved Teleporting -> <State>`" in message
        with pytest.raises(UnknownStoredState, match="vm-8 is stored in state 'Hibernated'"):
            store.load(VirtualMachine, "vm-8")
        with pytest.raises(UnknownStoredState, match="vm-7"):
            store.refresh(vm)
        assert vm.state.name == "Stopped"  # a failed refresh changes nothing
        assert isinstance(error, ValueError)


def test_a_migration_that_fails_part_way_changes_nothing(v1_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction: the DDL of the steps included (SQLite runs DDL outside transactions
    unless one is open)."""
    from fsmc.runtime import store_schema

    step = store_schema.STEPS[1]

    def fails_after_its_work(conn: Any) -> None:
        step(conn)
        raise RuntimeError("the power went out")

    monkeypatch.setitem(store_schema.STEPS, 1, fails_after_its_work)
    with pytest.raises(RuntimeError, match="power"):
        SqlStore(v1_url)
    engine = create_engine(v1_url)
    with engine.connect() as conn:
        assert stored_version(conn) == 1
        assert "fsmc_machines_state" not in {
            i["name"] for i in inspect(conn).get_indexes("fsmc_machines")}
    engine.dispose()
    monkeypatch.setitem(store_schema.STEPS, 1, step)
    with SqlStore(v1_url) as store:
        assert rows(store) == V1_ROWS
    assert version_of(v1_url) == STORE_SCHEMA
