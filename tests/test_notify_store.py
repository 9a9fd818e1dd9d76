"""The SQLite store of webhook subscriptions: tenants, dead letters, reopening the file,
secrets kept out of JSON and repr, concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsmc.notify.store import DeadLetter, Subscription, SubscriptionStore


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
        assert store.add_dead_letter(dead) is True
    store.add_dead_letter(letter(other.id, "x"))
    assert store.dead_letters(sub.id) == letters
    assert store.dead_letters("sub_missing") == []
    assert letters[0].to_json() == {"subscription": sub.id, "event_id": "e0",
                                    "body": '{"id":"e0"}', "attempts": 5,
                                    "error": "HTTP 503", "time": 1000.0}
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
    assert store.add_dead_letter(letter(sub.id, "late")) is False
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
                             "url": "https://a.example/", "created": sub.created}
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
