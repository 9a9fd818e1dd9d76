"""`SqlStore`: machines persisted in SQL, each transition a compare-and-set plus an outbox row.

    store = SqlStore("sqlite:///fsmc.db")            # or "postgresql+psycopg://...", or an Engine
    vm = store.create(VirtualMachine, "vm-1")        # row (VirtualMachine, vm-1, Stopped, 0)
    vm.start_requested()                             # one transaction: CAS + outbox row
    store.relay(bus)                                 # outbox rows → bus, marked delivered

A machine returned by `create` or `load` is "bound": an instance of a subclass of the class
given, made once per (store, class), whose transitions persist. Firing one runs the guards, the
pre-listeners and the action as usual, then in ONE database transaction

    UPDATE fsmc_machines SET state = new, version = v + 1, updated_at = t
        WHERE machine = M AND resource_id = R AND state = old AND version = v
    INSERT INTO fsmc_outbox (machine, resource_id, version, body) VALUES (M, R, v + 1, event)

and only after the commit does the machine's state change (then post-listeners run). When the
UPDATE matches no row, another writer got there first: nothing is written, the machine is
unchanged and `VersionConflict` (a `fsmc.runtime.ConcurrentUpdate`) says what the database
holds; `store.refresh(machine)` (or a new `load`) and firing again is safe.

Events: the outbox row IS the event. A bound machine created without a bus posts nothing
itself: the relay (`store.relay(bus)`, `OutboxRelay`) delivers exactly the committed
transitions, at least once, in commit order per resource. A bound machine given `bus=` also
posts each event to that bus right after the commit (the generated API's promise), as an
in-process notification that a crash can lose; don't give it the bus the relay feeds, or
subscribers get every event twice (with the same `id`).

`store.using(session_or_connection)` makes bound machines (and `create`, `load`, `delete`)
work inside the application's own transaction; see its documentation. `afire` on a bound
machine runs the database work synchronously, on the event loop's thread.

Bound machines and the write itself: `fsmc.runtime.store_bound`; the tables and statements:
`fsmc.runtime.store_sql`; the relay: `fsmc.runtime.outbox`. User guide: docs/storage.md.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateIndex, CreateTable

from .confirm import ConfirmingSink
from .dispatch import Bus
from .errors import FsmcError
from .machine import Machine
from .store_bound import JOINED, AfterCommit, Bound, Joined, VersionConflict, Writer, bound_class
from .store_schema import STORE_SCHEMA, StoreSchemaError, prepare
from .store_sql import MACHINES, METADATA, OUTBOX, SCHEMA

__all__ = ["METADATA", "STORE_SCHEMA", "ResourceExists", "ResourceNotFound", "SqlStore",
           "StoreSchemaError", "UnknownStoredState", "VersionConflict"]

M = TypeVar("M", bound=Machine[Any, Any])


class ResourceNotFound(FsmcError, LookupError):
    """`load` (or `refresh`) found no row for this machine and resource id."""


class ResourceExists(FsmcError, ValueError):
    """`create` found a row for this machine and resource id already."""


class UnknownStoredState(FsmcError, ValueError):
    """A stored row is in a state its class does not declare: the spec changed under live
    data. `machine`, `state` and `resource_id` say which row; `fsmc migrate` shows them all
    and moves them where the spec's `moved` says."""

    def __init__(self, message: str, *, machine: str, state: str, resource_id: object) -> None:
        super().__init__(message)
        self.machine = machine
        self.state = state
        self.resource_id = resource_id


