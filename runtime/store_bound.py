"""Bound machines and the write of one transition (the hot path of `fsmc.runtime.store`).

A bound machine is an instance of `type(name, (Bound, YourClass), ...)`, made once per
(store, class). `Bound._apply` (the base class's hook, called while the machine is marked busy,
after the guards, the pre-listeners and the action) hands the transition to the store's `Writer`,
which runs the compare-and-set UPDATE and the outbox INSERT in one transaction and only then
sets the machine's state and version. Raising there changes nothing and posts nothing.

The writer runs those statements on DBAPI connections it keeps aside (borrowed from the
engine's pool, a cursor each), in the driver's own parameter style, because SQLAlchemy's
per-statement work would cost more than the statements themselves on SQLite. Inside
`SqlStore.using(...)` it runs them on the caller's connection instead (`Joined`), and
`TxMemory` remembers what to undo on rollback and what to post on commit.
"""

from __future__ import annotations

import os
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection, StaticPool

from . import jsonline
from .dispatch import _NO_HOOKS, Bus, _Hooks
from .errors import ConcurrentUpdate
from .events import StateChanged
from .machine import Machine
from .store_sql import HotSql

__all__ = ["JOINED", "Bound", "Joined", "VersionConflict", "Writer"]

Target = Session | Connection
_Lent = tuple[PoolProxiedConnection, DBAPIConnection, DBAPICursor]


class VersionConflict(ConcurrentUpdate):
    """A bound machine lost a race: the row was not in the state and version it expected.
    `found_state` and `found_version` are what the database holds (both None when the row
    was deleted); `expected_version` is the machine's. The machine is unchanged."""

    def __init__(self, message: str, *, machine: str, resource_id: object, state: str,
                 event: str, expected_version: int, found_state: str | None,
                 found_version: int | None) -> None:
        super().__init__(message, machine=machine, resource_id=resource_id, state=state,
                         event=event)
        self.expected_version = expected_version
        self.found_state = found_state
        self.found_version = found_version


class Bound(Machine[Any, Any]):
    """Mixed in front of a generated class by `SqlStore`: persists in `_apply`."""

    __slots__ = ("_key", "_version")
    _writer: ClassVar[Writer]
    _key: str
    _version: int
    # Never idle: a bound instance always takes the full path (the generated fast path skips
    # `_apply`), listeners or not.
    _idle_hooks: ClassVar[_Hooks | None] = _NO_HOOKS

    def __init__(self, resource_id: object, *, bus: Bus | None = None,
                 state: Any = None) -> None:
        super().__init__(resource_id, bus=bus, state=state)
        self._hooks = _NO_HOOKS
        self._observed = True

    def _apply(self, target: Any, event: StateChanged | None) -> None:
        assert event is not None  # `_persistent` classes always build the event
        self._writer.persist(self, target, event)

    @property
    def bus(self) -> Bus | None:
        wrapper = self._bus
        return wrapper.bus if isinstance(wrapper, AfterCommit) else wrapper


def bound_class(cls: type[Machine[Any, Any]], writer: Writer) -> type[Bound]:
    """The subclass of `cls` whose instances persist through `writer`. Its instances are
    never idle (see `Bound`) and it sets `_persistent` and `_class_observed`, so every
    transition takes the full path, which calls `_apply`."""
    namespace = {"__slots__": (), "__module__": cls.__module__,
                 "__qualname__": cls.__qualname__, "_writer": writer,
                 "_persistent": True, "_class_observed": True}
    return type(cls.__name__, (Bound, cls), namespace)


class AfterCommit:
    """A bound machine's bus: posts at once, or when the caller's transaction commits."""

    __slots__ = ("bus", "writer")

    def __init__(self, bus: Bus, writer: Writer) -> None:
        self.bus = bus
        self.writer = writer

    def post(self, event: object) -> None:
        joined = JOINED.get()
        if joined is None or joined.writer is not self.writer:
            self.bus.post(event)
        else:
            self.writer.memory(joined.target).posts.append((self.bus, event))


class Joined:
    """`SqlStore.using(target)`: this writer's statements go to `target`'s transaction."""

    __slots__ = ("target", "writer")

    def __init__(self, writer: Writer, target: Target) -> None:
        self.writer = writer
        self.target = target

    def connection(self) -> Connection:
        target = self.target
        return target.connection() if isinstance(target, Session) else target


