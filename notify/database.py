"""The notification service's database: SQLite (a file, the zero-setup default) or PostgreSQL
(several service instances sharing it), behind one small interface.

    db = Database("notify.db")                              # SQLite, WAL mode
    db = Database("postgresql://user@host:5432/notify")     # needs psycopg (fsmc[postgres])
    with db.transaction() as sql:                           # BEGIN (IMMEDIATE) ... COMMIT
        sql.execute("INSERT INTO t (a) VALUES (?)", (1,))
    with db.read() as sql:
        rows = sql.execute("SELECT a FROM t").fetchall()

Statements are written once with `?` placeholders and run on either database (`?` becomes
`%s` for psycopg). `Database.dialect` is "sqlite" or "postgresql"; `Database.errors` the
exception classes of the driver in use; `Database.now` an SQL expression of the database's
clock in Unix seconds (leases use the database's clock, so instances on hosts whose clocks
differ agree on when a lease runs out).

Connections: a small pool, one connection per thread at a time, so a slow statement in one
thread never holds the connection another thread needs. SQLite's `":memory:"` is a database
of one connection, gone with it: this layer makes it a file in a temporary folder of its own
(removed by `close`), so that several connections see one database as with a real file. A
target that is not a database raises the driver's `DatabaseError`, and nothing stays open.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["Database", "database_errors", "is_postgres_url", "shown_url"]

POOL = 4  # connections at most; a fifth thread waits for one
BUSY_TIMEOUT = 10.0  # seconds SQLite waits for another writer's lock


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://",
                                                           "postgresql+psycopg://"))


def shown_url(target: str) -> str:
    """`target` without a password, for messages and logs."""
    scheme, sep, rest = target.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return target
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def database_errors() -> tuple[type[Exception], ...]:
    """The exception classes a database of either kind raises (psycopg's if installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


class Sql:
    """One connection inside `Database.transaction()` or `.read()`."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self._conn = conn
        self._postgres = postgres

    def _text(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._text(statement), tuple(params))

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._postgres:
            with self._conn.cursor() as cursor:
                cursor.executemany(self._text(statement), [tuple(row) for row in rows])
        else:
            self._conn.executemany(statement, rows)

    def script(self, statements: str) -> None:
        for statement in statements.split(";"):
            if statement.strip():
                self._conn.execute(statement)


class Database:
    """SQLite at a path (or `":memory:"`: a temporary file) or PostgreSQL at a URL; see the
    module documentation."""

    def __init__(self, target: str | os.PathLike[str], *, pool: int = POOL) -> None:
        name = os.fspath(target)
        self.postgres = is_postgres_url(name)
        self.dialect = "postgresql" if self.postgres else "sqlite"
        self._temporary: str | None = None
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise OSError("a PostgreSQL database needs the driver psycopg: pip install "
                              "'fsmc[postgres]'") from None
            self._url = name.replace("postgresql+psycopg://", "postgresql://", 1)
            self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
            self.now = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
        else:
            if name == ":memory:":
                self._temporary = tempfile.mkdtemp(prefix="fsmc-notify-")
                name = os.path.join(self._temporary, "notify.db")
            self._url = name
            self.errors = (sqlite3.Error,)
            self.now = "((julianday('now') - 2440587.5) * 86400.0)"
        self.name = name
        self.durable = self._temporary is None
        self._size = pool
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            first = self._open()
        except BaseException:
            self._remove_temporary()
            raise
        self._idle.put(first)

    def _open(self) -> Any:
        conn: Any
        if self.postgres:
            import psycopg

            conn = psycopg.connect(self._url, autocommit=True)
        else:
            conn = sqlite3.connect(self._url, check_same_thread=False, isolation_level=None,
                                   timeout=BUSY_TIMEOUT)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint
                # of the log; a power loss may lose the last commits, a process crash none
            except BaseException:
                conn.close()
                raise
        with self._lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the notification database is closed") from None
                grow = len(self._all) < self._size
            conn = self._open() if grow else self._idle.get()
        broken = False
        try:
            yield conn
        except BaseException:
            broken = self.postgres and (conn.closed or conn.broken)  # a lost server: reopen
            raise
        finally:
            if broken:
                self._discard(conn)
            else:
                self._idle.put(conn)

    def _discard(self, conn: Any) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Sql]:
        """A write transaction (SQLite: `BEGIN IMMEDIATE`, so writers queue at its start),
        committed when the block ends, rolled back if it raises."""
        with self._connection() as conn:
            conn.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
            try:
                yield Sql(conn, self.postgres)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Sql]:
        """Statements outside a transaction (each its own snapshot)."""
        with self._connection() as conn:
            yield Sql(conn, self.postgres)

    def close(self) -> None:
        """Close every connection (one in use is closed when it is given back); calling it
        again does nothing."""
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        self._remove_temporary()

    def _remove_temporary(self) -> None:
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