class SqlStore:
    """Machines persisted in a SQL database (SQLite or PostgreSQL; see the module docs).

    `url` is an SQLAlchemy URL (`sqlite:///path.db`, `postgresql+psycopg://user@host/db`;
    `sqlite://` is an in-memory database, one connection shared by all threads, for tests
    and examples) or an `Engine` you made. `create_tables` creates the tables that are
    missing and migrates a store written by an older fsmc (`fsmc.runtime.store_schema`); without
    it (your migrations use `METADATA`) an older store is refused with a `StoreSchemaError`
    saying how to migrate it. A store written by a newer fsmc is always refused. A SQLite
    file is switched to WAL mode and waits up to `sqlite_timeout` seconds for a lock;
    `sqlite_pragmas` adds more pragmas (e.g. `{"synchronous": "NORMAL"}`). Other keywords go
    to `create_engine`.
    """

    def __init__(self, url: str | URL | Engine, *, create_tables: bool = True,
                 sqlite_timeout: float = 30.0,
                 sqlite_pragmas: Mapping[str, str | int] | None = None,
                 **engine_options: Any) -> None:
        if isinstance(url, Engine):
            self._engine, self._owns_engine = url, False
        else:
            self._engine, self._owns_engine = _make_engine(
                make_url(url), sqlite_timeout, dict(sqlite_pragmas or {}), engine_options), True
        self._writer = Writer(self._engine, owns_engine=self._owns_engine)
        self._classes: dict[type[Any], type[Bound]] = {}
        self._classes_lock = threading.Lock()
        # How relays keep off each other's rows: row locks, or leases (SQLite and others).
        self._row_locks = self._engine.dialect.name == "postgresql"
        try:
            with self._writer.guard:
                prepare(self._engine, create=create_tables, where=repr(self))
        except BaseException:
            self.close()
            raise

    @property
    def engine(self) -> Engine:
        return self._engine

    def create_tables(self) -> None:
        """Create the tables and indexes that are missing and migrate an older store to
        `STORE_SCHEMA` (idempotent)."""
        with self._writer.guard:
            prepare(self._engine, create=True, where=repr(self))

    def ddl(self) -> str:
        """The DDL of the tables and indexes for this store's database, as SQL text, ending
        with the INSERT that stamps the schema version."""
        dialect = self._engine.dialect
        parts = []
        for table in METADATA.sorted_tables:
            parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";")
            parts.extend(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";"
                         for index in sorted(table.indexes, key=lambda i: str(i.name)))
        parts.append(f"INSERT INTO {SCHEMA.name} (component, version, updated_at) VALUES "
                     f"('store', {STORE_SCHEMA}, CURRENT_TIMESTAMP);")
        return "\n\n".join(parts) + "\n"

    def close(self) -> None:
        """Return this store's connections; dispose of its engine if it made it."""
        self._writer.close()
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlStore({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- rows ---------------------------------------------------------------------------------

    def create(self, cls: type[M], resource_id: object, *, state: object = None,
               bus: Bus | None = None) -> M:
        """Insert a new row (version 0) in the initial state, or in `state` if the spec makes
        it an entry point, and return the machine bound to it. `ResourceExists` if the row is
        there already."""
        start = cls.create(resource_id, state=state).state  # validates `state`
        key = _key(resource_id)
        try:
            with self._connection() as conn:
                conn.execute(insert(MACHINES).values(
                    machine=cls.SPEC.name, resource_id=key, state=start.name, version=0,
                    updated_at=datetime.now(UTC)))
        except IntegrityError:
            raise ResourceExists(f"{cls.SPEC.name} {resource_id} is already stored") from None
        return self._bind(cls, resource_id, key, start, 0, bus)

    def load(self, cls: type[M], resource_id: object, bus: Bus | None = None) -> M:
        """The stored machine, bound to this store. `ResourceNotFound` if there is no row."""
        key = _key(resource_id)
        state, version = self._current(cls.SPEC.name, key, resource_id)
        return self._bind(cls, resource_id, key, self._known_state(cls, state, resource_id),
                          version, bus)

    def refresh(self, machine: Machine[Any, Any]) -> None:
        """Re-read a bound machine's state and version (after a `ConcurrentUpdate`)."""
        bound = _bound(machine)
        state, version = self._current(bound.SPEC.name, bound._key, bound.resource_id)
        bound._state = self._known_state(type(bound), state, bound.resource_id)
        bound._version = version

    @staticmethod
    def version(machine: Machine[Any, Any]) -> int:
        """A bound machine's version: how many transitions its row has had."""
        return _bound(machine)._version

    def list(self, cls: type[Machine[Any, Any]], state: object = None) -> builtins.list[str]:
        """Resource ids (as stored: text) of `cls`'s rows, sorted; only those in `state` (a
        state or its name, or several of them) when given."""
        query = select(MACHINES.c.resource_id).where(MACHINES.c.machine == cls.SPEC.name)
        if state is not None:
            wanted = [state] if isinstance(state, str | cls.State) else builtins.list(
                _iterable(state))
            query = query.where(MACHINES.c.state.in_(
                [cls._coerce_state(s).name for s in wanted]))
        with self._connection() as conn:
            return builtins.list(conn.scalars(query.order_by(MACHINES.c.resource_id)))

    def delete(self, cls: type[Machine[Any, Any]], resource_id: object) -> bool:
        """Delete the row; True if there was one. Its outbox rows stay (and are relayed)."""
        with self._connection() as conn:
            result = conn.execute(delete(MACHINES).where(
                MACHINES.c.machine == cls.SPEC.name, MACHINES.c.resource_id == _key(resource_id)))
        return bool(result.rowcount)

    def pending(self) -> int:
        """How many outbox rows no relay has delivered yet."""
        with self._connection() as conn:
            return int(conn.scalar(select(func.count()).select_from(OUTBOX).where(
                OUTBOX.c.delivered_at.is_(None))) or 0)

    def prune(self, older_than: timedelta = timedelta(0)) -> int:
        """Delete outbox rows delivered more than `older_than` ago; returns how many."""
        cutoff = datetime.now(UTC) - older_than
        with self._connection() as conn:
            return conn.execute(delete(OUTBOX).where(
                OUTBOX.c.delivered_at.is_not(None), OUTBOX.c.delivered_at <= cutoff)).rowcount

    # -- relaying -------------------------------------------------------------------------------

    def relay(self, bus: Bus | ConfirmingSink, *, batch: int = 100, limit: int | None = None,
              lease: float = 60.0, confirm_timeout: float = 30.0) -> int:
        """Deliver pending outbox rows to `bus` (one pass), in commit order per resource; mark
        them delivered (for a confirming sink such as an `AmqpPublisher`: once it confirmed
        them); return how many were marked. See `fsmc.runtime.outbox`."""
        from .outbox import relay_pass

        return relay_pass(self, bus, batch=batch, limit=limit, lease=lease,
                          confirm_timeout=confirm_timeout)

    def _add_waker(self, waker: threading.Event) -> None:
        writer = self._writer
        writer.wakers = (*writer.wakers, waker)

    def _remove_waker(self, waker: threading.Event) -> None:
        writer = self._writer
        writer.wakers = tuple(w for w in writer.wakers if w is not waker)

    # -- the application's transaction ----------------------------------------------------------

    @contextmanager
    def using(self, target: Session | Connection) -> Iterator[None]:
        """Within this block (this thread or task), bound machines of this store, `create`,
        `load`, `delete` and `list` run their statements in `target`'s transaction (a
        `Session` or a `Connection` on this store's database) and never commit it: the
        application's own changes and the transitions commit together, or not at all.

        A transition inside the block changes the machine when its statements succeed (so
        several transitions may share the transaction); if the transaction rolls back, those
        machines are put back as they were. Posts to a bound machine's own `bus` wait for the
        commit. A lost race raises `VersionConflict` and leaves the transaction to you."""
        token = JOINED.set(Joined(self._writer, target))
        try:
            yield
        finally:
            JOINED.reset(token)

    @contextmanager
    def _connection(self, *, join: bool = True) -> Iterator[Connection]:
        """The caller's connection inside `using`, else a new transaction (committed at the
        end of the block)."""
        joined = JOINED.get() if join else None
        if joined is not None and joined.writer is self._writer:
            yield joined.connection()
            return
        with self._writer.guard, self._engine.begin() as conn:
            yield conn

    def _current(self, machine: str, key: str, resource_id: object) -> tuple[str, int]:
        joined = JOINED.get()
        if joined is not None and joined.writer is self._writer:
            row = joined.connection().execute(
                select(MACHINES.c.state, MACHINES.c.version).where(
                    MACHINES.c.machine == machine, MACHINES.c.resource_id == key)).first()
            found = None if row is None else (row[0], int(row[1]))
        else:
            found = self._writer.read(machine, key)
        if found is None:
            raise ResourceNotFound(f"{machine} {resource_id} is not stored")
        return found

    def _known_state(self, cls: type[Machine[Any, Any]], state: str,
                     resource_id: object) -> Any:
        """The class's member for a stored state name; `UnknownStoredState` (never a
        fallback) for a state the class does not declare."""
        try:
            return cls.State[state]
        except KeyError:
            pass
        name = cls.SPEC.name
        url = self._engine.url.render_as_string(hide_password=True)
        raise UnknownStoredState(
            f"{name} {resource_id} is stored in state {state!r}, which {name} does not declare "
            f"(its states: {', '.join(cls.SPEC.states)}): the spec changed under live data. "
            f"Run `fsmc migrate --db '{url}' SPEC_DIR` to list such rows, add "
            f"`moved {state} -> <State>` to the machine and move them with --apply",
            machine=name, state=state, resource_id=resource_id)

    # -- bound classes --------------------------------------------------------------------------

    def _bind(self, cls: type[M], resource_id: object, key: str, state: Any, version: int,
              bus: Bus | None) -> M:
        bound_cls = self._classes.get(cls)
        if bound_cls is None:
            with self._classes_lock:
                bound_cls = self._classes.get(cls) or self._classes.setdefault(
                    cls, bound_class(cls, self._writer))
        machine = bound_cls(resource_id, state=state,
                            bus=None if bus is None else AfterCommit(bus, self._writer))
        machine._key = key
        machine._version = version
        return machine  # type: ignore[return-value]


# -- helpers ------------------------------------------------------------------------------------

def _make_engine(url: URL, timeout: float, pragmas: dict[str, str | int],
                 options: dict[str, Any]) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, **options)
    memory = url.database in (None, "", ":memory:")
    connect_args = {"timeout": timeout, **options.pop("connect_args", {})}
    if memory:
        connect_args["check_same_thread"] = False
        options.setdefault("poolclass", StaticPool)
    else:
        pragmas = {"journal_mode": "WAL", **pragmas}
    engine = create_engine(url, connect_args=connect_args, **options)
    if pragmas:
        event.listen(engine, "connect", _pragma_setter(pragmas))
    return engine


def _pragma_setter(pragmas: dict[str, str | int]) -> Callable[[Any, Any], None]:
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name} = {value}")
        cursor.close()

    return set_pragmas


def _key(resource_id: object) -> str:
    return resource_id if isinstance(resource_id, str) else str(resource_id)


def _bound(machine: Machine[Any, Any]) -> Bound:
    if not isinstance(machine, Bound):
        raise TypeError(f"{machine!r} is not bound to a store (use store.load or store.create)")
    return machine


def _iterable(value: object) -> Iterable[object]:
    if not isinstance(value, Iterable):
        raise TypeError(f"state must be a state, its name or an iterable of them, not {value!r}")
    return value
