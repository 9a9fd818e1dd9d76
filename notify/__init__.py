"""The notification service: tenants follow their own resources' events over HTTP.

`create_app(bus, config)` returns an ASGI application (Starlette) fed by `bus` — in-process, or
filled from RabbitMQ by an `fsmc.runtime.amqp.AmqpConsumer` — and `fsmc notify serve` runs it
with uvicorn. See docs/notify.md.
"""

from __future__ import annotations

__all__: list[str] = []
