"""The outbox relay (`fsmc.runtime.outbox`): at least once, in commit order per resource,
several relays never posting a row at once, a relay killed with SIGKILL. On a SQLite file
(leases) and on a private PostgreSQL server (row locks)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fsmc.runtime import StateChanged
from fsmc.runtime.bus import EventBus
from fsmc.runtime.outbox import OutboxRelay
from fsmc.runtime.store import SqlStore
from fsmc.runtime.store_sql import OUTBOX
from sqlalchemy import select, update

from generated.virtual_machine import VirtualMachine
from tests import pg
from tests import store_workers as workers

SPAWN = multiprocessing.get_context("spawn")


class Recorder:
    def __init__(self, fail_at: int | None = None) -> None:
        self.events: list[StateChanged] = []
        self.lock = threading.Lock()
        self.fail_at = fail_at

    def post(self, event: object) -> None:
        assert isinstance(event, StateChanged)
        with self.lock:
            if self.fail_at is not None and len(self.events) == self.fail_at:
                self.fail_at = None
                raise ConnectionError("broker away")
            self.events.append(event)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg.database_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with SqlStore(url) as opened:
        for key in workers.RESOURCES:
            opened.create(VirtualMachine, key)
        yield opened


def committed(store: SqlStore) -> dict[str, tuple[str, int]]:
    """Every outbox row's event id → (resource, version)."""
    with store.engine.connect() as conn:
        return {json.loads(r.body)["id"]: (r.resource_id, r.version)
                for r in conn.execute(select(OUTBOX.c.resource_id, OUTBOX.c.version,
                                             OUTBOX.c.body))}


def assert_in_order_once(store: SqlStore, delivered: list[str]) -> None:
    """Each committed event exactly once, and each resource's in version order."""
    rows = committed(store)
    assert sorted(delivered) == sorted(rows)
    last: dict[str, int] = defaultdict(int)
    for event_id in delivered:
        resource, version = rows[event_id]
        assert version == last[resource] + 1, (resource, version, last[resource])
        last[resource] = version


def wait_until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll (not a timing assertion: the limit only stops a test that would hang)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


# -- one relay ----------------------------------------------------------------------------------

def test_relay_posts_every_committed_transition_once_in_order(store: SqlStore) -> None:
    workers.fire_some(store, 1, 60)
    bus = Recorder()
    assert store.pending() == 60
    assert store.relay(bus, batch=7) == 60
    assert_in_order_once(store, [e.id for e in bus.events])
    assert store.pending() == 0 and store.relay(bus) == 0
    first = bus.events[0]
    assert first.machine == "VirtualMachine" and first.time.tzinfo is not None


def test_relay_into_an_event_bus_by_topic(store: SqlStore) -> None:
    vm = store.load(VirtualMachine, "vm-0")
    vm.start_requested()
    vm.operation_succeeded()
    bus = EventBus()
    running: list[StateChanged] = []
    bus.subscribe(running.append, topic="VirtualMachine.*.*.Running")
    assert store.relay(bus) == 2
    assert [e.topic for e in running] == ["VirtualMachine.Starting.OperationSucceeded.Running"]
    assert bus.stats()["dead"] == 1


def test_relay_limit(store: SqlStore) -> None:
    workers.fire_some(store, 2, 10)
    bus = Recorder()
    assert store.relay(bus, limit=4, batch=3) == 4
    assert store.pending() == 6
    assert store.relay(bus) == 6
    assert_in_order_once(store, [e.id for e in bus.events])
    with pytest.raises(ValueError, match="batch"):
        store.relay(bus, batch=0)


def test_a_failing_bus_keeps_the_rest_pending_and_order_holds(store: SqlStore) -> None:
    workers.fire_some(store, 3, 20)
    bus = Recorder(fail_at=5)
    with pytest.raises(ConnectionError):
        store.relay(bus, batch=20)
    assert len(bus.events) == 5 and store.pending() == 15
    assert store.relay(bus) == 15
    assert_in_order_once(store, [e.id for e in bus.events])


