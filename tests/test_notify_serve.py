"""`fsmc notify serve --amqp URL` as a user runs it: a process of its own following a real
RabbitMQ broker (tests/rabbit.py), read over real HTTP; SIGTERM stops it gracefully, ending open
streams with a `shutdown` event."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fsmc.notify.config import hash_key
from fsmc.runtime import StateChanged

from tests import rabbit
from tests.notify_server import KEYS, Reader
from tests.ports import free_port

reason = rabbit.available()
if reason is not None:  # pragma: no cover - depends on the machine
    pytest.skip(reason, allow_module_level=True)

from fsmc.runtime.amqp import AmqpPublisher  # noqa: E402


def _config(path: Path) -> Path:
    path.write_text("".join(f'[[tenants]]\nid = "{tenant}"\napi_keys = ["{hash_key(KEYS[tenant])}"]'
                            "\n\n" for tenant in ("acme", "globex"))
                    + f'[admin]\napi_keys = ["{hash_key(KEYS["admin"])}"]\n')
    return path


def _await_http(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the service did not answer at {url}")


def test_serve_follows_the_broker_and_stops_on_sigterm(tmp_path: Path) -> None:
    broker = rabbit.shared()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "fsmc.compiler.cli", "notify", "serve", "--config",
         str(_config(tmp_path / "notify.toml")), "--amqp", broker.url, "--port", str(port),
         "--db", str(tmp_path / "notify.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _await_http(base + "/", process)
        run = uuid.uuid4().hex[:8]  # the broker is shared: only this test's events count
        acme, admin = Reader(base, KEYS["acme"]).start(), Reader(base, KEYS["admin"]).start()
        publisher = AmqpPublisher(broker.url)
        sent = [StateChanged("VirtualMachine", f"{run}-vm-{n}", "StartRequested", "Stopped",
                             "Starting", (), {"account": ("acme", "globex")[n % 2]})
                for n in range(10)]
        time.sleep(1)  # the service's queue is bound once its consumer runs
        for event in sent:
            publisher(event)
        publisher.close(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(
                [ident for ident, _ in admin.events if ident in {e.id for e in sent}]) < 10:
            time.sleep(0.05)
        ours = {event.id for event in sent}
        assert [ident for ident, _ in admin.events if ident in ours] == [e.id for e in sent]
        assert [ident for ident, _ in acme.events if ident in ours] == \
            [e.id for e in sent if e.payload["account"] == "acme"]
        assert all(data["data"]["payload"]["account"] == "acme" for _, data in acme.events)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.communicate()[1]
        assert time.monotonic() - started < 10, "stopping waited for the open streams"
        for reader in (acme, admin):
            assert reader.done.wait(5)
            assert [kind for kind, _ in reader.notices] == ["shutdown"]
        _, err = process.communicate(timeout=10)
        assert "Traceback" not in err and f"http://127.0.0.1:{port}/" in err
    finally:
        process.kill()
