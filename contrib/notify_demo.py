"""The notification service beside the demo (`fsmc demo --notify [HOST:]PORT`): tenants follow
their own accounts' resources live while the simulated cloud runs.

    service = DemoService("127.0.0.1", 8080, demo_config(accounts=10), announce=sys.stderr)
    run_demo(config, service=service)   # attaches the service to the demo's bus
    service.stop()

`demo_config` makes one tenant per demo account (`acct-01`, `acct-02`, …) whose API key is
`demo-` + the account (`demo-acct-01`), and the admin key `demo-admin`: keys anyone can read,
which is why the service is for a loopback address unless told otherwise. The subscriptions
database is OUT/notify.db, so webhooks subscribed in one run are still there in the next.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, TextIO

from fsmc.notify.app import create_app
from fsmc.notify.config import NotifyConfig, hash_key, parse_config
from fsmc.notify.server import BackgroundServer, bind
from fsmc.runtime.errors import FsmcError

__all__ = ["ADMIN_KEY", "DemoService", "ServiceUnavailable", "demo_config", "demo_key",
           "is_loopback"]

ADMIN_KEY = "demo-admin"
SUBSCRIPTIONS_FILE = "notify.db"


class ServiceUnavailable(FsmcError):
    """The service cannot start: its port or its subscriptions database cannot be had."""


def demo_key(account: str) -> str:
    """The API key of the demo tenant `account`."""
    return f"demo-{account}"


def demo_config(accounts: int, *, client_queue: int = 10_000) -> NotifyConfig:
    """One tenant per demo account (`acct-01` …, as `fsmc.contrib.cloud` names them) with the
    key `demo_key(account)`, and the admin with `ADMIN_KEY`. A stream client may fall
    `client_queue` events behind before it is disconnected: the demo posts in bursts."""
    text = "".join(f'[[tenants]]\nid = "{account}"\napi_keys = ["{hash_key(demo_key(account))}"]'
                   "\n\n" for account in _accounts(accounts))
    text += f'[admin]\napi_keys = ["{hash_key(ADMIN_KEY)}"]\n\n'
    text += f"[limits]\nclient_queue = {client_queue}\n"
    return parse_config(text, "<the demo's tenants>")


def _accounts(count: int) -> list[str]:
    return [f"acct-{number:02d}" for number in range(1, count + 1)]


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class DemoService:
    """The service on `host:port`, started when the demo's bus exists (`attach`), stopped by
    `stop()`. `announce` is told the URL, the keys and how to follow the events."""

    def __init__(self, host: str, port: int, config: NotifyConfig, *, announce: TextIO,
                 wait_clients: int = 0, demo_keys: bool = True) -> None:
        self.host, self.port, self.config = host, port, config
        self.announce = announce
        self.wait_clients = wait_clients
        self.demo_keys = demo_keys
        self.server: BackgroundServer | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        return self.server.url if self.server is not None else f"http://{self.host}:{self.port}"

    def attach(self, bus: Any, out: Path) -> None:
        """Serve the events of `bus` (before the simulation starts); wait for `wait_clients`
        stream clients if asked to. Raises `ServiceUnavailable` (having opened nothing) when
        the port or the subscriptions database cannot be had."""
        try:
            listener = bind(self.host, self.port)
        except OSError as error:
            raise ServiceUnavailable(f"the notification service cannot listen on "
                                     f"{self.host}:{self.port}: {error.strerror or error}"
                                     ) from None
        database = out / SUBSCRIPTIONS_FILE
        try:
            self.app = create_app(bus, self.config, subscriptions=database)
        except (sqlite3.Error, OSError) as error:
            listener.close()
            raise ServiceUnavailable(f"the notification service cannot use {database}: "
                                     f"{error}") from None
        try:
            self.server = BackgroundServer(self.app, self.host, listener=listener).start()
        except RuntimeError as error:
            raise ServiceUnavailable(str(error)) from None
        self._tell_how_to_follow()
        if self.wait_clients:
            self._await_clients()

    def _tell_how_to_follow(self) -> None:
        say = self.announce.write
        say(f"notify: the notification service is on {self.url}/\n")
        if self.demo_keys:
            tenants = [tenant.id for tenant in self.config.tenants]
            shown = ", ".join(demo_key(account) for account in tenants[:3])
            more = f", … {demo_key(tenants[-1])}" if len(tenants) > 3 else ""
            say(f"notify: tenant keys {shown}{more} (each sees its own account); "
                f"admin key {ADMIN_KEY} (sees all)\n")
            key = demo_key(tenants[0])
        else:
            say(f"notify: tenants and keys of {self.config.source_path}\n")
            key = "KEY"
        say(f"notify: open {self.url}/ and enter a key, or\n"
            f"notify:   curl -N -H 'Authorization: Bearer {key}' "
            f"'{self.url}/v1/events?topic=VirtualMachine.%23'\n")
        if self.demo_keys and not is_loopback(self.host):
            say(f"notify: WARNING: {self.host} is not a loopback address and the demo keys are "
                "public: anyone who can reach it sees every event\n")
        self.announce.flush()

    def _await_clients(self) -> None:
        plural = "" if self.wait_clients == 1 else "s"
        self.announce.write(f"notify: waiting for {self.wait_clients} stream client{plural} "
                            "before the simulation starts (Ctrl-C to stop)\n")
        self.announce.flush()
        while self.app.state.hub.clients < self.wait_clients:
            time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        """`published`: events the service took from the bus; `clients`: streams open now."""
        if self.app is None:
            return {"published": 0, "clients": 0}
        return {"published": self.app.state.journal.stats()["taken"],
                "clients": self.app.state.hub.clients}

    def linger(self, seconds: float) -> None:
        """Keep serving `seconds` more (the replay log still answers `Last-Event-ID`)."""
        if self.server is None or seconds <= 0:
            return
        self.announce.write(f"notify: serving {self.url}/ for {seconds:g} s more "
                            "(Ctrl-C to stop)\n")
        self.announce.flush()
        time.sleep(seconds)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
