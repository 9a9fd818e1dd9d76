"""`fsmc build --watch` as a process: rebuilds on change, survives syntax errors and deleted
files, stops cleanly on SIGINT (Ctrl-C) and SIGTERM; with watchfiles and with polling."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SPEC = "machine {name} {{\n    initial A\n    state B\n\n    A -> B : Go\n}}\n"


class Watcher:
    def __init__(self, folder: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fsmc.compiler.cli", "build", "--watch", "--no-svg",
             str(folder / "specs"), "-o", str(folder / "out"), "--color", "never", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def status(self, timeout: float = 30) -> tuple[str, list[str]]:
        """The next status line, and the output before it."""
        before: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            self.seen.append(line)
            if line.startswith("["):
                return line, before
            before.append(line)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", [(), ("--poll", "0.1")], ids=["watchfiles", "polling"])
def test_watch_rebuilds_survives_errors_and_deletions_and_stops_on_sigint(
        tmp_path: Path, mode: tuple[str, ...], stop: signal.Signals) -> None:
    if not mode:
        pytest.importorskip("watchfiles")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "door.fsm").write_text(SPEC.format(name="Door"))
    (specs / "lamp.fsm").write_text(SPEC.format(name="Lamp"))
    watcher = Watcher(tmp_path, *mode)
    try:
        line, _ = watcher.status()
        assert "initial build: ok" in line
        assert (tmp_path / "out" / "door.py").exists() and (tmp_path / "out" / "lamp.py").exists()
        time.sleep(0.3)
        (specs / "door.fsm").write_text(SPEC.format(name="Door").replace("A -> B", "A -> "))
        line, before = watcher.status()
        assert "1 changed: door.fsm: errors: nothing written" in line
        assert any("door.fsm:5:11: error[E001]" in b for b in before), before
        lamp = (tmp_path / "out" / "lamp.py").read_text()
        (specs / "door.fsm").write_text(SPEC.format(name="Door").replace(
            "state B", "state C\n    state B\n    B -> C : Go"))
        line, _ = watcher.status()
        assert "1 changed: door.fsm: ok" in line
        assert "C" in (tmp_path / "out" / "door.py").read_text()
        assert (tmp_path / "out" / "lamp.py").read_text() == lamp
        (specs / "lamp.fsm").unlink()
        line, _ = watcher.status()
        assert "1 changed: lamp.fsm: ok" in line
        assert not (tmp_path / "out" / "lamp.py").exists()
        watcher.process.send_signal(stop)
        _, err = watcher.process.communicate(timeout=20)
        assert watcher.process.returncode == 0, err
        assert err.strip().endswith("fsmc: watch stopped") and "Traceback" not in err
    finally:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait()


def test_watch_refuses_check(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fsmc.compiler.cli", "build", "--watch",
                           "--check", str(ROOT / "specs")], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.returncode == 2 and "cannot be combined with --check" in done.stderr
