"""The notification service's configuration: a TOML file read once and checked whole.

    [[tenants]]
    id = "acme"
    api_keys = ["sha256:<hex digest of the key>"]

    [admin]
    api_keys = ["sha256:..."]

    [webhooks]
    allow_hosts = ["hooks.internal.example"]   # default: none
    max_dead_letters = 1000   # kept per subscription; beyond it the oldest are dropped
    lease = 15.0              # seconds a lane's lease lasts (renewed every third of it)

    [broker]                  # with `fsmc notify serve --amqp URL`
    queue = "fsmc.notify"     # the durable queue all instances consume (shared)
    queue_type = "classic"    # or "quorum" (replicated, but see docs/notify.md on order)

    [limits]                                   # every key optional
    rate = 20          # requests per second per key
    burst = 40         # requests allowed at once before `rate` applies
    replay = 10000     # events kept for `Last-Event-ID` resumption
    replay_age = 86400 # and none older than this many seconds (default: no age limit)
    client_queue = 1000  # events held for one slow stream client
    heartbeat = 15.0   # seconds between keep-alive comments on a quiet stream

API keys are stored hashed (`hash_key`), never as written, so the file gives nobody a key. Every
mistake raises `ConfigError`, naming the file, the table or key and what is wrong with it; a
message never shows a value that might be a key, and shows key hashes only cut short.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from fsmc.runtime.errors import FsmcError

__all__ = ["ALL_TENANTS", "DEFAULT_BURST", "DEFAULT_CLIENT_QUEUE", "DEFAULT_HEARTBEAT",
           "DEFAULT_LEASE", "DEFAULT_MAX_DEAD_LETTERS", "DEFAULT_QUEUE", "DEFAULT_RATE",
           "DEFAULT_REPLAY", "QUEUE_TYPES", "ConfigError",
           "NotifyConfig", "Tenant", "hash_key", "load_config", "parse_config", "short_hash"]

DEFAULT_RATE = 20.0  # requests per second per key
DEFAULT_BURST = 40
DEFAULT_REPLAY = 10_000  # events
DEFAULT_CLIENT_QUEUE = 1_000  # events per stream client
DEFAULT_HEARTBEAT = 15.0  # seconds
DEFAULT_MAX_DEAD_LETTERS = 1_000  # per webhook subscription
DEFAULT_LEASE = 15.0  # seconds
DEFAULT_QUEUE = "fsmc.notify"
QUEUE_TYPES = ("classic", "quorum")

_D = TypeVar("_D", float, None)

ALL_TENANTS = "*"  # the tenant of the admin's webhook subscriptions: never a tenant's id
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_SHOWN = 12  # hex digits of a hash shown in messages

HASH_HOWTO = ("keys must be stored hashed, never as written: make one with "
              "`fsmc notify hash-key` (it reads the key from a prompt or stdin), "
              "python -c \"import hashlib; print('sha256:' + hashlib.sha256(b'KEY').hexdigest())\""
              " or fsmc.notify.config.hash_key('KEY')")


def hash_key(key: str) -> str:
    """How an API key is stored: `"sha256:"` + the hex SHA-256 digest of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def short_hash(key_hash: str) -> str:
    """`key_hash` cut short enough to show in a message or a log."""
    prefix, _, digest = key_hash.partition(":")
    return f"{prefix}:{digest[:_SHOWN]}…"


class ConfigError(FsmcError):
    """The notification service's configuration cannot be used. `path` is the file (or the
    name given to `parse_config`), `where` the table or key at fault ("" for the whole file)."""

    def __init__(self, message: str, *, path: str, where: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.where = where

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (str(self), self.path, self.where))


def _rebuild(message: str, path: str, where: str) -> ConfigError:
    return ConfigError(message, path=path, where=where)


@dataclass(frozen=True)
class Tenant:
    """One tenant: it sees the events whose `payload["account"]` is its `id`."""

    id: str
    key_hashes: frozenset[str] = field(default=frozenset(), repr=False)


@dataclass(frozen=True)
class NotifyConfig:
    """The checked configuration. `source_path` is the file it was loaded from (None when it
    was parsed from text)."""

    tenants: tuple[Tenant, ...] = ()
    admin_key_hashes: frozenset[str] = field(default=frozenset(), repr=False)
    allow_hosts: frozenset[str] = frozenset()
    max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS
    lease: float = DEFAULT_LEASE
    queue: str = DEFAULT_QUEUE
    queue_type: str = "classic"
    replay_age: float | None = None
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    replay: int = DEFAULT_REPLAY
    client_queue: int = DEFAULT_CLIENT_QUEUE
    heartbeat: float = DEFAULT_HEARTBEAT
    source_path: str | None = None