JOINED: ContextVar[Joined | None] = ContextVar("fsmc_store_joined", default=None)


class TxMemory:
    """What to undo if the caller's transaction rolls back, and what to post if it commits."""

    __slots__ = ("posts", "undo", "writer")

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.undo: list[tuple[Bound, Any, int]] = []
        self.posts: list[tuple[Bus, object]] = []

    def committed(self, *_: object) -> None:
        posts, self.posts, self.undo = self.posts, [], []
        self.writer.wake()
        for bus, event in posts:
            bus.post(event)

    def rolled_back(self, *_: object) -> None:
        undo, self.undo, self.posts = self.undo, [], []
        for machine, state, version in reversed(undo):
            machine._state = state
            machine._version = version


class Writer:
    """Writes transitions for one store: CAS + outbox row, then the in-memory change."""

    def __init__(self, engine: Engine, *, owns_engine: bool) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        dialect = engine.dialect
        self.sql = HotSql.for_dialect(dialect)
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        # `sqlite://`: one connection for every thread, so one user at a time.
        self.guard: AbstractContextManager[Any] = (
            threading.Lock() if isinstance(engine.pool, StaticPool) else nullcontext())
        self._idle: list[_Lent] = []
        self._memories: weakref.WeakKeyDictionary[Any, TxMemory] = weakref.WeakKeyDictionary()
        self.wakers: tuple[threading.Event, ...] = ()
        _WRITERS.add(self)

    def wake(self) -> None:
        """Tell this process's relays that something committed."""
        for waker in self.wakers:
            waker.set()

    def memory(self, target: Target) -> TxMemory:
        memory = self._memories.get(target)
        if memory is None:
            memory = self._memories[target] = TxMemory(self)
            if isinstance(target, Session):
                sa_event.listen(target, "after_commit", memory.committed)
                sa_event.listen(target, "after_rollback", memory.rolled_back)
            else:
                sa_event.listen(target, "commit", memory.committed)
                sa_event.listen(target, "rollback", memory.rolled_back)
        return memory

    def persist(self, machine: Bound, target: Any, event: StateChanged) -> None:
        version = machine._version
        update = (target.name, version + 1, self.sql.time(event.time), event.machine,
                  machine._key, event.old_state, version)
        body = encode(event)
        joined = JOINED.get()
        if joined is not None and joined.writer is self:
            self._persist_joined(joined, machine, update, body, event)
        else:
            self._persist_own(machine, update, body, event)
            self.wake()
        machine._version = version + 1
        machine._state = target

    def _persist_own(self, machine: Bound, update: tuple[Any, ...], body: str,
                     event: StateChanged) -> None:
        sql = self.sql
        found = None
        with self.guard:
            idle = self._idle
            try:
                proxy, dbapi, cursor = idle.pop()
            except IndexError:
                proxy, dbapi, cursor = self._checkout()
            try:
                if sql.combined is not None:  # autocommit: the statement is the transaction
                    cursor.execute(sql.combined.sql, sql.combined.params((*update, body)))
                    moved = cursor.rowcount == 1
                else:
                    cursor.execute(sql.update.sql, sql.update.params(update))
                    moved = cursor.rowcount == 1
                    if moved:
                        cursor.execute(sql.insert.sql, sql.insert.params(
                            (update[3], update[4], update[1], body)))
                        dbapi.commit()
                    else:
                        dbapi.rollback()
                if not moved:
                    cursor.execute(sql.current.sql, sql.current.params(update[3:5]))
                    found = _first(cursor)
                    dbapi.rollback()
            except self._dbapi_error as error:
                self._discard(proxy, dbapi, cursor, error)
                raise DBAPIError.instance(None, None, error, self._dbapi_error,
                                          dialect=self.engine.dialect) from error
            except BaseException:
                self._discard(proxy, dbapi, cursor, None)
                raise
            idle.append((proxy, dbapi, cursor))
        if not moved:
            raise _conflict(machine, event, found)

    def _persist_joined(self, joined: Joined, machine: Bound, update: tuple[Any, ...],
                        body: str, event: StateChanged) -> None:
        sql = self.sql
        conn = joined.connection()
        if sql.combined is not None:
            moved = conn.exec_driver_sql(
                sql.combined.sql, sql.combined.params((*update, body))).rowcount == 1
        else:
            moved = conn.exec_driver_sql(sql.update.sql, sql.update.params(update)).rowcount == 1
            if moved:
                conn.exec_driver_sql(sql.insert.sql, sql.insert.params(
                    (update[3], update[4], update[1], body)))
        if not moved:
            found = conn.exec_driver_sql(sql.current.sql, sql.current.params(update[3:5])).first()
            raise _conflict(machine, event, found)
        self.memory(joined.target).undo.append((machine, machine._state, machine._version))

    def read(self, machine: str, key: str) -> tuple[str, int] | None:
        """A row's state and version (None if there is none), on a connection kept aside:
        `refresh` after a lost race should cost one round trip."""
        sql = self.sql
        with self.guard:
            try:
                proxy, dbapi, cursor = self._idle.pop()
            except IndexError:
                proxy, dbapi, cursor = self._checkout()
            try:
                cursor.execute(sql.current.sql, sql.current.params((machine, key)))
                row = _first(cursor)
                dbapi.rollback()
            except self._dbapi_error as error:
                self._discard(proxy, dbapi, cursor, error)
                raise DBAPIError.instance(None, None, error, self._dbapi_error,
                                          dialect=self.engine.dialect) from error
            except BaseException:
                self._discard(proxy, dbapi, cursor, None)
                raise
            self._idle.append((proxy, dbapi, cursor))
        return None if row is None else (row[0], int(row[1]))

    # -- the connections kept aside ---------------------------------------------------------------

    def _checkout(self) -> _Lent:
        proxy = self.engine.raw_connection()
        dbapi = proxy.dbapi_connection
        assert dbapi is not None
        if self.sql.combined is not None:
            dbapi.autocommit = True
        return proxy, dbapi, dbapi.cursor()

    def _discard(self, proxy: PoolProxiedConnection, dbapi: DBAPIConnection,
                 cursor: DBAPICursor, error: Any) -> None:
        """After a failure: roll back and keep the connection, or drop it if it is broken.
        `error` is the driver's exception, or None for any other."""
        if error is not None and self.engine.dialect.is_disconnect(error, dbapi, cursor):
            proxy.invalidate(error)
            return
        try:
            dbapi.rollback()
        except Exception as broken:
            proxy.invalidate(broken)
        else:
            self._idle.append((proxy, dbapi, cursor))

    def close(self) -> None:
        """Give the connections back to the engine's pool, as they were lent."""
        idle, self._idle = self._idle, []
        for proxy, dbapi, _ in idle:
            if self.sql.combined is not None:
                dbapi.autocommit = False
            proxy.close()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not ours to use or to close."""
        self._idle = []
        if self._owns_engine:
            self.engine.dispose(close=False)


def _first(cursor: DBAPICursor) -> Any:
    """The one row of a primary-key SELECT, or None. `fetchall` runs the statement to its
    end: a SQLite statement left open would keep a read snapshot on the connection."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _conflict(machine: Bound, event: StateChanged, found: Any) -> VersionConflict:
    where = (f"the database has it in {found[0]} at version {found[1]}" if found
             else "its row was deleted")
    return VersionConflict(
        f"{event.machine} {machine.resource_id}: {event.event} from {event.old_state} at "
        f"version {machine._version} lost a race: {where}; reload and retry",
        machine=event.machine, resource_id=machine.resource_id, state=event.old_state,
        event=event.event, expected_version=machine._version,
        found_state=found[0] if found else None,
        found_version=int(found[1]) if found else None)




def encode(event: StateChanged) -> str:
    """The event as outbox text: the JSON of `to_dict()` (`from_dict` reads it back)."""
    data = event.to_dict()
    if not isinstance(data["resource_id"], str | int):
        data["resource_id"] = str(data["resource_id"])
    try:
        return jsonline.dumps(data, default=None, allow_nan=False)  # UTF-8 whatever it holds
    except (TypeError, ValueError) as error:
        raise TypeError(f"{event.machine} {event.resource_id}: {event.event}: the payload of a "
                        f"persisted transition must be JSON-serialisable ({error})") from None


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()


def _after_fork() -> None:
    for writer in list(_WRITERS):
        writer.forget()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork)
