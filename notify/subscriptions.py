"""Webhook subscriptions: checking what a tenant asks for, and keeping what it was given.

`validate_subscription` checks the body of `POST /v1/subscriptions`; `validate_target` checks a
webhook URL so that the service cannot be turned against the network it runs in: only `http`
and `https`, no `user:pass@`, and a host that is (or resolves to) global addresses only, unless
the host is listed in the config's `[webhooks] allow_hosts`. `check_delivery_target` runs the
same check again right before each delivery, because DNS may have changed since. Every refusal
is an `InvalidSubscription` whose message says what is wrong (the app answers 422 with it); a
message never shows a secret.

`SubscriptionStore` keeps subscriptions and their dead letters in SQLite (a file, or
`":memory:"`), safe to share between threads.
"""

from __future__ import annotations

import builtins
import ipaddress
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fsmc.runtime.topics import validate_pattern

__all__ = ["MAX_SECRET_LENGTH", "DeadLetter", "InvalidSubscription", "Resolver", "Subscription",
           "SubscriptionStore", "check_delivery_target", "validate_subscription",
           "validate_target"]

MAX_SECRET_LENGTH = 256
_SCHEMES = {"http": 80, "https": 443}
_FIELDS = ("topic", "kind", "url", "secret")

# `socket.getaddrinfo`, or a fake with the same call: resolve(host, port, proto=IPPROTO_TCP)
# returns (family, type, proto, canonname, sockaddr) tuples, sockaddr[0] being the address.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidSubscription(ValueError):
    """A subscription (or its webhook target) cannot be accepted; the message says why."""


