"""Webhook subscriptions over real HTTP: the service (uvicorn) POSTs to a real receiver on
loopback (allow-listed), signed; retries, dead letters, redrive, tenancy, validation, restart;
the dispatcher's threads against a slow store; a flood of dead letters written in batches,
bounded and warned about once; a bug in a delivery; a dispatcher that cannot start."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fsmc.notify import webhooks
from fsmc.notify.config import NotifyConfig
from fsmc.notify.store import DeadLetter, Subscription, SubscriptionStore
from fsmc.notify.stream import Item
from fsmc.notify.webhooks import WebhookDispatcher, redact_urls
from fsmc.runtime import EventBus, StateChanged

from tests.notify_server import KEYS, serving
from tests.notify_server import config as tenants

SECRET = "s3cret"
FAST = {"attempts": 3, "base_delay": 0.05, "max_delay": 0.2, "timeout": 5.0}


def config(max_dead_letters: int | None = None) -> NotifyConfig:
    """The test tenants, with webhooks allowed to reach the receiver on loopback."""
    return tenants(allow="127.0.0.1", max_dead_letters=max_dead_letters)


class Receiver:
    """A webhook receiver on loopback: records (headers, body) of each POST; answers the
    status codes of `script` in turn (then 200)."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script = list(script or [])
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API names it
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                status = receiver.script.pop(0) if receiver.script else 200
                if status == 200:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def api(base: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEYS[who]}"},
                        timeout=10)


def subscribe(client: httpx.Client, url: str, topic: str = "#") -> str:
    answer = client.post("/v1/subscriptions", json={"topic": topic, "kind": "webhook",
                                                    "url": url, "secret": SECRET})
    assert answer.status_code == 201, answer.text
    assert "secret" not in answer.json()
    return str(answer.json()["id"])


def event(account: str, n: int) -> StateChanged:
    return StateChanged("VirtualMachine", f"{account}-vm-{n}", "StartRequested", "Stopped",
                        "Starting", (), {"account": account, "n": n})


def test_deliveries_are_signed_ordered_and_only_the_tenants_own(receiver: Receiver) -> None:
    bus = EventBus()
    with serving(bus, config(), webhook_options=FAST) as base:
        subscribe(api(base, "acme"), receiver.url)
        sent = [event("acme", n) if n % 3 else event("globex", n) for n in range(60)]
        for each in sent:
            bus.post(each)
        mine = [e.id for e in sent if e.payload["account"] == "acme"]
        bodies = receiver.wait_for(len(mine))
        assert [body["id"] for body in bodies] == mine
        for headers, body in receiver.received:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Fsmc-Signature"] == expected
            assert headers["Content-Type"] == "application/cloudevents+json"


def test_a_failing_receiver_gets_retries_then_the_event_is_dead_lettered_and_redriven() -> None:
    receiver = Receiver(script=[500, 503, 200, 500, 500, 500])
    bus = EventBus()
    with serving(bus, config(), webhook_options=FAST) as base:
        client = api(base, "acme")
        ident = subscribe(client, receiver.url)
        first, second = event("acme", 1), event("acme", 2)
        bus.post(first)  # 500, 503, then 200 on the third attempt
        assert [b["id"] for b in receiver.wait_for(1)] == [first.id]
        bus.post(second)  # 500 three times: dead letter
        deadline = time.monotonic() + 10
        while not client.get(f"/v1/subscriptions/{ident}/dead-letters").json()[
                "dead_letters"] and time.monotonic() < deadline:
            time.sleep(0.05)
        letters = client.get(f"/v1/subscriptions/{ident}/dead-letters").json()["dead_letters"]
        assert [(letter["event_id"], letter["attempts"]) for letter in letters] == [
            (second.id, 3)]
        assert "HTTP 500" in letters[0]["error"]
        redrive = client.post(f"/v1/subscriptions/{ident}/dead-letters/redrive")
        assert redrive.status_code == 202 and redrive.json() == {"redriven": 1}
        assert [b["id"] for b in receiver.wait_for(2)] == [first.id, second.id]
        assert client.get(f"/v1/subscriptions/{ident}/dead-letters").json() == {
            "dead_letters": [], "dropped": 0}
    receiver.server.shutdown()


