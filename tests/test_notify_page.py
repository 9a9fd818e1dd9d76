"""The notification service's web page in a real headless Chromium: a tenant enters its key and
sees its own events arrive live, and its subscriptions; a wrong key is told so.

Needs Debian's `chromium` and `pip install playwright` (the Python API only: the browser is the
system's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fsmc.runtime import EventBus, StateChanged

from tests.browser import chromium
from tests.notify_server import KEYS, config, serving


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


def event(account: str, n: int, note: str = "") -> StateChanged:
    return StateChanged("VirtualMachine", f"{account}-vm-{n}", "StartRequested", "Stopped",
                        "Starting", (), {"account": account, "note": note})


def test_a_tenant_follows_its_own_events_live(page: Any) -> None:
    bus = EventBus()
    with serving(bus, config()) as base:
        page.goto(base + "/")
        page.fill("#key", KEYS["acme"])
        page.click("button")
        page.wait_for_selector("#status:text('connected')")
        bus.post(event("acme", 1))
        bus.post(event("globex", 2))
        bus.post(event("acme", 3, note="<img src=x onerror=alert(1)>"))
        page.wait_for_selector("#events tr:nth-child(2)")
        page.wait_for_timeout(300)  # nothing else arrives
        rows = page.locator("#events tr").all_inner_texts()
        assert len(rows) == 2
        assert "acme-vm-3" in rows[0] and "acme-vm-1" in rows[1]  # newest first
        assert "Stopped → Starting (StartRequested)" in rows[0]
        assert page.locator("#events img").count() == 0  # payloads are text, never markup


def test_a_wrong_key_is_told(page: Any) -> None:
    with serving(EventBus(), config()) as base:
        page.goto(base + "/")
        page.fill("#key", "not-a-key")
        page.click("button")
        page.wait_for_selector("#status.error")
        assert page.locator("#status").inner_text() == "unknown key"


def test_the_page_lists_the_tenants_subscriptions(page: Any) -> None:
    import httpx

    with serving(EventBus(), config(client_queue=100)) as base:
        created = httpx.post(f"{base}/v1/subscriptions", timeout=10,
                             headers={"Authorization": f"Bearer {KEYS['admin']}"},
                             json={"topic": "Volume.#", "kind": "webhook",
                                   "url": "https://93.184.215.14/hook", "secret": "s"})
        assert created.status_code == 201, created.text
        page.goto(base + "/")
        page.fill("#key", KEYS["admin"])
        page.click("button")
        page.wait_for_selector("#status:text('connected')")
        assert "Volume.#" in page.locator("#subscriptions").inner_text()


def test_the_page_resumes_after_an_overflow_without_a_gap_or_a_repeat(page: Any) -> None:
    """A stream allowed to fall 1 event behind is cut at once by a burst; the page reconnects
    with Last-Event-ID and shows every event exactly once, in order."""
    import sys

    bus = EventBus()
    with serving(bus, config(client_queue=1)) as base:
        page.goto(base + "/")
        page.fill("#key", KEYS["acme"])
        page.click("button")
        page.wait_for_selector("#status:text('connected')")
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1.0)  # the burst outruns the server's loop: certain overflow
        try:
            for n in range(300):
                bus.post(event("acme", n))
        finally:
            sys.setswitchinterval(switch)
        page.wait_for_selector("#events tr:nth-child(300)", timeout=30_000)
        page.wait_for_timeout(300)
        ids = [row.split("\t")[1] for row in page.locator("#events tr").all_inner_texts()]
        assert ids == [f"VirtualMachine acme-vm-{n}" for n in reversed(range(300))]
        assert int(page.locator("body").get_attribute("data-streams")) >= 2


def test_the_page_says_when_the_service_shuts_down_and_keeps_trying(page: Any) -> None:
    with serving(EventBus(), config()) as base:
        page.goto(base + "/")
        page.fill("#key", KEYS["acme"])
        page.click("button")
        page.wait_for_selector("#status:text('connected')")
    page.wait_for_selector("#status:text('disconnected (shutdown); reconnecting in 2 s')")
