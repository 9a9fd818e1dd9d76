"""`fsmc.runtime.store`: rows, compare-and-set transitions with an outbox row, lost races,
the application's own transaction, and a race of 8 processes. Every test runs on a SQLite
file and on a private PostgreSQL server (skipped when its binaries are missing)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsmc.runtime import ConcurrentUpdate, GuardRejected, InvalidTransition, StateChanged
from fsmc.runtime.store import (
    METADATA,
    ResourceExists,
    ResourceNotFound,
    SqlStore,
    VersionConflict,
)
from fsmc.runtime.store_sql import MACHINES, OUTBOX
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from generated.network import Network
from generated.virtual_machine import VirtualMachine
from tests import pg
from tests import store_workers as workers
from tests.conftest import DESIGN_EXAMPLE
from tests.generation import compile_spec

Example = compile_spec(DESIGN_EXAMPLE, "stored").VirtualMachine


class Guarded(Example):  # type: ignore[misc,valid-type]
    """The DESIGN example with its guard and action implemented."""

    __slots__ = ()
    released: list[str] = []

    def can_stop(self, **payload: Any) -> bool:
        return not payload.get("busy", False)

    def release_host(self, **payload: Any) -> None:
        if payload.get("fail"):
            raise OSError("host agent down")
        self.released.append(str(self.resource_id))


class Recorder:
    def __init__(self) -> None:
        self.events: list[StateChanged] = []

    def post(self, event: object) -> None:
        assert isinstance(event, StateChanged)
        self.events.append(event)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg.database_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with SqlStore(url) as opened:
        yield opened


def rows(store: SqlStore) -> list[tuple[str, str, str, int]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(MACHINES.c.machine, MACHINES.c.resource_id, MACHINES.c.state,
                   MACHINES.c.version).order_by(MACHINES.c.machine, MACHINES.c.resource_id))]


def outbox(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [{"machine": r.machine, "resource_id": r.resource_id, "version": r.version,
                 "event": json.loads(r.body), "delivered": r.delivered_at is not None}
                for r in conn.execute(select(OUTBOX).order_by(OUTBOX.c.id))]


# -- rows ---------------------------------------------------------------------------------------

def test_create_load_list_delete(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    assert isinstance(vm, VirtualMachine) and type(vm).__name__ == "VirtualMachine"
    assert (vm.state, store.version(vm), vm.resource_id) == (VirtualMachine.State.Stopped, 0,
                                                             "vm-1")
    store.create(VirtualMachine, 42)  # ids are stored as text
    store.create(Network, "net-1", state="Setup")  # an entry state
    assert rows(store) == [("Network", "net-1", "Setup", 0), ("VirtualMachine", "42", "Stopped", 0),
                           ("VirtualMachine", "vm-1", "Stopped", 0)]
    with pytest.raises(ResourceExists, match="VirtualMachine vm-1 is already stored"):
        store.create(VirtualMachine, "vm-1")
    with pytest.raises(ValueError, match="cannot start in Running"):
        store.create(VirtualMachine, "vm-2", state="Running")

    vm.start_requested()
    loaded = store.load(VirtualMachine, "vm-1")
    assert (loaded.state, store.version(loaded)) == (VirtualMachine.State.Starting, 1)
    assert store.list(VirtualMachine) == ["42", "vm-1"]
    assert store.list(VirtualMachine, "Starting") == ["vm-1"]
    assert store.list(VirtualMachine, [VirtualMachine.State.Stopped, "Running"]) == ["42"]
    assert store.list(Network) == ["net-1"]
    assert store.delete(VirtualMachine, 42) is True
    assert store.delete(VirtualMachine, 42) is False
    with pytest.raises(ResourceNotFound, match="VirtualMachine 42 is not stored"):
        store.load(VirtualMachine, 42)
    assert isinstance(ResourceNotFound("x"), LookupError)


def test_one_bound_class_per_store_and_class(store: SqlStore, url: str) -> None:
    a, b = store.create(VirtualMachine, "a"), store.create(VirtualMachine, "b")
    assert type(a) is type(b) and type(a) is not VirtualMachine
    with SqlStore(url) as other:
        assert type(other.load(VirtualMachine, "a")) is not type(a)
    with pytest.raises(TypeError, match="not bound to a store"):
        store.version(VirtualMachine("free"))


def test_a_bound_machine_is_what_docs_storage_says(store: SqlStore) -> None:
    """docs/storage.md warns that `type(vm) is VirtualMachine` is False and says what to
    compare instead; this holds it to that."""
    from fsmc.runtime.store_bound import Bound

    vm = store.create(VirtualMachine, "typed")
    assert type(vm) is not VirtualMachine and isinstance(vm, VirtualMachine)
    assert type(vm).__mro__[:3] == (type(vm), Bound, VirtualMachine)
    assert type(vm).__name__ == VirtualMachine.__name__ and type(vm).SPEC is VirtualMachine.SPEC
    assert repr(vm) == "<VirtualMachine 'typed' in Stopped>"


# -- transitions --------------------------------------------------------------------------------

def test_each_transition_is_a_row_update_plus_an_outbox_row(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    seen: list[tuple[str, list[tuple[str, str, str, int]]]] = []

    class Post:
        def post_transition(self, event: StateChanged) -> None:
            seen.append((vm.state.name, rows(store)))  # committed before post-listeners

    vm.add_listener(Post())
    vm.start_requested(host="h1")
    vm.agent_report_running()
    assert seen[0] == ("Starting", [("VirtualMachine", "vm-1", "Starting", 1)])
    assert rows(store) == [("VirtualMachine", "vm-1", "Running", 2)]
    box = outbox(store)
    assert [(r["resource_id"], r["version"], r["delivered"]) for r in box] == [
        ("vm-1", 1, False), ("vm-1", 2, False)]
    first = StateChanged.from_dict(box[0]["event"])
    assert (first.topic, dict(first.payload), first.tags) == (
        "VirtualMachine.Stopped.StartRequested.Starting", {"host": "h1"}, ())
    assert box[1]["event"]["tags"] == ["usage"]
    assert store.pending() == 2


def test_the_generated_fast_path_never_skips_the_database(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")  # no bus, no listener: the fast path's case
    for _ in range(3):
        vm.stop_requested()  # Stopped -> Stopped self-loop, plain
    assert store.version(vm) == 3 and len(outbox(store)) == 3


def test_refused_transitions_write_nothing(store: SqlStore) -> None:
    Guarded.released = []
    vm = store.create(Guarded, "vm-1")
    vm.start_requested()
    vm.operation_succeeded()
    before = (rows(store), len(outbox(store)))
    with pytest.raises(GuardRejected):
        vm.stop_requested(busy=True)
    with pytest.raises(InvalidTransition):
        vm.expunge_requested()

    class Veto:
        def pre_transition(self, event: StateChanged) -> None:
            raise PermissionError("no")

    veto = Veto()
    vm.add_listener(veto)
    with pytest.raises(PermissionError):
        vm.stop_requested()
    vm.remove_listener(veto)
    vm.stop_requested()
    with pytest.raises(OSError, match="host agent down"):
        vm.operation_succeeded(fail=True)  # the action fails: nothing written
    assert (vm.state.name, store.version(vm)) == ("Stopping", 3)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        vm.operation_succeeded(when=object())
    assert (vm.state.name, store.version(vm)) == ("Stopping", 3)
    assert rows(store) == [("VirtualMachine", "vm-1", "Stopping", 3)]
    assert len(outbox(store)) == before[1] + 1
    # The action runs before the write: a write that fails does not undo what it did.
    assert Guarded.released == ["vm-1"]
    vm.operation_succeeded()
    assert Guarded.released == ["vm-1", "vm-1"] and store.version(vm) == 4


def test_a_lost_race_changes_nothing_and_a_retry_after_refresh_works(store: SqlStore) -> None:
    mine = store.create(VirtualMachine, "vm-1")
    theirs = store.load(VirtualMachine, "vm-1")
    theirs.start_requested()
    with pytest.raises(ConcurrentUpdate) as caught:
        mine.destroy_requested()
    error = caught.value
    assert isinstance(error, VersionConflict)
    assert (error.machine, error.resource_id, error.state, error.event) == (
        "VirtualMachine", "vm-1", "Stopped", "DestroyRequested")
    assert (error.expected_version, error.found_state, error.found_version) == (0, "Starting", 1)
    assert "the database has it in Starting at version 1" in str(error)
    assert (mine.state.name, store.version(mine)) == ("Stopped", 0)
    assert len(outbox(store)) == 1
    store.refresh(mine)
    assert (mine.state.name, store.version(mine)) == ("Starting", 1)
    mine.operation_failed()
    assert rows(store) == [("VirtualMachine", "vm-1", "Stopped", 2)]


def test_a_deleted_row_is_a_lost_race(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    store.delete(VirtualMachine, "vm-1")
    with pytest.raises(VersionConflict, match="its row was deleted") as caught:
        vm.start_requested()
    assert caught.value.found_state is None and caught.value.found_version is None
    assert vm.state.name == "Stopped"


def test_a_database_error_changes_nothing(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    vm.start_requested()
    OUTBOX.drop(store.engine)  # the UPDATE succeeds, the INSERT fails: all rolled back
    with pytest.raises(DBAPIError):
        vm.operation_succeeded()
    assert (vm.state.name, store.version(vm)) == ("Starting", 1)
    assert rows(store) == [("VirtualMachine", "vm-1", "Starting", 1)]
    store.create_tables()
    vm.operation_succeeded()  # the connection is still usable
    assert rows(store) == [("VirtualMachine", "vm-1", "Running", 2)]


def test_a_bus_given_to_a_bound_machine_gets_committed_events(store: SqlStore) -> None:
    bus = Recorder()
    vm = store.create(VirtualMachine, "vm-1", bus=bus)
    assert vm.bus is bus
    vm.start_requested()
    assert [e.new_state for e in bus.events] == ["Starting"]
    assert bus.events[0].id == outbox(store)[0]["event"]["id"]
    quiet = store.load(VirtualMachine, "vm-1")
    quiet.operation_failed()
    assert quiet.bus is None and len(bus.events) == 1


def test_class_listeners_added_later_still_see_bound_machines(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    seen: list[str] = []

    class Listener:
        def post_transition(self, event: StateChanged) -> None:
            seen.append(event.new_state)

    listener = Listener()
    VirtualMachine.add_class_listener(listener)
    try:
        vm.start_requested()
    finally:
        VirtualMachine.remove_class_listener(listener)
    vm.operation_failed()
    assert seen == ["Starting"] and store.version(vm) == 2  # still persisted without it


def test_afire_persists(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    assert asyncio.run(vm.afire("StartRequested")) == VirtualMachine.State.Starting
    assert rows(store) == [("VirtualMachine", "vm-1", "Starting", 1)]


def test_threads_sharing_one_machine_and_racing_with_their_own(store: SqlStore) -> None:
    shared = store.create(VirtualMachine, "vm-1")
    wins = [0] * 4
    errors: list[BaseException] = []

    def work(index: int) -> None:
        own = store.load(VirtualMachine, "vm-1")
        rng = random.Random(index)
        try:
            for _ in range(40):
                machine = shared if index % 2 else own
                try:
                    machine.fire(rng.choice(machine.allowed_events()))
                    wins[index] += 1
                except ConcurrentUpdate:
                    store.refresh(machine)
                except InvalidTransition:
                    assert machine is shared  # moved by the other thread since we looked
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert rows(store)[0][3] == sum(wins) == len(outbox(store))


# -- the application's transaction --------------------------------------------------------------

APP = MetaData()
ORDERS = Table("app_orders", APP, Column("id", Integer, primary_key=True),
               Column("note", String(50)))


def test_using_a_session_commits_with_the_application(store: SqlStore) -> None:
    APP.create_all(store.engine)
    bus = Recorder()
    vm = store.create(VirtualMachine, "vm-1", bus=bus)
    with Session(store.engine) as session:
        with session.begin(), store.using(session):
            session.execute(ORDERS.insert().values(id=1, note="start vm-1"))
            vm.start_requested()
            vm.operation_succeeded()  # a second transition in the same transaction
            assert vm.state.name == "Running" and store.version(vm) == 2
            assert bus.events == []  # posted when the transaction commits
        assert [e.new_state for e in bus.events] == ["Starting", "Running"]
    assert rows(store) == [("VirtualMachine", "vm-1", "Running", 2)]
    with store.engine.connect() as conn:
        assert conn.execute(select(ORDERS.c.note)).scalars().all() == ["start vm-1"]
    assert len(outbox(store)) == 2


def test_using_a_session_that_rolls_back_restores_the_machines(store: SqlStore) -> None:
    APP.create_all(store.engine)
    bus = Recorder()
    vm = store.create(VirtualMachine, "vm-1", bus=bus)
    with Session(store.engine) as session:
        try:
            with session.begin(), store.using(session):
                session.execute(ORDERS.insert().values(id=1, note="doomed"))
                vm.start_requested()
                created = store.create(VirtualMachine, "vm-2")
                created.start_requested()
                raise RuntimeError("the application changes its mind")
        except RuntimeError:
            pass
    assert (vm.state.name, store.version(vm)) == ("Stopped", 0)
    assert bus.events == [] and outbox(store) == []
    assert rows(store) == [("VirtualMachine", "vm-1", "Stopped", 0)]
    vm.start_requested()  # memory and database agree again
    assert store.version(vm) == 1


def test_using_a_connection(store: SqlStore) -> None:
    APP.create_all(store.engine)
    vm = store.create(VirtualMachine, "vm-1")
    with store.engine.connect() as conn:
        with store.using(conn):
            conn.execute(ORDERS.insert().values(id=1, note="a"))
            vm.start_requested()
            assert store.load(VirtualMachine, "vm-1").state.name == "Starting"  # same tx
        conn.rollback()
        assert vm.state.name == "Stopped"
        with store.using(conn):
            vm.start_requested()
            conn.execute(ORDERS.insert().values(id=2, note="b"))
        conn.commit()
    assert rows(store) == [("VirtualMachine", "vm-1", "Starting", 1)]


def test_a_lost_race_inside_the_application_transaction(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    store.load(VirtualMachine, "vm-1").start_requested()
    with Session(store.engine) as session, session.begin(), store.using(session):
        with pytest.raises(VersionConflict) as caught:
            vm.start_requested()
        assert caught.value.found_state == "Starting"
    assert vm.state.name == "Stopped"


# -- schema, in-memory, housekeeping ------------------------------------------------------------

def test_tables_ddl_and_metadata(url: str) -> None:
    with SqlStore(url, create_tables=False) as store:
        ddl = store.ddl()
        assert "CREATE TABLE fsmc_machines" in ddl and "CREATE TABLE fsmc_outbox" in ddl
        assert "WHERE delivered_at IS NULL" in ddl
        with store.engine.begin() as conn:
            for statement in ddl.split(";\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
        store.create(VirtualMachine, "vm-1").start_requested()
        store.create_tables()  # idempotent
    assert set(METADATA.tables) == {"fsmc_machines", "fsmc_outbox", "fsmc_schema"}
    with SqlStore(url, create_tables=False) as store:  # the DDL stamped the version
        assert store.load(VirtualMachine, "vm-1").state.name == "Starting"


def test_prune_removes_delivered_rows_only(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    vm.start_requested()
    store.relay(Recorder())
    vm.operation_failed()
    assert store.prune() == 1
    assert [r["version"] for r in outbox(store)] == [2] and store.pending() == 1


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    with SqlStore("sqlite://") as store:
        vm = store.create(VirtualMachine, "vm-1")
        thread = threading.Thread(target=vm.start_requested)
        thread.start()
        thread.join()
        assert store.load(VirtualMachine, "vm-1").state.name == "Starting"
        bus = Recorder()
        assert store.relay(bus) == 1 and bus.events[0].new_state == "Starting"


def test_a_sqlite_file_is_in_wal_mode_with_the_pragmas_given(tmp_path: Path) -> None:
    with SqlStore(f"sqlite:///{tmp_path}/wal.db", sqlite_pragmas={"synchronous": "NORMAL"}
                  ) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


def _fire_in_child(store: SqlStore) -> None:
    store.load(VirtualMachine, "vm-1").operation_succeeded()
    store.close()


def test_a_forked_child_does_not_use_the_parent_connections(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    vm.start_requested()  # the parent now keeps a connection aside
    child = multiprocessing.get_context("fork").Process(target=_fire_in_child, args=(store,))
    child.start()
    child.join()
    assert child.exitcode == 0
    with pytest.raises(VersionConflict):
        vm.operation_failed()
    store.refresh(vm)
    vm.stop_requested()  # the parent's connection still works
    assert rows(store) == [("VirtualMachine", "vm-1", "Stopping", 3)]


# -- 8 processes racing -------------------------------------------------------------------------

def run_race(url: str, processes: int = 8, attempts: int = 1000) -> None:
    with SqlStore(url) as store:
        for key in workers.RESOURCES:
            store.create(VirtualMachine, key)
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(workers.race, [(url, seed, attempts)
                                              for seed in range(processes)])
    wins = sum(w for w, _ in results)
    assert sum(w + lost for w, lost in results) == processes * attempts
    assert sum(lost for _, lost in results) > 0  # there was a race to lose
    with SqlStore(url, create_tables=False) as store:
        final = {key: (state, version) for _, key, state, version in rows(store)}
        assert sum(version for _, version in final.values()) == wins  # no lost update
        history: dict[str, list[dict[str, Any]]] = {key: [] for key in workers.RESOURCES}
        for row in outbox(store):
            history[row["resource_id"]].append(row)
    for key, events in history.items():
        assert [e["version"] for e in events] == list(range(1, final[key][1] + 1))
        state = "Stopped"
        for row in events:  # each committed transition starts where the previous one ended
            assert row["event"]["old_state"] == state
            state = row["event"]["new_state"]
        assert state == final[key][0]


def test_eight_processes_race_without_a_lost_update(url: str) -> None:
    run_race(url)


# -- the documentation runs ---------------------------------------------------------------------

def test_the_storage_page_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "storage.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "storage_md"}
    for block in blocks:
        exec(compile(block, "docs/storage.md", "exec", dont_inherit=True), namespace)
    namespace["store"].close()
    assert "event='StartRequested', old_state='Stopped'" in capsys.readouterr().out


def test_hostile_payload_text_is_persisted_and_relayed_exactly(store: SqlStore) -> None:
    """Lone surrogates, NUL, CR and U+2028 in a payload: the outbox row is UTF-8 (a lone
    surrogate used to fail the INSERT) and reads back as the same event."""
    from tests.hostile import PAYLOAD_TEXTS

    vm = store.create(VirtualMachine, "hostile")
    vm.start_requested(notes=list(PAYLOAD_TEXTS))
    with store.engine.connect() as connection:
        [body] = connection.execute(select(OUTBOX.c.body).where(
            OUTBOX.c.resource_id == "hostile")).scalars().all()
    assert json.loads(body)["payload"]["notes"] == list(PAYLOAD_TEXTS)
    assert len(body.splitlines()) == 1
