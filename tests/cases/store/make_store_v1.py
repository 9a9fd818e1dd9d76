"""Writes `store_v1.db`: a store as the fsmc release before schema versions wrote it (commit
d5c1679, store schema 1: `fsmc_machines` and `fsmc_outbox`, no `fsmc_schema`). The file is
committed; `tests/test_store_schema.py` opens it with today's fsmc. Run it only with that old
release checked out (it would write the current schema otherwise):

    git worktree add /tmp/fsmc-v1 d5c1679 && cd /tmp/fsmc-v1 && bash scripts/setup.sh
    PYTHONPATH=. .venv/bin/python tests/cases/store/make_store_v1.py tests/cases/store/store_v1.db

Content: VirtualMachine vm-1 (Running, version 2), vm-2 (Stopped, version 0), vm-3 (Stopped,
version 4); 6 outbox rows, the first 2 delivered, 4 pending.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fsmc.runtime.bus import EventBus
from fsmc.runtime.store import SqlStore

from generated.virtual_machine import VirtualMachine


def main(target: str) -> None:
    path = Path(target)
    path.unlink(missing_ok=True)
    store = SqlStore(f"sqlite:///{path}")
    vm1 = store.create(VirtualMachine, "vm-1")
    vm1.start_requested(host="h1")
    vm1.operation_succeeded()
    store.create(VirtualMachine, "vm-2")
    assert store.relay(EventBus()) == 2
    vm3 = store.create(VirtualMachine, "vm-3")
    for _ in range(2):
        vm3.start_requested()
        vm3.operation_failed()
    store.close()
    # One file, no -wal/-shm beside it: what a user would copy.
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