def validate_target(url: str, allow_hosts: frozenset[str],
                    resolve: Resolver = socket.getaddrinfo) -> str:
    """Return `url` if it may receive webhooks, else raise `InvalidSubscription`.

    The URL must be `http` or `https`, name a host and carry no user info. A host listed in
    `allow_hosts` (as written in the URL; host names compare case-insensitively) is accepted
    without resolving it. Any other host must be an IP literal, or a name that `resolve`
    resolves, whose every address is global: one loopback, private, link-local, multicast,
    reserved or otherwise internal address is enough to refuse it (an IPv4-mapped IPv6 address
    is judged by the IPv4 address it maps)."""
    if not isinstance(url, str):
        raise InvalidSubscription(f"url must be a string, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidSubscription(f"url {url!r} is malformed: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise InvalidSubscription(f"url {url!r} has {shown}; webhooks must be http or https")
    if "@" in parts.netloc:
        raise InvalidSubscription(f"url for host {parts.hostname!r} has user info (user:pass@); "
                                  f"put credentials in the secret, not the URL")
    host = parts.hostname
    if not host:
        raise InvalidSubscription(f"url {url!r} has no host")
    if host in _allowed(allow_hosts):
        return url
    try:
        literal: _IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        addresses = _resolve(host, port or _SCHEMES[scheme], resolve)
    for address in addresses:
        why = _why_internal(address)
        if why is not None:
            raise InvalidSubscription(
                f"webhook host {host!r} {'is' if literal is not None else 'resolves to'} "
                f"{address}, a {why} address; webhooks may only reach global addresses "
                f"unless the host is listed in [webhooks] allow_hosts")
    return url


def check_delivery_target(url: str, allow_hosts: frozenset[str],
                          resolve: Resolver = socket.getaddrinfo) -> str:
    """The check of `validate_target`, to run again right before each delivery: DNS may have
    changed since the subscription was accepted (a name that resolved to a public address may
    now point inside the network), so a stored URL is never trusted as is. Connect only if this
    returns; on `InvalidSubscription` treat the delivery as failed."""
    return validate_target(url, allow_hosts, resolve)


def _allowed(allow_hosts: frozenset[str]) -> set[str]:
    """The allow-listed hosts as `urlsplit(...).hostname` spells them: lowercased, and without
    the brackets of an IPv6 literal."""
    hosts = set(allow_hosts)
    for host in allow_hosts:
        lowered = host.lower()
        hosts.add(lowered)
        if lowered.startswith("[") and lowered.endswith("]"):
            hosts.add(lowered[1:-1])
    return hosts


def _resolve(host: str, port: int, resolve: Resolver) -> list[_IPAddress]:
    try:
        infos = resolve(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise InvalidSubscription(f"cannot resolve host {host!r}: {error}") from None
    addresses: list[_IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone (fe80::1%eth0)
        try:
            addresses.append(ipaddress.ip_address(text))
        except ValueError:
            raise InvalidSubscription(f"cannot resolve host {host!r}: it resolved to {text!r}, "
                                      f"which is not an IP address") from None
    if not addresses:
        raise InvalidSubscription(f"cannot resolve host {host!r}: no addresses")
    return addresses


def _why_internal(address: _IPAddress) -> str | None:
    """Why `address` must not be reached (e.g. "loopback"), or None if it is global."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        why = _why_internal(address.ipv4_mapped)
        return None if why is None else f"{why} (IPv4-mapped)"
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("private", address.is_private), ("reserved", address.is_reserved),
              ("not global", not address.is_global))
    for why, hit in checks:
        if hit:
            return why
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    return None


def validate_subscription(body: object, allow_hosts: frozenset[str],
                          resolve: Resolver = socket.getaddrinfo) -> tuple[str, str, str]:
    """Check the JSON body of `POST /v1/subscriptions` and return `(topic, url, secret)`.

    The body must be an object with exactly `topic` (a topic pattern), `kind` (`"webhook"`),
    `url` (see `validate_target`) and `secret` (1 to `MAX_SECRET_LENGTH` characters)."""
    if not isinstance(body, dict):
        raise InvalidSubscription(f"the body must be a JSON object with {', '.join(_FIELDS)}, "
                                  f"not {_kind(body)}")
    unknown = sorted(str(key) for key in body if key not in _FIELDS)
    if unknown:
        raise InvalidSubscription(f"unknown field{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(map(repr, unknown))}; expected exactly: "
                                  f"{', '.join(_FIELDS)}")
    missing = [key for key in _FIELDS if key not in body]
    if missing:
        raise InvalidSubscription(f"missing field{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(map(repr, missing))}")
    try:
        topic = validate_pattern(body["topic"])
    except (TypeError, ValueError) as error:
        raise InvalidSubscription(f"topic: {error}") from None
    if body["kind"] != "webhook":
        raise InvalidSubscription(f"kind must be \"webhook\", not {body['kind']!r}"
                                  if isinstance(body["kind"], str) else
                                  f"kind must be \"webhook\", not {_kind(body['kind'])}")
    url = body["url"]
    if not isinstance(url, str):
        raise InvalidSubscription(f"url must be a string, not {_kind(url)}")
    validate_target(url, allow_hosts, resolve)
    secret = body["secret"]
    if not isinstance(secret, str):
        raise InvalidSubscription(f"secret must be a string, not {_kind(secret)}")
    if not secret:
        raise InvalidSubscription("secret must not be empty")
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidSubscription(f"secret is {len(secret)} characters long; at most "
                                  f"{MAX_SECRET_LENGTH} are allowed")
    return topic, url, secret


def _kind(value: object) -> str:
    """What a JSON value is, for messages (never the value: it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Subscription:
    """A tenant's webhook subscription; `created` is a Unix time. `secret` signs deliveries and
    is never shown (not in `repr`, not in `to_json`)."""

    id: str
    tenant: str
    topic: str
    kind: str
    url: str
    secret: str = field(repr=False)
    created: float

    def to_json(self) -> dict[str, object]:
        """The subscription as the API shows it: everything but the secret."""
        return {"id": self.id, "tenant": self.tenant, "topic": self.topic, "kind": self.kind,
                "url": self.url, "created": self.created}


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be delivered to `subscription` (its id) after `attempts`
    attempts; `body` is what was sent, `error` the last failure, `time` a Unix time."""

    subscription: str
    event_id: str
    body: str
    attempts: int
    error: str
    time: float

    def to_json(self) -> dict[str, object]:
        return {"subscription": self.subscription, "event_id": self.event_id,
                "body": self.body, "attempts": self.attempts, "error": self.error,
                "time": self.time}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions (tenant, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_subscription ON dead_letters (subscription, seq);
"""

_SUB_COLUMNS = "id, tenant, topic, kind, url, secret, created"
_DEAD_COLUMNS = "subscription, event_id, body, attempts, error, time"


class SubscriptionStore:
    """Subscriptions and dead letters in SQLite at `path` (`":memory:"` for a store that lives
    as long as the object). A file is opened in WAL mode. Lists come back in the order things
    were added.

    Thread-safe: one connection (opened with `check_same_thread=False`) and one lock, held by
    every method around all its statements (a write's whole transaction included), so any
    thread may call any method and no two threads ever use the connection at once, whatever
    `sqlite3.threadsafety` is. Every method blocks (disk, the lock, another process's write
    lock for up to 10 s): call them from worker threads, not from an event loop."""

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        name = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(name, check_same_thread=False, isolation_level=None,
                                     timeout=10.0)
        if name != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, tenant: str, topic: str, url: str, secret: str) -> Subscription:
        """Store a new webhook subscription (already checked: see `validate_subscription`)."""
        subscription = Subscription(id="sub_" + secrets.token_hex(8), tenant=tenant,
                                    topic=topic, kind="webhook", url=url, secret=secret,
                                    created=self._clock())
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (subscription.id, tenant, topic, subscription.kind, url, secret,
                          subscription.created))
        return subscription

    def get(self, id: str) -> Subscription | None:
        """The subscription `id`, or None if there is none."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id = ?",
                                     (id,)).fetchone()
        return None if row is None else Subscription(*row)

    def list(self, tenant: str | None = None) -> builtins.list[Subscription]:
        """The subscriptions of `tenant`, or of every tenant if None (for the admin), oldest
        first."""
        with self._lock:
            if tenant is None:
                rows = self._conn.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions ORDER BY seq").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE tenant = ? ORDER BY seq",
                    (tenant,)).fetchall()
        return [Subscription(*row) for row in rows]

    def delete(self, id: str) -> bool:
        """Delete the subscription `id` and its dead letters; False if there was none."""
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM subscriptions WHERE id = ?", (id,)).rowcount
            conn.execute("DELETE FROM dead_letters WHERE subscription = ?", (id,))
        return deleted > 0

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        """Keep `letter`; False (and nothing kept) if its subscription no longer exists, as when
        it was deleted while the event was being retried."""
        with self._transaction() as conn:
            added = conn.execute(
                f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) SELECT ?, ?, ?, ?, ?, ? "
                f"WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = ?)",
                (letter.subscription, letter.event_id, letter.body, letter.attempts,
                 letter.error, letter.time, letter.subscription)).rowcount
        return added > 0

    def dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """The dead letters of a subscription, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
                (subscription_id,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def take_dead_letters(self, subscription_id: str) -> builtins.list[DeadLetter]:
        """Remove and return the dead letters of a subscription, oldest first (for a redrive:
        the caller delivers them again, and a new failure makes a new dead letter)."""
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE subscription = ? ORDER BY seq",
                (subscription_id,)).fetchall()
            conn.execute("DELETE FROM dead_letters WHERE subscription = ?", (subscription_id,))
        return [DeadLetter(*row) for row in rows]

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        with self._lock:
            self._conn.close()
