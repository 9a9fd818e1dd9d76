"""The usage meter: a bus subscriber that keeps what billing needs, the way CloudStack's usage
server does, in SQLite.

What is counted (one `UsageRule` per usage type, in `RULES`)
------------------------------------------------------------
A rule names a machine, the states whose entry *starts* billing and those whose entry *stops*
it, and whether only `[usage]`-tagged events count (CloudStack's `Impact.USAGE`). Nothing is
keyed on particular transitions: which events bill is decided by the spec's tags and states.

- `running_vm` (hours), VirtualMachine, tagged events only: a `[usage]` event entering
  Running starts an interval (CloudStack's VM.START); a `[usage]` event entering Stopped,
  Destroyed, Error or Expunging ends it (VM.STOP, VM.DESTROY). As in CloudStack, untagged
  transitions do not move the meter: a VM is billed while Stopping or Migrating, until the
  tagged event that reaches Stopped.
- `ip_address` (hours), IpAddress, tagged events only: entering Allocated starts
  (NET.IPASSIGN), entering Releasing or Free stops (NET.IPRELEASE).
- `volume` (GB-hours), Volume, every event: entering Ready starts, entering Destroy,
  Expunging or Expunged stops. CloudStack posts VOLUME.CREATE for an ordinarily created volume
  from its API code, outside the state machine (only migration copies, upload copies and
  resizes into Ready are tagged), so the volume rule cannot rely on tags alone. The size
  billed is `payload["size_gb"]`: the latest value given by any event of the volume up to the
  start of the interval (give it when the volume is requested, and on the event that
  completes a resize: each entry into Ready starts a new interval at the size known then).

An interval that is started again while open (CloudStack's repeated VM.START) is closed and
reopened at that moment, so nothing is billed twice. The account of an interval is the latest
`payload["account"]` seen for the resource when it starts (DESIGN.md: an event belongs to the
tenant its payload names), else the first one seen for the resource at all.

Storage and idempotency
-----------------------
One table, `usage_events`, holds the raw events the rules need, keyed by event id and written
with `INSERT OR IGNORE`: an event delivered twice is stored once. Intervals are computed when a
report is asked for (`fsmc.contrib.usage_report`) from the events ordered by (time, id), so
the order in which events arrived does not matter. Writes are batched (`batch` events, and
whatever is pending on `flush()` and `close()`); the database runs in WAL mode while the meter
writes, so reports can read meanwhile, and is left as one file when it closes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fsmc.runtime import StateChanged

__all__ = ["RULES", "SCHEMA_VERSION", "USAGE_TAG", "UsageMeter", "UsageRule", "connect"]

USAGE_TAG = "usage"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_events (
    id          TEXT PRIMARY KEY,   -- StateChanged.id: a duplicate delivery is ignored
    time_us     INTEGER NOT NULL,   -- microseconds since the Unix epoch, UTC
    machine     TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    event       TEXT NOT NULL,
    old_state   TEXT NOT NULL,
    new_state   TEXT NOT NULL,
    tagged      INTEGER NOT NULL,   -- 1 when the transition carries the `usage` tag
    account     TEXT,               -- payload["account"], when given
    size        REAL                -- payload[rule.size_key] (size_gb), when given
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_events_by_resource
    ON usage_events (machine, resource_id, time_us, id);
"""

_INSERT = "INSERT OR IGNORE INTO usage_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class UsageRule:
    """One usage type: what starts and stops billing a machine's resources, and in what unit.

    `size_key` names the payload field whose value multiplies the hours (GB for volumes);
    without one the quantity is the hours themselves."""

    usage_type: str
    machine: str
    starts: frozenset[str]
    stops: frozenset[str]
    tagged_only: bool
    label: str
    unit: str
    size_key: str | None = None

    def counts(self, tagged: bool) -> bool:
        """Whether an event of this rule's machine (tagged or not) moves the meter."""
        return tagged or not self.tagged_only


