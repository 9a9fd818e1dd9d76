"""The tables of `fsmc.runtime.store` and the few SQL statements its hot path runs.

Three tables (created by `SqlStore` unless told not to; `METADATA` is here for Alembic):

- `fsmc_machines`: one row per (machine, resource id): `state`, `version` (0 when created,
  +1 per transition), `updated_at` (the time of the last transition or of creation). The index
  `fsmc_machines_state` (machine, state, resource_id) lets the server count rows per state
  without sorting them and list a state's rows in id order (`fsmc migrate`, `store.list`).
- `fsmc_outbox`: one row per committed transition: `id` (increasing in commit order for one
  resource), `machine`, `resource_id`, `version` (the version the transition produced), `body`
  (the `StateChanged` as the JSON text of `to_dict()`), `delivered_at` (null until a relay has
  handed it to a bus), and `claimed_by` / `claimed_until` (a relay's lease, where leases are
  used). Two partial indexes cover the pending rows only, so delivered rows cost nothing to
  the relay.
- `fsmc_schema`: one row per component (`store`): the `version` of the schema above that wrote
  the database, and when it was stamped (`fsmc.runtime.store_schema` migrates older ones).

A transition runs two statements written here as text in the driver's own parameter style
(`update_sql`, `insert_sql`): they are executed on the driver's cursor directly, without
SQLAlchemy's per-statement machinery, which would cost more than the statements themselves on
SQLite. Everything else goes through SQLAlchemy Core.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["MACHINES", "METADATA", "OUTBOX", "SCHEMA", "STATE_INDEX", "HotSql",
           "UtcDateTime"]


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back as an aware `datetime` (SQLite keeps
    no time zone: its values are UTC by construction)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None,
                           dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: fsmc stores aware UTC times")
        return value.astimezone(dt.UTC) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# Integer primary keys: BIGINT, except on SQLite where only INTEGER is the auto-numbered rowid.
_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

METADATA = MetaData()

MACHINES = Table(
    "fsmc_machines", METADATA,
    Column("machine", String(200), primary_key=True),
    Column("resource_id", String(255), primary_key=True),
    Column("state", String(200), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

OUTBOX = Table(
    "fsmc_outbox", METADATA,
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("machine", String(200), nullable=False),
    Column("resource_id", String(255), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("claimed_by", String(100), nullable=True),
    Column("claimed_until", Float, nullable=True),
)

STATE_INDEX = Index("fsmc_machines_state", MACHINES.c.machine, MACHINES.c.state,
                    MACHINES.c.resource_id)

SCHEMA = Table(
    "fsmc_schema", METADATA,
    Column("component", String(50), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

_PENDING = OUTBOX.c.delivered_at.is_(None)
Index("fsmc_outbox_pending", OUTBOX.c.id,
      postgresql_where=_PENDING, sqlite_where=_PENDING)
Index("fsmc_outbox_pending_resource", OUTBOX.c.machine, OUTBOX.c.resource_id, OUTBOX.c.id,
      postgresql_where=_PENDING, sqlite_where=_PENDING)


@dataclass(frozen=True)
class _Statement:
    """One statement in the driver's parameter style, and how to pass it values given in
    the order of `names`."""

    sql: str
    names: tuple[str, ...]
    named: bool

    def params(self, values: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
        return dict(zip(self.names, values, strict=True)) if self.named else values


def _statement(template: str, names: Sequence[str], paramstyle: str) -> _Statement:
    """Fill `template`'s `{name}` slots with the driver's placeholders, in order."""
    markers: dict[str, str] = {}
    for position, name in enumerate(names, start=1):
        if paramstyle == "qmark":
            markers[name] = "?"
        elif paramstyle in ("format", "pyformat"):
            markers[name] = "%s"
        elif paramstyle == "numeric":
            markers[name] = f":{position}"
        elif paramstyle == "numeric_dollar":
            markers[name] = f"${position}"
        elif paramstyle == "named":
            markers[name] = f":{name}"
        else:  # pragma: no cover - every DBAPI paramstyle is listed above
            raise ValueError(f"unsupported DBAPI paramstyle {paramstyle!r}")
    return _Statement(template.format(**markers), tuple(names), paramstyle == "named")


@dataclass(frozen=True)
class HotSql:
    """The statements of one transition, rendered once per store for its dialect."""

    update: _Statement
    insert: _Statement
    current: _Statement
    time: Callable[[dt.datetime], Any]
    # PostgreSQL: both in one statement (the INSERT reads the UPDATE's RETURNING), which is
    # atomic alone: run in autocommit, a transition is one round trip instead of four.
    combined: _Statement | None = None

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> HotSql:
        quote = dialect.identifier_preparer.format_table
        machines, outbox = quote(MACHINES), quote(OUTBOX)
        style = dialect.paramstyle or "qmark"
        update_sql = (
            f"UPDATE {machines} SET state = {{new_state}}, version = {{new_version}}, "
            "updated_at = {updated_at} WHERE machine = {machine} AND "
            "resource_id = {resource_id} AND state = {old_state} AND version = {old_version}")
        update_names = ("new_state", "new_version", "updated_at", "machine", "resource_id",
                        "old_state", "old_version")
        insert = _statement(
            f"INSERT INTO {outbox} (machine, resource_id, version, body) "
            "VALUES ({machine}, {resource_id}, {version}, {body})",
            ("machine", "resource_id", "version", "body"), style)
        current = _statement(
            f"SELECT state, version FROM {machines} "
            "WHERE machine = {machine} AND resource_id = {resource_id}",
            ("machine", "resource_id"), style)
        combined = None
        if dialect.name == "postgresql" and dialect.driver in ("psycopg", "psycopg2"):
            combined = _statement(
                f"WITH moved AS ({update_sql} RETURNING machine, resource_id, version) "
                f"INSERT INTO {outbox} (machine, resource_id, version, body) "
                "SELECT machine, resource_id, version, {body} FROM moved",
                (*update_names, "body"), style)
        processor = (_sqlite_time if dialect.name == "sqlite" else
                     UtcDateTime().dialect_impl(dialect).bind_processor(dialect))
        return cls(_statement(update_sql, update_names, style), insert, current,
                   processor or _identity, combined)


def _identity(value: dt.datetime) -> Any:
    return value


def _sqlite_time(value: dt.datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), at the
    cost of one `isoformat` (its own processor formats field by field)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
