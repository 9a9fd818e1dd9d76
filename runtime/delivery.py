"""The bus's delivery machinery: counters, bounded worker queues, and the event loop that runs
`async def` handlers (one mailbox, drained in order by one task at a time, per async
subscriber).

Nothing here is public; `fsmc.runtime.bus` documents the guarantees it builds from these.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Literal

from .errors import BusClosed, BusFull

Overflow = Literal["block", "drop-oldest", "raise"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("block", "drop-oldest", "raise")

ErrorHandler = Callable[[BaseException, object, Callable[..., Any]], object]

logger = logging.getLogger("fsmc")

_get_ident = threading.get_ident

STOP: Any = type("_Stop", (), {"__repr__": lambda self: "<stop>"})()
"""Put in a worker queue to make the worker exit once it reaches it."""


def log_error(exc: BaseException, event: object, handler: Callable[..., Any]) -> None:
    """The default `on_error`: log the failure, with its traceback, on the `fsmc` logger."""
    logger.error("event bus subscriber %r failed on %r", handler, event,
                 exc_info=(type(exc), exc, exc.__traceback__))


def report(on_error: ErrorHandler, exc: BaseException, event: object,
           handler: Callable[..., Any]) -> None:
    """Give a subscriber's exception to `on_error`; an exception raised by `on_error` itself
    is logged and never propagates."""
    try:
        on_error(exc, event, handler)
    except Exception:
        logger.exception("event bus on_error handler %r failed while reporting %r from %r",
                         on_error, exc, handler)


class AtomicCounter:
    """A counter that any number of threads may bump: `itertools.count` steps atomically in
    CPython; `value` reads it without losing steps (each read advances the underlying count
    once, and the reads are subtracted)."""

    __slots__ = ("_count", "_lock", "_reads")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()

    @property
    def bump(self) -> Callable[[], int]:
        return self._count.__next__

    def add(self) -> None:
        next(self._count)

    @property
    def value(self) -> int:
        with self._lock:
            value = next(self._count) - self._reads
            self._reads += 1
            return value


class CallCounts:
    """Accepted posts of the synchronous path, counted per (dead, number of synchronous
    handlers): one atomic step per post yields `posted`, `dead` and the number of handler
    calls (the sum of count * handlers). The number of distinct keys is bounded by the largest
    number of handlers an event has, so counters are never retired."""

    __slots__ = ("_by_key", "_lock")

    def __init__(self) -> None:
        self._by_key: dict[tuple[bool, int], AtomicCounter] = {}
        self._lock = threading.Lock()

    def counter(self, dead: bool, handlers: int) -> itertools.count[int]:
        key = (dead, handlers)
        with self._lock:
            counter = self._by_key.get(key)
            if counter is None:
                counter = self._by_key[key] = AtomicCounter()
        return counter._count

    def totals(self) -> tuple[int, int, int]:
        """(posted, dead, handler calls)."""
        with self._lock:
            items = list(self._by_key.items())
        posted = dead = calls = 0
        for (is_dead, handlers), counter in items:
            value = counter.value
            posted += value
            calls += value * handlers
            if is_dead:
                dead += value
        return posted, dead, calls


class Worker:
    """One delivery thread of a `mode="threads"` bus and its bounded FIFO.

    The FIFO is a `deque` (appends and pops are atomic). The consumer announces that it is
    about to sleep (`idle`), looks again, then blocks on `bell`; a producer that appends and
    sees `idle` rings the bell. A producer finding the queue full applies the overflow policy;
    `block` waits on `space`, which the consumer signals after taking an item while someone
    waits.
    """

    __slots__ = ("bell", "calls", "dead", "failed", "idle", "index", "items", "limit", "space",
                 "table", "taken", "thread", "waiters")

    def __init__(self, index: int, limit: int) -> None:
        self.index = index
        self.items: deque[Any] = deque()
        self.limit = limit
        self.idle = False
        self.bell: SimpleQueue[None] = SimpleQueue()
        self.space = threading.Condition(threading.Lock())
        self.waiters = 0
        self.table: dict[Any, Any] = {}
        self.calls = 0
        self.failed = 0
        self.taken = 0
        self.dead = 0
        self.thread: threading.Thread | None = None

    def ring(self) -> None:
        self.idle = False
        self.bell.put(None)

    def sleep(self) -> None:
        """Called by the consumer when its queue looked empty: sleep until an item comes."""
        self.idle = True
        if self.items:
            self.idle = False
            return
        self.bell.get()

    def made_room(self) -> None:
        """Called by the consumer after taking an item while posters wait: wake them once the
        queue is down to half its limit (waking them at every item would hand the GIL back
        and forth once per event)."""
        if len(self.items) <= self.limit >> 1:
            with self.space:
                self.waiters = 0  # a poster still short of room counts itself again
                self.space.notify_all()

    def wait_for_room(self, closed: Callable[[], bool]) -> bool:
        """Block until the queue is down to half its limit; False if the bus closed
        meanwhile."""
        low = self.limit >> 1
        with self.space:
            while len(self.items) > low:
                if closed():
                    return False
                self.waiters += 1
                self.space.wait(0.5)
        return not closed()

    def put(self, item: object, policy: Overflow, may_block: bool,
            dropped: AtomicCounter, closed: Callable[[], bool]) -> None:
        """Append `item`, applying `policy` when the queue is full (for a forwarding worker,
        `raise` behaves as `block`: the event is already accepted)."""
        items = self.items
        if len(items) >= self.limit and may_block:
            if policy == "drop-oldest":
                try:
                    items.popleft()
                    dropped.add()
                except IndexError:
                    pass
            else:
                self.wait_for_room(closed)
        items.append(item)
        if self.idle:
            self.ring()

    def stop(self) -> None:
        self.items.append(STOP)
        self.ring()
        self.wake_waiters()

    def wake_waiters(self) -> None:
        with self.space:
            self.space.notify_all()


class LoopRunner:
    """Where `async def` handlers run: the event loop given to the bus, or one the bus owns,
    running in a daemon thread started on first use. `delivered` and `failed` are only ever
    written from the loop's thread."""

    __slots__ = ("_lock", "_ready", "delivered", "failed", "loop", "owned", "thread",
                 "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.owned = loop is None
        self.loop = asyncio.new_event_loop() if loop is None else loop
        self.thread: threading.Thread | None = None
        self.thread_id: int | None = None
        self.delivered = 0
        self.failed = 0
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        if not self.owned:
            return
        with self._lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="fsmc-bus-loop",
                                               daemon=True)
                self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self.thread_id = _get_ident()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True))
            finally:
                self.loop.close()

    def in_loop_thread(self) -> bool:
        if self.owned:
            return self.thread_id is not None and _get_ident() == self.thread_id
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def stop(self, timeout: float | None) -> None:
        if not self.owned or self.thread is None:
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        self.thread.join(timeout)


