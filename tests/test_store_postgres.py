"""What only PostgreSQL does: one-statement transitions in autocommit, a connection killed by
the server, a writer that waits on the application's open transaction, the private server
of `tests/pg.py`. (The behaviour shared with SQLite, the 8-process race included, runs on both
databases in `test_store.py` and `test_outbox.py`.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fsmc.runtime.store import SqlStore, VersionConflict
from fsmc.runtime.store_sql import MACHINES
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from generated.virtual_machine import VirtualMachine
from tests import pg


@pytest.fixture
def url(tmp_path: Path) -> str:
    return pg.database_url("postgresql", tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with SqlStore(url) as opened:
        yield opened


def test_a_transition_is_one_autocommit_statement(store: SqlStore) -> None:
    combined = store._writer.sql.combined
    assert combined is not None and combined.sql.startswith("WITH moved AS (UPDATE")
    vm = store.create(VirtualMachine, "vm-1")
    vm.start_requested()
    [(_, dbapi, _)] = store._writer._idle
    assert dbapi.autocommit is True
    store.close()  # connections go back to SQLAlchemy's pool as they were lent
    assert dbapi.autocommit is False
    with store.engine.connect() as conn:
        row = conn.execute(select(MACHINES)).one()
    assert (row.state, row.version) == ("Starting", 1)
    assert row.updated_at.tzinfo is not None and row.updated_at <= datetime.now(UTC)


def test_a_connection_killed_by_the_server_fails_one_transition_only(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    vm.start_requested()
    [(_, dbapi, _)] = store._writer._idle
    with store.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"),
                      {"pid": dbapi.info.backend_pid})
    with pytest.raises(DBAPIError) as caught:
        vm.operation_succeeded()
    assert caught.value.connection_invalidated or "terminat" in str(caught.value)
    assert (vm.state.name, SqlStore.version(vm)) == ("Starting", 1)
    assert store._writer._idle == []  # the broken connection was dropped
    vm.operation_succeeded()
    assert store.load(VirtualMachine, "vm-1").state.name == "Running"


def test_a_writer_waits_for_the_application_transaction_then_loses(store: SqlStore) -> None:
    vm = store.create(VirtualMachine, "vm-1")
    rival = store.load(VirtualMachine, "vm-1")
    outcome: list[BaseException | None] = []
    with Session(store.engine) as session:
        with session.begin(), store.using(session):
            vm.start_requested()  # holds the row lock until the commit
            thread = threading.Thread(target=lambda: outcome.append(_try(rival.start_requested)))
            thread.start()
            thread.join(0.3)
            assert thread.is_alive()  # the rival is blocked on the row, not failing yet
        thread.join()
    assert isinstance(outcome[0], VersionConflict)
    assert outcome[0].found_state == "Starting" and rival.state.name == "Stopped"


def _try(action: object) -> BaseException | None:
    try:
        action()  # type: ignore[operator]
    except BaseException as error:
        return error
    return None


def test_the_private_server_starts_and_stops() -> None:
    if pg.binaries() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    server = pg.start()
    try:
        engine = create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(text("SHOW port")).scalar() == str(server.port)
        engine.dispose()
    finally:
        server.stop()
    assert not server.folder.exists()
