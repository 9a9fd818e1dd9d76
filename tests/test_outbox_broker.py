"""Outbox → RabbitMQ, counted at the queue: an `OutboxRelay` into an `AmqpPublisher` marks a
row delivered only once the broker confirmed it, so relays killed (-9) again and again, broker
outages (stopped, frozen) and graceful stops lose nothing; duplicates are allowed, counted and
printed. Real RabbitMQ (tests/rabbit.py), real SQLite files and PostgreSQL (tests/pg.py).

Default counts are small; `-m slow` runs the full ones (5,000 transitions, 20 kills)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fsmc.runtime.store import SqlStore
from fsmc.runtime.store_sql import OUTBOX
from sqlalchemy import select

from generated.virtual_machine import VirtualMachine
from tests import pg, rabbit
from tests import store_workers as workers

reason = rabbit.available()
if reason is not None:  # pragma: no cover - depends on the machine
    pytest.skip(reason, allow_module_level=True)

from fsmc.runtime.amqp import AmqpPublisher, declare_queue  # noqa: E402
from fsmc.runtime.outbox import NotConfirmed, OutboxRelay  # noqa: E402

from tests import relay_workers  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def broker() -> Iterator[rabbit.Server]:
    server = rabbit.shared()
    yield server
    if not server.running():
        server.start_node()


@pytest.fixture
def route() -> tuple[str, str]:
    """An exchange and a durable queue bound to all of it, of the test's own."""
    tag = uuid.uuid4().hex[:8]
    return f"fsmc.relay.{tag}", f"relay.{tag}"


def open_store(url: str) -> SqlStore:
    store = SqlStore(url, sqlite_pragmas=workers.FAST_SQLITE)
    for key in workers.RESOURCES:
        store.create(VirtualMachine, key)
    return store


def committed(store: SqlStore) -> dict[str, bool]:
    """Every outbox row's event id → whether it is marked delivered."""
    with store.engine.connect() as conn:
        return {json.loads(row.body)["id"]: row.delivered_at is not None
                for row in conn.execute(select(OUTBOX.c.body, OUTBOX.c.delivered_at))}


