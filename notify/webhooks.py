"""Webhook deliveries: each subscription's events POSTed to its URL, in order, signed, retried,
and dead-lettered after the last attempt.

Each subscription has a lane: a queue and a thread that delivers one event at a time, so a
receiver sees its events in the order they happened, and a failing receiver delays only its
own lane. A delivery is the event's CloudEvents JSON with headers `Content-Type:
application/cloudevents+json`, `X-Fsmc-Signature: sha256=<hex HMAC-SHA256 of the body with the
subscription's secret>`, `X-Fsmc-Event-Id` and `X-Fsmc-Subscription`. A non-2xx answer, a
timeout or a connection error is retried with exponential backoff and jitter; after `attempts`
tries the event goes to the subscription's dead letters (listed and re-driven through the API);
so does an event that finds `lane_limit` events already waiting for that receiver, and one
whose delivery failed on a bug (its error says "internal error"). A subscription keeps at most
`max_dead_letters`: beyond it the oldest are dropped, counted in the store and logged as a
warning, at most one a minute per subscription, with the count dropped since the last one.
The target is checked again before every attempt (a name may resolve elsewhere since the
subscription was made), so the service cannot be pointed at internal addresses.

Threads: `offer` runs in the bus's thread and never waits, neither on the network nor on the
store: the dead letter of an event that finds its lane full is queued for the dispatcher's
dead-letter thread, which takes everything queued at once and writes it in one transaction,
keeping of each subscription's batch only the newest `max_dead_letters` (the others count as
dropped), so it keeps up with any rate the bus can offer and the queue holds at most what
arrives while one batch is written. Lanes write their own dead letters. `refresh` and
`redrive` call the store and are meant for worker threads (the app runs them in its store
executor).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import random
import re
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import httpx
from fsmc.runtime.topics import compile_pattern

from .config import ALL_TENANTS, DEFAULT_MAX_DEAD_LETTERS
from .drops import DropWarnings
from .lanes import Lane
from .store import DeadLetter, SubscriptionStore
from .stream import Item
from .subscriptions import InvalidSubscription, check_delivery_target

__all__ = ["ALL_TENANTS", "WebhookDispatcher", "redact_urls", "signature"]

logger = logging.getLogger("fsmc.notify")

_URL = re.compile(r"(?i)\b(https?://)(?:[^\s/@'\"<>]*@)?([^\s/?#'\"<>]*)([^\s'\"<>]*)")


def redact_urls(text: str) -> str:
    """`text` with every http(s) URL cut to its scheme and host (`https://host/…`): webhook
    URLs carry their tokens in the user, path or query, and never go to a log."""
    return _URL.sub(lambda found: found[1] + found[2] + ("/…" if found[3] else ""), text)


def signature(secret: str, body: bytes) -> str:
    """The `X-Fsmc-Signature` header value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    """Deliver hub items to the subscriptions of `store` (see the module documentation).
    `close` waits up to `close_timeout` seconds for the dead letters still queued to be
    written."""

    drop_warning_interval = 60.0  # seconds: at most one warning about dropped dead letters
    # per subscription in that time

    def __init__(self, store: SubscriptionStore, allow_hosts: frozenset[str], *,
                 attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0,
                 timeout: float = 10.0, lane_limit: int = 10_000,
                 max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
                 close_timeout: float = 30.0,
                 resolve: Callable[..., Any] | None = None) -> None:
        if attempts < 1 or base_delay <= 0 or max_delay < base_delay or timeout <= 0 or \
                lane_limit < 1 or max_dead_letters < 1 or close_timeout < 0:
            raise ValueError("attempts >= 1, 0 < base_delay <= max_delay, timeout > 0, "
                             "lane_limit >= 1, max_dead_letters >= 1 and close_timeout >= 0")
        self._lane_limit = lane_limit
        self._not_attempted = (f"not attempted: {lane_limit} events were already waiting for "
                               "this receiver")
        self._close_timeout = close_timeout
        self._drops = DropWarnings(max_dead_letters, self.drop_warning_interval)
        self._max_dead_letters = max_dead_letters
        self._store = store
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
        self._letters: queue.SimpleQueue[DeadLetter | None] = queue.SimpleQueue()
        self._in_hand = 0  # letters the dead-letter thread took and has not written yet
        self._stop_taken = False  # the dead-letter thread took the None that stops it
        self._writer = threading.Thread(target=self._write_letters, daemon=True,
                                        name="fsmc-webhook-dead-letters")
        self._writer.start()
        try:
            self.refresh()
        except BaseException:  # the store failed: stop the threads started so far
            self.close()
            raise

    def refresh(self) -> None:
        """Follow the store: a lane for each subscription, none for deleted ones; a changed
        subscription (`PATCH`) keeps its lane and what waits in it, and the next attempt uses
        its new URL, secret and topic."""
        with self._refreshing:
            current = {subscription.id: subscription
                       for subscription in self._store.list(None)}
            with self._lock:
                for gone in set(self._lanes) - set(current):
                    self._lanes.pop(gone).stop()
                for ident, subscription in current.items():
                    lane = self._lanes.get(ident)
                    if lane is None:
                        self._lanes[ident] = Lane(subscription,
                                                   compile_pattern(subscription.topic),
                                                   self._deliver, self._failed)
                    elif lane.subscription != subscription:
                        lane.pattern = compile_pattern(subscription.topic)
                        lane.subscription = subscription

    def offer(self, item: Item) -> None:
        """From the hub (the bus's thread): queue `item` for every subscription that wants
        it. Never waits on the network."""
        with self._lock:
            lanes = tuple(self._lanes.values())
        for lane in lanes:
            if not lane.wants(item):
                continue
            if len(lane.queue) < self._lane_limit:
                lane.put(item)
            else:  # a receiver this far behind: a dead letter, written by the writer thread
                self._letters.put(DeadLetter(lane.subscription.id, item.id, item.body, 0,
                                             self._not_attempted, time.time()))

    def redrive(self, subscription_id: str) -> int:
        """Send a subscription's dead letters again (in their order); how many. A subscription
        without a lane (being deleted) keeps its dead letters."""
        with self._lock:
            lane = self._lanes.get(subscription_id)
        if lane is None:
            return 0
        letters = self._store.take_dead_letters(subscription_id)
        for letter in letters:
            lane.put(Item(0, letter.event_id, "", None, letter.body))
        return len(letters)

    def stats(self) -> dict[str, int]:
        with self._lock:
            waiting = sum(len(lane.queue) for lane in self._lanes.values())
            return {**self._counts, "waiting": waiting}

    def close(self) -> None:
        """Stop the lanes (giving them 5 s in all to finish), then write the dead letters still
        queued, waiting up to `close_timeout` seconds for them (an error says how many were
        not written if the store takes longer)."""
        self._closing.set()
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.stop()
        deadline = time.monotonic() + 5
        for lane in lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._letters.put(None)
        self._writer.join(self._close_timeout)
        if self._writer.is_alive():
            unwritten = self._in_hand + self._letters.qsize() - (0 if self._stop_taken else 1)
            logger.error("webhooks: closed with %d dead letters not written: the store did "
                         "not take them within %g s", unwritten, self._close_timeout)
        self._client.close()

    def _write_letters(self) -> None:
        """The dead-letter thread: store the letters `offer` could not queue, in order, each
        time all those queued in one transaction; log the drop warnings that fall due."""
        while True:
            try:
                first = self._letters.get(timeout=self._drops.flush())
            except queue.Empty:  # a drop warning is due
                continue
            batch = [first]
            for _ in range(self._letters.qsize()):  # this thread alone takes: all are there
                batch.append(self._letters.get_nowait())
            letters = [letter for letter in batch if letter is not None]
            self._stop_taken = len(letters) < len(batch)
            self._in_hand = len(letters)
            self._write_batch(letters)
            self._in_hand = 0
            if self._stop_taken:
                self._drops.flush(everything=True)
                return

    def _write_batch(self, letters: list[DeadLetter]) -> None:
        """Keep `letters` in the store in one transaction, the newest `max_dead_letters` of
        each subscription; a store that fails is logged, and the thread goes on."""
        if not letters:
            return
        try:
            dropped = self._store.add_dead_letters(letters, self._max_dead_letters)
        except Exception as error:  # the store failed (or a bug): the thread goes on
            logger.error("webhooks: %d dead letters could not be stored: %s: %s",
                         len(letters), type(error).__name__, error,
                         exc_info=not isinstance(error, sqlite3.Error))
            return
        stored = sum(1 for letter in letters if letter.subscription in dropped)
        with self._lock:
            self._counts["dead_lettered"] += stored
        for subscription, count in dropped.items():
            self._drops.note(subscription, count)

    # -- one delivery, on a lane's thread ---------------------------------------------------

    def _deliver(self, lane: Lane, item: Item) -> None:
        body = item.body.encode("utf-8")
        error = ""
        for attempt in range(1, self._attempts + 1):
            if lane.stopped:
                return
            subscription = lane.subscription  # read again: a PATCH may have changed it
            headers = {"Content-Type": "application/cloudevents+json",
                       "X-Fsmc-Signature": signature(subscription.secret, body),
                       "X-Fsmc-Event-Id": item.id, "X-Fsmc-Subscription": subscription.id}
            error = self._attempt(subscription.url, body, headers)
            if not error:
                self._count("delivered")
                return
            if attempt < self._attempts:
                self._count("retries")
                if self._closing.wait(self._backoff(attempt)) or lane.stopped:
                    return
        ident = lane.subscription.id
        logger.warning("webhook %s: %s not delivered after %d attempts (%s); dead-lettered",
                       ident, item.id, self._attempts, error)
        self._dead_letter(DeadLetter(ident, item.id, item.body, self._attempts, error,
                                     time.time()))

    def _failed(self, lane: Lane, item: Item, error: Exception) -> None:
        """Delivering `item` raised what it never should (a bug): log it, dead-letter the
        item, and let the lane go on. The exception's text may hold the URL: redacted."""
        text = f"{type(error).__name__}: {redact_urls(str(error))}"
        logger.error("webhook %s: delivering %s failed on a bug; dead-lettered: %s",
                     lane.subscription.id, item.id,
                     redact_urls("".join(traceback.format_exception(error)).rstrip()))
        self._dead_letter(DeadLetter(lane.subscription.id, item.id, item.body, 0,
                                     f"internal error: {text}", time.time()))

    def _dead_letter(self, letter: DeadLetter) -> None:
        """Keep `letter` in the store (from a lane's thread); a store that fails is logged,
        and the thread goes on."""
        try:
            dropped = self._store.add_dead_letter(letter, self._max_dead_letters)
        except Exception as error:  # the store failed (or a bug): the thread goes on
            logger.error("webhook %s: the dead letter of %s could not be stored: %s: %s",
                         letter.subscription, letter.event_id, type(error).__name__, error,
                         exc_info=not isinstance(error, sqlite3.Error))
            return
        if dropped is not None:
            self._count("dead_lettered")
            self._drops.note(letter.subscription, dropped)

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
