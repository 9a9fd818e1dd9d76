"""`create_app` and what it owns: its executors (DNS checks of new subscriptions apart from the
store's calls, over real HTTP; both shut down with the app), and the cleanup when it fails
part-way (a file that is not a database, a bus that refuses, a later step that raises): no
thread and no file descriptor left behind."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fsmc.notify import app as app_module
from fsmc.notify.app import DNS_PER_CALLER, DNS_THREADS, create_app
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


def hanging_lookups(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[str]]:
    """Every DNS lookup of a subscription check hangs until the event is set, then fails;
    the list gets the name of each lookup's thread as it starts."""
    release = threading.Event()
    lookups: list[str] = []

    def hanging(host: str, port: int, **options: Any) -> Any:
        lookups.append(threading.current_thread().name)
        release.wait(30)
        raise OSError("lookup timed out")

    monkeypatch.setattr(app_module, "validate_subscription",
                        functools.partial(validate_subscription, resolve=hanging))
    return release, lookups


def post_subscription(base: str, who: str, n: int) -> httpx.Response:
    return httpx.post(f"{base}/v1/subscriptions", headers={"Authorization": f"Bearer {KEYS[who]}"},
                      json={"topic": "#", "kind": "webhook", "url": f"https://h{n}.slow.example/",
                            "secret": "s"}, timeout=60)


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_slow_dns_for_one_tenant_does_not_hold_up_another_tenants_requests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """acme POSTs subscriptions naming hosts whose lookups hang: two are checked at once
    (DNS_PER_CALLER), the others are answered 429 at once, so acme cannot take every lookup
    thread; the admin's lookups fill the rest of the DNS executor, and globex's requests, which
    call the store, are still answered at once. When the lookups give up, the checks get their
    422s, and at shutdown the executors' threads end."""
    release, lookups = hanging_lookups(monkeypatch)
    answers: dict[str, list[httpx.Response]] = {"acme": [], "admin": []}
    before = set(threading.enumerate())
    try:
        with serving(EventBus(), config()) as base:
            threads = [threading.Thread(target=lambda who=who, n=n: answers[who].append(
                           post_subscription(base, who, n)))
                       for who in ("acme", "admin") for n in range(DNS_THREADS)]
            for thread in threads[:DNS_THREADS]:  # acme's first
                thread.start()
            wait_until(lambda: len(answers["acme"]) == DNS_THREADS - DNS_PER_CALLER)
            for thread in threads[DNS_THREADS:]:
                thread.start()
            wait_until(lambda: len(lookups) == DNS_THREADS and
                       len(answers["admin"]) == DNS_THREADS - DNS_PER_CALLER)
            assert [answer.status_code for answer in answers["acme"]] == \
                [429] * (DNS_THREADS - DNS_PER_CALLER)
            assert answers["acme"][0].headers["Retry-After"] == "1"
            globex = httpx.Client(base_url=base, timeout=5,
                                  headers={"Authorization": f"Bearer {KEYS['globex']}"})
            for _ in range(3):
                started = time.monotonic()
                listing = globex.get("/v1/subscriptions")
                missing = globex.get("/v1/subscriptions/sub_0000000000000000")
                assert time.monotonic() - started < 1.0
                assert (listing.status_code, listing.json()) == (200, {"subscriptions": []})
                assert missing.status_code == 404
            assert len(lookups) == DNS_THREADS  # the DNS executor is full, nothing else ran
            release.set()
            for thread in threads:
                thread.join(30)
            again = post_subscription(base, "acme", 99)  # acme's slots are free again
            assert again.status_code == 422 and "cannot resolve host" in again.json()["message"]
    finally:
        release.set()
    for who in ("acme", "admin"):
        assert sorted(answer.status_code for answer in answers[who]) == \
            [422] * DNS_PER_CALLER + [429] * (DNS_THREADS - DNS_PER_CALLER)
    assert all(name.startswith("fsmc-notify-dns") for name in lookups)
    assert new_threads(before, timeout=5) == []


def test_a_lookup_that_takes_too_long_is_answered_and_still_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After DNS_PATIENCE the request is answered 422; the lookup's thread still hangs, and
    still counts against the tenant until it ends."""
    release, lookups = hanging_lookups(monkeypatch)
    monkeypatch.setattr(app_module, "DNS_PATIENCE", 0.3)
    try:
        with serving(EventBus(), config()) as base:
            for n in range(DNS_PER_CALLER):
                late = post_subscription(base, "acme", n)
                assert late.status_code == 422
                assert late.json()["message"] == ("the URL's host could not be resolved "
                                                  "within 0.3 s")
            assert post_subscription(base, "acme", 9).status_code == 429  # both still hang
            release.set()
            wait_until(lambda: post_subscription(base, "acme", 10).status_code == 422)
            assert len(lookups) == DNS_PER_CALLER + 1
    finally:
        release.set()


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
