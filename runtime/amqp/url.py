"""Broker URLs: checked once, shown without their password."""

from __future__ import annotations

from typing import Any

import pika

__all__ = ["parameters", "redacted"]


def parameters(url: str) -> Any:
    """pika's connection parameters for an `amqp://` or `amqps://` URL; `ValueError` (saying
    what is wrong) for anything else. pika itself takes any scheme as plain AMQP."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("amqp", "amqps"):
        raise ValueError(f"not an AMQP URL (amqp://user:password@host:port/vhost): "
                         f"{redacted(url)!r}")
    try:
        return pika.URLParameters(url)
    except Exception as error:
        raise ValueError(f"not a usable AMQP URL {redacted(url)!r}: {error}") from None


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
