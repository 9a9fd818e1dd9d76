"""`create_app(bus, config)`: the notification service as an ASGI application (Starlette).

Every `/v1` request carries `Authorization: Bearer <key>`; a missing or unknown key is answered 401,
a key over its rate limit 429 with `Retry-After`. A tenant sees only the events of its own
resources (`payload["account"]`); the admin sees all.

- `GET /`: a web page that asks for an API key and shows that tenant's subscriptions and
  events live.
- `GET /openapi.json`: the OpenAPI 3.1 document of every route (the data file
  `notify/openapi.json`); like the page, served without a key.
- `GET /v1/events[?topic=PATTERN]`: Server-Sent Events, one `StateChanged` event per
  transition (`id:` the event id, `data:` its CloudEvents JSON), resuming after the
  `Last-Event-ID` header from the replay log; `: heartbeat` comments while idle. A malformed
  pattern is answered 422; a suspicious one gets a `warning` event after `retry:`.
- `POST /v1/subscriptions` `{"topic", "kind": "webhook", "url", "secret"}` → 201 with the
  subscription (never its secret), with a `warning` when its pattern almost never means what
  was meant (`fsmc.runtime.topics.pattern_warning`); `GET /v1/subscriptions`; `GET` / `DELETE
  /v1/subscriptions/{id}` (204); `PATCH /v1/subscriptions/{id}` with any of `topic`, `url`,
  `secret` (checked as `POST` checks them; id, dead letters and lane stay); `GET
  /v1/subscriptions/{id}/dead-letters` (with how many were dropped beyond the config's
  bound); `POST /v1/subscriptions/{id}/dead-letters/redrive`. Another tenant's subscription
  is answered 404, a malformed pattern, URL or body 422. A method a path lacks is answered 405
  with all those it has in `Allow`. Times are ISO 8601 in UTC
  (`2026-12-08T01:30:04.250000Z`), as in events.

The store is SQLite and every call into it blocks, so handlers make them in a worker thread,
never on the event loop: a slow disk delays that request, not the open streams. The app has two
executors of its own, not the loop's default one: one for the store (2 threads: SQLite is
serialised by the store's lock anyway) and one for the DNS lookups that check a new
subscription's URL (4 threads), so a tenant naming hosts that take long to resolve delays only
subscriptions being made, never another request's store calls. Both are shut down with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from fsmc.runtime import StateChanged
from fsmc.runtime.topics import compile_pattern, pattern_warning
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .auth import Authenticator, Principal, owner_of
from .config import NotifyConfig, hash_key, load_config
from .eventlog import EventLog, Retention
from .journal import Journal
from .ratelimit import RateLimiter
from .store import Subscription, SubscriptionStore
from .stream import Client, Hub, shutdown_notice, stream, visible_to
from .subscriptions import InvalidSubscription, validate_changes, validate_subscription
from .webhooks import ALL_TENANTS, WebhookDispatcher

__all__ = ["create_app"]

_T = TypeVar("_T")

STORE_THREADS = 2  # the store's lock lets one call in at a time: a second one waits ready
DNS_THREADS = 4  # lookups of new subscriptions' hosts at once; more wait their turn
DNS_PER_CALLER = 2  # of those, at most this many for one tenant (or the admin) at once
DNS_PATIENCE = 10.0  # seconds a request waits for its lookup before it is answered 422


def create_app(bus: Any, config: NotifyConfig | str | os.PathLike[str], *,
               subscriptions: str | Path | SubscriptionStore = ":memory:",
               webhook_options: dict[str, Any] | None = None,
               source: str = "fsmc") -> Starlette:
    """The service, fed by `bus` (it subscribes to `StateChanged`) and by whatever calls
    `app.state.journal.record` (the AMQP consumer of `fsmc notify serve`), configured by
    `config` (a `NotifyConfig`, or the path of its TOML file, read with `load_config`: a bad
    file raises `ConfigError` before anything is opened), keeping subscriptions, pending
    deliveries, dead letters and the replay log in the database `subscriptions` (an SQLite
    file, so that they survive a restart; a PostgreSQL URL, shared by several instances), or
    in a `SubscriptionStore` already open (the app then owns it and closes it at shutdown).
    `webhook_options` go to `WebhookDispatcher` (attempts, delays, timeout, lease; a
    `max_dead_letters` there overrides the config's). Streams and webhooks carry each event
    with its own CloudEvents `source` (the producer's, for events from the broker), else with
    `source` (events made in this process; "fsmc", as `AmqpPublisher`'s). The hub, the store,
    the dispatcher and the journal are `app.state.hub`, `.store`, `.webhooks`, `.journal`.

    If it raises part-way (a file that is not a database raises `sqlite3.DatabaseError`),
    what it opened is closed again: the store it opened, the dispatcher's threads, its
    subscription to `bus` (a store given to it stays open, the caller's)."""
    if not isinstance(config, NotifyConfig):
        config = load_config(config)
    with contextlib.ExitStack() as undo:
        if isinstance(subscriptions, SubscriptionStore):
            store = subscriptions
        else:
            store = SubscriptionStore(subscriptions)
            undo.callback(store.close)
        log = EventLog(store, Retention(config.replay, config.replay_age))
        hub = Hub(log, shutdown_notice=shutdown_notice(store.durable, config.replay,
                                                       config.replay_age))
        webhooks = WebhookDispatcher(store, config.allow_hosts, **{
            "max_dead_letters": config.max_dead_letters, "lease": config.lease,
            **(webhook_options or {})})
        undo.callback(webhooks.close)
        journal = Journal(log, hub, webhooks, owner=owner_of, source=source)
        undo.callback(journal.close)
        handle = bus.subscribe(journal.post, StateChanged)
        undo.callback(bus.unsubscribe, handle)
        app = _build(bus, handle, hub, config, store, webhooks, journal)
        undo.pop_all()
    return app


def _build(bus: Any, handle: Any, hub: Hub, config: NotifyConfig, store: SubscriptionStore,
           webhooks: WebhookDispatcher, journal: Journal) -> Starlette:
    """The application around what `create_app` opened."""
    # Threads start on the first call: an app that never serves leaves none behind.
    store_pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="fsmc-notify-store")
    dns_pool = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="fsmc-notify-dns")
    service = _Service(hub, config, store, webhooks, store_pool, dns_pool)
    one = "/v1/subscriptions/{id}"
    app = Starlette(routes=[
        _resource("/", GET=_page),
        _resource("/openapi.json", GET=_openapi),
        _resource("/v1/events", GET=service.events),
        _resource("/v1/subscriptions", GET=service.list, POST=service.create),
        _resource(one, GET=service.show, PATCH=service.change, DELETE=service.delete),
        _resource(one + "/dead-letters", GET=service.dead_letters),
        _resource(one + "/dead-letters/redrive", POST=service.redrive),
    ], lifespan=_closing(lambda: bus.unsubscribe(handle), journal, webhooks, store,
                         store_pool, dns_pool),
        exception_handlers={HTTPException: _http_error})
    app.state.hub = hub
    app.state.store = store
    app.state.webhooks = webhooks
    app.state.journal = journal
    app.state.before_close = []  # callables run at shutdown before the journal closes
    app.state.config = config
    return app


Endpoint = Callable[[Request], Awaitable[Response]]


def _resource(path: str, **methods: Endpoint) -> Route:
    """One route for `path` and every method it has: a method it lacks is answered 405 with
    all of them in `Allow` (with a route per method, Starlette would name the first one's
    only). HEAD is answered as GET."""
    async def endpoint(request: Request) -> Response:
        return await methods["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, endpoint, methods=list(methods))


_PAGE = (resources.files("fsmc.notify") / "static" / "index.html").read_bytes()
_OPENAPI = (resources.files("fsmc.notify") / "openapi.json").read_bytes()


async def _page(request: Request) -> Response:
    """The web page: enter an API key, see that tenant's subscriptions and events live."""
    return Response(_PAGE, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": "default-src 'self'; script-src "
                             "'unsafe-inline'; style-src 'unsafe-inline'",
                             "X-Content-Type-Options": "nosniff"})


async def _openapi(request: Request) -> Response:
    """The OpenAPI document (tests/test_notify_openapi.py checks it against the routes and the
    real responses)."""
    return Response(_OPENAPI, media_type="application/json",
                    headers={"X-Content-Type-Options": "nosniff"})


def _closing(unsubscribe: Callable[[], object], journal: Journal, webhooks: WebhookDispatcher,
             store: SubscriptionStore, store_pool: ThreadPoolExecutor,
             dns_pool: ThreadPoolExecutor) -> Any:
    """The app's lifespan: at shutdown, leave the bus, record what it posted, stop the webhook
    lanes (releasing their leases), close the store (in the store's executor: these wait),
    then shut both executors down without waiting on the loop (a lookup still hanging ends in
    its thread, its answer unused)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        try:
            unsubscribe()
            loop = asyncio.get_running_loop()
            for stop_feeding in app.state.before_close:  # e.g. the AMQP consumer
                await loop.run_in_executor(store_pool, stop_feeding)
            await loop.run_in_executor(store_pool, journal.close)
            await loop.run_in_executor(store_pool, webhooks.close)
            await loop.run_in_executor(store_pool, store.close)
        finally:
            dns_pool.shutdown(wait=False, cancel_futures=True)
            store_pool.shutdown(wait=False, cancel_futures=True)

    return lifespan


class _Service:
    def __init__(self, hub: Hub, config: NotifyConfig, store: SubscriptionStore,
                 webhooks: WebhookDispatcher, store_pool: Executor, dns_pool: Executor) -> None:
        self.hub = hub
        self.config = config
        self.store = store
        self.webhooks = webhooks
        self.auth = Authenticator(config)
        self.limiter = RateLimiter(config.rate, config.burst)
        self._store_pool = store_pool
        self._dns_pool = dns_pool
        self._checking: dict[str | None, int] = {}  # lookups in flight per tenant (None: admin)

    async def stored(self, call: Callable[..., _T], *args: Any) -> _T:
        """`call(*args)` (the store's, or the dispatcher's that calls it) in the store's
        executor."""
        return await asyncio.get_running_loop().run_in_executor(self._store_pool, call, *args)

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
        warning = pattern_warning(topic, in_url=True) if topic else None
        client = Client(visible_to(admitted.tenant, admitted.admin, pattern),
                        asyncio.get_running_loop(), self.config.client_queue)
        resume = await self.stored(self.hub.connect, client,
                                   request.headers.get("last-event-id") or None)
        body = stream(self.hub, client, resume, heartbeat=self.config.heartbeat,
                      disconnected=request.is_disconnected)
        if warning is not None:
            body = _warned(body, warning)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})


    # -- subscriptions ----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        admitted = self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        checked = await self.checked(request, admitted.tenant, validate_subscription)
        if isinstance(checked, Response):
            return checked
        topic, url, secret = checked
        tenant = admitted.tenant if admitted.tenant is not None else ALL_TENANTS
        subscription = await self.stored(self._add, tenant, topic, url, secret)
        return _shown(subscription, topic, 201)

    async def change(self, request: Request) -> Response:
        """`PATCH`: a new URL, secret or topic for a subscription, checked as `POST` checks
        them; its id, dead letters and webhook lane stay."""
        found = await self.caller_and_owned(request)
        if isinstance(found, Response):
            return found
        admitted, subscription = found
        checked = await self.checked(request, admitted.tenant, validate_changes)
        if isinstance(checked, Response):
            return checked
        changed = await self.stored(self._change, subscription.id, checked)
        if changed is None:  # deleted meanwhile
            return _error(404, "not_found", "no such subscription")
        return _shown(changed, checked.get("topic"), 200)

    def _change(self, subscription_id: str, changes: dict[str, str]) -> Subscription | None:
        """In a worker thread: store the changes and hand them to the webhook lane."""
        changed = self.store.update(subscription_id, **changes)
        self.webhooks.refresh()
        return changed

    async def checked(self, request: Request, tenant: str | None,
                      validate: Callable[..., _T]) -> _T | Response:
        """`validate(body, allow_hosts)` of the request's JSON body (`validate_subscription` or
        `validate_changes`; 422 if it is not JSON), whose DNS lookup may take long: in the DNS
        executor,
        at most `DNS_PER_CALLER` at once per tenant (429 beyond: one tenant naming hosts that
        hang cannot take every lookup thread), answered 422 after `DNS_PATIENCE` seconds. A
        lookup counts against its tenant until its thread is done, even if nobody waits for
        it any more."""
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "invalid_body", "the body must be a JSON object")
        if self._checking.get(tenant, 0) >= DNS_PER_CALLER:
            return _error(429, "rate_limited", f"{DNS_PER_CALLER} subscriptions of this key "
                          "are being checked already; retry in 1 s",
                          headers={"Retry-After": "1"})
        lookup = asyncio.get_running_loop().run_in_executor(
            self._dns_pool, validate, body, self.config.allow_hosts)
        self._checking[tenant] = self._checking.get(tenant, 0) + 1
        lookup.add_done_callback(functools.partial(self._done_checking, tenant))
        try:
            return await asyncio.wait_for(asyncio.shield(lookup), DNS_PATIENCE)
        except InvalidSubscription as error:
            return _error(422, "invalid_subscription", str(error))
        except TimeoutError:
            return _error(422, "invalid_subscription", "the URL's host could not be resolved "
                          f"within {DNS_PATIENCE:g} s")

    def _done_checking(self, tenant: str | None, lookup: asyncio.Future[Any]) -> None:
        if not lookup.cancelled():
            lookup.exception()  # seen: a late failure nobody waits for is not an error to log
        left = self._checking[tenant] - 1
        if left:
            self._checking[tenant] = left
        else:
            del self._checking[tenant]

    def _add(self, tenant: str, topic: str, url: str, secret: str) -> Subscription:
        """In a worker thread: store the subscription and give it a webhook lane."""
        subscription = self.store.add(tenant, topic, url, secret)
        self.webhooks.refresh()
        return subscription

    async def list(self, request: Request) -> Response:
        admitted = self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        found = await self.stored(self.store.list, None if admitted.admin else admitted.tenant)
        return JSONResponse({"subscriptions": [each.to_json() for each in found]})

    async def owned(self, request: Request) -> Subscription | Response:
        """The subscription of the path, if the caller may see it; else the refusal (another
        tenant's subscription is answered 404, as if it did not exist)."""
        found = await self.caller_and_owned(request)
        return found if isinstance(found, Response) else found[1]

    async def caller_and_owned(
            self, request: Request) -> tuple[Principal, Subscription] | Response:
        """`owned`, with the caller."""
        admitted = self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        subscription = await self.stored(self.store.get, request.path_params["id"])
        if subscription is None or not (admitted.admin or subscription.tenant ==
                                        admitted.tenant):
            return _error(404, "not_found", "no such subscription")
        return admitted, subscription

    async def show(self, request: Request) -> Response:
        found = await self.owned(request)
        return found if isinstance(found, Response) else JSONResponse(found.to_json())

    async def delete(self, request: Request) -> Response:
        found = await self.owned(request)
        if isinstance(found, Response):
            return found
        await self.stored(self._delete, found.id)
        return Response(status_code=204)

    def _delete(self, subscription_id: str) -> None:
        """In a worker thread: delete the subscription and stop its webhook lane."""
        self.store.delete(subscription_id)
        self.webhooks.refresh()

    async def dead_letters(self, request: Request) -> Response:
        found = await self.owned(request)
        if isinstance(found, Response):
            return found
        letters, dropped = await self.stored(
            lambda: (self.store.dead_letters(found.id), self.store.dropped(found.id)))
        return JSONResponse({"dead_letters": [letter.to_json() for letter in letters],
                             "dropped": dropped})

    async def redrive(self, request: Request) -> Response:
        found = await self.owned(request)
        if isinstance(found, Response):
            return found
        redriven = await self.stored(self.webhooks.redrive, found.id)
        return JSONResponse({"redriven": redriven}, status_code=202)


def _shown(subscription: Subscription, topic: str | None, status: int) -> JSONResponse:
    """The subscription as the API shows it, with a `warning` when `topic` (the pattern just
    given, if any) almost never means what was meant."""
    shown = subscription.to_json()
    warning = None if topic is None else pattern_warning(topic)
    if warning is not None:
        shown["warning"] = warning
    return JSONResponse(shown, status_code=status)


async def _warned(body: AsyncIterator[str], warning: str) -> AsyncIterator[str]:
    """The stream `body` with a `warning` event after its first line (`retry:`)."""
    notice = f"event: warning\ndata: {json.dumps({'warning': warning})}\n\n"
    first = True
    async for chunk in body:
        yield chunk
        if first:
            first = False
            yield notice


_HTTP_ERRORS = {404: ("not_found", "no such resource"),
                405: ("method_not_allowed", "this method is not allowed here")}


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (an unknown path, a method a path does not have) in the JSON
    shape of the others."""
    assert isinstance(error, HTTPException)
    code, message = _HTTP_ERRORS.get(error.status_code, ("http_error", str(error.detail)))
    headers = dict(error.headers or {})
    if "Allow" in headers:  # Starlette joins a set: give the methods in one stable order
        headers["Allow"] = ", ".join(sorted(headers["Allow"].split(", ")))
    return _error(error.status_code, code, f"{message}: {request.method} {request.url.path}",
                  headers=headers)


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status,
                        headers=headers)
