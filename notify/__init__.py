"""The notification service: tenants follow their own resources' events over HTTP.

`create_app(bus, config)` returns an ASGI application (Starlette) fed by `bus` — in-process, or
filled from RabbitMQ by an `fsmc.runtime.amqp.AmqpConsumer` — and `fsmc notify serve` runs it
with uvicorn. `config` is a loaded `fsmc.notify.config.NotifyConfig` or the path of its TOML
file. See docs/notify.md.

`create_app` is imported on first use (PEP 562), so importing `fsmc.notify` or its `config`
needs no Starlette; type checkers see `fsmc.notify.app.create_app` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "create_app"])
