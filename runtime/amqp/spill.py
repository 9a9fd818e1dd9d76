"""The publisher's overflow file: messages it accepted but could not hold in memory.

One message per line (its CloudEvents JSON: compact, so it has no raw newline). Writers append
and flush each line, so what a process wrote survives that process. Replaying renames the file
to `<path>.replay` first, so new overflow goes to a fresh file meanwhile; the `.replay` file is
removed only once every message in it is confirmed by the broker, so a crash while replaying
replays it again (the broker may then see duplicates; consumers remove them by id).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .message import Outgoing, outgoing_from_body

__all__ = ["SpillFile"]


class SpillFile:
    """Append messages to `path`; hand them back for replay, oldest file first. Whether
    anything waits is tracked in memory (`pending()` makes no system call): only this object
    writes the files while it lives."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.replay_path = self.path.with_name(self.path.name + ".replay")
        self._writer: IO[bytes] | None = None
        self._unreplayed = False  # `path` holds lines not yet moved to `.replay`
        self._replaying = False  # `.replay` exists

    def adopt_previous(self) -> bool:
        """Take over what an earlier process left: its spill file is folded into the
        `.replay` file, so that this process's own overflow starts a file of its own. Returns
        whether anything was left."""
        if _has_data(self.path):
            if self.replay_path.exists():
                with self.replay_path.open("ab") as replay, self.path.open("rb") as left:
                    if replay.tell() and not _ends_with_newline(self.replay_path):
                        replay.write(b"\n")  # a torn last line must not swallow the next
                    shutil.copyfileobj(left, replay)
                    replay.flush()
                    os.fsync(replay.fileno())
                self.path.unlink()
            else:
                os.replace(self.path, self.replay_path)
        self._replaying = self.replay_path.exists()
        return self._replaying

    def append(self, message: Outgoing) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self.path.open("ab")
            if self._writer.tell() and not _ends_with_newline(self.path):
                self._writer.write(b"\n")
        self._writer.write(message.body + b"\n")
        self._writer.flush()
        self._unreplayed = True

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.flush()
                os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None

    def pending(self) -> bool:
        """Whether any file holds messages still to replay (or being replayed)."""
        return self._replaying or self._unreplayed

    def start_replay(self) -> Path | None:
        """The file to replay now, or None: the `.replay` file if there is one, else the
        spill file renamed to `.replay` (the writer is closed; the next append starts a new
        spill file)."""
        if self._replaying:
            return self.replay_path
        if not self._unreplayed:
            return None
        self.close()
        os.replace(self.path, self.replay_path)
        self._unreplayed = False
        self._replaying = True
        return self.replay_path

    def finish_replay(self) -> None:
        """Every message of the `.replay` file is confirmed: remove it."""
        with contextlib.suppress(FileNotFoundError):
            self.replay_path.unlink()
        self._replaying = False


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def read_messages(path: Path, skip: int = 0) -> Iterator[Outgoing | str]:
    """The messages of a spill file after the first `skip` lines; a line that is not a
    message yields the reason it is not (a torn last line after a crash, say)."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if number <= skip or not line.strip():
                continue
            try:
                yield outgoing_from_body(line.rstrip(b"\n"))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
                yield f"{path}:{number}: unreadable spilled message ({error})"
