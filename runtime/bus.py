"""`EventBus`: publish any object, deliver it to the subscribers of its class and topic.

Guarantees (all modes)
----------------------
- Dispatch follows the class hierarchy: a subscription to `object` receives every event, one to
  a base class receives its subclasses. A topic pattern (AMQP topic-exchange rules) filters on
  the event's `topic` attribute; an event without one matches no pattern. With both a class and
  a pattern, an event must pass both.
- A subscriber that raises never reaches the publisher and never stops delivery to the others:
  the exception goes to `on_error(exc, event, handler)`; if `on_error` itself raises, that is
  logged on the `fsmc` logger and dropped. `BaseException`s that are not `Exception`s
  (`KeyboardInterrupt`, `SystemExit`) are not caught.
- An event that no subscription accepts is counted as `dead` and delivered, wrapped in
  `DeadEvent(event)`, to the subscribers of `DeadEvent` (a `DeadEvent` nobody takes is dropped).
- Each subscriber receives the events posted by one thread in the order they were posted. The
  subscribers of one event are called in subscription order (in `mode="sync"`).
- References are strong: the bus keeps every handler (and the object of a bound method) alive
  until it is unsubscribed.
- Subscribing and unsubscribing are safe while events flow (copy-on-write): an event reaches
  every subscription that was active from the moment it was posted until it was delivered.

`mode="sync"` (default): `post` delivers in the posting thread before it returns. A handler
that posts (re-entrancy) does not interrupt the current event: the new event is queued (one
queue per thread) and delivered once the current event has reached all its subscribers, so
every subscriber sees events in posting order.

`mode="threads"`: see `fsmc.runtime.threaded`.

`async def` handlers, in both modes, run on an event loop: the `loop` given, or one the bus
starts in a daemon thread. Each async subscriber has its own queue, awaited one event at a
time, so its events stay in order; `post` only queues them.
"""

from __future__ import annotations

import _thread
import asyncio
import functools
import itertools
import threading
import time
from collections import deque
from typing import Any, Literal

from .delivery import (
    OVERFLOW_POLICIES,
    AtomicCounter,
    CallCounts,
    ErrorHandler,
    LoopRunner,
    Mailbox,
    Overflow,
    log_error,
    report,
)
from .errors import BusClosed
from .events import DeadEvent
from .subscriptions import (
    Handler,
    Registration,
    Subscription,
    by_key,
    by_type,
    dead_letter_subscribers,
    marked_methods,
    warn_if_suspicious,
)

__all__ = ["TOPIC_CACHE_SIZE", "EventBus"]

Mode = Literal["sync", "threads"]

TOPIC_CACHE_SIZE = 1024
"""Routing keys remembered per event class; the cache is emptied when it would grow past this
(the next event of each key resolves its subscribers again)."""

_CLOSED = "this event bus is closed"
_get_ident = threading.get_ident


class _PerThread:
    """A posting thread's state on one synchronous bus: dispatching now, and the events that
    handlers posted meanwhile (with their subscribers, fixed when they were posted)."""

    __slots__ = ("busy", "pending")

    def __init__(self) -> None:
        self.busy = False
        self.pending: deque[tuple[object, tuple[Handler, ...]]] | None = None