def test_tenants_cannot_see_or_delete_each_others_subscriptions(receiver: Receiver) -> None:
    with serving(EventBus(), config(), webhook_options=FAST) as base:
        acme, globex, admin = api(base, "acme"), api(base, "globex"), api(base, "admin")
        ident = subscribe(acme, receiver.url)
        assert globex.get(f"/v1/subscriptions/{ident}").status_code == 404
        assert globex.delete(f"/v1/subscriptions/{ident}").status_code == 404
        assert globex.get(f"/v1/subscriptions/{ident}/dead-letters").status_code == 404
        assert globex.get("/v1/subscriptions").json() == {"subscriptions": []}
        assert [s["id"] for s in admin.get("/v1/subscriptions").json()["subscriptions"]] == [
            ident]
        assert acme.get(f"/v1/subscriptions/{ident}").json()["url"] == receiver.url
        assert acme.delete(f"/v1/subscriptions/{ident}").status_code == 204
        assert acme.get(f"/v1/subscriptions/{ident}").status_code == 404
        assert httpx.get(f"{base}/v1/subscriptions", timeout=10).status_code == 401


@pytest.mark.parametrize(("body", "reason"), [
    ({"topic": "#", "kind": "webhook", "url": "http://127.0.0.2:9/x", "secret": "s"},
     "loopback"),
    ({"topic": "#", "kind": "webhook", "url": "http://169.254.169.254/latest", "secret": "s"},
     "link-local"),
    ({"topic": "#", "kind": "webhook", "url": "http://10.0.0.1/x", "secret": "s"}, "private"),
    ({"topic": "#", "kind": "webhook", "url": "file:///etc/passwd", "secret": "s"}, "http"),
    ({"topic": "x" * 300, "kind": "webhook", "url": "http://127.0.0.1/x", "secret": "s"},
     "255"),
    ({"topic": "#", "kind": "email", "url": "http://127.0.0.1/x", "secret": "s"}, "webhook"),
])
def test_malformed_or_internal_targets_are_answered_422(body: dict[str, str],
                                                        reason: str) -> None:
    with serving(EventBus(), config(), webhook_options=FAST) as base:
        answer = api(base, "acme").post("/v1/subscriptions", json=body)
        assert answer.status_code == 422, answer.text
        assert reason in answer.json()["message"]


def test_subscriptions_survive_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    database = tmp_path / "subscriptions.db"
    with serving(EventBus(), config(), subscriptions=database, webhook_options=FAST) as base:
        ident = subscribe(api(base, "acme"), receiver.url, topic="VirtualMachine.#")
    bus = EventBus()
    with serving(bus, config(), subscriptions=database, webhook_options=FAST) as base:
        assert [s["id"] for s in api(base, "acme").get("/v1/subscriptions").json()[
            "subscriptions"]] == [ident]
        again = event("acme", 7)
        bus.post(again)
        assert [b["id"] for b in receiver.wait_for(1)] == [again.id]


def test_a_receiver_too_far_behind_gets_dead_letters_not_an_endless_queue() -> None:
    receiver = Receiver(script=[500] * 1000)
    bus = EventBus()
    options = {**FAST, "attempts": 1, "lane_limit": 3}
    with serving(bus, config(), webhook_options=options) as base:
        client = api(base, "acme")
        ident = subscribe(client, receiver.url)
        for n in range(20):
            bus.post(event("acme", n))
        deadline = time.monotonic() + 10
        letters: list[dict[str, Any]] = []
        while len(letters) < 20 and time.monotonic() < deadline:
            letters = client.get(f"/v1/subscriptions/{ident}/dead-letters").json()[
                "dead_letters"]
            time.sleep(0.05)
        assert len(letters) == 20  # every event is accounted for
        assert any(letter["error"].startswith("not attempted: 3 events were already waiting")
                   for letter in letters)
    receiver.server.shutdown()


