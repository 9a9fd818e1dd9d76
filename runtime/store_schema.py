"""The version of the store's own tables, and the steps that bring an older store up to date.

`fsmc_schema` holds one row, (`store`, version). Version 1 is what fsmc wrote before the
schema carried a version (`fsmc_machines` and `fsmc_outbox` alone: a store without
`fsmc_schema` is version 1); version 2 adds `fsmc_schema` and the index `fsmc_machines_state`;
`STORE_SCHEMA` is the version this fsmc writes. `prepare` runs
when a `SqlStore` opens:

- an empty database gets every table, stamped `STORE_SCHEMA` (with `create_tables`);
- an older store is migrated in one transaction, each step of `STEPS` in turn, then stamped
  (with `create_tables`; without, `StoreSchemaError` says how to migrate it);
- a store written by a newer fsmc is refused (`StoreSchemaError`): this fsmc does not know
  what its tables mean.

Two processes opening one old store at once: an advisory lock (PostgreSQL) or the write lock
taken first (SQLite) serialises them; elsewhere the loser of a creation race retries, and
finds the work done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, inspect, select
from sqlalchemy.exc import DBAPIError

from .errors import FsmcError
from .store_sql import MACHINES, METADATA, SCHEMA, STATE_INDEX

__all__ = ["STEPS", "STORE_SCHEMA", "StoreSchemaError", "prepare", "prepare_connection",
           "stored_version"]

STORE_SCHEMA = 2
_COMPONENT = "store"
_LOCK_KEY = 0x66736D63  # "fsmc": the advisory lock of schema changes (PostgreSQL)


class StoreSchemaError(FsmcError, RuntimeError):
    """The store's tables are of a schema version this fsmc cannot use as they are."""


def _add_schema_and_state_index(conn: Connection) -> None:
    """1 → 2: the version table, and the index by (machine, state, resource_id) that counts
    rows per state without a sort (one pass over the table: seconds for a million rows)."""
    SCHEMA.create(conn, checkfirst=True)
    STATE_INDEX.create(conn, checkfirst=True)


# STEPS[v] migrates a store of version v to version v + 1, inside the caller's transaction.
STEPS: dict[int, Callable[[Connection], None]] = {1: _add_schema_and_state_index}


def stored_version(conn: Connection) -> int | None:
    """The schema version of the store in this database: None when it holds no fsmc tables,
    1 for a store without `fsmc_schema`, else the stamped version (an empty `fsmc_schema`,
    made from `METADATA` by the application's own migrations, is the current one)."""
    version, _ = _stored(conn)
    return version


def _stored(conn: Connection) -> tuple[int | None, bool]:
    """The version and whether it is stamped."""
    tables = set(inspect(conn).get_table_names())
    if SCHEMA.name not in tables:
        return (1 if MACHINES.name in tables else None), False
    version = conn.scalar(select(SCHEMA.c.version).where(SCHEMA.c.component == _COMPONENT))
    return (STORE_SCHEMA, False) if version is None else (int(version), True)


def prepare(engine: Engine, *, create: bool, where: str) -> None:
    """Check (and with `create`, create or migrate) the store's tables; `where` names the
    database in messages."""
    with engine.connect() as conn:  # the common case, read only: nothing to do
        found, stamped = _stored(conn)
        current = stamped and found == STORE_SCHEMA and set(METADATA.tables) <= set(
            inspect(conn).get_table_names())
    if current:
        return
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                prepare_connection(conn, create=create, where=where)
            return
        except DBAPIError:
            if attempt == 2 or not create:
                raise  # a concurrent creator: the next attempt finds its tables


def prepare_connection(conn: Connection, *, create: bool, where: str) -> None:
    """`prepare` inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    elif conn.dialect.name == "sqlite" and create:
        dbapi: Any = conn.connection.dbapi_connection
        if not dbapi.in_transaction:
            # sqlite3 runs DDL outside any transaction unless one is open: open it, and take
            # the write lock at once (a concurrent opener waits, then finds the work done).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    found, stamped = _stored(conn)
    if found is not None and found > STORE_SCHEMA:
        raise StoreSchemaError(
            f"{where}: the store was written by a newer fsmc (store schema {found}; this fsmc "
            f"knows up to {STORE_SCHEMA}): upgrade fsmc (pip install -U fsmc) to open it")
    if not create:
        if found is not None and found < STORE_SCHEMA:
            raise StoreSchemaError(
                f"{where}: the store was written by an older fsmc (store schema {found}; this "
                f"fsmc uses {STORE_SCHEMA}): migrate it once, in one transaction, by opening "
                "it with SqlStore(url) (create_tables=True, the default) or with "
                "`fsmc migrate --db URL SPEC_DIR --apply`")
        return
    for version in range(found or STORE_SCHEMA, STORE_SCHEMA):
        STEPS[version](conn)
    METADATA.create_all(conn, checkfirst=True)
    if not (stamped and found == STORE_SCHEMA):
        stamp(conn, STORE_SCHEMA)


def stamp(conn: Connection, version: int) -> None:
    """Record `version` as the store's schema version."""
    now = datetime.now(UTC)
    changed = conn.execute(SCHEMA.update().where(SCHEMA.c.component == _COMPONENT).values(
        version=version, updated_at=now)).rowcount
    if not changed:
        conn.execute(SCHEMA.insert().values(component=_COMPONENT, version=version,
                                            updated_at=now))
