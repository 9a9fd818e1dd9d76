"""Webhook subscriptions: checking what a tenant asks for, and keeping what it was given.

`validate_subscription` checks the body of `POST /v1/subscriptions` (`validate_changes` that of
`PATCH /v1/subscriptions/{id}`); `validate_target` checks a
webhook URL so that the service cannot be turned against the network it runs in: only `http`
and `https`, no `user:pass@`, and a host that is (or resolves to) global addresses only, unless
the host is listed in the config's `[webhooks] allow_hosts`. `check_delivery_target` runs the
same check again right before each delivery, because DNS may have changed since. Every refusal
is an `InvalidSubscription` whose message says what is wrong (the app answers 422 with it); a
message never shows a secret. What is accepted is kept by `fsmc.notify.store.SubscriptionStore`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from fsmc.runtime.topics import validate_pattern

__all__ = ["MAX_SECRET_LENGTH", "InvalidSubscription", "Resolver", "check_delivery_target",
           "validate_changes", "validate_subscription", "validate_target"]

MAX_SECRET_LENGTH = 256
_SCHEMES = {"http": 80, "https": 443}
_FIELDS = ("topic", "kind", "url", "secret")
_CHANGEABLE = ("topic", "url", "secret")

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
    _no_unknown(body, _FIELDS, "expected exactly:")
    missing = [key for key in _FIELDS if key not in body]
    if missing:
        raise InvalidSubscription(f"missing field{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(map(repr, missing))}")
    topic = _topic(body["topic"])
    if body["kind"] != "webhook":
        raise InvalidSubscription(f"kind must be \"webhook\", not {body['kind']!r}"
                                  if isinstance(body["kind"], str) else
                                  f"kind must be \"webhook\", not {_kind(body['kind'])}")
    url = _url(body["url"], allow_hosts, resolve)
    return topic, url, _secret(body["secret"])


def validate_changes(body: object, allow_hosts: frozenset[str],
                     resolve: Resolver = socket.getaddrinfo) -> dict[str, str]:
    """Check the JSON body of `PATCH /v1/subscriptions/{id}` and return the changes, by field.

    The body must be an object with at least one of `topic`, `url` and `secret`, each checked
    as `validate_subscription` checks it (a new URL gets the same target check)."""
    if not isinstance(body, dict):
        raise InvalidSubscription(f"the body must be a JSON object with one or more of "
                                  f"{', '.join(_CHANGEABLE)}, not {_kind(body)}")
    _no_unknown(body, _CHANGEABLE, "only these can change:")
    if not body:
        raise InvalidSubscription(f"nothing to change: give one or more of "
                                  f"{', '.join(_CHANGEABLE)}")
    changes: dict[str, str] = {}
    if "topic" in body:
        changes["topic"] = _topic(body["topic"])
    if "url" in body:
        changes["url"] = _url(body["url"], allow_hosts, resolve)
    if "secret" in body:
        changes["secret"] = _secret(body["secret"])
    return changes


def _no_unknown(body: dict[Any, Any], fields: tuple[str, ...], expected: str) -> None:
    unknown = sorted(str(key) for key in body if key not in fields)
    if unknown:
        raise InvalidSubscription(f"unknown field{'s' if len(unknown) > 1 else ''} "
                                  f"{', '.join(map(repr, unknown))}; {expected} "
                                  f"{', '.join(fields)}")


def _topic(topic: object) -> str:
    try:
        return validate_pattern(topic)
    except (TypeError, ValueError) as error:
        raise InvalidSubscription(f"topic: {error}") from None


def _url(url: object, allow_hosts: frozenset[str], resolve: Resolver) -> str:
    if not isinstance(url, str):
        raise InvalidSubscription(f"url must be a string, not {_kind(url)}")
    return validate_target(url, allow_hosts, resolve)


def _secret(secret: object) -> str:
    if not isinstance(secret, str):
        raise InvalidSubscription(f"secret must be a string, not {_kind(secret)}")
    if not secret:
        raise InvalidSubscription("secret must not be empty")
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidSubscription(f"secret is {len(secret)} characters long; at most "
                                  f"{MAX_SECRET_LENGTH} are allowed")
    return secret


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