class EventBus:
    """An in-process publish/subscribe bus (see the module documentation for guarantees).

    `EventBus(*, mode="sync", workers=None, max_queue=10_000, overflow="block",
    on_error=None, loop=None)`:

    - `mode`: `"sync"` or `"threads"`;
    - `workers`: delivery threads for `mode="threads"` (default 1);
    - `max_queue`: bound of each queue the bus keeps (the threads-mode queues, each async
      subscriber's queue);
    - `overflow`: what a full queue does to the poster: `"block"` (wait for room; never
      drops), `"drop-oldest"` (make room by discarding the oldest queued event, counted in
      `dropped`) or `"raise"` (`BusFull`);
    - `on_error(exc, event, handler)`: told about failing subscribers (default: logged on the
      `fsmc` logger with the traceback);
    - `loop`: the asyncio loop that runs `async def` handlers (default: a loop in a daemon
      thread owned by the bus, started with the first async subscriber).
    """

    __slots__ = ("__weakref__", "_abandoned", "_closed", "_counts", "_dropped",
                 "_dropped_accepted", "_failed", "_local", "_lock", "_loop", "_mailboxes",
                 "_max_queue", "_mode", "_on_error", "_overflow", "_owned", "_registrations",
                 "_rejected", "_router", "_rr", "_runner", "_seq", "_subs", "_table",
                 "_workers")

    def __new__(cls, *, mode: Mode = "sync", **options: Any) -> EventBus:
        if mode == "threads" and cls is EventBus:
            from .threaded import ThreadedEventBus

            cls = ThreadedEventBus
        return object.__new__(cls)

    def __init__(self, *, mode: Mode = "sync", workers: int | None = None,
                 max_queue: int = 10_000, overflow: Overflow = "block",
                 on_error: ErrorHandler | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if mode not in ("sync", "threads"):
            raise ValueError(f"mode must be 'sync' or 'threads', not {mode!r}")
        if workers is not None and mode != "threads":
            raise ValueError("workers= applies to mode='threads' only")
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int, not {max_queue!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, "
                             f"not {overflow!r}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, not {on_error!r}")
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, not {loop!r}")
        self._mode: Mode = mode
        self._max_queue = max_queue
        self._overflow: Overflow = overflow
        self._on_error: ErrorHandler = on_error or log_error
        self._loop = loop
        self._lock = threading.RLock()
        self._subs: tuple[Subscription, ...] = ()
        self._table: dict[Any, Any] = {}
        self._local = _thread._local()
        self._counts = CallCounts()
        self._failed = AtomicCounter()
        self._rejected = AtomicCounter()
        self._dropped = AtomicCounter()
        self._registrations: dict[int, Registration] = {}
        self._seq = itertools.count()
        self._runner: LoopRunner | None = None
        self._mailboxes: list[Mailbox] = []
        self._owned: frozenset[int] = frozenset()
        self._closed = False

    # -- posting (sync mode) -----------------------------------------------------------------

    def post(self, event: object) -> None:
        """Publish `event` (any object). In sync mode every synchronous subscriber has been
        called when this returns. Raises `BusClosed` after `close()`."""
        try:
            state = self._local.state
        except AttributeError:
            state = self._local.state = _PerThread()
        if state.busy:
            return self._post_nested(state, event)
        try:
            handlers, count = self._table[event.__class__]
        except KeyError:
            handlers, count = self._lookup(event)
        else:
            if count is None:
                try:
                    handlers, count = handlers[getattr(event, "topic", None)]
                except (KeyError, TypeError):
                    handlers, count = self._lookup(event)
        next(count)
        state.busy = True
        try:
            for handler in handlers:
                try:
                    handler(event)
                except Exception as error:
                    self._failed.add()
                    report(self._on_error, error, event, handler)
            if state.pending:
                self._drain(state)
        except BaseException:
            if state.pending:
                state.pending.clear()
            raise
        finally:
            state.busy = False

    def _post_nested(self, state: _PerThread, event: object) -> None:
        handlers, count = self._lookup(event)
        next(count)
        if state.pending is None:
            state.pending = deque()
        state.pending.append((event, handlers))

    def _drain(self, state: _PerThread) -> None:
        pending = state.pending
        assert pending is not None
        on_error = self._on_error
        while pending:
            event, handlers = pending.popleft()
            for handler in handlers:
                try:
                    handler(event)
                except Exception as error:
                    self._failed.add()
                    report(on_error, error, event, handler)

    def _lookup(self, event: object) -> tuple[Any, Any]:
        """(handlers, counter) for `event`, resolving and caching them on a miss. Reads the
        table before the subscriptions: a table only ever caches what the subscriptions of
        its own time (or later ones) say, never older ones."""
        table = self._table
        cls = event.__class__
        entry = table.get(cls)
        if entry is None:
            if self._closed:
                raise BusClosed(_CLOSED)
            entry = table[cls] = self._class_entry(cls, self._subs)
        if entry[1] is not None:
            return entry
        key = getattr(event, "topic", None)
        topics: dict[Any, Any] = entry[0]
        try:
            return topics[key]  # type: ignore[no-any-return]
        except KeyError:
            cache = True
        except TypeError:  # an unhashable topic: matches no pattern, is not cached
            key, cache = None, False
        subs = self._subs
        found = self._entry(by_key(by_type(subs, cls), key), cls, subs)
        if cache:
            if len(topics) >= TOPIC_CACHE_SIZE:
                topics.clear()
            topics[key] = found
        return found

    def _class_entry(self, cls: type[Any], subs: tuple[Subscription, ...]) -> tuple[Any, Any]:
        matching = by_type(subs, cls)
        if any(sub.pattern is not None for sub in matching):
            return ({}, None)  # subscribers depend on the topic: a per-key cache
        return self._entry(matching, cls, subs)

    def _entry(self, matching: list[Subscription], cls: type[Any],
               subs: tuple[Subscription, ...]) -> tuple[Any, Any]:
        if matching:
            handlers = tuple(sub.target for sub in matching)
            return handlers, self._counts.counter(False, _sync_count(matching))
        receivers = [] if issubclass(cls, DeadEvent) else dead_letter_subscribers(subs)
        if not receivers:
            return (), self._counts.counter(True, 0)
        targets = tuple(sub.target for sub in receivers)
        deliver = functools.partial(self._deliver_dead, targets)
        return (deliver,), self._counts.counter(True, _sync_count(receivers))

    def _deliver_dead(self, targets: tuple[Handler, ...], event: object) -> None:
        dead = DeadEvent(event)
        for handler in targets:
            try:
                handler(dead)
            except Exception as error:
                self._failed.add()
                report(self._on_error, error, dead, handler)

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, handler: Handler, event_type: type[Any] | None = None, *,
                  topic: str | None = None) -> Subscription:
        """Call `handler(event)` for every event of class `event_type` (and subclasses; all
        events when None) whose topic matches `topic` (when given). Returns the handle for
        `unsubscribe`. `async def` handlers are awaited on the bus's event loop. A pattern that
        almost never means what was meant (`a.#b`, `a..b`: see `fsmc.runtime.topics`) keeps
        its meaning and is logged as one warning on the `fsmc` logger."""
        sub = Subscription(self, handler, event_type, topic, next(self._seq))
        self._add((sub,))
        warn_if_suspicious(topic, handler)
        return sub

    def register(self, obj: object) -> Registration:
        """Subscribe every method of `obj` marked with `@subscribe`; return one handle for all.
        Raises `ValueError` if `obj` has no marked method or is registered already."""
        subs = tuple(Subscription(self, handler, event_type, topic, next(self._seq))
                     for handler, event_type, topic in marked_methods(obj))
        if not subs:
            raise ValueError(f"{obj!r} has no method marked with @subscribe")
        with self._lock:
            known = self._registrations.get(id(obj))
            if known is not None and known.obj is obj:
                raise ValueError(f"{obj!r} is already registered on this bus")
            self._add(subs)
            registration = self._registrations[id(obj)] = Registration(obj, subs)
        return registration

    def unsubscribe(self, handle: Subscription | Registration) -> bool:
        """Remove a subscription (or all those of a registration). Returns False if there was
        nothing to remove. Events already queued for it may still be delivered."""
        if isinstance(handle, Registration):
            subs = handle.subscriptions
            with self._lock:
                if self._registrations.get(id(handle.obj)) is handle:
                    del self._registrations[id(handle.obj)]
                return self._remove(subs)
        if isinstance(handle, Subscription):
            return self._remove((handle,))
        raise TypeError(f"not a subscription handle: {handle!r}")

    def unregister(self, obj: object) -> bool:
        """Undo `register(obj)`. Returns False if `obj` is not registered."""
        with self._lock:
            registration = self._registrations.get(id(obj))
            if registration is None or registration.obj is not obj:
                return False
            return self.unsubscribe(registration)

    def _add(self, subs: tuple[Subscription, ...]) -> None:
        with self._lock:
            if self._closed:
                raise BusClosed(_CLOSED)
            for sub in subs:
                self._attach(sub)
                sub.active = True
            # Copy-on-write: subscriptions first, then a fresh table (see `_lookup`).
            self._subs = self._subs + subs
            self._invalidate()

    def _remove(self, subs: tuple[Subscription, ...]) -> bool:
        with self._lock:
            gone = {id(sub) for sub in subs if sub._owner is self and sub.active}
            if not gone:
                return False
            self._subs = tuple(sub for sub in self._subs if id(sub) not in gone)
            for sub in subs:
                if id(sub) in gone:
                    sub.active = False
            self._invalidate()
            self._mailboxes = [box for box in self._mailboxes
                               if box.scheduled or any(sub.mailbox is box for sub in self._subs)]
            return True

    def _attach(self, sub: Subscription) -> None:
        if not sub.is_async:
            return
        if self._runner is None:
            self._runner = LoopRunner(self._loop)
        self._runner.start()
        mailbox = Mailbox(sub.handler, self._runner, self._max_queue, self._overflow,
                          self._on_error, self._dropped, self._rejected,
                          self._may_wait_for_mailbox)
        self._mailboxes.append(mailbox)
        sub.mailbox = mailbox
        sub.target = mailbox.push

    def _invalidate(self) -> None:
        self._table = {}

    def _may_wait_for_mailbox(self) -> bool:
        """Whether the calling thread may wait for room in an async subscriber's queue: any
        thread but the loop's own (worker 0 of a threads bus waits there: the loop never
        waits for worker 0, so that cannot deadlock)."""
        runner = self._runner
        return runner is None or not runner.in_loop_thread()

    def _may_block(self) -> bool:
        """Whether the calling thread may wait for room in a full queue: not a thread of this
        bus, nor the thread of its event loop (waiting there could wait for itself)."""
        if _get_ident() in self._owned:
            return False
        runner = self._runner
        return runner is None or not runner.in_loop_thread()

    # -- lifecycle and counters -----------------------------------------------------------------

    def close(self, timeout: float | None = None) -> int:
        """Stop taking events (`post` then raises `BusClosed`), deliver everything already
        posted, and return how many events could not be delivered within `timeout` seconds
        (0 normally; those are dropped). Idempotent: a second call returns 0."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self._table = {}
        return self._finish(_deadline(timeout))

    def _finish(self, deadline: float | None) -> int:
        left = 0
        for mailbox in list(self._mailboxes):
            left += mailbox.wait_idle(_remaining(deadline))
        if self._runner is not None:
            self._runner.stop(_remaining(deadline))
        return left

    def stats(self) -> dict[str, int]:
        """Counters: `posted` (accepted `post` calls), `delivered` and `failed` (handler calls
        that returned or raised, plus async deliveries refused by a full or closed queue in
        `failed`), `dead` (events nobody subscribed to), `dropped` (discarded by the
        `drop-oldest` policy)."""
        posted, dead, calls = self._counts.totals()
        failed = self._failed.value
        runner = self._runner
        async_done, async_failed = (runner.delivered, runner.failed) if runner else (0, 0)
        return {"posted": posted, "delivered": calls - failed + async_done,
                "failed": failed + async_failed + self._rejected.value, "dead": dead,
                "dropped": self._dropped.value}

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The active subscriptions, in subscription order."""
        return self._subs

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<EventBus mode={self._mode!r} subscriptions={len(self._subs)} {state}>")


def _sync_count(subs: list[Subscription]) -> int:
    return sum(1 for sub in subs if not sub.is_async)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
