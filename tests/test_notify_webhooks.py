"""Webhook subscriptions over real HTTP: the service (uvicorn) POSTs to a real receiver on
loopback (allow-listed), signed; retries, dead letters, redrive, tenancy, validation, restart;
the bus never waiting on the database; a flood of dead letters of full lanes written with the
recordings, bounded and warned about once; a bug in a delivery; a dispatcher that cannot
start."""

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
from fsmc.notify.eventlog import EventLog, Recorded, Retention
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
        assert warnings[0].startswith(f"webhook {ident}: more than 3 dead letters; dropped the")
        redrive = client.post(f"/v1/subscriptions/{ident}/dead-letters/redrive")
        assert redrive.json() == {"redriven": 3}
        assert [b["id"] for b in receiver.wait_for(3)] == [e.id for e in sent[2:]]
        assert client.get(f"/v1/subscriptions/{ident}/dead-letters").json() == {
            "dead_letters": [], "dropped": 2}
    receiver.server.shutdown()
    warnings = drop_warnings(caplog, ident)  # the lane writes its outcomes in batches: the two
    # drops come in one warning or in two, the second held back until shutdown
    assert sum(map(warned_count, warnings)) == 2 and len(warnings) <= 2
    assert all(warning.endswith("since the last warning") for warning in warnings[1:])
    assert not any(SECRET in record.getMessage() for record in caplog.records)


LOOPBACK = frozenset({"127.0.0.1"})


def item(n: int, owner: str = "acme") -> Item:
    return Item(n, f"evt-{n}", "VirtualMachine.StartRequested", owner,
                json.dumps({"id": f"evt-{n}"}))


def record(store: SubscriptionStore, dispatcher: WebhookDispatcher,
           items: Iterable[Item]) -> Recorded:
    """Record `items` as the journal does (the log and every matching subscription's pending
    deliveries, one transaction), and tell the dispatcher."""
    result = EventLog(store, Retention(1_000_000)).record(
        builtins.list(items), lane_limit=dispatcher.lane_limit,
        keep=dispatcher.max_dead_letters, not_attempted=dispatcher.not_attempted)
    dispatcher.recorded(result.dead_lettered, result.dropped)
    return result


def test_the_bus_never_waits_on_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's bus subscriber only queues: the journal's writer thread records, so a
    database that takes 0.3 s per recording never holds up the bus (and the streams it
    feeds); what was posted is all recorded, in order, in few transactions."""
    calls: builtins.list[int] = []
    real = EventLog.record

    def slow(self: EventLog, items: Any, **options: Any) -> Recorded:
        calls.append(len(items))
        time.sleep(0.3)
        return real(self, items, **options)

    monkeypatch.setattr(EventLog, "record", slow)
    bus = EventBus()
    with serving(bus, config()):
        started = time.monotonic()
        sent = [event("acme", n) for n in range(50)]
        for each in sent:
            bus.post(each)
        posting = time.monotonic() - started
        deadline = time.monotonic() + 10
        while sum(calls) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert posting < 0.3  # not one recording waited for
    assert sum(calls) == 50 and len(calls) <= 3  # batched: what waited went in at once


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
        record(store, dispatcher, [item(1)])
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
        record(store, dispatcher, [item(1), item(2)])
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
# recorded after the first finds it full (with lane_limit=1).
STUCK = {"attempts": 2, "base_delay": 30.0, "max_delay": 30.0, "lane_limit": 1,
         "resolve": unreachable}


def drop_warnings(caplog: pytest.LogCaptureFixture, ident: str) -> builtins.list[str]:
    return [record.getMessage() for record in caplog.records
            if record.getMessage().startswith(f"webhook {ident}: more than")]


def warned_count(message: str) -> int:
    return int(message.split("dropped the ")[1].split()[0])


def test_a_flood_into_a_full_lane_is_written_with_the_recordings_bounded_and_warned_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """20,000 events to two subscriptions whose lanes are full: each recording (1,000 events,
    one transaction) keeps its dead letters of full lanes in that transaction, each
    subscription keeps exactly its newest `max_dead_letters` with the rest counted as
    dropped, and the log has one warning per subscription, not one per letter; the
    warnings' counts add up to what was dropped once the dispatcher is closed."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    store = SubscriptionStore(":memory:")
    subs = [store.add(tenant, "#", "https://hooks.example/T/TOKEN", SECRET)
            for tenant in ("acme", "globex")]
    dispatcher = WebhookDispatcher(store, frozenset(), max_dead_letters=500, **STUCK)
    total = 20_000
    body = json.dumps({"data": "x" * 500})
    try:
        for start in range(0, total, 1000):
            record(store, dispatcher, [Item(0, f"evt-{n}", "VirtualMachine.Started",
                                            "acme" if n % 2 else "globex", body)
                                       for n in range(start, start + 1000)])
        assert dispatcher.stats()["dead_lettered"] == total - 2  # each lane holds its first
        for subscription, parity in zip(subs, (1, 0), strict=True):
            kept = store.dead_letters(subscription.id)
            assert [letter.event_id for letter in kept] == [
                f"evt-{n}" for n in range(total - 1000 + parity, total, 2)]
            assert all(letter.error.startswith("not attempted") for letter in kept)
            assert store.dropped(subscription.id) == total // 2 - 1 - 500
            assert len(drop_warnings(caplog, subscription.id)) == 1
            assert [d.event_id for d in store.pending(subscription.id)] == [
                f"evt-{parity}"]
    finally:
        dispatcher.close()
    for subscription in subs:
        warnings = drop_warnings(caplog, subscription.id)
        assert len(warnings) <= 2  # the count held back, told at close
        assert sum(map(warned_count, warnings)) == store.dropped(subscription.id)
    assert not any("TOKEN" in record.getMessage() or SECRET in record.getMessage()
                   for record in caplog.records)


