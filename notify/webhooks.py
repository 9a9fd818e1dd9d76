"""Webhook deliveries: each subscription's events POSTed to its URL, in order, signed, retried,
and dead-lettered after the last attempt.

Each subscription has a lane (`fsmc.notify.lanes`): a thread that delivers its pending
deliveries, rows of the service's database added when an event was recorded
(`fsmc.notify.eventlog`), one at a time, so a receiver sees its events in the order they were
recorded, and a failing receiver delays only its own lane. A lane runs in the instance that
holds the subscription's lease (`fsmc.notify.leases`): the dispatcher renews its leases and
takes free ones every third of a lease, starting and stopping lanes to match. A delivery is
the event's CloudEvents JSON with headers `Content-Type: application/cloudevents+json`,
`X-Fsmc-Signature: sha256=<hex HMAC-SHA256 of the body with the subscription's secret>`,
`X-Fsmc-Event-Id` and `X-Fsmc-Subscription`. A non-2xx answer, a timeout or a connection error
is retried with exponential backoff and jitter; after `attempts` tries the event goes to the
subscription's dead letters (listed and re-driven through the API); so does an event recorded
when `lane_limit` deliveries already wait for that receiver (in the recording's transaction),
and one whose delivery failed on a bug (its error says "internal error"). A subscription keeps
at most `max_dead_letters`: beyond it the oldest are dropped, counted in the store and logged as
a warning, at most one a minute per subscription, with the count dropped since the last one.
The target is checked again before every attempt (a name may resolve elsewhere since the
subscription was made), so the service cannot be pointed at internal addresses.

Threads: the lanes, and the lease keeper. `refresh`, `wake` and `redrive` may be called from
any thread; `refresh` and `redrive` call the store and are meant for worker threads (the app
runs them in its store executor).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import re
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import httpx
from fsmc.runtime.topics import compile_pattern

from .config import ALL_TENANTS, DEFAULT_LEASE, DEFAULT_MAX_DEAD_LETTERS
from .drops import DropWarnings
from .lanes import STOPPED, Lane, Outcome
from .leases import Leases
from .store import DeadLetter, Delivery, SubscriptionStore
from .subscriptions import InvalidSubscription, check_delivery_target

__all__ = ["ALL_TENANTS", "WebhookDispatcher", "redact_urls", "signature"]

logger = logging.getLogger("fsmc.notify")

LEASE_MARGIN = 0.8  # a lane stops this far into its lease unless it was renewed meanwhile

_URL = re.compile(r"(?i)\b(https?://)(?:[^\s/@'\"<>]*@)?([^\s/?#'\"<>]*)([^\s'\"<>]*)")


def redact_urls(text: str) -> str:
    """`text` with every http(s) URL cut to its scheme and host (`https://host/…`): webhook
    URLs carry their tokens in the user, path or query, and never go to a log."""
    return _URL.sub(lambda found: found[1] + found[2] + ("/…" if found[3] else ""), text)


def signature(secret: str, body: bytes) -> str:
    """The `X-Fsmc-Signature` header value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    """Deliver the pending deliveries of `store` whose lease this instance holds (see the
    module documentation). `lease` is the length of a lease in seconds, `owner` this
    instance's name in the lease table (default: host, process and a random part)."""

    drop_warning_interval = 60.0  # seconds: at most one warning about dropped dead letters
    # per subscription in that time

    def __init__(self, store: SubscriptionStore, allow_hosts: frozenset[str], *,
                 attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0,
                 timeout: float = 10.0, lane_limit: int = 10_000,
                 max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
                 lease: float = DEFAULT_LEASE, owner: str | None = None,
                 resolve: Callable[..., Any] | None = None) -> None:
        if attempts < 1 or base_delay <= 0 or max_delay < base_delay or timeout <= 0 or \
                lane_limit < 1 or max_dead_letters < 1 or lease <= 0:
            raise ValueError("attempts >= 1, 0 < base_delay <= max_delay, timeout > 0, "
                             "lane_limit >= 1, max_dead_letters >= 1 and lease > 0")
        self.lane_limit = lane_limit
        self.not_attempted = (f"not attempted: {lane_limit} events were already waiting for "
                              "this receiver")
        self._drops = DropWarnings(max_dead_letters, self.drop_warning_interval)
        self.max_dead_letters = max_dead_letters
        self._store = store
        self.leases = Leases(store, lease, owner)
        self._allow_hosts = allow_hosts
        self._attempts = attempts
        self._delays = (base_delay, max_delay)
        self._resolve = resolve
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()
        # One refresh at a time: two interleaved ones could apply an older listing last and
        # stop the lane of a subscription just added.
        self._refreshing = threading.Lock()
        self._closing = threading.Event()
        self._counts = dict.fromkeys(("delivered", "retries", "dead_lettered"), 0)
        self._keeper: threading.Thread | None = None  # started after the first refresh
        try:
            self.refresh()
        except BaseException:  # the store failed: stop the lanes started so far
            self.close()
            raise
        self._keeper = threading.Thread(target=self._keep_leases, daemon=True,
                                        name="fsmc-webhook-leases")
        self._keeper.start()

    def refresh(self) -> None:
        """Renew and take leases, and follow them: a lane for each subscription whose lease
        this instance holds, none for others (deleted, or taken over); a changed subscription
        (`PATCH`) keeps its lane and what waits in it, and the next attempt uses its new URL,
        secret and topic."""
        with self._refreshing:
            started = time.monotonic()
            held = self.leases.keep()
            valid_until = started + self.leases.seconds * LEASE_MARGIN
            current = {subscription.id: subscription for subscription in self._store.list(None)
                       if subscription.id in held}
            with self._lock:
                if self._closing.is_set():
                    return
                for gone in [ident for ident, lane in self._lanes.items()
                             if ident not in current or not lane.thread.is_alive()]:
                    self._lanes.pop(gone).stop()
                try:
                    for ident, subscription in current.items():
                        lane = self._lanes.get(ident)
                        if lane is not None:
                            lane.valid_until = valid_until
                            if lane.subscription != subscription:
                                lane.pattern = compile_pattern(subscription.topic)
                                lane.subscription = subscription
                            continue
                        self._lanes[ident] = Lane(
                            subscription, compile_pattern(subscription.topic), self._store,
                            keep=self.max_dead_letters, valid_until=valid_until,
                            deliver=self._deliver, fail=self._failed, finished=self._kept)
                except BaseException:
                    for lane in self._lanes.values():
                        lane.stop()
                    raise
        self._drops.flush()

    def _keep_leases(self) -> None:
        """The lease keeper: `refresh` every third of a lease (a failing store is logged, and
        the lanes stop by themselves once their lease may have run out)."""
        while not self._closing.wait(self.leases.seconds / 3):
            try:
                self.refresh()
            except Exception as error:
                logger.error("webhooks: cannot renew the leases (retrying): %s: %s",
                             type(error).__name__, error)

    def wake(self) -> None:
        """Events were recorded: lanes waiting for work look again."""
        with self._lock:
            lanes = tuple(self._lanes.values())
        for lane in lanes:
            lane.wake()

    def recorded(self, dead_lettered: int, dropped: dict[str, int]) -> None:
        """A recording kept `dead_lettered` dead letters of full lanes and dropped `dropped`
        (per subscription) beyond the bound: count them, warn, wake the lanes."""
        self._kept(dropped, dead_lettered)
        self.wake()

    def redrive(self, subscription_id: str) -> int:
        """Send a subscription's dead letters again (in their order, after what is pending);
        how many."""
        redriven = self._store.redrive(subscription_id)
        with self._lock:
            lane = self._lanes.get(subscription_id)
        if lane is not None:
            lane.wake()
        return redriven

    def stats(self) -> dict[str, int]:
        waiting = self._store.waiting()
        with self._lock:
            return {**self._counts, "waiting": waiting, "lanes": len(self._lanes)}

    def close(self) -> None:
        """Stop the lanes (each finishes or abandons its attempt in progress and writes what
        became of its deliveries; 5 s in all), then release this instance's leases so that
        another instance takes the lanes over at once."""
        self._closing.set()
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.stop()
        deadline = time.monotonic() + 5
        for lane in lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        if self._keeper is not None:  # a renewal under way ends before the leases go
            self._keeper.join(max(0.0, deadline - time.monotonic()))
        try:
            self.leases.release()
        except Exception as error:
            logger.error("webhooks: cannot release the leases (they expire in %g s): %s: %s",
                         self.leases.seconds, type(error).__name__, error)
        self._drops.flush(everything=True)
        self._client.close()

    def _kept(self, dropped: dict[str, int], letters: int) -> None:
        with self._lock:
            self._counts["dead_lettered"] += letters
        for subscription, count in dropped.items():
            self._drops.note(subscription, count)

    # -- one delivery, on a lane's thread ---------------------------------------------------

    def _deliver(self, lane: Lane, delivery: Delivery) -> Outcome:
        body = delivery.body.encode("utf-8")
        error = ""
        for attempt in range(1, self._attempts + 1):
            if lane.stopped or not lane.leased:
                return STOPPED
            subscription = lane.subscription  # read again: a PATCH may have changed it
            headers = {"Content-Type": "application/cloudevents+json",
                       "X-Fsmc-Signature": signature(subscription.secret, body),
                       "X-Fsmc-Event-Id": delivery.event_id,
                       "X-Fsmc-Subscription": subscription.id}
            error = self._attempt(subscription.url, body, headers)
            if not error:
                self._count("delivered")
                return None
            if attempt < self._attempts:
                self._count("retries")
                if self._closing.wait(self._backoff(attempt)) or lane.stopped:
                    return STOPPED
        ident = lane.subscription.id
        logger.warning("webhook %s: %s not delivered after %d attempts (%s); dead-lettered",
                       ident, delivery.event_id, self._attempts, error)
        return DeadLetter(ident, delivery.event_id, delivery.body, self._attempts,
                          error, time.time())

    def _failed(self, lane: Lane, delivery: Delivery, error: Exception) -> DeadLetter:
        """Delivering raised what it never should (a bug): log it, dead-letter the delivery,
        and let the lane go on. The exception's text may hold the URL: redacted."""
        text = f"{type(error).__name__}: {redact_urls(str(error))}"
        logger.error("webhook %s: delivering %s failed on a bug; dead-lettered: %s",
                     lane.subscription.id, delivery.event_id,
                     redact_urls("".join(traceback.format_exception(error)).rstrip()))
        return DeadLetter(lane.subscription.id, delivery.event_id, delivery.body, 0,
                          f"internal error: {text}", time.time())

    def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> str:
        """'' when delivered, else what went wrong."""
        try:
            if self._resolve is None:
                check_delivery_target(url, self._allow_hosts)
            else:
                check_delivery_target(url, self._allow_hosts, resolve=self._resolve)
            answer = self._client.post(url, content=body, headers=headers)
        except InvalidSubscription as refused:
            return f"target refused: {refused}"
        except Exception as failure:  # httpx's, or a resolver's; may hold the URL: redacted
            return f"{type(failure).__name__}: {redact_urls(str(failure))}"
        if 200 <= answer.status_code < 300:
            return ""
        return f"HTTP {answer.status_code}"

    def _backoff(self, attempt: int) -> float:
        base, cap = self._delays
        return min(cap, base * 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
