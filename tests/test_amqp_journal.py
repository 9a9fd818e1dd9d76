"""The publisher's journal (`fsmc.runtime.amqp.journal`): group commit, segments removed once
confirmed, what a crashed process left handed out again; and the crash-safe publisher against
a real broker: events accepted while the broker is down, then kill -9, a new publisher on the
same journal: none lost (counted at the queue)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests import rabbit

reason = rabbit.available()
if reason is not None:  # pragma: no cover - depends on the machine
    pytest.skip(reason, allow_module_level=True)

from fsmc.runtime import StateChanged  # noqa: E402
from fsmc.runtime.amqp import AmqpPublisher, DeliveryError, declare_queue  # noqa: E402
from fsmc.runtime.amqp.journal import Journal  # noqa: E402
from fsmc.runtime.amqp.message import outgoing  # noqa: E402

from tests import relay_workers  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


def body(index: int) -> bytes:
    event = StateChanged("VirtualMachine", f"vm-{index}", "StartRequested", "Stopped",
                         "Starting", (), {"n": index})
    return outgoing(event, "test").body


def segments(path: Path) -> list[str]:
    return sorted(file.name for file in path.parent.glob(path.name + ".*"))


# -- the journal on its own ---------------------------------------------------------------------

def test_concurrent_posters_share_fsyncs_and_a_new_journal_gets_everything(
        tmp_path: Path) -> None:
    path = tmp_path / "events.journal"
    journal = Journal(path, segment_entries=500)
    start = threading.Barrier(8)

    def poster(offset: int) -> None:
        start.wait()
        for index in range(offset, offset + 200):
            _place, number = journal.append(body(index))
            journal.wait_durable(number)

    threads = [threading.Thread(target=poster, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert journal.counts["journaled"] == 1600
    assert 0 < journal.counts["syncs"] < 1600  # group commit: posters shared fsyncs
    assert len(segments(path)) == 4  # 500 entries each
    # No close: as after kill -9. Everything acknowledged is on disk and comes back.
    again = Journal(path)
    assert again.counts["recovered"] == 1600
    messages = again.read_back(10_000)
    assert sorted(json.loads(m.body)["data"]["payload"]["n"] for m in messages) == sorted(
        n * 1000 + i for n in range(8) for i in range(200))
    assert all(m.recovered for m in messages)


def test_a_segment_goes_once_all_of_it_is_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, segment_entries=10)
    places = []
    for index in range(25):
        place, number = journal.append(body(index))
        journal.wait_durable(number)
        places.append(place)
    assert segments(path) == ["j.00000001", "j.00000002", "j.00000003"]
    for place in places[:9]:
        place.segment.ticket(True)
    places[9].segment.ticket(False)  # given up: stays for the next publisher
    assert len(segments(path)) == 3 and journal.pending() == 16
    places[9].segment.ticket(True)
    assert segments(path) == ["j.00000002", "j.00000003"]
    for place in places[10:]:
        place.segment.ticket(True)
    assert segments(path) == ["j.00000003"]  # the active one stays open
    journal.close()
    assert segments(path) == []  # all confirmed: nothing for the next publisher
    assert Journal(path).counts["recovered"] == 0


def test_a_torn_last_entry_is_ignored_and_a_bad_one_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    first = body(1)
    (tmp_path / "j.00000001").write_bytes(first + b"\n" + b"not json\n" + body(3)[:40])
    journal = Journal(path)
    assert journal.counts["recovered"] == 2
    messages = journal.read_back(10)
    assert [m.body for m in messages] == [first]
    assert journal.counts["unreadable"] == 1
    messages[0].ticket(True)  # type: ignore[misc]
    assert segments(path) == ["j.00000002"]  # the old segment is done with


def test_journal_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_entries"):
        Journal(tmp_path / "j", segment_entries=0)
    with pytest.raises(ValueError, match="not both"):
        AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F", journal_path=tmp_path / "j",
                      spill_path=tmp_path / "s")


# -- the crash-safe publisher against a broker ----------------------------------------------------

@pytest.fixture(scope="module")
def broker() -> rabbit.Server:
    return rabbit.shared()


@pytest.mark.parametrize("count", [2_000, pytest.param(20_000, marks=pytest.mark.slow)])
def test_events_accepted_while_the_broker_is_down_survive_kill_9(
        broker: rabbit.Server, tmp_path: Path, count: int) -> None:
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"fsmc.journal.{tag}", f"journal.{tag}"
    declare_queue(broker.url, queue, ["#"], exchange)
    journal, accepted = tmp_path / "events.journal", tmp_path / "accepted"
    broker.stop_node()
    try:
        child = SPAWN.Process(target=relay_workers.publish_journaled,
                              args=(broker.url, exchange, str(journal), count, str(accepted)))
        child.start()
        deadline = time.monotonic() + 120
        while not accepted.exists() or len(accepted.read_bytes().splitlines()) < count // 2:
            assert child.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # mid-stream; the buffer held a quarter of them
        child.join()
    finally:
        broker.start_node()
    ids = accepted.read_text().split()
    assert len(ids) >= count // 2
    publisher = AmqpPublisher(broker.url, exchange, journal_path=journal,
                              **relay_workers.QUICK)
    deadline = time.monotonic() + 120
    while publisher.stats()["recovered"] < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = publisher.stats()
    publisher.close(30)
    assert segments(journal) == []  # everything confirmed: the journal is empty
    seen = relay_workers.drain(broker.url, queue)
    lost = set(ids) - set(seen)
    print(f"\njournal, broker down, kill -9 after {len(ids)} accepted: {stats['recovered']} "
          f"recovered, {len(lost)} lost, {sum(seen.values()) - len(seen)} duplicates")
    assert not lost


def test_a_closed_journaled_publisher_leaves_the_unconfirmed_to_the_next(
        broker: rabbit.Server, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"fsmc.journal.{tag}", f"journal.{tag}"
    declare_queue(broker.url, queue, ["#"], exchange)
    journal = tmp_path / "j"
    broker.stop_node()
    try:
        first = AmqpPublisher(broker.url, exchange, journal_path=journal, buffer=10,
                              block_timeout=0.01, **relay_workers.QUICK)
        sent = [StateChanged("Volume", f"v-{i}", "Attach", "Ready", "Attached", (), {})
                for i in range(50)]
        for each in sent:
            first(each)
        assert first.stats()["deferred"] == 40  # beyond the buffer: in the journal only
        with pytest.raises(DeliveryError, match="50 events wait in the journal"):
            first.close(0.2)
    finally:
        broker.start_node()
    second = AmqpPublisher(broker.url, exchange, journal_path=journal, **relay_workers.QUICK)
    second.close(30)
    assert second.stats()["recovered"] == 50
    assert set(relay_workers.drain(broker.url, queue)) == {e.id for e in sent}
    assert segments(journal) == []
