"""The live stream: every event recorded in the replay log (`fsmc.notify.eventlog`, in the
service's database) to each connected client that may see it, through a bounded queue of its
own, and the replay of what a reconnecting client missed.

`Hub.deliver` is given each recorded event, in the log's order, by the journal's tail
(`fsmc.notify.journal`), in the journal's thread; it offers the event to every client whose
principal may see it and whose topic pattern matches. A client is read by its HTTP response on
the event loop; the tail never waits for it: a client whose queue is full is marked
overflowed, and its stream ends with an `overflow` event saying why (it can reconnect with
`Last-Event-ID` and resume from the log). `Hub.connect` registers a client, then reads what it
missed from the log (it blocks: call it from a worker thread), so nothing recorded meanwhile is
lost. `Hub.close` ends every stream after what it holds with a `shutdown` event, so that a
server can stop gracefully (an open stream would otherwise keep it waiting).

"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fsmc.runtime.topics import TopicPattern

if TYPE_CHECKING:
    from .eventlog import EventLog, Oldest

__all__ = ["Client", "Hub", "Item", "Resume", "gap_notice", "shutdown_notice", "sse_id"]

CHUNK = 64  # events sent in one write at most, before the other streams get their turn


@dataclass(frozen=True)
class Item:
    """One event as the stream sends it."""

    seq: int  # position in the replay log (increasing)
    id: str
    topic: str
    owner: str | None  # the tenant it belongs to
    body: str  # its CloudEvents JSON

    def sse(self) -> str:
        return f"id: {self.id}\nevent: StateChanged\ndata: {self.body}\n\n"


Visible = Callable[[Item], bool]

# An `id:` line ends at CR or LF, and a NUL makes browsers ignore it (the body keeps the id).
_SSE_ID_UNSAFE = str.maketrans({"\r": "%0D", "\n": "%0A", "\x00": "%00"})
# A lone surrogate cannot be written as UTF-8: not on the wire, not in the replay log.
_SURROGATE = re.compile("[\ud800-\udfff]")


def sse_id(event_id: str) -> str:
    """`event_id` as an SSE `id:` field (and the `Last-Event-ID` a client sends back, and the
    replay log's key): an id from an application or a broker may hold any character, a line
    break or a lone surrogate included."""
    safe = event_id.translate(_SSE_ID_UNSAFE)
    if safe.isascii():
        return safe
    return _SURROGATE.sub(lambda found: f"%u{ord(found.group()):04X}", safe)


@dataclass(eq=False)
class Client:
    """A connected stream: what it may see, and its queue."""

    visible: Visible
    loop: asyncio.AbstractEventLoop
    limit: int
    queue: deque[Item] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closing: bool = False  # the hub is closing: end after what is queued
    _waiting: bool = False

    def offer(self, item: Item) -> None:
        """From the bus thread: queue `item`, or mark the client overflowed."""
        if self.overflowed or not self.visible(item):
            return
        if len(self.queue) >= self.limit:
            self.overflowed = True
        else:
            self.queue.append(item)
        if self._waiting:
            self._waiting = False
            self.loop.call_soon_threadsafe(self.wakeup.set)

    def close(self) -> None:
        """From any thread: end the stream once its queue is sent."""
        self.closing = True
        self.loop.call_soon_threadsafe(self.wakeup.set)

    async def wait(self, timeout: float) -> None:
        """On the loop: until something was offered (or overflowed, or closing), at most
        `timeout`."""
        self.wakeup.clear()
        self._waiting = True
        if self.queue or self.overflowed or self.closing:
            self._waiting = False
            return
        try:
            await asyncio.wait_for(self.wakeup.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiting = False


@dataclass(frozen=True)
class Resume:
    """Where a stream starts: the events it missed after its `Last-Event-ID` that it may see,
    whether the log still reached back to that id (`complete`), and the oldest event the log
    holds (for the `gap` event: from when events are available)."""

    missed: list[Item]
    complete: bool = True
    oldest: Oldest | None = None


class Hub:
    """The connected clients, fed from the replay log `log`. `shutdown_notice` is what the
    `shutdown` event says."""

    def __init__(self, log: EventLog, *, shutdown_notice: str) -> None:
        self._log = log
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.shutdown_notice = shutdown_notice
        self.published = 0

    def deliver(self, item: Item) -> None:
        """A recorded event, in the log's order (from the journal's tail)."""
        with self._lock:
            self.published += 1
            clients = tuple(self._clients)
        for client in clients:
            client.offer(item)

    def lagged(self) -> None:
        """The tail fell so far behind that events left the log before it read them: every
        stream is cut as overflowed (they resume with `Last-Event-ID`, told of the gap)."""
        with self._lock:
            clients = tuple(self._clients)
        for client in clients:
            client.overflowed = True
            client.close()

    def connect(self, client: Client, last_id: str | None) -> Resume:
        """Register `client` and return what it missed after `last_id` (None: nothing). It
        reads the log: blocking, for a worker thread."""
        with self._lock:
            self._clients.add(client)
            if self._closed:
                client.close()
        if last_id is None:
            return Resume([])
        try:
            seq = self._log.find(last_id)
            if seq is not None:
                return Resume([item for item in self._log.after(seq) if client.visible(item)])
            oldest = self._log.oldest()
            return Resume([item for item in self._log.after(0) if client.visible(item)],
                          complete=False, oldest=oldest)
        except BaseException:
            self.disconnect(client)
            raise

    def close(self) -> None:
        """End every stream, now and from now on, with a `shutdown` event after what it
        holds (the clients may resume elsewhere with `Last-Event-ID`)."""
        with self._lock:
            self._closed = True
            clients = tuple(self._clients)
        for client in clients:
            client.close()

    def disconnect(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)


def shutdown_notice(durable: bool, events: int, age: float | None) -> str:
    """What the `shutdown` event says: whether, and for how long, a client can resume."""
    if not durable:
        return ("the service is shutting down and keeps no events across a restart (its "
                "database is in memory): after it restarts, a client reconnecting with "
                "Last-Event-ID starts with a gap event")
    kept = f"the last {events} events" + (f", none older than {age:g} s" if age else "")
    return ("the service is shutting down; reconnect with Last-Event-ID, to it or to another "
            f"instance on its database, to resume: the replay log keeps {kept}")


def gap_notice(oldest: Oldest | None) -> str:
    """The `gap` event's data: why, and from when (and which event) the log holds events."""
    data: dict[str, object] = {"reason": "the replay log no longer holds the event after which "
                               "to resume (older than its retention, or unknown); events may "
                               "be missing"}
    if oldest is None:
        data["available_from"] = None
    else:
        data["available_from"] = datetime.fromtimestamp(oldest.time, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        data["first_id"] = oldest.id
    return json.dumps(data)


def visible_to(tenant: str | None, admin: bool, pattern: TopicPattern | None) -> Visible:
    """What a principal may see through a pattern: its own events (all, for the admin)."""
    def visible(item: Item) -> bool:
        if not admin and item.owner != tenant:
            return False
        return pattern is None or pattern.matches(item.topic)

    return visible


async def stream(hub: Hub, client: Client, resume: Resume, *,
                 heartbeat: float, disconnected: Callable[[], object]) -> AsyncIterator[str]:
    """The SSE text of a connection registered with `hub.connect` (before the response
    starts, so that nothing recorded meanwhile is missed): a `gap` event if the log no longer
    reached back to its `Last-Event-ID`, the replay, then live events and a heartbeat comment
    when idle; ends with an `overflow` event if the client fell behind, or a `shutdown` event
    when the hub closes."""
    try:
        yield "retry: 2000\n\n"
        if not resume.complete:
            yield f"event: gap\ndata: {gap_notice(resume.oldest)}\n\n"
        sent = 0
        for item in resume.missed:
            sent = item.seq
            yield item.sse()
        while True:
            while client.queue:
                chunk: list[str] = []
                while client.queue and len(chunk) < CHUNK:
                    item = client.queue.popleft()
                    if item.seq > sent:  # live events already sent by the replay are skipped
                        sent = item.seq
                        chunk.append(item.sse())
                if chunk:
                    yield "".join(chunk)
                await asyncio.sleep(0)  # the other streams' turn: events come in pages
            if client.overflowed:
                yield ("event: overflow\ndata: {\"reason\": \"this client fell more than "
                       f"{client.limit} events behind; reconnect with Last-Event-ID to "
                       "resume\"}\n\n")
                return
            if client.closing:
                reason = json.dumps({"reason": hub.shutdown_notice})
                yield f"event: shutdown\ndata: {reason}\n\n"
                return
            await client.wait(heartbeat)
            if not client.queue and not client.overflowed and not client.closing:
                if await _call(disconnected):
                    return
                yield ": heartbeat\n\n"
    finally:
        hub.disconnect(client)


async def _call(function: Callable[[], object]) -> bool:
    result = function()
    if asyncio.iscoroutine(result):
        result = await result
    return bool(result)
