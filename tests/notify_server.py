"""A notification service on a real HTTP port for tests: uvicorn in a thread, and an SSE reader
that collects events from a real connection (httpx in a thread of its own)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fsmc.notify.app import create_app
from fsmc.notify.config import NotifyConfig, hash_key, parse_config
from fsmc.notify.server import BackgroundServer

KEYS = {"acme": "key-acme", "globex": "key-globex", "admin": "key-admin"}


def config(allow: str | None = None, *, max_dead_letters: int | None = None,
           **limits: float) -> NotifyConfig:
    """Tenants `acme` and `globex` and the admin, with the keys of `KEYS`; `allow` is an
    allow-listed webhook host, `max_dead_letters` the [webhooks] bound, `limits` the [limits]
    table."""
    text = "".join(f'[[tenants]]\nid = "{tenant}"\napi_keys = ["{hash_key(KEYS[tenant])}"]\n\n'
                   for tenant in ("acme", "globex"))
    text += f'[admin]\napi_keys = ["{hash_key(KEYS["admin"])}"]\n'
    if allow is not None or max_dead_letters is not None:
        text += "\n[webhooks]\n"
    if allow is not None:
        text += f'allow_hosts = ["{allow}"]\n'
    if max_dead_letters is not None:
        text += f"max_dead_letters = {max_dead_letters}\n"
    if limits:
        text += "\n[limits]\n" + "".join(f"{name} = {value}\n" for name, value in limits.items())
    return parse_config(text)


def open_files(path: Path) -> list[str]:
    """What this process has open under `path` (the file, its -wal and -shm)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                found.append(target)
    return found


@contextlib.contextmanager
def serving(bus: Any, config: NotifyConfig, **options: Any) -> Iterator[str]:
    """The service's base URL while the block runs (`options` go to `create_app`), served by
    `BackgroundServer`: its own listening socket, open streams closed at the end, so a server
    never outlives its test."""
    with BackgroundServer(create_app(bus, config, **options)) as server:
        yield server.url


@dataclass
class Reader:
    """Reads one SSE stream in a thread: `events` are (id, data dict) in arrival order; other
    SSE events (`gap`, `overflow`) land in `notices`."""

    url: str
    key: str
    topic: str | None = None
    last_id: str | None = None
    stall: float = 0.0  # seconds to stop reading after the first line (a stalled client)
    on_event: Callable[[str], None] | None = None  # told each event id as it arrives
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    status: int | None = None
    error: str | None = None  # why the stream ended early, when an HTTP error ended it
    connected: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Reader:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.connected.wait(10), "the stream did not open"
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        params = {"topic": self.topic} if self.topic else {}
        try:
            with httpx.stream("GET", f"{self.url}/v1/events", headers=headers, params=params,
                              timeout=httpx.Timeout(30, read=60)) as response:
                self.status = response.status_code
                self.connected.set()
                kind, ident, data = "message", "", ""
                for line in response.iter_lines():
                    if self.stall:
                        time.sleep(self.stall)
                        self.stall = 0.0
                    if line.startswith("id: "):
                        ident = line[4:]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and data:
                        if kind == "StateChanged":
                            if self.on_event is not None:
                                self.on_event(ident)
                            self.events.append((ident, json.loads(data)))
                        else:
                            self.notices.append((kind, data))
                        kind, ident, data = "message", "", ""
        except httpx.HTTPError as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.connected.set()
            self.done.set()

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and \
                not self.done.is_set():
            time.sleep(0.01)
        assert len(self.events) >= count or self.error is None, \
            f"the stream ended after {len(self.events)} of {count} events: {self.error}"
        return list(self.events)
