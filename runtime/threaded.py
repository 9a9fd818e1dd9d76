"""`EventBus(mode="threads")`: delivery from a pool of worker threads.

How it works
------------
`post` appends the event to one bounded FIFO and returns; that is all the posting thread does.
Worker 0 takes events from it in order, finds their subscribers, calls those pinned to it and
forwards the event to the other workers that have subscribers for it (and to the queues of
async subscribers). Each synchronous subscriber is pinned to one worker, chosen round-robin
when it subscribes, and each worker handles its queue in order, so a subscriber sees the events
of one posting thread in the order they were posted (events of different threads interleave
as their `post` calls did).

- Subscribers are found when worker 0 takes the event, not when it was posted.
- More workers only help when handlers wait (I/O, sleeps); handlers written in Python do not
  run in parallel in CPython. A slow handler delays the events of its own worker only, except
  on worker 0, which also routes: keep the slow ones async or on a bus with more workers.
- `max_queue` bounds the posting queue and each worker's queue. When the posting queue is full,
  `overflow` decides: `block` waits for room, `drop-oldest` discards the oldest queued event
  (counted in `dropped`), `raise` raises `BusFull` and accepts nothing. Worker 0 waits for room
  in a full worker queue (`raise` cannot reach a poster there) or drops its oldest item under
  `drop-oldest`. Under `block`, a thread of the bus itself (a worker, or the loop thread)
  never waits: it exceeds the bound instead, since waiting for itself would deadlock.
- Workers take what is queued in batches and update their counters once per batch, so
  `stats()`, a snapshot taken while they run, may show `delivered` and `failed` behind by the
  batch in hand (exact once the bus is idle or closed).
- `close(timeout)` stops accepting, waits for the workers to deliver everything queued, then
  for the async subscribers; after `timeout` it discards what is left and returns how many
  events that was (an event still inside a handler counts). Close a threads bus (or use it as
  a context manager): its worker threads live until then.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from .bus import TOPIC_CACHE_SIZE, EventBus, Mode, _deadline, _remaining
from .delivery import STOP, AtomicCounter, ErrorHandler, Overflow, Worker, report
from .errors import BusClosed, BusFull
from .events import DeadEvent
from .subscriptions import Handler, Subscription, by_key, by_type, dead_letter_subscribers

__all__ = ["ThreadedEventBus"]

_TOPICAL: Any = type("_Topical", (), {})()
_CLOSED = "this event bus is closed"


class _Route:
    """What worker 0 does besides calling its own subscribers: wrap a dead event, forward to
    other workers, queue for async subscribers."""

    __slots__ = ("dead", "forwards", "pushers")

    def __init__(self, dead: bool, forwards: tuple[Worker, ...],
                 pushers: tuple[Handler, ...]) -> None:
        self.dead = dead
        self.forwards = forwards
        self.pushers = pushers


class ThreadedEventBus(EventBus):
    """The class of `EventBus(mode="threads", ...)` (see the module documentation)."""

    __slots__ = ()

    def __init__(self, *, mode: Mode = "threads", workers: int | None = None,
                 max_queue: int = 10_000, overflow: Overflow = "block",
                 on_error: ErrorHandler | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        count = 1 if workers is None else workers
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"workers must be a positive int, not {workers!r}")
        super().__init__(mode="threads", workers=count, max_queue=max_queue,
                         overflow=overflow, on_error=on_error, loop=loop)
        self._rr = itertools.count()
        self._abandoned = 0
        self._dropped_accepted = AtomicCounter()
        self._workers = tuple(Worker(index, max_queue) for index in range(count))
        self._router = self._workers[0]
        for worker in self._workers:
            target = self._route if worker.index == 0 else self._work
            worker.thread = threading.Thread(target=target, args=(worker,), daemon=True,
                                             name=f"fsmc-bus-worker-{worker.index}")
            worker.thread.start()
        self._owned = frozenset(w.thread.ident for w in self._workers
                                if w.thread is not None and w.thread.ident is not None)

    # -- posting -----------------------------------------------------------------------------

    def post(self, event: object) -> None:
        """Queue `event` for delivery by the workers and return (see `overflow` when the queue
        is full). Raises `BusClosed` after `close()`."""
        if self._closed:
            raise BusClosed(_CLOSED)
        router = self._router
        items = router.items
        if len(items) >= self._max_queue:
            return self._post_full(event)
        items.append(event)
        if router.idle:
            router.ring()
        return None

    def _post_full(self, event: object) -> None:
        router = self._router
        items = router.items
        if self._overflow == "raise":
            raise BusFull(f"the event bus queue is full ({self._max_queue} events)")
        if self._overflow == "drop-oldest":
            try:
                items.popleft()
                self._dropped_accepted.add()
            except IndexError:
                pass
        elif self._may_block() and not router.wait_for_room(lambda: self._closed):
            raise BusClosed(_CLOSED)
        items.append(event)
        if router.idle:
            router.ring()

    # -- worker 0: route and deliver ---------------------------------------------------------

    def _route(self, worker: Worker) -> None:
        """Worker 0's loop. Events are taken in batches (what is queued when a batch starts):
        counters are updated once per batch, `taken` before the batch is handled so that
        `posted` (taken + queued) never misses an event in hand."""
        items = worker.items
        pop = items.popleft
        on_error = self._on_error
        stopping = False
        while True:
            size = len(items)
            if not size:
                if stopping:
                    break
                worker.sleep()
                continue
            worker.taken += size
            table = self._table
            calls = stops = 0
            popped = size
            for index in range(size):
                try:
                    event = pop()
                except IndexError:  # emptied meanwhile: close() timed out, or drop-oldest
                    popped = index
                    break
                if event is STOP:
                    # Closed: nothing new is accepted, but a post that passed its check just
                    # before close() may have queued behind the marker; deliver it too.
                    stopping = True
                    stops += 1
                    continue
                try:
                    handlers, count, route = table[event.__class__]
                except KeyError:
                    handlers, count, route = self._plan(event, table)
                if route is not None:
                    if route is _TOPICAL:
                        try:
                            handlers, count, route = handlers[getattr(event, "topic", None)]
                        except (KeyError, TypeError):
                            handlers, count, route = self._plan(event, table)
                    if route is not None:
                        event = self._forward(route, event, worker)
                for handler in handlers:
                    try:
                        handler(event)
                    except Exception as error:
                        worker.failed += 1
                        report(on_error, error, event, handler)
                calls += count
            worker.taken -= size - popped + stops
            worker.calls += calls
            if worker.waiters:
                worker.made_room()
        for other in self._workers[1:]:
            other.stop()

    def _forward(self, route: _Route, event: object, worker: Worker) -> object:
        if route.dead:
            worker.dead += 1
            if not isinstance(event, DeadEvent):
                event = DeadEvent(event)
        for other in route.forwards:
            other.put(event, self._overflow, True, self._dropped, self._is_closed)
        for push in route.pushers:
            push(event)
        return event

    def _is_closed(self) -> bool:
        return False  # forwarding continues after close(): those events were accepted

    def _plan(self, event: object, table: dict[Any, Any]) -> tuple[Any, int, Any]:
        """Resolve (handlers of worker 0, route) for `event` and cache it in `table` (read
        before the subscriptions, as in `EventBus._lookup`)."""
        cls = event.__class__
        subs = self._subs
        entry = table.get(cls)
        if entry is None:
            matching = by_type(subs, cls)
            if any(sub.pattern is not None for sub in matching):
                entry = table[cls] = ({}, 0, _TOPICAL)
            else:
                entry = table[cls] = self._route_for(matching, cls, subs)
        if entry[2] is not _TOPICAL:
            return entry
        key = getattr(event, "topic", None)
        found = self._route_for(by_key(by_type(subs, cls), key), cls, subs)
        try:
            topics: dict[Any, Any] = entry[0]
            if len(topics) >= TOPIC_CACHE_SIZE:
                topics.clear()
            topics[key] = found
        except TypeError:
            pass
        return found

    def _route_for(self, matching: list[Subscription], cls: type[Any],
                   subs: tuple[Subscription, ...]) -> tuple[Any, int, Any]:
        dead = not matching
        if dead:
            matching = [] if issubclass(cls, DeadEvent) else dead_letter_subscribers(subs)
        own = tuple(sub.target for sub in matching if not sub.is_async and sub.worker == 0)
        others = sorted({sub.worker for sub in matching if not sub.is_async and sub.worker})
        pushers = tuple(sub.target for sub in matching if sub.is_async)
        if not dead and not others and not pushers:
            return own, len(own), None
        forwards = tuple(self._workers[index] for index in others)
        return own, len(own), _Route(dead, forwards, pushers)

    # -- workers 1..n: deliver ---------------------------------------------------------------

    def _work(self, worker: Worker) -> None:
        """The loop of workers 1..n: deliver to the subscribers pinned to this worker (found
        when the event is taken, in the worker's own cache), in batches like worker 0."""
        items = worker.items
        pop = items.popleft
        on_error = self._on_error
        while True:
            size = len(items)
            if not size:
                worker.sleep()
                continue
            table = worker.table
            calls = 0
            for _ in range(size):
                try:
                    event = pop()
                except IndexError:
                    break
                if event is STOP:
                    worker.calls += calls
                    return
                try:
                    handlers, topical = table[event.__class__]
                except KeyError:
                    handlers, topical = self._own_handlers(worker, event, table)
                if topical:
                    try:
                        handlers, topical = handlers[getattr(event, "topic", None)]
                    except (KeyError, TypeError):
                        handlers, topical = self._own_handlers(worker, event, table)
                for handler in handlers:
                    try:
                        handler(event)
                    except Exception as error:
                        worker.failed += 1
                        report(on_error, error, event, handler)
                calls += len(handlers)
            worker.calls += calls
            if worker.waiters:
                worker.made_room()

    def _own_handlers(self, worker: Worker, event: object,
                      table: dict[Any, Any]) -> tuple[Any, bool]:
        """(handlers pinned to `worker`, False) for `event`, cached in `table` per class and,
        when a pattern is involved, per topic."""
        cls = event.__class__
        subs = self._subs
        matching = [sub for sub in by_type(subs, cls)
                    if sub.worker == worker.index and not sub.is_async]
        if not any(sub.pattern is not None for sub in matching):
            plain: tuple[Any, bool] = (tuple(sub.target for sub in matching), False)
            table[cls] = plain
            return plain
        cached = table.get(cls)
        if cached is None or not cached[1]:
            cached = table[cls] = ({}, True)
        topics: dict[Any, tuple[Any, bool]] = cached[0]
        key = getattr(event, "topic", None)
        found = (tuple(sub.target for sub in by_key(matching, key)), False)
        try:
            if len(topics) >= TOPIC_CACHE_SIZE:
                topics.clear()
            topics[key] = found
        except TypeError:
            pass
        return found

    def _attach(self, sub: Subscription) -> None:
        super()._attach(sub)
        if not sub.is_async:
            sub.worker = next(self._rr) % len(self._workers)

    def _invalidate(self) -> None:
        self._table = {}
        for worker in self._workers:
            worker.table = {}

    # -- lifecycle and counters ------------------------------------------------------------

    def close(self, timeout: float | None = None) -> int:
        """Stop taking events, let the workers deliver what is queued, wait for the async
        subscribers, and return how many events were not delivered within `timeout`."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
        deadline = _deadline(timeout)
        router = self._router
        router.wake_waiters()  # posters waiting for room give up: BusClosed
        router.stop()
        me = threading.get_ident()
        for worker in self._workers:
            thread = worker.thread
            if thread is not None and thread.ident != me:
                thread.join(_remaining(deadline) if me not in self._owned else 0.0)
        left = 0
        if any(w.thread is not None and w.thread.is_alive() for w in self._workers):
            left = self._abandon()
        return left + self._finish(deadline)

    def _abandon(self) -> int:
        """Discard what the workers have not delivered; return how many events that is: the
        distinct events still queued, plus one in the hands of each worker still running."""
        pending: set[int] = set()
        busy = 0
        for worker in self._workers:
            # A worker that is running and not asleep is inside a handler (or, at worst,
            # between two events).
            if worker.thread is not None and worker.thread.is_alive() and not worker.idle:
                busy += 1
            queued = [item for item in list(worker.items) if item is not STOP]
            worker.items.clear()
            worker.stop()
            if worker is self._router:
                self._abandoned += len(queued)  # accepted but never taken: still `posted`
            for item in queued:
                pending.add(id(item.event) if type(item) is DeadEvent else id(item))
        return len(pending) + busy

    def stats(self) -> dict[str, int]:
        workers = self._workers
        router = self._router
        queued = sum(1 for item in list(router.items) if item is not STOP)
        calls = sum(w.calls for w in workers)
        failed = sum(w.failed for w in workers)
        runner = self._runner
        async_done, async_failed = (runner.delivered, runner.failed) if runner else (0, 0)
        dropped_accepted = self._dropped_accepted.value
        return {"posted": router.taken + queued + dropped_accepted + self._abandoned,
                "delivered": calls - failed + async_done,
                "failed": failed + async_failed + self._rejected.value,
                "dead": router.dead,
                "dropped": dropped_accepted + self._dropped.value}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<EventBus mode='threads' workers={len(self._workers)} "
                f"subscriptions={len(self._subs)} {state}>")
