"""A private PostgreSQL server for tests and benchmarks: `initdb` a cluster in a temporary
folder, start it on a free port (TCP on 127.0.0.1 and a socket in that folder), stop it and
remove the folder at exit. PostgreSQL refuses to run as root, so as root the cluster belongs
to the `postgres` OS user (Debian's package creates it). Needs the server binaries (Debian:
`apt-get install postgresql`); `binaries()` is None without them.

    server = pg.shared()          # one server per process, started on first use
    server.url                    # postgresql+psycopg://fsmc@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

__all__ = ["Server", "binaries", "database_url", "fresh_url", "shared", "start"]


def binaries() -> Path | None:
    """The folder with `initdb`, `pg_ctl` and `postgres`, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parts[-3]) if Path(
                       path).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class Server:
    """A running cluster; `stop()` ends it and removes its folder."""

    def __init__(self, folder: Path, bindir: Path, port: int, as_user: list[str]) -> None:
        self.folder = folder
        self.bindir = bindir
        self.port = port
        self._as_user = as_user
        self.url = f"postgresql+psycopg://fsmc@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self.folder.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"),
                          "-m", "immediate", "-w", "stop")
            shutil.rmtree(self.folder, ignore_errors=True)


def start(settings: dict[str, str] | None = None) -> Server:
    """Start a new cluster. `settings` are server options (`-c name=value`)."""
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="fsmc-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    options = {"listen_addresses": "127.0.0.1", "max_connections": "100",
               "shared_buffers": "64MB", **(settings or {})}
    last_error: subprocess.CalledProcessError | None = None
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "fsmc",
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        for _attempt in range(5):  # the port may be taken between probing and binding
            port = free_port()
            flags = f"-p {port} -k {folder} " + " ".join(
                f"-c {name}={value}" for name, value in options.items())
            try:
                subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                str(log), "-o", flags, "-w", "-t", "60", "start"],
                               check=True, capture_output=True, timeout=120)
            except subprocess.CalledProcessError as error:
                last_error = error
                time.sleep(0.2)
                continue
            return Server(folder, bindir, port, as_user)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    assert last_error is not None
    raise RuntimeError(f"PostgreSQL did not start: {last_error.stderr!r}")


_shared: Server | None = None


def shared() -> Server:
    """The process's test server (fsync off: tests never crash the server itself)."""
    global _shared
    if _shared is None:
        _shared = start({"fsync": "off", "synchronous_commit": "off",
                         "full_page_writes": "off"})
        atexit.register(_shared.stop)
    return _shared


def fresh_url() -> str:
    """The shared server's URL, with an empty `public` schema and no other client connected
    (a test's leftovers never leak into the next)."""
    from sqlalchemy import create_engine

    url = shared().url
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return url


def database_url(kind: str, folder: Path) -> str:
    """For tests parametrized over databases: a SQLite file in `folder`, or the shared
    PostgreSQL server emptied (the test is skipped when the server cannot be had)."""
    import pytest

    if kind == "sqlite":
        return f"sqlite:///{folder}/store.db"
    if binaries() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    return fresh_url()
