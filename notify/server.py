"""Serving the notification service (an app of `create_app`) with uvicorn, so that it stops
gracefully: `serve(app, host, port)` in the foreground until SIGINT/SIGTERM (`fsmc notify
serve`), and `BackgroundServer` from a thread of this process, for programs that serve while
they do something else (the demo, tests, benchmarks).

    with BackgroundServer(create_app(bus, config), port=8080) as server:
        print(server.url)        # http://127.0.0.1:8080
        ...                      # fire transitions; clients follow them

The listening socket is bound in the constructor, so a port in use fails there with the
`OSError` of the bind, and no other server can take the port before uvicorn starts.

Stopping first ends every open event stream with a `shutdown` event (`Hub.close`): uvicorn
waits for open responses before it exits, and a stream never ends by itself. Whatever is still
open after `grace` seconds is cut (`force_exit`): a server never outlives its block.
"""

from __future__ import annotations

import socket
import threading
import time
from types import FrameType, TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "serve"]


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's event streams when told to exit."""

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(uvicorn.Config(app, lifespan="on", **options))
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


def serve(app: Any, host: str, port: int, *, log_level: str = "warning") -> None:
    """Serve `app` until SIGINT or SIGTERM, then return (a second SIGINT cuts open
    connections)."""
    _Server(app, host=host, port=port, log_level=log_level).run()


class BackgroundServer:
    """uvicorn serving `app` on `host:port` (port 0: a free one) from a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning", grace: float = 5.0) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        self._listener = socket.socket(family, kind, proto)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
        except OSError:
            self._listener.close()
            raise
        bound = self._listener.getsockname()
        self.host, self.port = host, int(bound[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.grace = grace
        self._server = _Server(app, log_level=log_level)
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
        """Stop serving: end open streams (cut them after `grace` seconds), run the app's
        shutdown, release the port."""
        self._server.exit()
        if self._thread.is_alive():
            self._thread.join(self.grace)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._listener.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
