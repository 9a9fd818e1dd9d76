"""The live stream: every event once in a bounded replay log, and to each connected client
that may see it, through a bounded queue of its own.

`Hub.publish` is a bus subscriber (it runs in whatever thread the bus delivers from). It
encodes each event once (the CloudEvents JSON of the broker contract), appends it to the replay
log and offers it to every client whose principal may see it and whose topic pattern matches.
A client is read by its HTTP response on the event loop; the bus thread never waits for it: a
client whose queue is full is marked overflowed, and its stream ends with an `overflow` event
saying why (it can reconnect with `Last-Event-ID` and resume from the log). `Hub.close` ends
every stream after what it holds with a `shutdown` event, so that a server can stop gracefully
(an open stream would otherwise keep it waiting).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fsmc.runtime import StateChanged
from fsmc.runtime.cloudevent import encode
from fsmc.runtime.topics import TopicPattern

__all__ = ["Client", "Hub", "Item", "sse_id"]


@dataclass(frozen=True)
class Item:
    """One event as the stream sends it."""

    seq: int  # position in this hub's log (increasing)
    id: str
    topic: str
    owner: str | None  # the tenant it belongs to
    body: str  # its CloudEvents JSON

    def sse(self) -> str:
        return f"id: {self.id}\nevent: StateChanged\ndata: {self.body}\n\n"


Visible = Callable[[Item], bool]

# An `id:` line ends at CR or LF, and a NUL makes browsers ignore it (the body keeps the id).
_SSE_ID_UNSAFE = str.maketrans({"\r": "%0D", "\n": "%0A", "\x00": "%00"})


def sse_id(event_id: str) -> str:
    """`event_id` as an SSE `id:` field (and the `Last-Event-ID` a client sends back): an id
    from an application or a broker may hold any character, a line break included."""
    return event_id.translate(_SSE_ID_UNSAFE)


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


class Hub:
    """The replay log and the connected clients. Events are sent with their own CloudEvents
    `source` (their producer's, for events from a broker), else with `source`."""

    def __init__(self, *, replay: int = 10_000, source: str = "fsmc",
                 owner: Callable[[StateChanged], str | None]) -> None:
        self._log: deque[Item] = deque(maxlen=replay)
        self._seq = itertools.count(1)
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._source = source
        self._owner = owner
        self._listeners: list[Callable[[Item], None]] = []
        self._closed = False
        self.published = 0

    def add_listener(self, listener: Callable[[Item], None]) -> None:
        """Also hand every item to `listener` (in the bus's thread; it must not wait)."""
        self._listeners.append(listener)

    def publish(self, event: StateChanged) -> None:
        """The bus subscriber."""
        body = encode(event, self._source).decode("utf-8")
        with self._lock:
            item = Item(next(self._seq), sse_id(event.id), event.topic, self._owner(event),
                        body)
            self._log.append(item)
            self.published += 1
            clients = tuple(self._clients)
        for client in clients:
            client.offer(item)
        for listener in self._listeners:
            listener(item)

    def connect(self, client: Client, last_id: str | None) -> tuple[list[Item], bool]:
        """Register `client` and return what it missed after `last_id` (None: nothing) that
        it may see, and whether the log still reached back to `last_id`."""
        with self._lock:
            self._clients.add(client)
            log = list(self._log)
            if self._closed:
                client.close()
        if last_id is None:
            return [], True
        for index, item in enumerate(log):
            if item.id == last_id:
                return [later for later in log[index + 1:] if client.visible(later)], True
        return [later for later in log if client.visible(later)], False

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


def visible_to(tenant: str | None, admin: bool, pattern: TopicPattern | None) -> Visible:
    """What a principal may see through a pattern: its own events (all, for the admin)."""
    def visible(item: Item) -> bool:
        if not admin and item.owner != tenant:
            return False
        return pattern is None or pattern.matches(item.topic)

    return visible


async def stream(hub: Hub, client: Client, missed: list[Item], complete: bool, *,
                 heartbeat: float, disconnected: Callable[[], object]) -> AsyncIterator[str]:
    """The SSE text of a connection registered with `hub.connect` (before the response
    starts, so that nothing posted meanwhile is missed): the replay (`missed`), then live
    events and a heartbeat comment when idle; ends with an `overflow` event if the client fell
    behind, or a `shutdown` event when the hub closes."""
    try:
        yield "retry: 2000\n\n"
        if not complete:
            yield ("event: gap\ndata: {\"reason\": \"the replay log no longer holds the event "
                   "after which to resume; events may be missing\"}\n\n")
        sent = 0
        for item in missed:
            sent = item.seq
            yield item.sse()
        while True:
            while client.queue:
                item = client.queue.popleft()
                if item.seq > sent:  # live events already sent by the replay are skipped
                    sent = item.seq
                    yield item.sse()
            if client.overflowed:
                yield ("event: overflow\ndata: {\"reason\": \"this client fell more than "
                       f"{client.limit} events behind; reconnect with Last-Event-ID to "
                       "resume\"}\n\n")
                return
            if client.closing:
                yield ("event: shutdown\ndata: {\"reason\": \"the service is shutting down; "
                       "reconnect with Last-Event-ID to resume\"}\n\n")
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