def test_dead_letters_beyond_the_configured_bound_are_dropped_oldest_first(
        caplog: pytest.LogCaptureFixture) -> None:
    """`[webhooks] max_dead_letters = 3`: of 5 events a dead receiver refuses, the last 3 are
    kept, 2 are counted as dropped (with a warning that names the subscription and never its
    secret: one at the first drop, the next one's count held back, as warnings come at most
    once a minute, and told at shutdown); a redrive then delivers the 3 kept ones, in
    order."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    receiver = Receiver(script=[500] * 5)
    bus = EventBus()
    with serving(bus, config(max_dead_letters=3),
                 webhook_options={**FAST, "attempts": 1}) as base:
        client = api(base, "acme")
        ident = subscribe(client, receiver.url)
        sent = [event("acme", n) for n in range(5)]
        for each in sent:
            bus.post(each)
        deadline = time.monotonic() + 10
        shown = client.get(f"/v1/subscriptions/{ident}/dead-letters").json()
        while shown["dropped"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            shown = client.get(f"/v1/subscriptions/{ident}/dead-letters").json()
        assert [letter["event_id"] for letter in shown["dead_letters"]] == [
            e.id for e in sent[2:]]
        assert shown["dropped"] == 2
        warnings = [record.getMessage() for record in caplog.records
                    if record.name == "fsmc.notify" and "dropped" in record.getMessage()]
        assert warnings == [f"webhook {ident}: more than 3 dead letters; dropped the 1 oldest"]
        redrive = client.post(f"/v1/subscriptions/{ident}/dead-letters/redrive")
        assert redrive.json() == {"redriven": 3}
        assert [b["id"] for b in receiver.wait_for(3)] == [e.id for e in sent[2:]]
        assert client.get(f"/v1/subscriptions/{ident}/dead-letters").json() == {
            "dead_letters": [], "dropped": 2}
    receiver.server.shutdown()
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "fsmc.notify" and "dropped" in record.getMessage()]
    assert warnings == [f"webhook {ident}: more than 3 dead letters; dropped the 1 oldest",
                        f"webhook {ident}: more than 3 dead letters; dropped the 1 oldest "
                        "since the last warning"]
    assert not any(SECRET in record.getMessage() for record in caplog.records)


LOOPBACK = frozenset({"127.0.0.1"})


def item(n: int, owner: str = "acme") -> Item:
    return Item(n, f"evt-{n}", "VirtualMachine.StartRequested", owner,
                json.dumps({"id": f"evt-{n}"}))


class SlowLetters(SubscriptionStore):
    """An in-memory store that takes `delay` seconds to keep each dead letter."""

    def __init__(self, delay: float) -> None:
        super().__init__(":memory:")
        self.delay = delay

    def add_dead_letter(self, letter: DeadLetter, keep: int | None = None) -> int | None:
        time.sleep(self.delay)
        return super().add_dead_letter(letter, keep)

    def add_dead_letters(self, letters: Iterable[DeadLetter],
                         keep: int | None = None) -> dict[str, int]:
        time.sleep(self.delay)
        return super().add_dead_letters(letters, keep)


def test_offer_never_waits_on_the_store() -> None:
    """The bus's thread hands the dispatcher events whose lane is full; their dead letters are
    written by the dispatcher's own thread, so a slow store never holds up the bus (and so
    the streams the bus feeds)."""
    receiver = Receiver(script=[500])  # then the lane waits 30 s before its second attempt
    store = SlowLetters(0.3)
    subscription = store.add("acme", "#", receiver.url, SECRET)
    dispatcher = WebhookDispatcher(store, LOOPBACK, attempts=2, base_delay=30, max_delay=30,
                                   lane_limit=1)
    try:
        dispatcher.offer(item(0))
        deadline = time.monotonic() + 10
        while receiver.calls < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        for n in range(1, 5):  # the lane is full: each becomes a dead letter
            dispatcher.offer(item(n))
        offering = time.monotonic() - started
    finally:
        dispatcher.close()  # writes the letters still waiting
        receiver.server.shutdown()
    assert offering < 0.3  # not one store write waited for
    letters = store.dead_letters(subscription.id)
    assert [letter.event_id for letter in letters] == ["evt-1", "evt-2", "evt-3", "evt-4"]
    assert all(letter.error.startswith("not attempted") for letter in letters)
    assert dispatcher.stats()["dead_lettered"] == 4


class StaleListing(SubscriptionStore):
    """An in-memory store whose next listing of every subscription, once `armed`, is read and
    then held for 0.5 s before it is returned (stale by then); `read` is set when it was."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.armed = False
        self.read = threading.Event()

    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        found = super().list(tenant)
        if tenant is None and self.armed:
            self.armed = False
            self.read.set()
            time.sleep(0.5)
        return found


