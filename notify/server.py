"""`BackgroundServer`: the service (any ASGI app) served by uvicorn from a thread of this
process, for programs that serve while they do something else (the demo, tests, benchmarks).

    with BackgroundServer(create_app(bus, config), port=8080) as server:
        print(server.url)        # http://127.0.0.1:8080
        ...                      # fire transitions; clients follow them

The listening socket is bound in the constructor, so a port in use fails there with the
`OSError` of the bind, and no other server can take the port before uvicorn starts. `stop()`
closes open streams at once (`force_exit`): a server never outlives its block.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """uvicorn serving `app` on `host:port` (port 0: a free one) from a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning") -> None:
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
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
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
        """Stop serving: close open streams, run the app's shutdown, release the port."""
        self._server.should_exit = self._server.force_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._listener.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
