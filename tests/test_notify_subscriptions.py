"""Webhook subscriptions: every rule of `validate_target` with a fake resolver (no DNS), and the
checks of a `POST /v1/subscriptions` body (the store is tests/test_notify_store.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from fsmc.notify.subscriptions import (
    MAX_SECRET_LENGTH,
    InvalidSubscription,
    check_delivery_target,
    validate_subscription,
    validate_target,
)

NONE: frozenset[str] = frozenset()


class FakeResolver:
    """Resolves the names of `table` to their addresses; any other name fails like DNS does."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        assert kwargs == {"proto": socket.IPPROTO_TCP}
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (addr, port)) for addr in self.table[host]]


def refused(url: str, *words: str, allow: frozenset[str] = NONE,
            resolve: FakeResolver | None = None) -> str:
    with pytest.raises(InvalidSubscription) as info:
        validate_target(url, allow, resolve or FakeResolver({}))
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


# --- validate_target -----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "address", "why"), [
    ("http://127.0.0.1/hook", "127.0.0.1", "loopback"),
    ("http://127.8.9.10:8080/", "127.8.9.10", "loopback"),
    ("http://[::1]/hook", "::1", "loopback"),
    ("https://10.1.2.3/", "10.1.2.3", "private"),
    ("https://192.168.1.1/", "192.168.1.1", "private"),
    ("https://172.16.0.5/", "172.16.0.5", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ("http://[fe80::1]/", "fe80::1", "link-local"),
    ("http://[fc00::1]/", "fc00::1", "private"),
    ("http://[fd12:3456::1]/", "fd12:3456::1", "private"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback (IPv4-mapped)"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "link-local (IPv4-mapped)"),
    ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
    ("http://[::]/", "::", "unspecified"),
    ("http://224.0.0.1/", "224.0.0.1", "multicast"),
    ("http://[ff02::1]/", "ff02::1", "multicast"),
    ("http://100.64.0.1/", "100.64.0.1", "not global"),
])
def test_internal_ip_literals_are_refused(url: str, address: str, why: str) -> None:
    resolve = FakeResolver({})
    refused(url, address, f"a {why} address", "allow_hosts", resolve=resolve)
    assert resolve.calls == []  # a literal is judged as is
    with pytest.raises(InvalidSubscription):
        check_delivery_target(url, NONE, resolve)


def test_public_ip_literals_are_accepted() -> None:
    for url in ("http://93.184.216.34/hook", "https://[2606:2800:220:1::248]:8443/x"):
        assert validate_target(url, NONE, FakeResolver({})) == url


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.7", "private"),
    ("169.254.169.254", "link-local"), ("fc00::5", "private"),
    ("::ffff:192.168.0.1", "private (IPv4-mapped)"), ("0.0.0.0", "unspecified"),
    ("239.1.1.1", "multicast"), ("fe80::1%eth0", "link-local"),
])
def test_names_resolving_to_internal_addresses_are_refused(address: str, why: str) -> None:
    resolve = FakeResolver({"hooks.example.com": [address]})
    refused("https://hooks.example.com/x", "'hooks.example.com'", "resolves to", why,
            resolve=resolve)
    assert resolve.calls == [("hooks.example.com", 443)]


def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    resolve = FakeResolver({"mixed.example.com": ["93.184.216.34", "192.168.0.10"]})
    refused("http://mixed.example.com/", "192.168.0.10", "private", resolve=resolve)
    resolve = FakeResolver({"mixed.example.com": ["2606:2800:220:1::248", "::1"]})
    refused("http://mixed.example.com/", "::1", "loopback", resolve=resolve)


def test_a_name_resolving_only_to_public_addresses_is_accepted() -> None:
    resolve = FakeResolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::248"]})
    url = "https://hooks.example.com:8443/in?x=1"
    assert validate_target(url, NONE, resolve) == url
    assert check_delivery_target(url, NONE, resolve) == url
    assert resolve.calls == [("hooks.example.com", 8443)] * 2
    validate_target("http://hooks.example.com/", NONE, resolve)
    assert resolve.calls[-1] == ("hooks.example.com", 80)


def test_delivery_check_sees_dns_changes() -> None:
    resolve = FakeResolver({"rebind.example.com": ["93.184.216.34"]})
    url = "https://rebind.example.com/"
    validate_target(url, NONE, resolve)
    resolve.table["rebind.example.com"] = ["127.0.0.1"]
    with pytest.raises(InvalidSubscription, match="loopback"):
        check_delivery_target(url, NONE, resolve)


