"""Which spec files changed: watchfiles (file-system events) when it is installed, else
polling modification times. Both yield the set of changed `.fsm` paths after each burst."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .project import SPEC_SUFFIX

Snapshot = dict[Path, tuple[int, int]]


def _folders(paths: Sequence[str]) -> list[Path]:
    """What to watch: directories as given, the folder of each file (it may be deleted and
    written again, which replaces its inode)."""
    folders = {Path(p) if Path(p).is_dir() else Path(p).parent or Path(".") for p in paths}
    return sorted(f.resolve() for f in folders if f.exists())


def _watched(path: Path, paths: Sequence[str]) -> bool:
    if path.suffix != SPEC_SUFFIX:
        return False
    resolved = path.resolve()
    for given in paths:
        target = Path(given).resolve()
        if resolved == target or target in resolved.parents:
            return True
    return False


def snapshot(paths: Sequence[str]) -> Snapshot:
    found: Snapshot = {}
    for folder in _folders(paths):
        for spec in folder.rglob(f"*{SPEC_SUFFIX}"):
            if _watched(spec, paths):
                try:
                    status = spec.stat()
                except OSError:
                    continue
                found[spec] = (status.st_mtime_ns, status.st_size)
    return found


def poll(paths: Sequence[str], interval: float) -> Iterator[set[Path]]:
    """Compare snapshots every `interval` seconds; yield what was added, changed or deleted."""
    before = snapshot(paths)
    while True:
        time.sleep(interval)
        after = snapshot(paths)
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        before = after
        if changed:
            yield changed


def events(paths: Sequence[str]) -> Iterator[set[Path]]:
    """File-system events through watchfiles (debounced by it), `.fsm` files only."""
    from watchfiles import watch

    folders = _folders(paths)
    for batch in watch(*folders, watch_filter=lambda _, name: _watched(Path(name), paths),
                       debounce=200, step=50):
        yield {Path(name) for _, name in batch}


def changes(paths: Sequence[str], poll_interval: float | None = None) -> Iterator[set[Path]]:
    """`events` when watchfiles is importable and no polling interval is asked for."""
    if poll_interval is None:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            poll_interval = 0.5
    return poll(paths, poll_interval) if poll_interval is not None else events(paths)