def wait_until(condition: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    """Poll (the limit only stops a test that would hang)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Relays:
    """Relay child processes, one at a time, under one name."""

    def __init__(self, url: str, broker: rabbit.Server, exchange: str, folder: Path) -> None:
        self.url = url
        self.broker = broker
        self.exchange = exchange
        self.folder = folder
        self.started = 0

    def start(self) -> Any:
        self.started += 1
        ready = self.folder / f"ready-{self.started}"
        child = SPAWN.Process(target=relay_workers.relay_into_broker, args=(
            self.url, self.broker.url, self.exchange, "relay-under-test", str(ready), 30.0))
        child.start()
        wait_until(lambda: ready.exists() or not child.is_alive(), "the relay to start")
        assert child.is_alive(), f"the relay exited with {child.exitcode}"
        return child


def kill(child: Any) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL


def terminate(child: Any) -> None:
    child.terminate()  # SIGTERM: the relay stops and the publisher closes
    child.join(60)
    assert child.exitcode == 0


def verdict(store: SqlStore, seen: Counter[str], what: str) -> None:
    """Every committed transition reached the queue; print the counts."""
    rows = committed(store)
    lost = set(rows) - set(seen)
    strangers = set(seen) - set(rows)
    duplicates = sum(seen.values()) - len(seen)
    print(f"\n{what}: {len(rows)} committed, {len(rows) - len(lost)} arrived, "
          f"{len(lost)} lost, {duplicates} duplicates")
    assert not strangers
    assert not lost, f"{len(lost)} of {len(rows)} committed events never reached the broker"


# -- (a) the relay killed again and again -------------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("transitions", "kills"), [
    (300, 3), pytest.param(5_000, 20, marks=pytest.mark.slow)], ids=["quick", "full"])
def test_a_relay_killed_again_and_again_loses_nothing(
        broker: rabbit.Server, route: tuple[str, str], tmp_path: Path, kind: str,
        transitions: int, kills: int) -> None:
    exchange, queue = route
    declare_queue(broker.url, queue, ["#"], exchange)
    rng = random.Random(f"{kind}-{transitions}")
    url = pg.database_url(kind, tmp_path)
    with open_store(url) as store:
        relays = Relays(url, broker, exchange, tmp_path)
        chunk, fired = transitions // (kills + 1), 0
        marked_at_kills: set[str] = set()
        for round_ in range(kills):
            child = relays.start()
            workers.fire_some(store, round_, chunk)  # relayed meanwhile
            fired += chunk
            time.sleep(rng.uniform(0.0, 0.2))
            kill(child)
            marked_at_kills |= {key for key, marked in committed(store).items() if marked}
        child = relays.start()
        workers.fire_some(store, kills, transitions - fired)
        wait_until(lambda: store.pending() == 0, "the last relay to deliver everything")
        terminate(child)
        assert len(committed(store)) == transitions
        seen = relay_workers.drain(broker.url, queue)
        assert marked_at_kills <= set(seen)  # nothing marked that the broker did not hold
        verdict(store, seen, f"{kind}, {kills} kills -9 of the relay")


# -- (b) a broker outage, then the relay killed or stopped ---------------------------------------

@contextmanager
def outage(broker: rabbit.Server, how: str) -> Iterator[None]:
    """The broker stopped (the port closed) or frozen (SIGSTOP: connections stay open and
    nothing answers) for the length of the block."""
    if how == "stopped":
        broker.stop_node()
        try:
            yield
        finally:
            broker.start_node()
        return
    beam = int(Path(broker.env["RABBITMQ_PID_FILE"]).read_text())
    os.kill(beam, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(beam, signal.SIGCONT)


OUTAGES = [(kind, how, ending) for kind in ("sqlite", "postgresql")
           for how in ("stopped", "frozen") for ending in ("kill", "term")]
QUICK_OUTAGES = {("sqlite", "stopped", "kill"), ("sqlite", "frozen", "kill"),
                 ("sqlite", "stopped", "term"), ("postgresql", "stopped", "kill"),
                 ("postgresql", "frozen", "kill")}


@pytest.mark.parametrize(("kind", "how", "ending"), [
    case if case in QUICK_OUTAGES else pytest.param(*case, marks=pytest.mark.slow)
    for case in OUTAGES], ids=["-".join(case) for case in OUTAGES])
def test_a_broker_outage_then_a_relay_kill_loses_nothing(
        broker: rabbit.Server, route: tuple[str, str], tmp_path: Path, kind: str, how: str,
        ending: str) -> None:
    exchange, queue = route
    declare_queue(broker.url, queue, ["#"], exchange)
    url = pg.database_url(kind, tmp_path)
    with open_store(url) as store:
        relays = Relays(url, broker, exchange, tmp_path)
        child = relays.start()
        workers.fire_some(store, 1, 150)
        with outage(broker, how):
            workers.fire_some(store, 2, 150)  # committed while the broker is away
            time.sleep(1.5)
            during = {key for key, marked in committed(store).items() if marked}
        if ending == "kill":
            kill(child)
        else:
            terminate(child)  # a graceful stop: confirmed and marked, or pending
        after_stop = {key for key, marked in committed(store).items() if marked}
        child = relays.start()
        wait_until(lambda: store.pending() == 0, "the next relay to deliver everything")
        terminate(child)
        seen = relay_workers.drain(broker.url, queue)
        assert during | after_stop <= set(seen)
        verdict(store, seen, f"{kind}, broker {how} 1.5 s, then {ending}")


# -- in one process -----------------------------------------------------------------------------

def test_rows_stay_pending_while_the_broker_is_away_and_go_once_it_is_back(
        broker: rabbit.Server, route: tuple[str, str], tmp_path: Path) -> None:
    exchange, queue = route
    declare_queue(broker.url, queue, ["#"], exchange)
    with open_store(pg.database_url("sqlite", tmp_path)) as store:
        workers.fire_some(store, 3, 30)
        publisher = AmqpPublisher(broker.url, exchange, **relay_workers.QUICK)
        try:
            assert publisher.wait_connected(30)
            broker.stop_node()
            try:
                with pytest.raises(NotConfirmed) as raised:
                    store.relay(publisher, confirm_timeout=1.0)
                assert raised.value.unconfirmed == 30
                assert store.pending() == 30  # nothing marked that the broker lacks
            finally:
                broker.start_node()
            assert store.relay(publisher, confirm_timeout=30) == 30
            assert store.pending() == 0
        finally:
            publisher.close(10)
    seen = relay_workers.drain(broker.url, queue)
    assert len(seen) == 30  # the first pass's batch was resent too: duplicates, no loss


def test_a_background_relay_backs_off_while_the_broker_is_away(
        broker: rabbit.Server, route: tuple[str, str], tmp_path: Path) -> None:
    exchange, queue = route
    declare_queue(broker.url, queue, ["#"], exchange)
    errors: list[Exception] = []
    with open_store(pg.database_url("sqlite", tmp_path)) as store:
        publisher = AmqpPublisher(broker.url, exchange, **relay_workers.QUICK)
        relay = OutboxRelay(store, publisher, interval=0.05, max_backoff=0.4,
                            confirm_timeout=0.3, on_error=errors.append)
        try:
            assert publisher.wait_connected(30)
            broker.stop_node()
            try:
                with relay:
                    workers.fire_some(store, 4, 20)
                    wait_until(lambda: len(errors) >= 3, "three failed passes")
                    assert store.pending() == 20
                    assert all(isinstance(error, NotConfirmed) for error in errors)
                    broker.start_node()
                    wait_until(lambda: store.pending() == 0, "the relay to catch up")
            finally:
                if not broker.running():
                    broker.start_node()
        finally:
            publisher.close(10)
    pauses = [relay.backoff(failures) for failures in range(1, 12) for _ in range(20)]
    assert max(pauses) <= 0.4 and min(pauses) >= 0.025  # bounded, from interval / 2
    assert len({round(pause, 6) for pause in pauses}) > 100  # jittered
    assert len(relay_workers.drain(broker.url, queue)) == 20


def test_a_postgresql_batch_is_bounded_in_rows(tmp_path: Path) -> None:
    with open_store(pg.database_url("postgresql", tmp_path)) as store:
        vm = store.load(VirtualMachine, "vm-0")
        for _ in range(60):  # one resource, 240 pending rows
            vm.start_requested()
            vm.operation_succeeded()
            vm.stop_requested()
            vm.operation_succeeded()
        batches: list[int] = []
        assert store.relay(workers.Log(tmp_path / "log"), batch=50, limit=100) == 100
        assert store.pending() == 140
        from fsmc.runtime.outbox import relay_pass

        relay_pass(store, workers.Log(tmp_path / "log"), batch=50, counted=batches.append)
        assert batches == [50, 50, 40]