def test_concurrent_refreshes_do_not_undo_each_other(receiver: Receiver) -> None:
    """The app refreshes from worker threads: a refresh that read the store before a
    subscription was added must not apply its listing after one that read it since (and stop
    the new subscription's lane)."""
    store = StaleListing()
    dispatcher = WebhookDispatcher(store, LOOPBACK, **FAST)
    try:
        store.armed = True
        stale = threading.Thread(target=dispatcher.refresh)
        stale.start()
        assert store.read.wait(5)
        store.add("acme", "#", receiver.url, SECRET)
        dispatcher.refresh()
        stale.join(5)
        dispatcher.offer(item(1))
        assert [body["id"] for body in receiver.wait_for(1, timeout=5)] == ["evt-1"]
    finally:
        dispatcher.close()


def test_urls_in_errors_are_cut_to_their_host() -> None:
    assert redact_urls("for url 'https://u:pw@hooks.example:8443/services/T0/B0/tok?k=v#f' x") \
        == "for url 'https://hooks.example:8443/…' x"
    assert redact_urls("HTTPS://Q.example and http://h.example?k=v.") == \
        "HTTPS://Q.example and http://h.example/…"
    assert redact_urls("ConnectError: [Errno 111] Connection refused") == \
        "ConnectError: [Errno 111] Connection refused"