RULES: tuple[UsageRule, ...] = (
    UsageRule("running_vm", "VirtualMachine", frozenset({"Running"}),
              frozenset({"Stopped", "Destroyed", "Error", "Expunging"}), True,
              "running VM hours", "hours"),
    UsageRule("volume", "Volume", frozenset({"Ready"}),
              frozenset({"Destroy", "Expunging", "Expunged"}), False,
              "volume GB-hours", "GB-hours", size_key="size_gb"),
    UsageRule("ip_address", "IpAddress", frozenset({"Allocated"}),
              frozenset({"Releasing", "Free"}), True,
              "public IP hours", "hours"),
)


def connect(path: str | Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open (and, unless read-only, create) a usage database."""
    if read_only:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no usage database at {path}")
        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False)
        return connection
    connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(_SCHEMA)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return connection


class UsageMeter:
    """Subscribe it with `bus.subscribe(meter.record, StateChanged)`; `close()` it once the
    bus is closed.

    `UsageMeter(path, rules=RULES, batch=2000)`. Thread-safe: the bus may call it from any
    thread. `stats()` counts what it kept (`recorded`), what no rule needs (`skipped`) and
    the deliveries the database already had (`duplicates`, known once written).
    """

    def __init__(self, path: str | Path, *, rules: tuple[UsageRule, ...] = RULES,
                 batch: int = 2000) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch!r}")
        self.path = Path(path)
        self.rules = rules
        by_machine: dict[str, list[UsageRule]] = {}
        for rule in rules:
            by_machine.setdefault(rule.machine, []).append(rule)
        self._by_machine = MappingProxyType({m: tuple(r) for m, r in by_machine.items()})
        self._batch = batch
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._recorded = self._skipped = self._duplicates = 0
        self._connection: sqlite3.Connection | None = connect(self.path)

    def record(self, event: StateChanged) -> None:
        """Keep `event` if a rule needs it (written with the next batch)."""
        rules = self._by_machine.get(event.machine)
        tagged = USAGE_TAG in event.tags
        if rules is None or not any(rule.counts(tagged) for rule in rules):
            with self._lock:
                self._skipped += 1
            return
        payload = event.payload
        account = payload.get("account")
        size: Any = None
        for rule in rules:
            if rule.size_key is not None and rule.size_key in payload:
                size = _number(payload[rule.size_key])
        row = (event.id, event.time_ns // 1000, event.machine, str(event.resource_id),
               event.event, event.old_state, event.new_state, int(tagged),
               None if account is None else str(account), size)
        with self._lock:
            if self._connection is None:
                raise RuntimeError(f"usage meter {self.path} is closed")
            self._pending.append(row)
            self._recorded += 1
            if len(self._pending) >= self._batch:
                self._write()

    def flush(self) -> None:
        """Write what is pending."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        if self._connection is None:
            raise RuntimeError(f"usage meter {self.path} is closed")
        rows, self._pending = self._pending, []
        connection = self._connection
        connection.execute("BEGIN")
        try:
            cursor = connection.executemany(_INSERT, rows)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            self._pending = rows + self._pending
            raise
        self._duplicates += len(rows) - cursor.rowcount

    def close(self) -> None:
        """Write what is pending and close the database. Idempotent."""
        with self._lock:
            if self._connection is None:
                return
            self._write()
            # Leave one self-contained file (readers need no -wal/-shm files); while another
            # connection reads, the database stays in WAL mode.
            with contextlib.suppress(sqlite3.OperationalError):
                self._connection.execute("PRAGMA journal_mode=DELETE")
            self._connection.close()
            self._connection = None

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"recorded": self._recorded, "skipped": self._skipped,
                    "duplicates": self._duplicates}

    def __enter__(self) -> UsageMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UsageMeter {str(self.path)!r} rules={[r.usage_type for r in self.rules]}>"


def _number(value: object) -> float | None:
    """A payload size as a float; None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
