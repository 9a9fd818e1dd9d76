"""The SQLite store of webhook subscriptions: tenants, dead letters, reopening the file,
secrets kept out of JSON and repr, concurrent writers; the bound on dead letters and its
persisted dropped count; batches of dead letters (bounded, one transaction); opening a file of
the first version, and refusing a file that is not a database with nothing left open."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsmc.notify.store import DeadLetter, Subscription, SubscriptionStore, iso_time

from tests.notify_server import open_files


@pytest.fixture
def store() -> Iterator[SubscriptionStore]:
    opened = SubscriptionStore(":memory:")
    yield opened
    opened.close()


def letter(subscription: str, event_id: str, attempts: int = 5) -> DeadLetter:
    return DeadLetter(subscription=subscription, event_id=event_id, body='{"id":"' + event_id +
                      '"}', attempts=attempts, error="HTTP 503", time=1000.0)


def test_add_get_list_delete(store: SubscriptionStore) -> None:
    a1 = store.add("acme", "vm.#", "https://a.example/1", "sa1")
    b1 = store.add("blue", "#", "https://b.example/1", "sb1")
    a2 = store.add("acme", "volume.*", "https://a.example/2", "sa2")
    assert a1.id.startswith("sub_") and len(a1.id) == 20
    assert len({a1.id, b1.id, a2.id}) == 3
    assert (a1.tenant, a1.topic, a1.kind, a1.url, a1.secret) == (
        "acme", "vm.#", "webhook", "https://a.example/1", "sa1")
    assert store.get(a1.id) == a1
    assert store.get("sub_missing") is None
    assert store.list("acme") == [a1, a2]
    assert store.list("blue") == [b1]
    assert store.list("nobody") == []
    assert store.list(None) == [a1, b1, a2]
    assert store.list() == [a1, b1, a2]
    assert store.delete(a1.id) is True
    assert store.delete(a1.id) is False
    assert store.get(a1.id) is None
    assert store.list(None) == [b1, a2]


def test_created_comes_from_the_clock() -> None:
    times = iter([10.0, 20.0])
    store = SubscriptionStore(":memory:", clock=lambda: next(times))
    assert [store.add("t", "#", "https://x.example/", "s").created for _ in range(2)] == \
        [10.0, 20.0]
    store.close()
    store.close()  # closing twice is harmless


def test_dead_letters_add_list_take(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    other = store.add("acme", "#", "https://a.example/o", "s")
    letters = [letter(sub.id, f"e{n}") for n in range(3)]
    for dead in letters:
        assert store.add_dead_letter(dead) == 0
    store.add_dead_letter(letter(other.id, "x"))
    assert store.dead_letters(sub.id) == letters
    assert store.dead_letters("sub_missing") == []
    assert letters[0].to_json() == {"subscription": sub.id, "event_id": "e0",
                                    "body": '{"id":"e0"}', "attempts": 5,
                                    "error": "HTTP 503",
                                    "time": "1970-01-01T00:16:40.000000Z"}
    assert store.take_dead_letters(sub.id) == letters
    assert store.dead_letters(sub.id) == []
    assert store.take_dead_letters(sub.id) == []
    assert store.dead_letters(other.id) == [letter(other.id, "x")]


def test_deleting_a_subscription_deletes_its_dead_letters(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    store.add_dead_letter(letter(sub.id, "e1"))
    assert store.delete(sub.id)
    assert store.dead_letters(sub.id) == []
    # A retry that ends after its subscription was deleted leaves nothing behind.
    assert store.add_dead_letter(letter(sub.id, "late")) is None
    assert store.dead_letters(sub.id) == []


def test_subscriptions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "subs.sqlite"
    store = SubscriptionStore(path)
    kept = store.add("acme", "vm.#", "https://a.example/", "secret-1")
    gone = store.add("acme", "#", "https://a.example/g", "secret-2")
    store.add_dead_letter(letter(kept.id, "e1"))
    store.delete(gone.id)
    store.close()
    reopened = SubscriptionStore(str(path))
    assert reopened.list(None) == [kept]
    assert reopened.get(kept.id) == kept
    assert reopened.get(kept.id).secret == "secret-1"  # type: ignore[union-attr]
    assert reopened.dead_letters(kept.id) == [letter(kept.id, "e1")]
    later = reopened.add("blue", "#", "https://b.example/", "s")
    assert reopened.list(None) == [kept, later]
    reopened.close()


def test_the_secret_is_never_shown(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "very-secret-value")
    assert "very-secret-value" not in repr(sub)
    assert "very-secret-value" not in str(sub.to_json())
    assert "secret" not in sub.to_json()
    assert sub.to_json() == {"id": sub.id, "tenant": "acme", "topic": "#", "kind": "webhook",
                             "url": "https://a.example/", "created": iso_time(sub.created)}
    with pytest.raises(AttributeError):
        sub.secret = "changed"  # type: ignore[misc]
    assert isinstance(sub, Subscription)


@pytest.mark.parametrize("on_disk", [False, True])
def test_concurrent_adds(tmp_path: Path, on_disk: bool) -> None:
    store = SubscriptionStore(tmp_path / "subs.sqlite" if on_disk else ":memory:")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            start.wait()
            for n in range(25):
                sub = store.add(f"t{number}", "#", f"https://x.example/{n}", "s")
                store.add_dead_letter(letter(sub.id, f"e{n}"))
                assert store.get(sub.id) == sub
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    everything = store.list(None)
    assert len(everything) == 200 and len({sub.id for sub in everything}) == 200
    for number in range(8):
        mine = store.list(f"t{number}")
        assert [sub.url for sub in mine] == [f"https://x.example/{n}" for n in range(25)]
    assert all(len(store.dead_letters(sub.id)) == 1 for sub in everything)
    store.close()


# --- the bound on dead letters ---------------------------------------------------------------

def test_dead_letters_beyond_the_bound_drop_the_oldest(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    other = store.add("acme", "#", "https://a.example/o", "s")
    assert store.add_dead_letter(letter(other.id, "o1"), keep=3) == 0
    removed = [store.add_dead_letter(letter(sub.id, f"e{n}"), keep=3) for n in range(5)]
    assert removed == [0, 0, 0, 1, 1]
    assert [dead.event_id for dead in store.dead_letters(sub.id)] == ["e2", "e3", "e4"]
    assert store.dropped(sub.id) == 2
    assert (store.dead_letters(other.id), store.dropped(other.id)) == (
        [letter(other.id, "o1")], 0)  # another subscription's bound is its own
    assert store.dropped("sub_missing") == 0


def test_without_a_bound_nothing_is_dropped(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    assert [store.add_dead_letter(letter(sub.id, f"e{n}")) for n in range(4)] == [0] * 4
    assert len(store.dead_letters(sub.id)) == 4 and store.dropped(sub.id) == 0
    with pytest.raises(ValueError, match="keep must be at least 1, not 0"):
        store.add_dead_letter(letter(sub.id, "e"), keep=0)


def test_a_lower_bound_drops_every_letter_beyond_it_at_once(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    for n in range(6):
        store.add_dead_letter(letter(sub.id, f"e{n}"), keep=10)
    assert store.add_dead_letter(letter(sub.id, "e6"), keep=2) == 5
    assert [dead.event_id for dead in store.dead_letters(sub.id)] == ["e5", "e6"]
    assert store.dropped(sub.id) == 5


def test_taking_dead_letters_keeps_the_dropped_count(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    for n in range(3):
        store.add_dead_letter(letter(sub.id, f"e{n}"), keep=1)
    assert [dead.event_id for dead in store.take_dead_letters(sub.id)] == ["e2"]
    assert store.dropped(sub.id) == 2
    assert store.add_dead_letter(letter(sub.id, "again"), keep=1) == 0  # room again
    assert store.delete(sub.id)
    assert store.add_dead_letter(letter(sub.id, "late"), keep=1) is None
    assert store.dropped(sub.id) == 0


def test_the_dropped_count_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "subs.sqlite"
    store = SubscriptionStore(path)
    sub = store.add("acme", "#", "https://a.example/", "s")
    for n in range(4):
        store.add_dead_letter(letter(sub.id, f"e{n}"), keep=2)
    store.close()
    reopened = SubscriptionStore(path)
    assert reopened.dropped(sub.id) == 2
    assert [dead.event_id for dead in reopened.dead_letters(sub.id)] == ["e2", "e3"]
    assert reopened.add_dead_letter(letter(sub.id, "e4"), keep=2) == 1
    assert reopened.dropped(sub.id) == 3
    reopened.close()


# The tables as the first version of the store wrote them (no `dropped`).
FIRST_SCHEMA = """
CREATE TABLE subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant, seq);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX dead_letters_subscription ON dead_letters (subscription, seq);
"""


def columns(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(subscriptions)")]


def test_a_file_of_the_first_version_opens_and_gains_the_dropped_count(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(FIRST_SCHEMA)
        conn.execute("INSERT INTO subscriptions (id, tenant, topic, kind, url, secret, created) "
                     "VALUES ('sub_0123456789abcdef', 'acme', 'vm.#', 'webhook', "
                     "'https://a.example/', 'old-secret', 5.0)")
        conn.execute("INSERT INTO dead_letters (subscription, event_id, body, attempts, error, "
                     "time) VALUES ('sub_0123456789abcdef', 'e0', '{\"id\":\"e0\"}', 5, "
                     "'HTTP 503', 1000.0)")
        conn.commit()
    assert "dropped" not in columns(path)
    store = SubscriptionStore(path)
    assert "dropped" in columns(path)
    old = Subscription("sub_0123456789abcdef", "acme", "vm.#", "webhook", "https://a.example/",
                       "old-secret", 5.0)
    assert store.list(None) == [old] and store.get(old.id) == old
    assert store.dead_letters(old.id) == [letter(old.id, "e0")]
    assert store.dropped(old.id) == 0
    assert store.add_dead_letter(letter(old.id, "e1"), keep=1) == 1
    assert store.dropped(old.id) == 1
    new = store.add("acme", "#", "https://a.example/n", "s")
    store.close()
    again = SubscriptionStore(path)  # already up to date: opens as is
    assert again.list(None) == [old, new]
    assert (again.dropped(old.id), again.dropped(new.id)) == (1, 0)
    again.close()


# --- dead letters in batches -----------------------------------------------------------------

def test_a_batch_keeps_the_newest_of_each_subscription_and_counts_the_rest(
        store: SubscriptionStore) -> None:
    """`add_dead_letters` bounds a batch as `add_dead_letter` bounds one letter at a time: per
    subscription, the newest `keep` of what is stored and what arrives are kept, the others
    are counted in `dropped`; a deleted subscription's letters are discarded."""
    sub = store.add("acme", "#", "https://a.example/", "s")
    other = store.add("acme", "#", "https://a.example/o", "s")
    quiet = store.add("acme", "#", "https://a.example/q", "s")
    store.add_dead_letter(letter(sub.id, "old0"), keep=3)
    store.add_dead_letter(letter(sub.id, "old1"), keep=3)
    batch = [letter(sub.id, "new0"), letter(other.id, "o0"), letter(sub.id, "new1"),
             letter("sub_deleted", "x"), letter(other.id, "o1")]
    assert store.add_dead_letters(batch, keep=3) == {sub.id: 1, other.id: 0}
    assert [dead.event_id for dead in store.dead_letters(sub.id)] == ["old1", "new0", "new1"]
    assert [dead.event_id for dead in store.dead_letters(other.id)] == ["o0", "o1"]
    assert store.dead_letters("sub_deleted") == []
    # A batch longer than the bound: its oldest are never written, the stored ones go first.
    flood = [letter(sub.id, f"f{n}") for n in range(10)]
    assert store.add_dead_letters(flood, keep=3) == {sub.id: 10}
    assert store.dead_letters(sub.id) == flood[-3:]
    assert (store.dropped(sub.id), store.dropped(other.id), store.dropped(quiet.id)) == (
        11, 0, 0)
    assert store.add_dead_letters([], keep=3) == {}
    assert store.add_dead_letters([letter(quiet.id, f"q{n}") for n in range(4)]) == {
        quiet.id: 0}  # no bound: all kept
    assert len(store.dead_letters(quiet.id)) == 4
    with pytest.raises(ValueError, match="keep must be at least 1, not 0"):
        store.add_dead_letters([letter(sub.id, "e")], keep=0)