def test_an_unexpected_failure_is_a_failed_attempt_and_never_leaks_the_url(
        caplog: pytest.LogCaptureFixture) -> None:
    """A resolver that raises what nobody expected (with the URL, token included, in its
    message): each event is dead-lettered after its attempts, the lane goes on to the next
    one, and neither the logs nor the dead letters show the token."""
    caplog.set_level(logging.DEBUG, logger="fsmc.notify")
    url = "https://hooks.example/services/TOKEN?key=TOKEN"

    def resolve(host: str, port: int, **options: Any) -> Any:
        raise RuntimeError(f"resolver crashed on {url}")

    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", url, SECRET)
    dispatcher = WebhookDispatcher(store, frozenset(), attempts=2, base_delay=0.01,
                                   max_delay=0.01, resolve=resolve)
    try:
        dispatcher.offer(item(1))
        dispatcher.offer(item(2))
        deadline = time.monotonic() + 10
        while len(store.dead_letters(subscription.id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        dispatcher.close()
    letters = store.dead_letters(subscription.id)
    assert [(letter.event_id, letter.attempts) for letter in letters] == [("evt-1", 2),
                                                                          ("evt-2", 2)]
    assert letters[0].error == "RuntimeError: resolver crashed on https://hooks.example/…"
    assert caplog.records and not any("TOKEN" in record.getMessage() or record.exc_info
                                      for record in caplog.records)


# --- dead letters of a full lane: batches, bounded, warned once --------------------------------

def unreachable(host: str, port: int, **options: Any) -> Any:
    raise OSError("no such host")


# A lane whose first attempt fails, then waits 15-30 s to retry (woken by `close`): every event
# offered after the first finds it full (with lane_limit=1).
STUCK = {"attempts": 2, "base_delay": 30.0, "max_delay": 30.0, "lane_limit": 1,
         "resolve": unreachable}


class CountingStore(SubscriptionStore):
    """An in-memory store that records the size of each batch of dead letters it is given
    (each one transaction), and how many single letters; with `gate` set, the first batch
    waits for it."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(":memory:")
        self.batches: builtins.list[int] = []
        self.singles = 0
        self.gate = gate
        self.entered = threading.Event()

    def add_dead_letter(self, letter: DeadLetter, keep: int | None = None) -> int | None:
        self.singles += 1
        return super().add_dead_letter(letter, keep)

    def add_dead_letters(self, letters: Iterable[DeadLetter],
                         keep: int | None = None) -> dict[str, int]:
        letters = builtins.list(letters)
        self.batches.append(len(letters))
        self.entered.set()
        if self.gate is not None and len(self.batches) == 1:
            self.gate.wait(30)
        return super().add_dead_letters(letters, keep)


def drop_warnings(caplog: pytest.LogCaptureFixture, ident: str) -> builtins.list[str]:
    return [record.getMessage() for record in caplog.records
            if record.getMessage().startswith(f"webhook {ident}: more than")]


def warned_count(message: str) -> int:
    return int(message.split("dropped the ")[1].split()[0])


def test_a_flood_into_a_full_lane_is_written_in_batches_bounded_and_warned_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """100,000 events to two subscriptions whose lanes are full: the dead-letter thread keeps
    up (a few batches, each one transaction; never one letter at a time), each subscription
    keeps exactly its newest `max_dead_letters` with the rest counted as dropped, and the log
    has one warning per subscription, not one per letter; the warnings' counts add up to
    what was dropped once the dispatcher is closed."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    store = CountingStore()
    subs = [store.add(tenant, "#", "https://hooks.example/T/TOKEN", SECRET)
            for tenant in ("acme", "globex")]
    dispatcher = WebhookDispatcher(store, frozenset(), max_dead_letters=500, **STUCK)
    total = 100_000
    body = json.dumps({"data": "x" * 500})
    try:
        started = time.monotonic()
        for n in range(total):
            dispatcher.offer(Item(n, f"evt-{n}", "VirtualMachine.Started",
                                  "acme" if n % 2 else "globex", body))
        offering = time.monotonic() - started
        caught_up = started + offering + 5
        while dispatcher.stats()["dead_lettered"] < total - 2 and \
                time.monotonic() < caught_up:
            time.sleep(0.01)
        assert dispatcher.stats()["dead_lettered"] == total - 2  # each lane holds its first
        for subscription, parity in zip(subs, (1, 0), strict=True):
            kept = store.dead_letters(subscription.id)
            assert [letter.event_id for letter in kept] == [
                f"evt-{n}" for n in range(total - 1000 + parity, total, 2)]
            assert store.dropped(subscription.id) == total // 2 - 1 - 500
            assert len(drop_warnings(caplog, subscription.id)) == 1
        assert store.singles == 0 and sum(store.batches) == total - 2
        assert len(store.batches) < 1000
    finally:
        dispatcher.close()
    for subscription in subs:
        warnings = drop_warnings(caplog, subscription.id)
        assert len(warnings) <= 2  # the count held back, told at close
        assert sum(map(warned_count, warnings)) == store.dropped(subscription.id)
    assert not any("TOKEN" in record.getMessage() or SECRET in record.getMessage()
                   for record in caplog.records)


def test_the_dead_letter_thread_writes_everything_queued_in_one_transaction() -> None:
    """While the store writes one batch, the letters that arrive wait; the next batch is all
    of them, in one call (one transaction), in order."""
    gate = threading.Event()
    store = CountingStore(gate)
    subscription = store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = WebhookDispatcher(store, frozenset(), **STUCK)
    try:
        dispatcher.offer(item(0))  # the lane's
        dispatcher.offer(item(1))  # a batch of one, held at the gate
        assert store.entered.wait(5)
        for n in range(2, 302):
            dispatcher.offer(item(n))
        gate.set()
        deadline = time.monotonic() + 5
        while dispatcher.stats()["dead_lettered"] < 301 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.batches == [1, 300]
        assert [letter.event_id for letter in store.dead_letters(subscription.id)] == [
            f"evt-{n}" for n in range(1, 302)]
    finally:
        gate.set()
        dispatcher.close()


class QuickWarnings(WebhookDispatcher):
    drop_warning_interval = 0.3


def test_drop_warnings_come_at_most_once_an_interval_with_the_count_since_the_last(
        caplog: pytest.LogCaptureFixture) -> None:
    """Drops within the interval after a warning are counted and told by the next warning,
    which the dead-letter thread writes once the interval is over (no new drop needed)."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = QuickWarnings(store, frozenset(), max_dead_letters=2, **STUCK)
    try:
        for n in range(10):
            dispatcher.offer(item(n))
        deadline = time.monotonic() + 5
        while store.dropped(subscription.id) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        first = drop_warnings(caplog, subscription.id)
        for n in range(10, 15):
            dispatcher.offer(item(n))
        while store.dropped(subscription.id) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.6)  # the interval is over: the held-back count is told
        warnings = drop_warnings(caplog, subscription.id)
    finally:
        dispatcher.close()
    assert store.dropped(subscription.id) == 12
    assert warnings[0] == f"webhook {subscription.id}: more than 2 dead letters; dropped " \
        f"the {warned_count(warnings[0])} oldest"
    assert all(warning.endswith(" oldest since the last warning") for warning in warnings[1:])
    assert sum(map(warned_count, warnings)) == 12
    assert len(first) <= 2 and len(warnings) <= 4
    times = [record.created for record in caplog.records
             if record.getMessage().startswith(f"webhook {subscription.id}: more than")]
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(times))


def test_close_gives_up_on_a_store_that_does_not_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    """`close` waits `close_timeout` for the dead letters still queued, then says with an
    error how many were not written, and returns."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    gate = threading.Event()
    store = CountingStore(gate)
    store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = WebhookDispatcher(store, frozenset(), close_timeout=0.2, **STUCK)
    try:
        dispatcher.offer(item(0))  # the lane's
        dispatcher.offer(item(1))  # held at the gate
        assert store.entered.wait(5)
        for n in range(2, 7):
            dispatcher.offer(item(n))
        started = time.monotonic()
        dispatcher.close()
        assert time.monotonic() - started < 2
    finally:
        gate.set()
    errors = [record.getMessage() for record in caplog.records
              if record.levelno == logging.ERROR]
    assert errors == ["webhooks: closed with 6 dead letters not written: the store did not "
                      "take them within 0.2 s"]


# --- a bug in a delivery ---------------------------------------------------------------------

class Buggy(WebhookDispatcher):
    """Its attempt to deliver evt-1 raises what no attempt should (with the URL in the
    message, as a careless exception would have it)."""

    def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> str:
        if headers["X-Fsmc-Event-Id"] == "evt-1":
            raise RuntimeError(f"bug while posting to {url}")
        return super()._attempt(url, body, headers)


def test_an_item_whose_delivery_raises_is_dead_lettered_and_the_lane_goes_on(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fsmc.notify")
    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", receiver.url + "?key=TOKEN", SECRET)
    dispatcher = Buggy(store, LOOPBACK, **FAST)
    try:
        for n in (1, 2):
            dispatcher.offer(item(n))
        assert [body["id"] for body in receiver.wait_for(1, timeout=10)] == ["evt-2"]
    finally:
        dispatcher.close()
    port = receiver.url.split(":")[2].split("/")[0]
    assert store.dead_letters(subscription.id) == [DeadLetter(
        subscription.id, "evt-1", json.dumps({"id": "evt-1"}), 0,
        f"internal error: RuntimeError: bug while posting to http://127.0.0.1:{port}/…",
        store.dead_letters(subscription.id)[0].time)]
    assert dispatcher.stats()["dead_lettered"] == 1 and dispatcher.stats()["delivered"] == 1
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "failed on a bug; dead-lettered" in errors[0].getMessage()
    assert "Traceback" in errors[0].getMessage() and "_attempt" in errors[0].getMessage()
    assert not any("TOKEN" in record.getMessage() for record in caplog.records)


# --- a dispatcher that cannot start ------------------------------------------------------------

def webhook_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate()
            if thread.name.startswith("fsmc-webhook")}


class BrokenListing(SubscriptionStore):
    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_dispatcher_whose_first_refresh_fails_leaves_no_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = webhook_threads()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        WebhookDispatcher(BrokenListing(":memory:"), LOOPBACK)
    assert webhook_threads() - before == set()
    # A refresh that fails part-way, after some lanes started: they are stopped too.
    store = SubscriptionStore(":memory:")
    for topic in ("VirtualMachine.#", "#", "Volume.#"):
        store.add("acme", topic, "https://hooks.example/", SECRET)

    real = webhooks.compile_pattern

    def compile_pattern(topic: str) -> Any:
        if topic == "Volume.#":
            raise ValueError("a bug")
        return real(topic)

    monkeypatch.setattr(webhooks, "compile_pattern", compile_pattern)
    with pytest.raises(ValueError, match="a bug"):
        WebhookDispatcher(store, LOOPBACK)
    assert webhook_threads() - before == set()
