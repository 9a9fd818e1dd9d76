"""Webhook subscriptions over real HTTP: the service (uvicorn) POSTs to a real receiver on
loopback (allow-listed), signed; retries, dead letters, redrive, tenancy, validation, restart;
the dispatcher's threads against a slow store."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
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
    secret); a redrive then delivers the 3 kept ones, in order."""
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
        assert warnings == [f"webhook {ident}: more than 3 dead letters; dropped the 1 oldest"
                            ] * 2
        assert not any(SECRET in record.getMessage() for record in caplog.records)
        redrive = client.post(f"/v1/subscriptions/{ident}/dead-letters/redrive")
        assert redrive.json() == {"redriven": 3}
        assert [b["id"] for b in receiver.wait_for(3)] == [e.id for e in sent[2:]]
        assert client.get(f"/v1/subscriptions/{ident}/dead-letters").json() == {
            "dead_letters": [], "dropped": 2}
    receiver.server.shutdown()


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