def test_a_resource_held_by_another_relay_is_skipped_whole(store: SqlStore) -> None:
    for key in ("vm-0", "vm-1"):
        vm = store.load(VirtualMachine, key)
        vm.start_requested()
        vm.operation_failed()
    bus = Recorder()
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as other:  # another relay holds vm-0's first row
            other.execute(select(OUTBOX.c.id).where(OUTBOX.c.resource_id == "vm-0")
                          .order_by(OUTBOX.c.id).limit(1).with_for_update())
            assert store.relay(bus) == 2
            other.rollback()
    else:
        with store.engine.begin() as conn:  # another relay's live lease on vm-0's rows
            conn.execute(update(OUTBOX).where(OUTBOX.c.resource_id == "vm-0")
                         .values(claimed_by="elsewhere", claimed_until=time.time() + 600))
        assert store.relay(bus) == 2
        with store.engine.begin() as conn:  # that relay died: its lease runs out
            conn.execute(update(OUTBOX).values(claimed_until=time.time() - 1))
    assert {e.resource_id for e in bus.events} == {"vm-1"}
    assert store.relay(bus) == 2
    assert_in_order_once(store, [e.id for e in bus.events])


# -- several relays -----------------------------------------------------------------------------

def test_relay_threads_with_a_writer(store: SqlStore) -> None:
    bus = Recorder()
    writing = threading.Event()
    writing.set()

    def relay() -> None:
        while writing.is_set() or store.pending():
            store.relay(bus, batch=3)

    threads = [threading.Thread(target=relay) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        workers.fire_some(store, 4, 150)
    finally:
        writing.clear()
        for thread in threads:
            thread.join()
    assert_in_order_once(store, [e.id for e in bus.events])


def test_relay_processes_with_a_writer_never_post_a_row_twice(store: SqlStore, url: str,
                                                              tmp_path: Path) -> None:
    workers.fire_some(store, 5, 200)
    log, done = tmp_path / "delivered.log", tmp_path / "writers-done"
    start = SPAWN.Barrier(5)  # all begin together, once imported and connected
    relays = [SPAWN.Process(target=workers.relay_until_empty,
                            args=(url, str(log), 4, str(done), start)) for _ in range(4)]
    writer = SPAWN.Process(target=workers.write, args=(url, 6, 200, start))
    for process in [*relays, writer]:
        process.start()
    writer.join()
    done.touch()
    for process in relays:
        process.join()
    assert [p.exitcode for p in [*relays, writer]] == [0] * 5
    lines = [line.split() for line in log.read_text().splitlines()]
    assert_in_order_once(store, [event_id for event_id, _ in lines])


# -- the background relay -------------------------------------------------------------------------

def test_outbox_relay_runs_in_the_background(store: SqlStore) -> None:
    bus = Recorder(fail_at=3)
    errors: list[Exception] = []
    relay = OutboxRelay(store, bus, interval=3600.0, on_error=errors.append, max_backoff=0.05)
    with relay:
        vm = store.load(VirtualMachine, "vm-0")
        vm.start_requested()  # a commit here wakes the relay (it would not poll for an hour)
        wait_until(lambda: len(bus.events) == 1, "the first event")
        workers.fire_some(store, 8, 30)
        wait_until(lambda: store.pending() == 0, "the relay to catch up")
    assert [type(e) for e in errors] == [ConnectionError]
    assert relay.delivered == 31
    assert_in_order_once(store, [e.id for e in bus.events])
    with pytest.raises(RuntimeError, match="started already"):
        relay.start()


def test_outbox_relay_stop_runs_a_last_pass(store: SqlStore) -> None:
    bus = Recorder()
    relay = OutboxRelay(store, bus, interval=30.0).start()
    with SqlStore(store.engine, create_tables=False) as other:  # its commits wake no relay
        workers.fire_some(other, 9, 5)
    relay.stop()
    assert len(bus.events) == 5 and store.pending() == 0


# -- kill -9 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_after", [None, 7], ids=["before-relay", "during-relay"])
def test_a_killed_process_loses_no_event(store: SqlStore, url: str, tmp_path: Path,
                                         kill_after: int | None) -> None:
    child = SPAWN.Process(target=workers.crash, args=(url, str(tmp_path), 40, kill_after, 0.5))
    child.start()
    child.join()
    assert child.exitcode == -9  # SIGKILL: no cleanup ran
    assert len(committed(store)) == 40  # every transition before the kill committed
    subscriber = workers.Deduplicating(tmp_path)  # the restarted process
    wait_until(lambda: (store.relay(subscriber), store.pending())[1] == 0,
               "the dead relay's lease to run out")
    seen = [line.split()[0] for line in (tmp_path / "seen").read_text().splitlines()]
    assert_in_order_once(store, seen)  # every committed transition acted on exactly once
    raw = (tmp_path / "raw").read_text().split()
    assert len(raw) == 40 + (kill_after or 0)  # the ones posted before the kill came again
