"""The API's routes as a user meets them: 405 answers name every method of their path; `PATCH`
changes a webhook's URL, secret or topic without losing its dead letters, checked as `POST`
checks; every time is ISO 8601 in UTC; suspicious topic patterns are answered with a
`warning` (201 and the SSE stream)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fsmc.runtime import EventBus

from tests.notify_server import KEYS, Reader, serving
from tests.notify_server import config as tenants
from tests.test_notify_webhooks import FAST, SECRET, Receiver, api, config, event, subscribe

ALLOWED = {"/": {"GET", "HEAD"}, "/openapi.json": {"GET", "HEAD"},
           "/v1/events": {"GET", "HEAD"}, "/v1/subscriptions": {"GET", "HEAD", "POST"},
           "/v1/subscriptions/sub_x": {"DELETE", "GET", "HEAD", "PATCH"},
           "/v1/subscriptions/sub_x/dead-letters": {"GET", "HEAD"},
           "/v1/subscriptions/sub_x/dead-letters/redrive": {"POST"}}


def test_a_method_a_path_lacks_is_answered_405_naming_all_it_has() -> None:
    with serving(EventBus(), config()) as base:
        for path, methods in ALLOWED.items():
            for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods):
                answer = httpx.request(method, base + path, timeout=10)
                assert answer.status_code == 405, (method, path)
                allow = answer.headers["allow"].split(", ")
                assert allow == sorted(methods), (method, path, allow)
                assert answer.json()["error"] == "method_not_allowed"
            for method in sorted(methods - {"HEAD"}):  # each one it has is routed (401: no key)
                if path not in ("/", "/openapi.json"):
                    assert httpx.request(method, base + path, timeout=10).status_code == 401


def iso(text: str) -> datetime:
    assert text.endswith("Z") and len(text) == len("2026-12-08T01:30:04.250000Z"), text
    return datetime.fromisoformat(text)


def wait_for_letters(client: httpx.Client, ident: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        letters: list[dict[str, object]] = client.get(
            f"/v1/subscriptions/{ident}/dead-letters").json()["dead_letters"]
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.05)


def signed_with(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers["X-Fsmc-Signature"] == expected


def test_patch_moves_a_webhook_to_a_new_url_and_secret_keeping_its_dead_letters() -> None:
    broken, fixed = Receiver(script=[500] * 3), Receiver()
    bus = EventBus()
    try:
        with serving(bus, config(), webhook_options=FAST) as base, api(base, "acme") as client:
            ident = subscribe(client, broken.url)
            before = client.get(f"/v1/subscriptions/{ident}").json()
            lost = event("acme", 1)
            bus.post(lost)
            (letter,) = wait_for_letters(client, ident, 1)
            assert letter["event_id"] == lost.id
            assert abs(iso(str(letter["time"])) - datetime.now(UTC)) < timedelta(minutes=1)

            changed = client.patch(f"/v1/subscriptions/{ident}",
                                   json={"url": fixed.url, "secret": "n3w-secret"})
            assert changed.status_code == 200, changed.text
            assert changed.json() == {**before, "url": fixed.url}
            assert "secret" not in changed.json()
            assert client.get(f"/v1/subscriptions/{ident}").json() == changed.json()
            assert [d["event_id"] for d in client.get(
                f"/v1/subscriptions/{ident}/dead-letters").json()["dead_letters"]] == [lost.id]

            assert client.post(f"/v1/subscriptions/{ident}/dead-letters/redrive").json() == {
                "redriven": 1}
            later = event("acme", 2)
            bus.post(later)
            assert [b["id"] for b in fixed.wait_for(2)] == [lost.id, later.id]
            assert all(signed_with("n3w-secret", headers, body)
                       for headers, body in fixed.received)
            assert broken.calls == 3  # nothing more went to the old URL
    finally:
        broken.server.shutdown()
        fixed.server.shutdown()


def test_an_event_being_retried_goes_to_the_new_url_on_its_next_attempt() -> None:
    broken, fixed = Receiver(script=[500] * 100), Receiver()
    bus = EventBus()
    slow = {**FAST, "attempts": 6, "base_delay": 0.5, "max_delay": 0.5}
    try:
        with serving(bus, config(), webhook_options=slow) as base, api(base, "acme") as client:
            ident = subscribe(client, broken.url)
            retried = event("acme", 1)
            bus.post(retried)
            deadline = time.monotonic() + 10
            while broken.calls < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.patch(f"/v1/subscriptions/{ident}",
                                json={"url": fixed.url}).status_code == 200
            assert [b["id"] for b in fixed.wait_for(1)] == [retried.id]
            assert signed_with(SECRET, *fixed.received[0])
            assert client.get(f"/v1/subscriptions/{ident}/dead-letters").json()[
                "dead_letters"] == []
    finally:
        broken.server.shutdown()
        fixed.server.shutdown()


def test_patch_changes_the_topic_and_warns_about_a_suspicious_one() -> None:
    receiver = Receiver()
    bus = EventBus()
    try:
        with serving(bus, config(), webhook_options=FAST) as base, api(base, "acme") as client:
            ident = subscribe(client, receiver.url, topic="Volume.#")
            odd = client.patch(f"/v1/subscriptions/{ident}",
                               json={"topic": "VirtualMachine.#Starting"})
            assert odd.status_code == 200 and odd.json()["topic"] == "VirtualMachine.#Starting"
            assert "'#Starting' is no wildcard" in odd.json()["warning"]
            assert "warning" not in client.get(f"/v1/subscriptions/{ident}").json()
            fine = client.patch(f"/v1/subscriptions/{ident}",
                                json={"topic": "VirtualMachine.#.Starting"})
            assert "warning" not in fine.json()
            sent = event("acme", 1)  # VirtualMachine.Stopped.StartRequested.Starting
            bus.post(sent)
            assert [b["id"] for b in receiver.wait_for(1)] == [sent.id]
    finally:
        receiver.server.shutdown()


@pytest.mark.parametrize(("body", "reason"), [
    ({"url": "http://127.0.0.1:9/hook"}, "127.0.0.1, a loopback address"),
    ({"url": "http://user:pw@example.com/"}, "user info"),
    ({"url": "ftp://example.com/"}, "webhooks must be http or https"),
    ({"secret": ""}, "secret must not be empty"),
    ({"secret": "x" * 257}, "at most 256"),
    ({"topic": "x" * 300}, "topic: topic pattern is 300 bytes"),
    ({"kind": "email"}, "unknown field 'kind'; only these can change: topic, url, secret"),
    ({}, "nothing to change"),
    (["url"], "the body must be a JSON object"),
])
def test_patch_refuses_what_post_refuses_and_changes_nothing(body: object, reason: str) -> None:
    with serving(EventBus(), tenants()) as base, api(base, "acme") as client:
        made = client.post("/v1/subscriptions", json={
            "topic": "#", "kind": "webhook", "url": "https://93.184.215.14/hook",
            "secret": "s"})
        ident = made.json()["id"]
        refused = client.patch(f"/v1/subscriptions/{ident}", json=body)
        assert refused.status_code == 422, refused.text
        assert reason in refused.json()["message"], refused.json()
        assert refused.json()["error"] == "invalid_subscription"
        assert client.get(f"/v1/subscriptions/{ident}").json() == made.json()
        not_json = client.patch(f"/v1/subscriptions/{ident}", content=b"{nope")
        assert (not_json.status_code, not_json.json()["error"]) == (422, "invalid_body")


def test_patch_of_another_tenants_or_no_subscription_is_404_and_the_admin_may() -> None:
    with serving(EventBus(), tenants()) as base, api(base, "acme") as acme, \
            api(base, "globex") as globex, api(base, "admin") as admin:
        ident = acme.post("/v1/subscriptions", json={
            "topic": "#", "kind": "webhook", "url": "https://93.184.215.14/hook",
            "secret": "s"}).json()["id"]
        for who, path in ((globex, f"/v1/subscriptions/{ident}"),
                          (acme, "/v1/subscriptions/sub_0000000000000000")):
            hidden = who.patch(path, json={"url": "https://93.184.215.15/"})
            assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
        assert acme.get(f"/v1/subscriptions/{ident}").json()["url"] == \
            "https://93.184.215.14/hook"
        moved = admin.patch(f"/v1/subscriptions/{ident}", json={"url": "https://93.184.215.15/"})
        assert moved.status_code == 200 and moved.json()["tenant"] == "acme"


def test_times_are_iso_8601_in_utc_like_the_events() -> None:
    with serving(EventBus(), tenants()) as base, api(base, "acme") as client:
        before = datetime.now(UTC)
        made = client.post("/v1/subscriptions", json={
            "topic": "#", "kind": "webhook", "url": "https://93.184.215.14/hook",
            "secret": "s"}).json()
        created = iso(made["created"])
        assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
        listed = client.get("/v1/subscriptions").json()["subscriptions"]
        assert [s["created"] for s in listed] == [made["created"]]


def test_a_suspicious_pattern_is_accepted_with_a_warning_naming_the_word() -> None:
    with serving(EventBus(), tenants()) as base, api(base, "acme") as client:
        target = {"kind": "webhook", "url": "https://93.184.215.14/hook", "secret": "s"}
        odd = client.post("/v1/subscriptions", json={"topic": "VirtualMachine.#Running",
                                                      **target})
        assert odd.status_code == 201
        assert odd.json()["topic"] == "VirtualMachine.#Running"  # RabbitMQ's meaning kept
        assert "word 2 '#Running' is no wildcard" in odd.json()["warning"]
        assert "did you mean 'VirtualMachine.#.Running'?" in odd.json()["warning"]
        assert "%23" not in odd.json()["warning"]  # not from a URL
        empty = client.post("/v1/subscriptions", json={"topic": "a..b", **target})
        assert "word 2 is empty" in empty.json()["warning"]
        fine = client.post("/v1/subscriptions", json={"topic": "VirtualMachine.#", **target})
        assert "warning" not in fine.json()


def test_a_stream_whose_pattern_lost_its_hash_to_the_fragment_is_warned_with_the_hint() -> None:
    bus = EventBus()
    with serving(bus, tenants()) as base:
        # What `?topic=VirtualMachine.#` typed into a browser sends: the `#` starts the fragment.
        cut = httpx.Request("GET", f"{base}/v1/events?topic=VirtualMachine.#").url
        assert cut.query == b"topic=VirtualMachine."
        warned = Reader(base, KEYS["acme"], topic="VirtualMachine.").start()
        plain = Reader(base, KEYS["acme"], topic="VirtualMachine.#").start()
        sent = event("acme", 1)
        bus.post(sent)
        assert [ident for ident, _ in plain.wait_for(1)] == [sent.id]
        deadline = time.monotonic() + 10
        while not warned.notices and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [kind for kind, _ in warned.notices] == ["warning"]
        message = json.loads(warned.notices[0][1])["warning"]
        assert "word 2 is empty (the pattern ends with `.`)" in message
        assert "topic=VirtualMachine.%23 for 'VirtualMachine.#'" in message
        assert warned.events == [] and plain.notices == []
