"""The audit trail: every event the bus delivers, one JSON object per line (JSON Lines).

Each line is `StateChanged.to_dict()` (`id`, `time` as ISO 8601 UTC text, `machine`,
`resource_id`, `event`, `old_state`, `new_state`, `tags`, `payload`, `topic`), so
`read_trail` rebuilds the very events (same ids, same times to the microsecond) with
`StateChanged.from_dict`. Payload values JSON cannot hold are written as their `str()`.
Other events (a `DeadEvent`, an object of your own) are written as `{"type": <class name>,
"repr": <repr>}` so that nothing delivered goes missing from the trail.

Lines are appended (an existing trail grows), written whole under a lock (any number of bus
threads may deliver), and flushed to the operating system at least every `flush_interval`
seconds while events flow (0: after every event), on `flush()` and on `close()`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fsmc.runtime import StateChanged, jsonline

__all__ = ["AuditTrail", "read_trail"]


class AuditTrail:
    """`AuditTrail(path, flush_interval=1.0)`; subscribe it with `bus.subscribe(trail.write)`
    (every event) and `close()` it once the bus is closed."""

    def __init__(self, path: str | Path, *, flush_interval: float = 1.0) -> None:
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be >= 0, not {flush_interval!r}")
        self.path = Path(path)
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._encode = jsonline.dumps  # one line for every reader, UTF-8 encodable
        self._written = 0
        self._flushed_at = time.monotonic()

    def write(self, event: object) -> None:
        """Append `event` as one line."""
        if isinstance(event, StateChanged):
            line = self._encode(event.to_dict())
        else:
            line = self._encode({"type": type(event).__name__, "repr": repr(event)})
        with self._lock:
            handle = self._file
            if handle is None:
                raise RuntimeError(f"audit trail {self.path} is closed")
            handle.write(line + "\n")
            self._written += 1
            now = time.monotonic()
            if now - self._flushed_at >= self._interval:
                handle.flush()
                self._flushed_at = now

    @property
    def written(self) -> int:
        """How many lines this trail has written."""
        return self._written

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._flushed_at = time.monotonic()

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AuditTrail {str(self.path)!r} written={self._written}>"


def read_trail(path: str | Path) -> Iterator[StateChanged]:
    """The `StateChanged` events of a trail, in the order they were written (other lines are
    skipped). A line that is not valid JSON raises `ValueError` naming its line number."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line: {error}") from None
            if "type" in data and "machine" not in data:
                continue
            yield StateChanged.from_dict(data)
