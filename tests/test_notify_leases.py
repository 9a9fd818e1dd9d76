"""Leases on webhook lanes (`fsmc.notify.leases`) and the replay log (`fsmc.notify.eventlog`) on
a SQLite file and on a private PostgreSQL server: one owner per subscription, shares, takeover
after expiry or release, pending deliveries in order, retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsmc.notify.eventlog import EventLog, Retention
from fsmc.notify.leases import Leases
from fsmc.notify.store import SubscriptionStore
from fsmc.notify.stream import Item

from tests import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SubscriptionStore]:
    url = pg.database_url(request.param, tmp_path)
    target = str(tmp_path / "notify.db") if request.param == "sqlite" else url
    opened = SubscriptionStore(target)
    yield opened
    opened.close()


def item(n: int, owner: str = "acme") -> Item:
    return Item(0, f"evt-{n}", "VirtualMachine.Started", owner, f'{{"id": "evt-{n}"}}')


def record(log: EventLog, items: list[Item]) -> None:
    log.record(items, lane_limit=1000, keep=10, not_attempted="not attempted")


def test_each_subscription_has_one_owner_and_instances_share(store: SubscriptionStore) -> None:
    subs = {store.add("acme", "#", f"https://h.example/{n}", "s").id for n in range(4)}
    first = Leases(store, 30, "first")
    assert first.keep() == subs  # alone: it takes them all
    second = Leases(store, 30, "second")
    assert second.keep() == set()  # nothing is free
    first.release({sorted(subs)[0]})
    assert second.keep() == {sorted(subs)[0]}
    assert first.keep() == subs - {sorted(subs)[0]}  # renewed, not taken back
    third = Leases(store, 30, "third")  # three alive: a share is 2; none is free
    assert third.keep() == set()
    first.release()  # gone: what it held is free, for shares of 4 / 2
    assert len(third.keep()) == 2 and second.keep() == subs - third.keep()


def test_an_expired_lease_is_taken_over(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://h.example/", "s").id
    dead = Leases(store, 0.5, "dead")
    assert dead.keep() == {sub}
    alive = Leases(store, 0.5, "alive")
    assert alive.keep() == set()
    time.sleep(0.7)  # the dead one never renewed
    assert alive.keep() == {sub}
    assert dead.keep() == set()  # it came back: the lane is someone else's now
    store.delete(sub)
    assert alive.keep() == set()


def test_pending_deliveries_come_back_in_order_and_the_log_keeps_its_retention(
        store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://h.example/", "s").id
    other = store.add("globex", "#", "https://h.example/g", "s").id
    log = EventLog(store, Retention(5))
    for start in range(0, 12, 4):
        record(log, [item(n, "acme" if n % 3 else "globex") for n in range(start, start + 4)])
    acme = [d.event_id for d in store.pending(sub)]
    assert acme == [f"evt-{n}" for n in range(12) if n % 3]
    assert [d.event_id for d in store.pending(other)] == [f"evt-{n}" for n in range(0, 12, 3)]
    pending = store.pending(sub, limit=3)
    store.finish([d.seq for d in pending])
    assert [d.event_id for d in store.pending(sub)] == acme[3:]
    assert [i.id for i in log.after(0)] == [f"evt-{n}" for n in range(7, 12)]
    oldest = log.oldest()
    assert oldest is not None and (oldest.seq, oldest.id) == (8, "evt-7")
    assert log.find("evt-2") is None and log.find("evt-9") == 10 and log.head() == 12
