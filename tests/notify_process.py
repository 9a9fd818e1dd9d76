"""`fsmc notify serve` as a real process for the reliability tests: started with a config, a
broker and a database, stopped with SIGTERM or killed with SIGKILL, started again; a webhook
receiver on loopback that counts what it got, in order, duplicates included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fsmc.notify.config import hash_key

from tests.notify_server import KEYS
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, queue: str, *, replay: int = 10_000, lease: float = 15.0,
                 extra: str = "") -> Path:
    """The test tenants (acme, globex, admin: `KEYS`), webhooks allowed to 127.0.0.1, the
    broker queue `queue`, the replay log's retention and the lanes' lease."""
    path.write_text(
        "".join(f'[[tenants]]\nid = "{tenant}"\napi_keys = ["{hash_key(KEYS[tenant])}"]\n\n'
                for tenant in ("acme", "globex"))
        + f'[admin]\napi_keys = ["{hash_key(KEYS["admin"])}"]\n\n'
        + f'[webhooks]\nallow_hosts = ["127.0.0.1"]\nlease = {lease}\n\n'
        + f'[broker]\nqueue = "{queue}"\n\n'
        + f"[limits]\nreplay = {replay}\nrate = 1000\nburst = 1000\nclient_queue = 100000\n"
        + extra)
    return path


class Service:
    """One `fsmc notify serve` process (its stderr in `log`); `start` again after a stop runs
    a new process with the same arguments and port."""

    def __init__(self, config: Path, amqp: str, db: str, log: Path,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "fsmc.compiler.cli", "notify", "serve", "--config",
                     str(config), "--amqp", amqp, "--port", str(self.port), "--db", db]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60) -> Service:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited ({self.process.returncode}):\n"
                                     f"{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the service did not answer at {self.url}")

    def stop(self, how: str = "term", timeout: float = 30) -> int:
        """SIGTERM ("term", waiting for it to exit) or SIGKILL ("kill"); its exit status."""
        assert self.process is not None
        if how == "kill":
            self.process.kill()
        else:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout)
        self.process = None
        return status

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Receiver:
    """A webhook receiver on loopback taking `delay` seconds per POST; `received` is every
    event id in arrival order (duplicates included), per subscription header."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[str] = []
        self.by_subscription: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API names it
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if delay:
                    time.sleep(delay)
                ident = json.loads(body)["id"]
                with receiver.lock:
                    receiver.received.append(ident)
                    receiver.by_subscription.setdefault(
                        self.headers["X-Fsmc-Subscription"], []).append(ident)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def distinct(self) -> set[str]:
        with self.lock:
            return set(self.received)

    def duplicates(self) -> int:
        with self.lock:
            return sum(count - 1 for count in Counter(self.received).values())

    def wait_for(self, ids: set[str], timeout: float) -> set[str]:
        """Until every id of `ids` arrived or `timeout` passed; the ids still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = ids - self.distinct()
            if not missing:
                return missing
            time.sleep(0.05)
        return ids - self.distinct()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(base: str, who: str, url: str, topic: str = "#") -> str:
    answer = httpx.post(f"{base}/v1/subscriptions", timeout=30,
                        headers={"Authorization": f"Bearer {KEYS[who]}"},
                        json={"topic": topic, "kind": "webhook", "url": url, "secret": "s"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def in_order(received: list[str], sent: list[str]) -> bool:
    """Whether `received`, with repeats of ids already seen removed, is `sent` in order."""
    seen: set[str] = set()
    firsts = []
    for ident in received:
        if ident not in seen:
            seen.add(ident)
            firsts.append(ident)
    return firsts == sent
