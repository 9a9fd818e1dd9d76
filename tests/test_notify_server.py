"""Serving the notification service: `BackgroundServer` binds its port up front and stops
gracefully, ending open streams with a `shutdown` event after what they hold."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from fsmc.notify.app import create_app
from fsmc.notify.server import BackgroundServer
from fsmc.runtime import EventBus, StateChanged

from tests.notify_server import KEYS, Reader, config


def test_stop_ends_open_streams_with_a_shutdown_event_after_what_they_hold() -> None:
    bus = EventBus()
    server = BackgroundServer(create_app(bus, config()), grace=30).start()
    readers = [Reader(server.url, KEYS["acme"]).start(), Reader(server.url, KEYS["admin"]).start()]
    for event, old, new in (("StartRequested", "Stopped", "Starting"),
                            ("OperationSucceeded", "Starting", "Running")):
        bus.post(StateChanged("VirtualMachine", "vm-1", event, old, new, (), {"account": "acme"}))
    for reader in readers:
        assert len(reader.wait_for(2)) == 2
    started = time.monotonic()
    server.stop()
    stopped_in = time.monotonic() - started
    for reader in readers:
        assert reader.done.wait(5), "the stream did not end"
        assert [data["data"]["event"] for _, data in reader.events] == \
            ["StartRequested", "OperationSucceeded"]
        assert [kind for kind, _ in reader.notices] == ["shutdown"]
        assert "Last-Event-ID" in reader.notices[0][1]
    assert stopped_in < 10, f"stopping waited {stopped_in:.1f} s: the streams were cut, not ended"
    with pytest.raises(httpx.TransportError):  # the port is released
        httpx.get(server.url + "/", timeout=2)


def test_a_port_in_use_fails_in_the_constructor() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            BackgroundServer(create_app(EventBus(), config()), port=port)


def test_url_names_the_port_chosen_and_serves_the_page() -> None:
    with BackgroundServer(create_app(EventBus(), config())) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert httpx.get(server.url + "/", timeout=5).status_code == 200
