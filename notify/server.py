"""Serving the notification service (an app of `create_app`) with uvicorn, so that it stops
gracefully: `serve(app, bind(host, port))` in the foreground until SIGINT/SIGTERM (`fsmc notify
serve`), and `BackgroundServer` from a thread of this process, for programs that serve while
they do something else (the demo, tests, benchmarks).

    with BackgroundServer(create_app(bus, config), port=8080) as server:
        print(server.url)        # http://127.0.0.1:8080
        ...                      # fire transitions; clients follow them

The listening socket is bound in the constructor (or by `bind` before, for a caller that must
know the port is free before it builds the app), so a port in use fails there with the
`OSError` of the bind, and no other server can take the port before uvicorn starts.

Stopping first ends every open event stream with a `shutdown` event (`Hub.close`): uvicorn
waits for open responses before it exits, and a stream never ends by itself. A response still
open after `grace` seconds (a client that stopped reading, its socket buffers full) is
cancelled, then the app's shutdown runs (the bus left, webhook lanes stopped, the store
closed): a server never outlives its block, and `serve` returns after a signal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "bind", "serve"]

GRACE = 5.0  # seconds open responses get to end once the service is told to stop


class _CutAtShutdown(logging.Filter):
    """uvicorn logs each response it cancels after the grace period as "Exception in ASGI
    application" with a traceback. Here that is the designed end of a stream whose client
    stopped reading: one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError) and "graceful shutdown" in str(error):
            record.msg, record.args, record.exc_info = _CUT, (), None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_CUT = "a stream whose client stopped reading was cut at shutdown"
_uvicorn_log = logging.getLogger("uvicorn.error")
if not any(isinstance(each, _CutAtShutdown) for each in _uvicorn_log.filters):
    _uvicorn_log.addFilter(_CutAtShutdown())


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's event streams when told to exit."""

    def __init__(self, app: Any, grace: float, **options: Any) -> None:
        super().__init__(uvicorn.Config(app, lifespan="on",
                                        timeout_graceful_shutdown=max(1, math.ceil(grace)),
                                        **options))
        self._hub = app.state.hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._hub.close()
        super().handle_exit(sig, frame)
        # uvicorn would raise the signal again once stopped, killing the process before the
        # caller closes what it opened (the broker consumer, the bus): a stop is a stop.
        self._captured_signals.clear()

    def exit(self) -> None:
        self._hub.close()
        self.should_exit = True


def serve(app: Any, listener: socket.socket, *, log_level: str = "warning",
          grace: float = GRACE) -> None:
    """Serve `app` on `listener` (from `bind`) until SIGINT or SIGTERM, then return once open
    responses ended (or were cancelled after `grace` seconds) and the app's shutdown ran."""
    _Server(app, grace, log_level=log_level).run(sockets=[listener])


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A socket bound to `host:port` (port 0: a free one), not yet listening; `OSError` if the
    address cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port,
                                                         type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError:
        listener.close()
        raise
    return listener


class BackgroundServer:
    """uvicorn serving `app` on `host:port` (port 0: a free one), or on the socket of
    `bind(host, port)` given as `listener`, from a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 listener: socket.socket | None = None, log_level: str = "warning",
                 grace: float = GRACE) -> None:
        self._listener = bind(host, port) if listener is None else listener
        self.host, self.port = host, int(self._listener.getsockname()[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.grace = grace
        self._server = _Server(app, grace, log_level=log_level)
        self._thread = threading.Thread(target=self._server.run, name="fsmc-notify-server",
                                        kwargs={"sockets": [self._listener]}, daemon=True)

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start serving; returns once uvicorn accepts connections (RuntimeError if it does
        not within `timeout` seconds)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: end open streams (cancel those still open after `grace` seconds), run
        the app's shutdown, release the port. Waits `timeout` seconds more than `grace` at
        most (then uvicorn is forced out, without the app's shutdown: a hung shutdown)."""
        self._server.exit()
        if self._thread.is_alive():
            self._thread.join(self.grace + timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)
        self._listener.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
