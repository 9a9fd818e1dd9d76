"""A free TCP port on 127.0.0.1, for the servers tests start as other processes (PostgreSQL,
RabbitMQ).
Another process may take it before the server binds it: callers that can, retry."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
