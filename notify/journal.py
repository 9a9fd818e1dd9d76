"""How events enter the service and leave it live: `Journal` records them in the replay log
(`fsmc.notify.eventlog`: the log and every matching subscription's pending deliveries, one
transaction per batch), then its tail hands everything the log gained — recorded here or by
another instance on the same database — to the hub (live streams) in the log's order, and
wakes the webhook lanes.

Two ways in:

- `record(events)` blocks until the batch is durable, then returns: the AMQP consumer calls
  it with what the broker delivered and acknowledges the messages only afterwards
  (`AmqpConsumer(..., record=journal.record)`), so a crash at any point leaves every event
  either recorded or still in the broker's queue.
- `post(event)` is a bus subscriber for an in-process bus: it never waits (the bus's thread
  must not wait on the database); the journal's writer thread records what was posted in
  batches. Until then it is in memory only: a process that dies loses what it had not
  recorded (but such events come from the same process, which dies with them).

The tail reads the log after the last seq it handed on, woken by each local recording and
polling every `poll` seconds for other instances' (on PostgreSQL, a `LISTEN` could replace the
poll; the poll bounds the latency of another instance's events to `poll`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from fsmc.runtime import StateChanged
from fsmc.runtime.cloudevent import encode

from .eventlog import EventLog, Recorded
from .stream import Hub, Item, sse_id
from .webhooks import WebhookDispatcher

__all__ = ["Journal"]

logger = logging.getLogger("fsmc.notify")

BATCH = 1000  # events recorded in one transaction at most
POLL = 0.2  # seconds between the tail's looks at the log when nothing woke it
RETRY = 1.0  # seconds before the writer tries again after the database failed


class Journal:
    """Records events and feeds the hub and the lanes (see the module documentation)."""

    def __init__(self, log: EventLog, hub: Hub, webhooks: WebhookDispatcher, *,
                 owner: Callable[[StateChanged], str | None], source: str = "fsmc",
                 poll: float = POLL) -> None:
        self.log = log
        self._hub = hub
        self._webhooks = webhooks
        self._owner = owner
        self._source = source
        self._poll = poll
        self._posted: deque[Item] = deque()
        self._cond = threading.Condition()
        self._tail_cond = threading.Condition()
        self._tail_woken = False
        self._tail_stop = False  # set by `close` once the writer is done (or given up on)
        self._stopping = False
        self._counts = dict.fromkeys(("taken", "recorded", "duplicates", "unrecorded"), 0)
        self._last = log.head()
        self._writer = threading.Thread(target=self._write, daemon=True,
                                        name="fsmc-notify-journal")
        self._tail = threading.Thread(target=self._follow, daemon=True,
                                      name="fsmc-notify-tail")
        self._writer.start()
        self._tail.start()

    def item(self, event: StateChanged) -> Item:
        """`event` as the log keeps it (its CloudEvents JSON, with its own `source` if it has
        one, else the journal's; seq given when recorded). The id is kept as the SSE `id:`
        field writes it (`sse_id`), so a `Last-Event-ID` sent back finds it."""
        return Item(0, sse_id(event.id), event.topic, self._owner(event),
                    encode(event, self._source).decode("utf-8"))

    def post(self, event: StateChanged) -> None:
        """The bus subscriber: queue `event` for the writer thread; never waits."""
        item = self.item(event)
        with self._cond:
            self._posted.append(item)
            self._counts["taken"] += 1
            self._cond.notify()

    def record(self, events: Iterable[StateChanged]) -> Recorded:
        """Record `events` now, in one transaction (raises what the database raised, with
        nothing recorded); returns once they are durable."""
        return self._record([self.item(event) for event in events])

    def _record(self, items: list[Item]) -> Recorded:
        webhooks = self._webhooks
        result = self.log.record(items, lane_limit=webhooks.lane_limit,
                                 keep=webhooks.max_dead_letters,
                                 not_attempted=webhooks.not_attempted)
        with self._cond:
            self._counts["recorded"] += len(result.items)
            self._counts["duplicates"] += result.duplicates
        webhooks.recorded(result.dead_lettered, result.dropped)
        self.wake()
        return result

    def wake(self) -> None:
        """The log gained events: the tail reads them now."""
        with self._tail_cond:
            self._tail_woken = True
            self._tail_cond.notify()

    def stats(self) -> dict[str, Any]:
        """`taken` from the bus (`post`), `recorded` in the log, `duplicates` skipped,
        `unrecorded` (given up at close), `queued` (taken, not yet recorded)."""
        with self._cond:
            return {**self._counts, "queued": len(self._posted)}

    def close(self, timeout: float = 30.0) -> None:
        """Record what was posted and not yet recorded (waiting up to `timeout` seconds; an
        error says how many could not be), hand the last events to the hub, stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._writer.join(timeout)
        with self._cond:
            left = len(self._posted)
            self._counts["unrecorded"] += left
        if left:
            logger.error("notify: closed with %d events posted to the service not recorded: "
                         "the database did not take them within %g s", left, timeout)
        with self._tail_cond:
            self._tail_stop = True
            self._tail_woken = True
            self._tail_cond.notify()
        self._tail.join(5)

    # -- threads ----------------------------------------------------------------------------

    def _write(self) -> None:
        """The writer thread: record what `post` queued, up to `BATCH` at a time."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or bool(self._posted))
                if not self._posted:
                    return
                batch = [self._posted[index] for index in range(min(BATCH, len(self._posted)))]
            try:
                self._record(batch)
            except Exception as error:
                logger.error("notify: cannot record %d events (retrying in %g s): %s: %s",
                             len(batch), RETRY, type(error).__name__, error)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(RETRY)
                continue
            with self._cond:
                for _ in batch:
                    self._posted.popleft()

    def _follow(self) -> None:
        """The tail: hand the log's new events to the hub in order, wake the lanes."""
        while True:
            with self._tail_cond:
                if not self._tail_woken:
                    self._tail_cond.wait(self._poll)
                self._tail_woken = False
                stopping = self._tail_stop
            try:
                while True:
                    items = self.log.after(self._last, BATCH)
                    if not items:
                        break
                    if self._last and items[0].seq > self._last + 1:
                        logger.warning("notify: the live streams fell behind the replay log's "
                                       "retention (events %d to %d left it unread); cutting "
                                       "them so that they resume", self._last + 1,
                                       items[0].seq - 1)
                        self._hub.lagged()
                    for item in items:
                        self._hub.deliver(item)
                    self._last = items[-1].seq
                    self._webhooks.wake()
            except Exception as error:
                if stopping:
                    return
                logger.error("notify: cannot read the replay log (retrying): %s: %s",
                             type(error).__name__, error)
                time.sleep(self._poll)
            if stopping:
                return