def load_config(path: str | os.PathLike[str]) -> NotifyConfig:
    """Read and check the TOML file at `path`."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as error:
        raise ConfigError(f"{name}: cannot read the configuration: {error.strerror or error}",
                          path=name) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{name}: not valid TOML: not UTF-8 text (byte {error.start})",
                          path=name) from None
    return replace(parse_config(text, name), source_path=name)


def parse_config(text: str, path: str = "<config>") -> NotifyConfig:
    """Check the TOML `text`; `path` names it in messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}", path=path) from None
    return _Reader(path).config(raw)


_TOP = ("tenants", "admin", "webhooks", "broker", "limits")
_TENANT = ("id", "api_keys")
_ADMIN = ("api_keys",)
_WEBHOOKS = ("allow_hosts", "max_dead_letters", "lease")
_BROKER = ("queue", "queue_type")
_LIMITS = ("rate", "burst", "replay", "replay_age", "client_queue", "heartbeat")


class _Reader:
    """Turns the parsed TOML into a `NotifyConfig`, raising at the first mistake."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, why: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {why}" if where else f"{self.path}: {why}",
                           path=self.path, where=where)

    def config(self, raw: Mapping[str, object]) -> NotifyConfig:
        self.known_keys(raw, _TOP, "", "top-level table or key")
        tenants = self.tenants(raw.get("tenants", []))
        admin = self.table(raw, "admin")
        admin_hashes = self.key_hashes(admin, "[admin]", _ADMIN) if admin is not None else ()
        self.unique_hashes(tenants, admin_hashes)
        webhooks = self.table(raw, "webhooks") or {}
        self.known_keys(webhooks, _WEBHOOKS, "[webhooks]", "key")
        broker = self.table(raw, "broker") or {}
        self.known_keys(broker, _BROKER, "[broker]", "key")
        limits = self.table(raw, "limits") or {}
        self.known_keys(limits, _LIMITS, "[limits]", "key")
        return NotifyConfig(
            tenants=tuple(Tenant(id_, frozenset(hashes)) for id_, hashes in tenants),
            admin_key_hashes=frozenset(admin_hashes),
            allow_hosts=self.allow_hosts(webhooks),
            max_dead_letters=self.count(webhooks, "max_dead_letters", DEFAULT_MAX_DEAD_LETTERS,
                                        "[webhooks]"),
            lease=self.number(webhooks, "lease", DEFAULT_LEASE, "[webhooks]"),
            queue=self.queue(broker),
            queue_type=self.choice(broker, "queue_type", QUEUE_TYPES, "[broker]"),
            replay_age=self.number(limits, "replay_age", None),
            rate=self.number(limits, "rate", DEFAULT_RATE),
            burst=self.count(limits, "burst", DEFAULT_BURST),
            replay=self.count(limits, "replay", DEFAULT_REPLAY),
            client_queue=self.count(limits, "client_queue", DEFAULT_CLIENT_QUEUE),
            heartbeat=self.number(limits, "heartbeat", DEFAULT_HEARTBEAT),
        )

    def known_keys(self, table: Mapping[str, object], known: tuple[str, ...], where: str,
                   what: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(where, f"unknown {what} {key!r}; {hint}"
                                       f"expected one of: {', '.join(known)}")

    def table(self, raw: Mapping[str, object], name: str) -> Mapping[str, object] | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", f"must be a table ([{name}]), not {_kind(value)}")
        return value

    def tenants(self, value: object) -> list[tuple[str, tuple[str, ...]]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.fail("tenants", "must be an array of tables, written [[tenants]] "
                                       f"once per tenant, not {_kind(value)}")
        tenants: list[tuple[str, tuple[str, ...]]] = []
        seen: dict[str, int] = {}
        for number, table in enumerate(value, 1):
            where = f"[[tenants]] #{number}"
            if "id" not in table:
                raise self.fail(where, "tenant without an id (id = \"...\", the account its "
                                       "events name in payload[\"account\"])")
            tenant_id = table["id"]
            if not isinstance(tenant_id, str) or not tenant_id:
                raise self.fail(f"{where}: id", f"must be a non-empty string, not "
                                               f"{_kind(tenant_id)}")
            if tenant_id == ALL_TENANTS:
                raise self.fail(f"{where}: id", f"{ALL_TENANTS!r} is reserved: it marks the "
                                               "admin's subscriptions, which see every tenant")
            if tenant_id in seen:
                raise self.fail(f"{where} (id {tenant_id!r})",
                                f"duplicate tenant id: [[tenants]] #{seen[tenant_id]} has it too")
            seen[tenant_id] = number
            where = f"{where} (id {tenant_id!r})"
            tenants.append((tenant_id, self.key_hashes(table, where, _TENANT)))
        return tenants

    def key_hashes(self, table: Mapping[str, object], where: str,
                   known: tuple[str, ...]) -> tuple[str, ...]:
        self.known_keys(table, known, where, "key")
        if "api_keys" not in table:
            raise self.fail(where, "api_keys is missing (a list of key hashes, may be empty)")
        keys = self.strings(table["api_keys"], f"{where}: api_keys", "key hashes")
        for number, key in enumerate(keys, 1):
            if not _HASH.fullmatch(key):
                # The value is not shown: it may be a key written as is.
                raise self.fail(f"{where}: api_keys item #{number}",
                                f"not a key hash of the form sha256:<64 lowercase hex digits>; "
                                f"{HASH_HOWTO}")
        return keys

    def unique_hashes(self, tenants: Iterable[tuple[str, tuple[str, ...]]],
                      admin: tuple[str, ...]) -> None:
        owners: dict[str, str] = {}
        holders = [(f"[[tenants]] #{number} (id {tenant_id!r})", hashes)
                   for number, (tenant_id, hashes) in enumerate(tenants, 1)]
        holders.append(("[admin]", admin))
        for holder, hashes in holders:
            for key_hash in set(hashes):
                first = owners.setdefault(key_hash, holder)
                if first != holder:
                    raise self.fail(f"{holder}: api_keys",
                                    f"the key hash {short_hash(key_hash)} is used by both "
                                    f"{first} and {holder}; one key must identify one tenant "
                                    f"(or the admin)")

    def allow_hosts(self, webhooks: Mapping[str, object]) -> frozenset[str]:
        hosts = self.strings(webhooks.get("allow_hosts", []), "[webhooks]: allow_hosts",
                             "host names, as written in webhook URLs")
        for host in hosts:
            if not host or host != host.strip():
                raise self.fail("[webhooks]: allow_hosts",
                                f"{host!r} is not a host name (empty or with spaces)")
        return frozenset(hosts)

    def strings(self, value: object, where: str, what: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list of strings ({what}), not {_kind(value)}")
        for number, item in enumerate(value, 1):
            if not isinstance(item, str):
                raise self.fail(where, f"must be a list of strings ({what}); item #{number} "
                                       f"is {_kind(item)}")
        return tuple(value)

    def number(self, table: Mapping[str, object], key: str, default: _D,
               where: str = "[limits]") -> float | _D:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}: {key}", f"must be a positive number, not {_kind(value)}")
        if not (math.isfinite(value) and value > 0):
            raise self.fail(f"{where}: {key}", f"must be a positive number, not {value!r}")
        return float(value)

    def queue(self, broker: Mapping[str, object]) -> str:
        value = broker.get("queue", DEFAULT_QUEUE)
        if not isinstance(value, str) or not value or value != value.strip() or \
                value.startswith("amq.") or len(value.encode("utf-8")) > 255:
            raise self.fail("[broker]: queue", "must be a queue name: a non-empty string of "
                            "at most 255 bytes, without surrounding spaces, not starting with "
                            f"'amq.' (reserved by the broker); not {_kind(value)}"
                            + (f" {value!r}" if isinstance(value, str) else ""))
        return value

    def choice(self, table: Mapping[str, object], key: str, choices: tuple[str, ...],
               where: str) -> str:
        value = table.get(key, choices[0])
        if value not in choices:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise self.fail(f"{where}: {key}", f"must be one of {', '.join(map(repr, choices))},"
                                               f" not {shown}")
        assert isinstance(value, str)
        return value

    def count(self, table: Mapping[str, object], key: str, default: int,
              where: str = "[limits]") -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}: {key}", f"must be a positive integer, not {_kind(value)}")
        if value <= 0:
            raise self.fail(f"{where}: {key}", f"must be a positive integer, not {value}")
        return value


def _kind(value: object) -> str:
    """What a TOML value is, for messages; never the value itself (it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
