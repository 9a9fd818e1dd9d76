"""A webhook subscription's lane: its queue and the thread that delivers its events one at a
time, in order (`fsmc.notify.webhooks` makes one per subscription)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from fsmc.runtime.topics import TopicPattern

from .config import ALL_TENANTS
from .store import Subscription
from .stream import Item

__all__ = ["Lane"]


class Lane:
    """One subscription's queue and delivering thread: `deliver` each item in turn; an item
    whose delivery raised (a bug) goes to `fail` with the exception, and the lane goes on."""

    def __init__(self, subscription: Subscription, pattern: TopicPattern,
                 deliver: Callable[[Lane, Item], None],
                 fail: Callable[[Lane, Item, Exception], None]) -> None:
        self.subscription = subscription
        self.pattern = pattern
        self.queue: deque[Item] = deque()
        self.cond = threading.Condition()
        self.stopped = False
        self._deliver = deliver
        self._fail = fail
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"fsmc-webhook-{subscription.id}")
        self.thread.start()

    def wants(self, item: Item) -> bool:
        tenant = self.subscription.tenant
        return (tenant == ALL_TENANTS or item.owner == tenant) and self.pattern.matches(
            item.topic)

    def put(self, item: Item) -> None:
        with self.cond:
            self.queue.append(item)
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.stopped or bool(self.queue))
                if self.stopped:
                    return
                item = self.queue[0]
            try:
                self._deliver(self, item)
            except Exception as error:  # a bug: dead-letter the item, keep the lane going
                self._fail(self, item, error)
            with self.cond:
                self.queue.popleft()  # only this thread takes from the queue
