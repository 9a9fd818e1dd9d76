"""Code that the store and outbox tests run in other processes (spawned: each one imports
this light module only, not the test modules with their fixtures and compiled specs)."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

from fsmc.runtime import ConcurrentUpdate, StateChanged
from fsmc.runtime.store import SqlStore

from generated.virtual_machine import VirtualMachine

RESOURCES = [f"vm-{i}" for i in range(10)]
FAST_SQLITE = {"synchronous": "NORMAL"}  # no fsync per commit: these tests are about order


def race(url: str, seed: int, attempts: int) -> tuple[int, int]:
    """Fire random allowed events on random resources through machines that go stale;
    count the transitions that committed and the races lost."""
    rng = random.Random(seed)
    wins = losses = 0
    with SqlStore(url, create_tables=False, sqlite_pragmas=FAST_SQLITE) as store:
        machines = {key: store.load(VirtualMachine, key) for key in RESOURCES}
        for _ in range(attempts):
            machine = machines[rng.choice(RESOURCES)]
            try:
                machine.fire(rng.choice(machine.allowed_events()))
                wins += 1
            except ConcurrentUpdate:
                losses += 1
                store.refresh(machine)
    return wins, losses


def fire_some(store: SqlStore, seed: int, count: int) -> None:
    """`count` transitions on random resources (retrying lost races)."""
    rng = random.Random(seed)
    machines = {key: store.load(VirtualMachine, key) for key in RESOURCES}
    done = 0
    while done < count:
        machine = machines[rng.choice(RESOURCES)]
        try:
            machine.fire(rng.choice(machine.allowed_events()))
            done += 1
        except ConcurrentUpdate:
            store.refresh(machine)


class Log:
    """A subscriber that appends one line per delivery to a file shared by processes
    (O_APPEND: lines from several processes interleave whole, in the order written):
    `event-id pid`."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def post(self, event: object) -> None:
        assert isinstance(event, StateChanged)
        os.write(self.fd, f"{event.id} {os.getpid()}\n".encode())


def relay_until_empty(url: str, log: str, batch: int, writers_done: str,
                      start: Any = None) -> int:
    """Relay in small batches until the writers are done and nothing is pending (after
    waiting at the `start` barrier, if given)."""
    subscriber = Log(Path(log))
    posted = 0
    with SqlStore(url, create_tables=False, sqlite_pragmas=FAST_SQLITE) as store:
        if start is not None:
            start.wait()
        while True:
            done = Path(writers_done).exists()
            count = store.relay(subscriber, batch=batch)
            posted += count
            if done and not count and not store.pending():
                return posted


def write(url: str, seed: int, count: int, start: Any = None) -> None:
    with SqlStore(url, create_tables=False, sqlite_pragmas=FAST_SQLITE) as store:
        if start is not None:
            start.wait()
        fire_some(store, seed, count)


class Deduplicating:
    """A subscriber that remembers, in a file, the ids it has acted on: a repeated event is
    ignored. Every delivery (repeats included) is also counted in a second file. After
    `kill_after` deliveries it kills its own process with SIGKILL."""

    def __init__(self, folder: Path, kill_after: int | None = None) -> None:
        self.seen_path = folder / "seen"
        self.raw_path = folder / "raw"
        self.seen = set(self.seen_path.read_text().split()) if self.seen_path.exists() \
            else set()
        self.kill_after = kill_after
        self.deliveries = 0

    def post(self, event: object) -> None:
        assert isinstance(event, StateChanged)
        with self.raw_path.open("a") as raw:
            raw.write(f"{event.id}\n")
        if event.id not in self.seen:
            self.seen.add(event.id)
            with self.seen_path.open("a") as seen:
                seen.write(f"{event.id} {event.resource_id} "
                           f"{json.dumps(event.to_dict()['time'])}\n")
        self.deliveries += 1
        if self.kill_after is not None and self.deliveries >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


def crash(url: str, folder: str, transitions: int, kill_after: int | None,
          lease: float) -> None:
    """Commit `transitions` transitions, then die by SIGKILL: at once (`kill_after` None:
    between the commits and any relay), or during a relay after `kill_after` deliveries
    (delivered, not yet marked)."""
    with SqlStore(url, create_tables=False) as store:
        fire_some(store, 7, transitions)
        if kill_after is None:
            os.kill(os.getpid(), signal.SIGKILL)
        store.relay(Deduplicating(Path(folder), kill_after), batch=transitions, lease=lease)
    raise AssertionError("the relay should have killed this process")


def old_writer(url: str, spec: str, keys: list[str], seed: int, stop: str, out: str) -> None:
    """An application still running the old spec: fire random allowed events on `keys`
    through machines that go stale (refreshed after each lost race) until the file `stop`
    exists; write {"wins": {key: transitions}, "losses": n} to `out`."""
    from tests.generation import compile_spec

    module = compile_spec(spec, "old")
    [cls] = [v for v in vars(module).values() if isinstance(v, type) and hasattr(v, "SPEC")
             and v.__module__ == module.__name__]
    rng = random.Random(seed)
    wins = dict.fromkeys(keys, 0)
    losses = 0
    with SqlStore(url, create_tables=False, sqlite_pragmas=FAST_SQLITE) as store:
        machines = {key: store.load(cls, key) for key in keys}
        Path(out + ".ready").touch()
        while not Path(stop).exists():
            key = rng.choice(keys)
            machine = machines[key]
            try:
                machine.fire(rng.choice(machine.allowed_events()))
                wins[key] += 1
            except ConcurrentUpdate:
                losses += 1
                store.refresh(machine)
    Path(out).write_text(json.dumps({"wins": wins, "losses": losses}))