def test_a_batch_is_one_transaction(store: SubscriptionStore) -> None:
    """A letter the database refuses (here a body that is NULL) leaves nothing of its batch:
    neither the letters before it nor the letters or counts of another subscription."""
    sub = store.add("acme", "#", "https://a.example/", "s")
    other = store.add("acme", "#", "https://a.example/o", "s")
    store.add_dead_letter(letter(sub.id, "kept"), keep=1)
    broken = DeadLetter(other.id, "bad", None, 1, "HTTP 500", 1.0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.add_dead_letters([letter(sub.id, "e1"), letter(sub.id, "e2"), broken], keep=1)
    assert [dead.event_id for dead in store.dead_letters(sub.id)] == ["kept"]
    assert store.dead_letters(other.id) == []
    assert store.dropped(sub.id) == 0
    assert store.add_dead_letters([letter(sub.id, "e3")], keep=1) == {sub.id: 1}  # usable


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_file_that_is_not_a_database_is_refused_and_left_closed(tmp_path: Path) -> None:
    path = tmp_path / "notify.db"
    path.write_text("this is not a database, just some text" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        SubscriptionStore(path)
    assert open_files(path) == []


def test_update_changes_what_is_given_and_keeps_the_rest(store: SubscriptionStore) -> None:
    sub = store.add("acme", "#", "https://a.example/", "s")
    for n in range(3):
        store.add_dead_letter(letter(sub.id, f"e{n}"), keep=2)
    changed = store.update(sub.id, url="https://b.example/", secret="t")
    assert changed == Subscription(sub.id, "acme", "#", "webhook", "https://b.example/", "t",
                                   sub.created)
    assert store.get(sub.id) == changed
    assert [d.event_id for d in store.dead_letters(sub.id)] == ["e1", "e2"]
    assert store.dropped(sub.id) == 1
    assert store.update(sub.id, topic="a.*") == Subscription(
        sub.id, "acme", "a.*", "webhook", "https://b.example/", "t", sub.created)
    assert store.update(sub.id) == store.get(sub.id)  # nothing given: nothing changes
    assert store.update("sub_missing", url="https://c.example/") is None
    assert store.list() == [store.get(sub.id)]


def test_iso_time_is_the_events_format() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_time(1_796_693_404.25) == "2026-12-08T01:30:04.250000Z"
