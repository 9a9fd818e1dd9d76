"""The publisher's journal: every accepted event on disk before `publish` returns.

Segments `<path>.00000001`, `<path>.00000002`, ... hold one message per line (its CloudEvents
JSON, as the spill file does). `append` writes a line (the OS has it), `wait_durable` returns
once it is fsynced: with **group commit**, one thread syncs for every poster waiting at that
moment, so concurrent posters share an fsync. A segment holds at most `segment_entries`
messages; it is removed once the broker confirmed all of them, and then nothing of it needs
to come back. A new journal on the same path reads what earlier processes left (every entry of
every segment still there, confirmed or not: after a crash some are sent twice) and hands it
out again, oldest first, with what the buffer could not hold (`defer`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

from .message import Outgoing, outgoing_from_body

__all__ = ["Journal", "Place"]

logger = logging.getLogger("fsmc.amqp")


class Segment:
    """One journal file and how many of its messages are not confirmed yet."""

    __slots__ = ("entries", "fd", "number", "outstanding", "path", "size", "ticket")

    def __init__(self, number: int, path: Path) -> None:
        self.number = number
        self.path = path
        self.fd: int | None = None  # open for appending while it is the active segment
        self.size = 0
        self.entries = 0
        self.outstanding = 0
        self.ticket: Callable[[bool], None] = _ignore


class Place(NamedTuple):
    """Where one message lies: its segment, offset and length (newline excluded)."""

    segment: Segment
    offset: int
    length: int
    recovered: bool = False  # left by an earlier process


def _ignore(_confirmed: bool) -> None:
    return None


class Journal:
    """The segments of one path. Thread-safe: `append` and `wait_durable` from any poster,
    `read_back` and the tickets from the publisher's I/O thread."""

    def __init__(self, path: str | os.PathLike[str], *, segment_entries: int = 4096) -> None:
        if not isinstance(segment_entries, int) or segment_entries < 1:
            raise ValueError(f"segment_entries must be a positive int, not {segment_entries!r}")
        self.path = Path(path)
        self.segment_entries = segment_entries
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # segments, the active file, the read-back queue
        self._sync_lock = threading.Lock()  # held while the active file is fsynced
        self._durable = threading.Condition(threading.Lock())
        self._written = 0  # messages appended by this process
        self._synced = 0  # of those, how many are known to be on disk
        self._syncing = False  # a poster is fsyncing for everyone
        self._deferred: deque[Place] = deque()
        self._segments: dict[int, Segment] = {}
        self.counts = dict.fromkeys(("journaled", "syncs", "recovered", "unreadable"), 0)
        last = 0
        for number, file in self._existing():
            segment = self._segment(number, file)
            for place in _scan(segment):
                self._deferred.append(place)
                segment.outstanding += 1
            last = number
        self.counts["recovered"] = len(self._deferred)
        for segment in list(self._segments.values()):
            if segment.outstanding == 0:
                self._drop(segment)
        self._active = self._open(last + 1)

    def _existing(self) -> list[tuple[int, Path]]:
        prefix = self.path.name + "."
        found = []
        for file in self.path.parent.glob(prefix + "*"):
            suffix = file.name[len(prefix):]
            if suffix.isdigit() and len(suffix) == 8:
                found.append((int(suffix), file))
        return sorted(found)

    def _segment(self, number: int, file: Path) -> Segment:
        segment = Segment(number, file)
        segment.ticket = partial(self._settle, segment)
        self._segments[number] = segment
        return segment

    def _open(self, number: int) -> Segment:
        segment = self._segment(number, self.path.with_name(f"{self.path.name}.{number:08d}"))
        segment.fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _sync_folder(self.path.parent)  # the new file's name is durable too
        return segment

    # -- posters ------------------------------------------------------------------------------

    def append(self, body: bytes) -> tuple[Place, int]:
        """Write one message (not yet fsynced); its place and the number to give
        `wait_durable`."""
        line = body + b"\n"
        with self._lock:
            if self._active.entries >= self.segment_entries:
                self._rotate()
            segment = self._active
            assert segment.fd is not None
            _write_all(segment.fd, line)
            place = Place(segment, segment.size, len(body))
            segment.size += len(line)
            segment.entries += 1
            segment.outstanding += 1
            self._written += 1
            self.counts["journaled"] += 1
            return place, self._written

    def wait_durable(self, number: int) -> None:
        """Return once message `number` (of `append`) is fsynced: if no poster is syncing,
        this one syncs everything written so far, for all; else it waits for that sync."""
        with self._durable:
            while self._synced < number:
                if not self._syncing:
                    self._syncing = True
                    break
                self._durable.wait()
            else:
                return
        synced = 0
        try:
            with self._lock:
                target, segment = self._written, self._active
            with self._sync_lock:
                if segment.fd is not None:  # else a rotation synced it, and all before it
                    os.fdatasync(segment.fd)
            synced = target
        finally:
            with self._durable:
                self._syncing = False
                if synced:
                    self._synced = max(self._synced, synced)
                    self.counts["syncs"] += 1
                self._durable.notify_all()

    def _rotate(self) -> None:
        """With `_lock` held: the active segment is full; sync and close it, start the next."""
        full = self._active
        with self._sync_lock:
            assert full.fd is not None
            os.fdatasync(full.fd)
            os.close(full.fd)
            full.fd = None
        with self._durable:
            self._synced = max(self._synced, self._written)
            self._durable.notify_all()
        self._active = self._open(full.number + 1)
        if full.outstanding == 0:
            self._drop(full)

    # -- the publisher's side ------------------------------------------------------------------

    def defer(self, place: Place) -> None:
        """The buffer has no room for this message: hand it out later from the file."""
        with self._lock:
            self._deferred.append(place)

    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def read_back(self, room: int) -> list[Outgoing]:
        """Up to `room` deferred messages, oldest first, each with its segment's ticket."""
        with self._lock:
            places = [self._deferred.popleft() for _ in range(min(room, len(self._deferred)))]
            messages: list[Outgoing] = []
            for place in places:
                try:
                    with place.segment.path.open("rb") as handle:
                        handle.seek(place.offset)
                        body = handle.read(place.length)
                    messages.append(outgoing_from_body(
                        body, replayed=False, ticket=place.segment.ticket,
                        recovered=place.recovered))
                except (OSError, ValueError, KeyError, TypeError) as error:
                    logger.error("AMQP publisher: %s at byte %d: unreadable journal entry "
                                 "(%s); skipped", place.segment.path, place.offset, error)
                    self.counts["unreadable"] += 1
                    self._confirmed(place.segment)
            return messages

    def _settle(self, segment: Segment, confirmed: bool) -> None:
        """A message of `segment` was confirmed (True), or given up (False: it stays in the
        file for the next publisher)."""
        if confirmed:
            with self._lock:
                self._confirmed(segment)

    def _confirmed(self, segment: Segment) -> None:
        """With `_lock` held."""
        segment.outstanding -= 1
        if segment.outstanding == 0 and segment is not self._active:
            self._drop(segment)

    def _drop(self, segment: Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._segments.pop(segment.number, None)

    def pending(self) -> int:
        """Messages in the journal not confirmed yet."""
        with self._lock:
            return sum(segment.outstanding for segment in self._segments.values())

    def close(self) -> None:
        """Sync and close the active segment; remove it if all of it was confirmed."""
        with self._lock, self._sync_lock:
            segment = self._active
            if segment.fd is not None:
                with contextlib.suppress(OSError):
                    os.fdatasync(segment.fd)
                os.close(segment.fd)
                segment.fd = None
            if segment.outstanding == 0:
                self._drop(segment)


def _scan(segment: Segment) -> list[Place]:
    """The places of `segment`'s complete lines (a torn last line, left by a crash in the
    middle of a write that was never acknowledged to its poster, is not one)."""
    data = segment.path.read_bytes()
    places = []
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        if end > start:
            places.append(Place(segment, start, end - start, recovered=True))
        start = end + 1
    if start < len(data):
        logger.warning("AMQP publisher: %s ends with a torn entry (%d bytes, never "
                       "acknowledged): ignored", segment.path, len(data) - start)
    segment.size = len(data)
    segment.entries = len(places)
    return places


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