class Mailbox:
    """The queue of one `async def` subscriber: events are appended from any thread and
    awaited one at a time, in order, by a task on the runner's loop (started when the mailbox
    goes from empty to non-empty, ending when it is empty again).

    The task takes what is queued as a batch (`taken`, swapped in under the lock, emptied by
    the task alone), so the lock is taken once per batch, not per event. The bound counts
    both: `len(items) + len(taken)` never passes `limit` (but where waiting could deadlock).
    """

    __slots__ = ("busy", "closed", "cond", "dropped", "handler", "items", "limit", "lock",
                 "may_block", "on_error", "policy", "rejected", "runner", "scheduled", "taken",
                 "task", "waiters")

    def __init__(self, handler: Callable[[Any], Any], runner: LoopRunner, limit: int,
                 policy: Overflow, on_error: ErrorHandler, dropped: AtomicCounter,
                 rejected: AtomicCounter, may_block: Callable[[], bool]) -> None:
        self.handler = handler
        self.runner = runner
        self.items: deque[Any] = deque()
        self.taken: deque[Any] = deque()
        # `lock` is `cond`'s own lock, taken directly on the hot paths (a `with` on the
        # Condition costs two Python-level calls more per event).
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.scheduled = False
        self.busy = False
        self.closed = False
        self.waiters = 0
        self.limit = limit
        self.policy = policy
        self.on_error = on_error
        self.dropped = dropped
        self.rejected = rejected
        self.may_block = may_block
        self.task: asyncio.Task[None] | None = None

    def push(self, event: object) -> None:
        """Queue `event` for the handler. Never raises: a full mailbox under the `raise`
        policy, or a loop that is closed, is reported to `on_error` as a failed delivery."""
        with self.lock:
            if self.closed or (len(self.items) + len(self.taken) >= self.limit and
                               not self._make_room()):
                failure: BaseException = BusClosed("the event bus is closed") if self.closed \
                    else BusFull(f"the queue of async subscriber {self.handler!r} is full "
                                 f"({self.limit} events)")
                self.rejected.add()
                report(self.on_error, failure, event, self.handler)
                return
            self.items.append(event)  # read again: waiting for room let the task swap it
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.runner.loop.call_soon_threadsafe(self._start)
        except RuntimeError as error:  # the loop is closed: nothing will ever run these
            self._abandon(BusClosed(f"the event loop of the bus is closed: {error}"))

    def _make_room(self) -> bool:
        """With `cond` held and the mailbox full: apply the overflow policy; True if the
        event may be appended now."""
        if self.policy == "raise":
            return False
        if self.policy == "drop-oldest":
            try:  # the oldest is in the batch in hand, if one is
                (self.taken or self.items).popleft()
                self.dropped.add()
            except IndexError:  # the task took the last of its batch meanwhile
                pass
            return True
        if not self.may_block():
            return True  # the loop's own thread, or a bus worker: waiting could deadlock
        self.waiters += 1
        try:
            while len(self.items) + len(self.taken) >= self.limit and not self.closed:
                self.cond.wait(0.5)
        finally:
            self.waiters -= 1
        return not self.closed

    def _abandon(self, failure: BaseException) -> None:
        with self.cond:
            lost = list(self.items)
            self.items.clear()
            self.scheduled = False
            self.cond.notify_all()
        for event in lost:
            self.rejected.add()
            report(self.on_error, failure, event, self.handler)

    def _start(self) -> None:
        self.task = self.runner.loop.create_task(self._drain())

    async def _drain(self) -> None:
        cond = self.cond
        handler = self.handler
        runner = self.runner
        while True:
            with self.lock:
                if not self.items:
                    self.scheduled = False
                    self.busy = False
                    cond.notify_all()
                    return
                taken, self.items, self.taken = self.items, self.taken, self.items
            pop = taken.popleft
            while True:
                # Marked busy before the pop: a `wait_idle` that gives up in between may count
                # one event twice, never miss one that is about to be handled.
                self.busy = True
                try:
                    event = pop()
                except IndexError:  # the batch is done (or was dropped by `wait_idle`)
                    self.busy = False
                    break
                if self.waiters:
                    with self.lock:
                        cond.notify_all()
                try:
                    await handler(event)
                except Exception as error:
                    runner.failed += 1
                    report(self.on_error, error, event, handler)
                else:
                    runner.delivered += 1
                self.busy = False

    def wait_idle(self, timeout: float | None) -> int:
        """Wait until every queued event was handled; return how many were not (queued, plus
        one being awaited) when `timeout` ran out. Those still queued are dropped."""
        if self.runner.in_loop_thread():
            timeout = 0.0  # waiting here would stop the very loop that drains the mailbox
        with self.cond:
            left = 0
            if not self.cond.wait_for(lambda: not self.scheduled, timeout):
                left = len(self.items) + len(self.taken) + self.busy
                self.items.clear()
                self.taken.clear()
            self.closed = True
            self.cond.notify_all()
            return left
