"""Serving the notification service: `BackgroundServer` binds its port up front and stops
gracefully, ending open streams with a `shutdown` event after what they hold."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from fsmc.notify.app import create_app
from fsmc.notify.server import BackgroundServer, bind
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


def test_a_port_in_use_fails_in_bind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            bind("127.0.0.1", taken.getsockname()[1])


def test_a_client_that_stops_reading_cannot_hold_the_server(tmp_path: Path) -> None:
    """A stream whose client never reads (its socket buffers full, the response stuck in
    `send`) is cancelled after `grace`; the app's shutdown still runs: webhook threads gone,
    the store closed."""
    before = set(threading.enumerate())
    bus = EventBus()
    app = create_app(bus, config(client_queue=100_000), subscriptions=tmp_path / "n.db")
    server = BackgroundServer(app, grace=1).start()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((server.host, server.port))
    stalled.sendall(f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{KEYS['admin']}\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    while app.state.hub.clients < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for n in range(3000):
        bus.post(StateChanged("VirtualMachine", f"vm-{n}", "StartRequested", "Stopped",
                              "Starting", (), {"account": "acme", "pad": "x" * 500}))
    time.sleep(0.3)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    started = time.monotonic()
    try:
        server.stop()
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    stopped_in = time.monotonic() - started
    stalled.close()
    assert "a stream whose client stopped reading was cut at shutdown" in \
        [record.getMessage() for record in records]
    assert not any(record.exc_info for record in records)  # one line, not a traceback
    assert stopped_in < 8, f"stop() took {stopped_in:.1f} s"
    assert not [t.name for t in set(threading.enumerate()) - before
                if t.name.startswith("fsmc-")]
    with pytest.raises(sqlite3.ProgrammingError):  # closed by the app's shutdown
        app.state.store.list(None)


def test_url_names_the_port_chosen_and_serves_the_page() -> None:
    with BackgroundServer(create_app(EventBus(), config())) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert httpx.get(server.url + "/", timeout=5).status_code == 200


def test_serve_refuses_a_port_in_use_and_a_database_it_cannot_use(tmp_path: Path) -> None:
    import io

    from fsmc.compiler.cli import main
    from fsmc.notify.config import hash_key

    path = tmp_path / "notify.toml"
    path.write_text(f'[[tenants]]\nid = "acme"\napi_keys = ["{hash_key("k")}"]\n')
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    err = io.StringIO()
    assert main(["notify", "serve", "--config", str(path), "--port", "0", "--db", str(broken)],
                stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == (f"fsmc: error: --db {broken}: cannot use it for the "
                              "service's database: file is not a database\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = io.StringIO()
        assert main(["notify", "serve", "--config", str(path), "--port", str(port), "--db",
                     str(tmp_path / "n.db")], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == f"fsmc: error: cannot listen on 127.0.0.1:{port}: " \
                             "Address already in use\n"
