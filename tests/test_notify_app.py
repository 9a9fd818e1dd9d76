"""`create_app` and what it owns: its executors (DNS checks of new subscriptions apart from the
store's calls, over real HTTP; both shut down with the app), and the cleanup when it fails
part-way (a file that is not a database, a bus that refuses, a later step that raises): no
thread and no file descriptor left behind."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fsmc.notify import app as app_module
from fsmc.notify.app import DNS_THREADS, create_app
from fsmc.notify.store import SubscriptionStore
from fsmc.notify.subscriptions import validate_subscription
from fsmc.runtime import EventBus

from tests.notify_server import KEYS, config, open_files, serving

OURS = ("fsmc-webhook", "fsmc-notify-store", "fsmc-notify-dns")


def new_threads(before: set[threading.Thread], timeout: float = 0.0) -> list[str]:
    """The names of the service's threads started since `before` and still alive (after
    waiting up to `timeout` seconds for them to end)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = sorted(thread.name for thread in threading.enumerate()
                       if thread not in before and thread.name.startswith(OURS))
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def test_slow_dns_for_one_tenant_does_not_hold_up_another_tenants_requests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """acme POSTs subscriptions naming hosts whose lookups hang, more of them than the loop's
    default executor has threads: they wait in the app's DNS executor, while globex's
    requests, which call the store, are answered at once. When the lookups give up, acme gets
    its 422s; at shutdown the executors' threads end."""
    release = threading.Event()
    lookups: list[str] = []

    def hanging(host: str, port: int, **options: Any) -> Any:
        lookups.append(threading.current_thread().name)
        release.wait(30)
        raise OSError("lookup timed out")

    monkeypatch.setattr(app_module, "validate_subscription",
                        functools.partial(validate_subscription, resolve=hanging))
    posts = 2 * DNS_THREADS
    answers: list[httpx.Response] = []
    before = set(threading.enumerate())

    def subscribe(base: str, n: int) -> None:
        answers.append(httpx.post(
            f"{base}/v1/subscriptions", headers={"Authorization": f"Bearer {KEYS['acme']}"},
            json={"topic": "#", "kind": "webhook", "url": f"https://h{n}.slow.example/",
                  "secret": "s"}, timeout=60))

    try:
        with serving(EventBus(), config()) as base:
            threads = [threading.Thread(target=subscribe, args=(base, n)) for n in range(posts)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(lookups) < DNS_THREADS and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # time for more lookups to start, if anything ran them
            globex = httpx.Client(base_url=base, timeout=5,
                                  headers={"Authorization": f"Bearer {KEYS['globex']}"})
            for _ in range(3):
                started = time.monotonic()
                listing = globex.get("/v1/subscriptions")
                missing = globex.get("/v1/subscriptions/sub_0000000000000000")
                assert time.monotonic() - started < 1.0
                assert (listing.status_code, listing.json()) == (200, {"subscriptions": []})
                assert missing.status_code == 404
            assert len(lookups) == DNS_THREADS  # the DNS executor is full; the rest wait
            assert not release.is_set() and answers == []  # acme's lookups still hang
            release.set()
            for thread in threads:
                thread.join(30)
    finally:
        release.set()
    assert [answer.status_code for answer in answers] == [422] * posts
    assert all("cannot resolve host" in answer.json()["message"] for answer in answers)
    assert len(lookups) == posts
    assert all(name.startswith("fsmc-notify-dns") for name in lookups)
    assert new_threads(before, timeout=5) == []


@needs_proc
def test_a_file_that_is_not_a_database_is_refused_with_nothing_left_open(
        tmp_path: Path) -> None:
    path = tmp_path / "notify.db"
    path.write_text("this is not a database, just some text" * 100)
    bus = EventBus()
    before = set(threading.enumerate())
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        create_app(bus, config(), subscriptions=path)
    assert open_files(path) == []
    assert new_threads(before) == []


class RecordingBus(EventBus):
    """An `EventBus` that remembers who is subscribed; `refuse` makes `subscribe` raise."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.handles: list[Any] = []

    def subscribe(self, *args: Any, **options: Any) -> Any:
        if self.refuse:
            raise RuntimeError("the bus refuses")
        handle = super().subscribe(*args, **options)
        self.handles.append(handle)
        return handle

    def unsubscribe(self, handle: Any) -> bool:
        self.handles.remove(handle)
        return super().unsubscribe(handle)


@needs_proc
def test_create_app_closes_what_it_opened_when_a_later_step_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store it opened, the dispatcher's threads (one lane per stored subscription, and
    the dead-letter thread), its subscription to the bus: all undone when a later step
    raises. A store given to it stays open: it is the caller's."""
    path = tmp_path / "notify.db"
    seeded = SubscriptionStore(path)
    seeded.add("acme", "#", "https://hooks.example/", "s")
    seeded.close()
    before = set(threading.enumerate())

    with pytest.raises(RuntimeError, match="the bus refuses"):
        create_app(RecordingBus(refuse=True), config(), subscriptions=path)
    assert open_files(path) == []
    assert new_threads(before) == []

    def broken(*args: Any, **options: Any) -> Any:
        raise RuntimeError("the app cannot be built")

    monkeypatch.setattr(app_module, "Starlette", broken)
    bus = RecordingBus()
    with pytest.raises(RuntimeError, match="cannot be built"):
        create_app(bus, config(), subscriptions=path)
    assert bus.handles == []
    assert open_files(path) == []
    assert new_threads(before) == []

    given = SubscriptionStore(path)
    with pytest.raises(RuntimeError, match="cannot be built"):
        create_app(bus, config(), subscriptions=given)
    assert [sub.tenant for sub in given.list()] == ["acme"]  # still open
    assert bus.handles == [] and new_threads(before) == []
    given.close()
    assert open_files(path) == []

    with pytest.raises(ValueError, match="attempts >= 1"):  # the dispatcher refuses
        create_app(bus, config(), subscriptions=path, webhook_options={"attempts": 0})
    assert open_files(path) == [] and new_threads(before) == []
