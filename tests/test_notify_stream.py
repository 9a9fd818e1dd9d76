"""The notification service's live stream over real HTTP (uvicorn on loopback): tenancy,
authentication, rate limits, topic filters, resume with Last-Event-ID, slow clients, a slow
subscription store."""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fsmc.notify.store import Subscription, SubscriptionStore
from fsmc.runtime import EventBus, StateChanged

from tests.notify_server import KEYS, Reader, config, serving


def event(account: str, n: int, machine: str = "VirtualMachine") -> StateChanged:
    return StateChanged(machine, f"{account}-vm-{n}", "StartRequested", "Stopped", "Starting",
                        (), {"account": account, "n": n})


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def url(bus: EventBus) -> Iterator[str]:
    with serving(bus, config()) as base:
        yield base


def ids(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [ident for ident, _ in events]


def test_a_tenant_sees_its_own_events_and_the_admin_sees_all(bus: EventBus, url: str) -> None:
    acme, globex, admin = (Reader(url, KEYS[name]).start() for name in ("acme", "globex",
                                                                         "admin"))
    sent = [event("acme", 1), event("globex", 2), event("acme", 3), event("other", 4)]
    for each in sent:
        bus.post(each)
    assert [e["data"]["resource_id"] for _, e in admin.wait_for(4)] == [
        "acme-vm-1", "globex-vm-2", "acme-vm-3", "other-vm-4"]
    assert ids(acme.wait_for(2)) == [sent[0].id, sent[2].id]
    assert ids(globex.wait_for(1)) == [sent[1].id]
    time.sleep(0.2)
    assert len(acme.events) == 2 and len(globex.events) == 1  # nothing else arrives
    first = acme.events[0][1]
    assert (first["specversion"], first["type"], first["id"], first["subject"]) == (
        "1.0", "fsmc.StateChanged", sent[0].id, "acme-vm-1")


def test_requests_without_a_known_key_are_refused(url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "key-acme"},
                    {"Authorization": "Basic a2V5LWFjbWU="}):
        answer = httpx.get(f"{url}/v1/events", headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"] == "unauthorized"


def test_a_malformed_topic_pattern_is_answered_422(url: str) -> None:
    answer = httpx.get(f"{url}/v1/events", params={"topic": "x" * 300},
                       headers={"Authorization": f"Bearer {KEYS['acme']}"}, timeout=10)
    assert answer.status_code == 422
    assert "255" in answer.json()["message"]


def test_a_key_over_its_rate_is_answered_429_with_retry_after(bus: EventBus) -> None:
    with serving(bus, config(rate=0.5, burst=2)) as base:
        headers = {"Authorization": f"Bearer {KEYS['acme']}"}
        bad = {"topic": "x" * 300}  # answered at once (422) once admitted
        codes = [httpx.get(f"{base}/v1/events", params=bad, headers=headers,
                           timeout=10).status_code for _ in range(3)]
        assert codes == [422, 422, 429]
        limited = httpx.get(f"{base}/v1/events", params=bad, headers=headers, timeout=10)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        other = httpx.get(f"{base}/v1/events", params=bad, timeout=10,
                          headers={"Authorization": f"Bearer {KEYS['globex']}"})
        assert other.status_code == 422  # limits are per key


def test_topic_patterns_filter_the_stream(bus: EventBus, url: str) -> None:
    reader = Reader(url, KEYS["acme"], topic="Volume.#").start()
    bus.post(event("acme", 1))
    bus.post(event("acme", 2, machine="Volume"))
    assert [e["data"]["machine"] for _, e in reader.wait_for(1)] == ["Volume"]


def test_a_client_resumes_after_last_event_id(bus: EventBus, url: str) -> None:
    sent = [event("acme", n) for n in range(5)]
    for each in sent[:3]:
        bus.post(each)
    reader = Reader(url, KEYS["acme"], last_id=sent[1].id).start()
    for each in sent[3:]:
        bus.post(each)
    assert ids(reader.wait_for(3)) == [e.id for e in sent[2:]]
    assert reader.notices == []


def test_resuming_from_an_id_the_log_no_longer_holds_says_so(bus: EventBus,
                                                             url: str) -> None:
    bus.post(event("acme", 1))
    reader = Reader(url, KEYS["acme"], last_id="gone-long-ago").start()
    reader.wait_for(1)
    assert reader.notices and reader.notices[0][0] == "gap"
    assert len(reader.events) == 1


def test_a_slow_client_is_cut_off_without_slowing_the_others(bus: EventBus) -> None:
    """3,000 events of ~2 KB at ~2,500/s: more than a reader that stops for 3 s can have in
    its socket buffers and queue (500), well within what a reader that keeps up takes."""
    with serving(bus, config(client_queue=500)) as base:
        fast = Reader(base, KEYS["admin"]).start()
        slow = Reader(base, KEYS["admin"], stall=3.0).start()
        sent = [StateChanged("VirtualMachine", f"vm-{n}", "StartRequested", "Stopped",
                             "Starting", (), {"account": "acme", "pad": "x" * 2000})
                for n in range(3000)]
        started = time.perf_counter()
        for index, each in enumerate(sent):
            bus.post(each)
            if index % 50 == 49:
                time.sleep(0.02)
        posting = time.perf_counter() - started
        assert ids(fast.wait_for(3000)) == [e.id for e in sent]
        assert posting < 5  # the bus never waited for the slow reader
        assert slow.done.wait(60)
        assert slow.notices and slow.notices[-1][0] == "overflow"
        assert "reconnect with Last-Event-ID" in slow.notices[-1][1]
        assert len(slow.events) < 3000


class SlowStore(SubscriptionStore):
    """An in-memory store whose listing of one tenant's subscriptions takes `delay` seconds
    (the admin's listing, which the webhook dispatcher makes, is not slowed); `listing` is set
    while such a listing is in progress."""

    def __init__(self, delay: float) -> None:
        super().__init__(":memory:")
        self.delay = delay
        self.listing = threading.Event()

    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        if tenant is None:
            return super().list(tenant)
        self.listing.set()
        try:
            time.sleep(self.delay)
            return super().list(tenant)
        finally:
            self.listing.clear()


def test_a_slow_store_does_not_stall_open_streams(bus: EventBus) -> None:
    """Events reach an open stream while `GET /v1/subscriptions` waits 1.5 s on the store: the
    store is called from a worker thread, not on the event loop that feeds the streams."""
    store = SlowStore(1.5)
    with serving(bus, config(), subscriptions=store) as base:
        in_flight: list[bool] = []  # per event: was the slow listing still in progress?
        reader = Reader(base, KEYS["acme"],
                        on_event=lambda _: in_flight.append(store.listing.is_set())).start()
        answers: list[httpx.Response] = []
        listing = threading.Thread(target=lambda: answers.append(httpx.get(
            f"{base}/v1/subscriptions", headers={"Authorization": f"Bearer {KEYS['acme']}"},
            timeout=10)))
        listing.start()
        assert store.listing.wait(5), "the listing never reached the store"
        sent = [event("acme", n) for n in range(3)]
        for each in sent:
            bus.post(each)
        assert ids(reader.wait_for(3, timeout=5)) == [e.id for e in sent]
        listing.join(10)
        assert in_flight == [True, True, True]
        assert answers and answers[0].status_code == 200
        assert answers[0].json() == {"subscriptions": []}


def test_10k_events_reach_50_clients_in_order(bus: EventBus) -> None:
    """Posted as one burst (faster than any client reads), so the clients may fall up to
    10,000 behind: `client_queue` is set to allow it."""
    with serving(bus, config(client_queue=10_000)) as base:
        readers = [Reader(base, KEYS["admin"]).start() for _ in range(50)]
        sent = [event("acme", n) for n in range(10_000)]
        for each in sent:
            bus.post(each)
        expected = [e.id for e in sent]
        for reader in readers:
            assert ids(reader.wait_for(10_000, timeout=180)) == expected
            assert reader.notices == []


def test_serve_refuses_a_bad_config_with_where_and_why(tmp_path: Any) -> None:
    import io

    from fsmc.compiler.cli import main

    path = tmp_path / "notify.toml"
    path.write_text('[[tenants]]\nid = "x"\napi_keys = ["plain-key"]\n')
    err = io.StringIO()
    assert main(["notify", "serve", "--config", str(path)], stdout=io.StringIO(),
                stderr=err) == 2
    assert f"{path}: [[tenants]] #1 (id 'x'): api_keys item #1: not a key hash" in \
        err.getvalue()
    assert "plain-key" not in err.getvalue()  # a key written in plain is never echoed


def sse_fields(frame: str) -> list[tuple[str, str]]:
    """An SSE frame's fields as a browser reads them: lines end at CRLF, CR or LF."""
    import re

    lines = re.split(r"\r\n|\r|\n", frame)
    return [tuple(line.split(": ", 1)) for line in lines if line]  # type: ignore[misc]


def test_hostile_ids_and_payloads_stay_inside_their_sse_fields(tmp_path: Any) -> None:
    """An id or a payload holding CR, LF, U+2028, NUL or `data:` lines cannot add a field or
    an event: each frame is `id`, `event`, one `data` line whose JSON is the event; a client
    resuming from such an id (recorded in the durable replay log) gets what followed it."""
    import asyncio
    import json

    from fsmc.notify.eventlog import EventLog, Retention
    from fsmc.notify.journal import Journal
    from fsmc.notify.store import SubscriptionStore
    from fsmc.notify.stream import Client, Hub
    from fsmc.notify.webhooks import WebhookDispatcher

    from tests.hostile import PAYLOAD_TEXTS

    store = SubscriptionStore(tmp_path / "notify.db")
    log = EventLog(store, Retention(10_000))
    hub = Hub(log, shutdown_notice="test")
    webhooks = WebhookDispatcher(store, frozenset())
    journal = Journal(log, hub, webhooks, owner=lambda event: None, source="test")
    loop = asyncio.new_event_loop()
    try:
        recorded = journal.record([
            StateChanged("M", text, "E", "A", "B", (), {"text": text}, id=f"{n} {text}")
            for n, text in enumerate(PAYLOAD_TEXTS)])
        items = list(recorded.items)
        assert len(items) == len(PAYLOAD_TEXTS)
        for n, (item, text) in enumerate(zip(items, PAYLOAD_TEXTS, strict=True)):
            fields = sse_fields(item.sse())
            assert [name for name, _ in fields] == ["id", "event", "data"], fields
            assert "\x00" not in fields[0][1]
            data = json.loads(fields[2][1])
            assert data["id"] == f"{n} {text}" and data["data"]["payload"] == {"text": text}
            assert data["subject"] == text and data["source"] == "test"
        for n, item in enumerate(items):
            client = Client(lambda item: True, loop, 100)
            resume = hub.connect(client, sse_fields(item.sse())[0][1])
            assert resume.complete
            assert [i.id for i in resume.missed] == [i.id for i in items[n + 1:]]
            hub.disconnect(client)
    finally:
        loop.close()
        hub.close()
        journal.close()
        webhooks.close()
        store.close()
