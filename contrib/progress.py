"""A progress display that suits where it is written: a bar redrawn in place on a terminal,
plain lines (one per tenth of the way) anywhere else, such as a log or a pipe.

`Ticker` calls a function every `interval` seconds in a daemon thread, to refresh the display
while another thread does the work.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar", "Ticker"]


class ProgressBar:
    """`update(fraction, status)` as often as you like; `finish(status)` once."""

    def __init__(self, stream: TextIO, *, width: int = 28, tty: bool | None = None,
                 columns: int | None = None) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty() if tty is None else tty
        # A line longer than the terminal would wrap, and "\r" could not redraw it.
        self.columns = columns or shutil.get_terminal_size().columns
        self._next_line = 0  # plain mode: the next tenth to print
        self._last = ""
        self._lock = threading.Lock()

    def render(self, fraction: float, status: str) -> str:
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {fraction * 100:5.1f}%  {status}"[:max(self.columns - 1, 20)]

    def update(self, fraction: float, status: str) -> None:
        with self._lock:
            if self.tty:
                line = self.render(fraction, status)
                padding = " " * max(0, len(self._last) - len(line))
                self.stream.write("\r" + line + padding)
                self.stream.flush()
                self._last = line
            elif fraction * 10 >= self._next_line:
                self.stream.write(f"{int(fraction * 100):3d}%  {status}\n")
                self.stream.flush()
                self._next_line = int(fraction * 10) + 1

    def finish(self, status: str) -> None:
        with self._lock:
            if self.tty:
                line = self.render(1.0, status)
                padding = " " * max(0, len(self._last) - len(line))
                self.stream.write("\r" + line + padding + "\n")
            else:
                self.stream.write(f"100%  {status}\n")
            self.stream.flush()


class Ticker:
    """Run `tick()` every `interval` seconds until `stop()` (which waits for the thread)."""

    def __init__(self, tick: Callable[[], None], interval: float = 0.2) -> None:
        self._tick = tick
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fsmc-progress", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self._tick()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