def test_unresolvable_names_are_refused() -> None:
    refused("https://nowhere.invalid/", "cannot resolve host 'nowhere.invalid'")
    refused("https://empty.example/", "cannot resolve host", "no addresses",
            resolve=FakeResolver({"empty.example": []}))


def test_allow_listed_hosts_are_accepted_without_resolving() -> None:
    resolve = FakeResolver({})
    allow = frozenset({"localhost", "127.0.0.1", "Hooks.Internal", "[::1]"})
    for url in ("http://localhost:9000/hook", "http://127.0.0.1/", "https://hooks.internal/x",
                "https://HOOKS.internal/x", "http://[::1]:8080/"):
        assert validate_target(url, allow, resolve) == url
        assert check_delivery_target(url, allow, resolve) == url
    assert resolve.calls == []
    # The real resolver is not needed for a listed name either.
    assert validate_target("http://localhost/", allow) == "http://localhost/"
    # Only the listed host: another loopback name is still refused.
    refused("http://127.0.0.2/", "loopback", allow=allow)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd",
                                 "javascript:alert(1)", "gopher://example.com/",
                                 "example.com/hook", ""])
def test_only_http_and_https(url: str) -> None:
    refused(url, "http or https")


def test_user_info_is_refused() -> None:
    resolve = FakeResolver({"example.com": ["93.184.216.34"]})
    message = refused("https://user:hunter2@example.com/", "user info", resolve=resolve)
    assert "hunter2" not in message
    refused("https://user@example.com/", "user info", resolve=resolve)
    refused("https://user@localhost/", "user info", allow=frozenset({"localhost"}))


@pytest.mark.parametrize("url", ["http:///path", "https://", "http://:80/"])
def test_a_host_is_required(url: str) -> None:
    refused(url, "no host")


def test_the_real_resolver_refuses_localhost() -> None:
    with pytest.raises(InvalidSubscription, match=r"'localhost' resolves to .*loopback"):
        validate_target("http://localhost:8080/", NONE)


def test_malformed_urls_are_refused() -> None:
    refused("http://[::1/", "malformed")
    refused("http://example.com:99999/", "malformed")


# --- validate_subscription -----------------------------------------------------------------

PUBLIC = FakeResolver({"hooks.example.com": ["93.184.216.34"]})


def body(**changes: object) -> dict[str, object]:
    good: dict[str, object] = {"topic": "vm.*.#", "kind": "webhook",
                               "url": "https://hooks.example.com/in", "secret": "s3cret"}
    good.update(changes)
    return {key: value for key, value in good.items() if value is not ...}


def invalid(value: object, *words: str) -> str:
    with pytest.raises(InvalidSubscription) as info:
        validate_subscription(value, NONE, PUBLIC)
    for word in words:
        assert word in str(info.value), str(info.value)
    return str(info.value)


def test_a_good_body() -> None:
    assert validate_subscription(body(), NONE, PUBLIC) == (
        "vm.*.#", "https://hooks.example.com/in", "s3cret")
    assert validate_subscription(body(secret="x" * MAX_SECRET_LENGTH), NONE, PUBLIC)[2] == \
        "x" * MAX_SECRET_LENGTH


@pytest.mark.parametrize("value", [None, [], "text", 3, [body()]])
def test_the_body_must_be_an_object(value: object) -> None:
    invalid(value, "JSON object")


def test_unknown_and_missing_fields() -> None:
    invalid(body(extra=1, colour="red"), "unknown fields 'colour', 'extra'")
    invalid(body(secrets="x"), "unknown field 'secrets'")
    invalid(body(kind=...), "missing field 'kind'")
    invalid({}, "missing fields 'topic', 'kind', 'url', 'secret'")


def test_bad_fields() -> None:
    invalid(body(topic=5), "topic:", "must be a str")
    invalid(body(topic="a" * 256), "topic:", "255 bytes")
    invalid(body(topic="\ud800"), "topic:", "not valid text")
    invalid(body(kind="email"), "kind must be \"webhook\"", "'email'")
    invalid(body(kind=None), "kind must be \"webhook\", not null")
    invalid(body(url=5), "url must be a string")
    invalid(body(url="ftp://hooks.example.com/"), "http or https")
    invalid(body(url="http://169.254.169.254/"), "link-local")
    invalid(body(secret=""), "secret must not be empty")
    invalid(body(secret=12345), "secret must be a string, not a number")
    message = invalid(body(secret="k" * (MAX_SECRET_LENGTH + 1)), "257 characters", "256")
    assert "kkkk" not in message