def test_a_recording_is_one_transaction() -> None:
    """An event the database refuses (here a body that is NULL) leaves nothing of its batch:
    not the events before it in the log, nor their pending deliveries or dead letters."""
    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = WebhookDispatcher(store, frozenset(), **STUCK)
    log = EventLog(store, Retention(100))
    try:
        broken = Item(0, "evt-bad", "VirtualMachine.Started", "acme", None)  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            record(store, dispatcher, [item(1), item(2), item(3), broken])
        assert log.after(0) == [] and store.pending(subscription.id) == []
        assert store.dead_letters(subscription.id) == [] and log.head() == 0
        assert [i.seq for i in record(store, dispatcher, [item(4)]).items] == [1]  # usable
    finally:
        dispatcher.close()


def test_a_duplicate_is_recorded_once() -> None:
    """An event id the log holds is counted as a duplicate: no second log entry, no second
    delivery (the broker redelivers what was not acknowledged, publishers resend)."""
    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = WebhookDispatcher(store, frozenset(), **{**STUCK, "lane_limit": 100})
    try:
        first = record(store, dispatcher, [item(1), item(2)])
        again = record(store, dispatcher, [item(2), item(3), item(3)])
        assert [i.id for i in first.items] == ["evt-1", "evt-2"] and first.duplicates == 0
        assert [(i.seq, i.id) for i in again.items] == [(3, "evt-3")] and again.duplicates == 2
        assert [d.event_id for d in store.pending(subscription.id)] in (
            ["evt-1", "evt-2", "evt-3"], ["evt-2", "evt-3"])  # the lane may hold evt-1
    finally:
        dispatcher.close()


class QuickWarnings(WebhookDispatcher):
    drop_warning_interval = 0.3


def test_drop_warnings_come_at_most_once_an_interval_with_the_count_since_the_last(
        caplog: pytest.LogCaptureFixture) -> None:
    """Drops within the interval after a warning are counted and told by the next warning,
    which the lease keeper writes once the interval is over (no new drop needed)."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    store = SubscriptionStore(":memory:")
    subscription = store.add("acme", "#", "https://hooks.example/", SECRET)
    dispatcher = QuickWarnings(store, frozenset(), max_dead_letters=2, lease=0.6, **STUCK)
    try:
        for n in range(10):
            record(store, dispatcher, [item(n)])
        first = drop_warnings(caplog, subscription.id)
        for n in range(10, 15):
            record(store, dispatcher, [item(n)])
        time.sleep(0.8)  # the interval is over: the held-back count is told
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


def test_close_gives_up_on_a_database_that_does_not_answer(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's `close` waits `timeout` for the events posted and not yet recorded, then
    says with an error how many were not, and returns."""
    caplog.set_level(logging.WARNING, logger="fsmc.notify")
    gate, entered = threading.Event(), threading.Event()
    real = EventLog.record

    def held(self: EventLog, items: Any, **options: Any) -> Recorded:
        entered.set()
        gate.wait(30)
        return real(self, items, **options)

    monkeypatch.setattr(EventLog, "record", held)
    bus = EventBus()
    from fsmc.notify.app import create_app

    app = create_app(bus, config())
    journal = app.state.journal
    try:
        bus.post(event("acme", 0))  # held at the gate
        assert entered.wait(5)
        for n in range(1, 7):
            bus.post(event("acme", n))
        started = time.monotonic()
        journal.close(timeout=0.2)
        assert time.monotonic() - started < 2
    finally:
        gate.set()
        app.state.webhooks.close()
        app.state.store.close()
    errors = [record.getMessage() for record in caplog.records
              if record.levelno == logging.ERROR]
    assert errors == ["notify: closed with 7 events posted to the service not recorded: the "
                      "database did not take them within 0.2 s"]


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
        record(store, dispatcher, [item(1), item(2)])
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
