"""SSE readers in a process of their own, for `bench.notify`: one asyncio loop holding N raw
connections to `GET /v1/events`, noting when each event arrives on each of them.

    python -m bench.sse_readers --url http://127.0.0.1:8080 --key KEY --clients 100 \\
        --events 1000 [--timeout 120] [--out FILE]

Each connection is a bare `asyncio.open_connection`: the request is written by hand
(`Authorization: Bearer KEY`, `Accept: text/event-stream`), the response's chunked transfer
encoding and the SSE lines are parsed here. Every read from a socket is stamped with
`time.perf_counter_ns()` as soon as it returns, and each `StateChanged` event completed by that
read gets that stamp, with its `id:`. Measured against the alternatives on the 2-core machine
(100 clients x 1,000 events at 100/s, two runs each): these connections, p50 4.0-4.4 ms with
the readers using 4.6-5.2 s of CPU; `httpx.AsyncClient` (`stream` + `aiter_raw`, same parser),
p50 17-19 ms and 9.4-10.4 s; an `asyncio.Protocol` (`data_received`), p50 3.4-3.9 ms and
4.2-4.5 s, not enough better to give up the plainer stream code.

Clock: on Linux `perf_counter_ns` is `clock_gettime(CLOCK_MONOTONIC)` (`time.get_clock_info`
says so), one clock for the whole machine, so a stamp taken here and one taken in the server's
process subtract. Checked: a child's `perf_counter_ns()` always fell between the parent's
readings just before spawning it and just after it exited, and it matched the child's own
`clock_gettime_ns(CLOCK_MONOTONIC)` to within 2 µs (the two calls' distance). The report carries
the clock's implementation and `started_ns`, which `bench.notify` checks the same way.

It ends once every connection has received `--events` `StateChanged` events, or its stream
ended, or `--timeout` seconds have passed, and writes one JSON object (to `--out`, or stdout):

    {"clock": "clock_gettime(CLOCK_MONOTONIC)", "started_ns": int, "timed_out": bool,
     "clients": [{"status": int | null, "ids": [str], "received_ns": [int],
                  "notices": [[event, data]], "error": str | null}]}

Only the standard library is imported, so that the process starts fast and nothing in it
competes with the service for more than it must.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

READ_SIZE = 65_536
ENDING = ("overflow", "shutdown")  # SSE events after which the service closes the stream


class ProtocolError(Exception):
    """The response is not what the service sends."""


class Dechunker:
    """Decodes an HTTP/1.1 chunked body fed in arbitrary pieces (chunk extensions and trailers
    are ignored)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0  # data bytes of the current chunk still to come
        self._crlf = False  # the CRLF after a chunk's data is still to come
        self.done = False  # the last (empty) chunk was read

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while not self.done:
            if self._left:
                taken = self._buffer[:self._left]
                del self._buffer[:self._left]
                out += taken
                self._left -= len(taken)
                if self._left:
                    break
            if self._crlf:
                if len(self._buffer) < 2:
                    break
                if self._buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk does not end with CRLF")
                del self._buffer[:2]
                self._crlf = False
            end = self._buffer.find(b"\r\n")
            if end < 0:
                break
            try:
                size = int(bytes(self._buffer[:end]).split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {bytes(self._buffer[:end])!r}") from None
            del self._buffer[:end + 2]
            if size == 0:
                self.done = True
            else:
                self._left, self._crlf = size, True
        return bytes(out)


@dataclass
class SseParser:
    """The SSE fields of a stream fed in pieces of UTF-8: `feed` returns the events it
    completed, as (event type, id, data). Comments (`: heartbeat`) and `retry:` are skipped."""

    _partial: bytes = b""
    _kind: str = "message"
    _id: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[tuple[str, str, str]]:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        done: list[tuple[str, str, str]] = []
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if self._data:
                    done.append((self._kind, self._id, "\n".join(self._data)))
                self._kind, self._data = "message", []
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                self._id = value
            elif name == "event":
                self._kind = value
            elif name == "data":
                self._data.append(value)
        return done


@dataclass
class Connection:
    """One stream's outcome: the `StateChanged` ids in arrival order and when each arrived."""

    status: int | None = None
    ids: list[str] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ids": self.ids, "received_ns": self.received_ns,
                "notices": [list(each) for each in self.notices], "error": self.error}


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and the (lower-cased) headers of a response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x response: {head[0]!r}")
    headers = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def follow(host: str, port: int, path: str, key: str, expected: int,
                 connection: Connection) -> None:
    """Read one stream into `connection` until `expected` events, or its end."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\n\r\n").encode("latin-1"))
        await writer.drain()
        connection.status, headers = await read_head(reader)
        if connection.status != 200:
            connection.error = f"HTTP {connection.status}"
            return
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        dechunker = Dechunker() if chunked else None
        parser = SseParser()
        # What readuntil read past the head is in the reader's buffer: read() returns it first.
        while len(connection.ids) < expected:
            data = await reader.read(READ_SIZE)
            # CLOCK_MONOTONIC on Linux: the clock of the server's send stamps too (see above).
            now = time.perf_counter_ns()
            if not data:
                connection.error = f"the stream ended after {len(connection.ids)} events"
                return
            if dechunker is not None:
                data = dechunker.feed(data)
            for kind, ident, body in parser.feed(data):
                if kind == "StateChanged":
                    connection.ids.append(ident)
                    connection.received_ns.append(now)
                else:
                    connection.notices.append((kind, body))
                    if kind in ENDING:
                        connection.error = f"the service ended the stream ({kind})"
                        return
            if dechunker is not None and dechunker.done:
                connection.error = f"the stream ended after {len(connection.ids)} events"
                return
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_all(url: str, key: str, clients: int, expected: int,
                   timeout: float) -> dict[str, Any]:
    started_ns = time.perf_counter_ns()
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise SystemExit(f"--url must be http://HOST:PORT, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path.rstrip("/") or "") + "/v1/events"
    connections = [Connection() for _ in range(clients)]

    async def one(connection: Connection) -> None:
        try:
            await follow(host, port, path, key, expected, connection)
        except (OSError, ProtocolError, asyncio.IncompleteReadError,
                UnicodeDecodeError) as error:
            connection.error = f"{type(error).__name__}: {error}"

    tasks = [asyncio.create_task(one(each)) for each in connections]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for connection, task in zip(connections, tasks, strict=True):
        if task in pending and connection.error is None:
            connection.error = f"timed out after {len(connection.ids)} events"
    return {"clock": time.get_clock_info("perf_counter").implementation,
            "started_ns": started_ns, "timed_out": bool(pending),
            "clients": [each.to_json() for each in connections]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sse_readers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the service, http://HOST:PORT")
    parser.add_argument("--key", required=True, help="the API key to read with")
    parser.add_argument("--clients", type=int, required=True, help="connections to open")
    parser.add_argument("--events", type=int, required=True,
                        help="StateChanged events each connection waits for")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before giving up (default 120)")
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    report = asyncio.run(read_all(args.url, args.key, args.clients, args.events, args.timeout))
    text = json.dumps(report, separators=(",", ":"))
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
