"""`create_app(bus, config)`: the notification service as an ASGI application (Starlette).

Every request carries `Authorization: Bearer <key>`; a missing or unknown key is answered 401,
a key over its rate limit 429 with `Retry-After`. A tenant sees only the events of its own
resources (`payload["account"]`); the admin sees all.

- `GET /v1/events[?topic=PATTERN]`: Server-Sent Events, one `StateChanged` event per
  transition (`id:` the event id, `data:` its CloudEvents JSON), resuming after the
  `Last-Event-ID` header from the replay log; `: heartbeat` comments while idle. A malformed
  pattern is answered 422.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fsmc.runtime import StateChanged
from fsmc.runtime.topics import compile_pattern
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .auth import Authenticator, Principal, owner_of
from .config import NotifyConfig, hash_key
from .ratelimit import RateLimiter
from .stream import Client, Hub, stream, visible_to

__all__ = ["create_app"]


def create_app(bus: Any, config: NotifyConfig) -> Starlette:
    """The service, fed by `bus` (it subscribes to `StateChanged`). The hub is
    `app.state.hub`."""
    hub = Hub(replay=config.replay, owner=owner_of)
    bus.subscribe(hub.publish, StateChanged)
    service = _Service(hub, config)
    app = Starlette(routes=[Route("/v1/events", service.events, methods=["GET"])])
    app.state.hub = hub
    app.state.config = config
    return app


class _Service:
    def __init__(self, hub: Hub, config: NotifyConfig) -> None:
        self.hub = hub
        self.config = config
        self.auth = Authenticator(config)
        self.limiter = RateLimiter(config.rate, config.burst)

    def admit(self, request: Request) -> Principal | Response:
        """The caller, or the response refusing it (401, 429)."""
        header = request.headers.get("authorization")
        principal = self.auth.identify(header)
        if principal is None:
            return _error(401, "unauthorized", "send `Authorization: Bearer <API key>` with "
                          "a key of this service", headers={"WWW-Authenticate": "Bearer"})
        assert header is not None
        wait = self.limiter.acquire(hash_key(header.split(None, 1)[-1].strip()))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            return _error(429, "rate_limited", f"too many requests; retry in {seconds} s",
                          headers={"Retry-After": str(seconds)})
        return principal

    async def events(self, request: Request) -> Response:
        admitted = self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        topic = request.query_params.get("topic")
        try:
            pattern = compile_pattern(topic) if topic else None
        except (TypeError, ValueError) as error:
            return _error(422, "invalid_topic", str(error))
        client = Client(visible_to(admitted.tenant, admitted.admin, pattern),
                        asyncio.get_running_loop(), self.config.client_queue)
        last_id = request.headers.get("last-event-id") or None
        body = stream(self.hub, client, last_id, heartbeat=self.config.heartbeat,
                      disconnected=request.is_disconnected)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status,
                        headers=headers)
