"""A webhook subscription's lane: the thread that delivers its pending deliveries (rows of the
database, `SubscriptionStore.pending`) one at a time, in order, while this instance holds the
subscription's lease (`fsmc.notify.leases`).

The lane reads its pending deliveries a page at a time after the last one it took, delivers
each in turn, and every `FLUSH_EVERY` deliveries or `FLUSH_SECONDS` (and before it stops)
writes what became of them in one transaction: delivered ones are no longer pending, given-up
ones become dead letters. A lane that dies (kill -9) before that write leaves those deliveries
pending: they are delivered again by the next lane of the subscription (at least once). When
nothing is pending it sleeps until woken (an event was recorded) or `POLL` seconds passed (an
event recorded by another instance, a redrive). A lane whose lease was not renewed in time
(`valid_until`) stops before its next attempt, so that a lane taken over by another instance
does not deliver beside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fsmc.runtime.topics import TopicPattern

from .store import DeadLetter, Delivery, Subscription, SubscriptionStore

__all__ = ["STOPPED", "Lane"]

logger = logging.getLogger("fsmc.notify")

FLUSH_EVERY = 64  # deliveries whose outcome is written in one transaction
FLUSH_SECONDS = 0.2  # at most this long after an outcome it is written
PAGE = 128  # pending deliveries read at once
POLL = 1.0  # seconds an idle lane sleeps before it looks again
STOPPED = "stopped"  # what a delivery interrupted by a stop returns: it stays pending


Outcome = DeadLetter | None | str  # None: delivered; a dead letter: given up; STOPPED


class Lane:
    """One subscription's delivering thread: `deliver` each pending delivery in turn; one
    whose delivery raised (a bug) goes to `fail`, which makes its dead letter, and the lane
    goes on. `finished(dropped, dead_letters)` is told of each write that kept dead letters:
how many were dropped beyond the bound per subscription, and how many were kept."""

    def __init__(self, subscription: Subscription, pattern: TopicPattern,
                 store: SubscriptionStore, *, keep: int | None, valid_until: float,
                 deliver: Callable[[Lane, Delivery], Outcome],
                 fail: Callable[[Lane, Delivery, Exception], DeadLetter],
                 finished: Callable[[dict[str, int], int], None]) -> None:
        self.subscription = subscription
        self.pattern = pattern
        self.valid_until = valid_until  # time.monotonic() after which the lease may be gone
        self.cond = threading.Condition()
        self.stopped = False
        self._woken = False
        self._store = store
        self._keep = keep
        self._deliver = deliver
        self._fail = fail
        self._finished = finished
        self._cursor = 0
        self._done: list[int] = []
        self._letters: list[DeadLetter] = []
        self._since = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"fsmc-webhook-{subscription.id}")
        self.thread.start()

    @property
    def leased(self) -> bool:
        return time.monotonic() < self.valid_until

    def wake(self) -> None:
        with self.cond:
            self._woken = True
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _run(self) -> None:
        try:
            while not self.stopped and self.leased:
                try:
                    page = self._store.pending(self.subscription.id, self._cursor, PAGE)
                except Exception as error:
                    logger.error("webhook %s: cannot read its pending deliveries (retrying): "
                                 "%s: %s", self.subscription.id, type(error).__name__, error)
                    self._sleep()
                    continue
                if not page:
                    self._flush()
                    self._sleep()
                    continue
                for delivery in page:
                    if self.stopped or not self.leased:
                        break
                    if not self._one(delivery):
                        break
        finally:
            self._flush(final=True)

    def _one(self, delivery: Delivery) -> bool:
        """Deliver `delivery`; False if the lane stopped meanwhile (it stays pending)."""
        try:
            outcome = self._deliver(self, delivery)
        except Exception as error:  # a bug: dead-letter the delivery, keep the lane going
            outcome = self._fail(self, delivery, error)
        if outcome == STOPPED:
            return False
        self._cursor = delivery.seq
        self._done.append(delivery.seq)
        if isinstance(outcome, DeadLetter):
            self._letters.append(outcome)
        if len(self._done) >= FLUSH_EVERY or time.monotonic() - self._since >= FLUSH_SECONDS:
            self._flush()
        return True

    def _sleep(self) -> None:
        with self.cond:
            if not self._woken and not self.stopped:
                self.cond.wait(POLL)
            self._woken = False

    def _flush(self, final: bool = False) -> None:
        """Write the outcomes noted so far (kept for the next try if the store fails)."""
        self._since = time.monotonic()
        if not self._done:
            return
        try:
            dropped = self._store.finish(self._done, self._letters, self._keep)
        except Exception as error:
            logger.error("webhook %s: cannot write what became of %d deliveries (%s: %s); %s",
                         self.subscription.id, len(self._done), type(error).__name__, error,
                         "they will be delivered again" if final else "retrying")
            return
        letters = len(self._letters) if self.subscription.id in dropped else 0
        self._done, self._letters = [], []
        if letters:
            self._finished(dropped, letters)
