"""A private RabbitMQ broker for tests and benchmarks: a node of its own (name, cookie,
database, logs, `epmd`) in a temporary folder, AMQP on a free port on 127.0.0.1, killed and
its folder removed at exit. Runs as root too (nothing of the system's node is used: not its
cookie, data, config or `epmd`). Needs the server (Debian: `apt-get install
rabbitmq-server`; the package's own service is never touched) and `pika` for the clients;
`available()` says why not otherwise.

    server = rabbit.shared()      # one broker per process, started on first use (~5 s)
    server.url                    # amqp://guest:guest@127.0.0.1:PORT/%2F
    server.stop_node()            # an outage: clients are disconnected, the port is closed
    server.start_node()           # back on the same port; durable queues and persistent
                                  # messages survive (`crash=True` kills the VM instead)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port

__all__ = ["Server", "available", "binaries", "shared", "start"]

# The AMQP 0-9-1 protocol header; a ready broker answers it with a method frame on channel 0
# (connection.start), before the client has said anything else.
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_START_TIMEOUT = 90.0


def binaries() -> Path | None:
    """The folder with `rabbitmq-server` and `rabbitmqctl` (Debian keeps the real scripts in
    /usr/lib/rabbitmq/bin: /usr/sbin's wrappers switch to the `rabbitmq` user), or None."""
    on_path = shutil.which("rabbitmq-server")
    for folder in [Path("/usr/lib/rabbitmq/bin")] + ([Path(on_path).resolve().parent]
                                                      if on_path else []):
        if (folder / "rabbitmq-server").is_file() and (folder / "rabbitmqctl").is_file():
            return folder
    return None


def _epmd() -> str | None:
    return shutil.which("epmd") or next(
        (str(path) for path in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)


def available() -> str | None:
    """None when a broker can be started here and spoken to; else why not (for
    `pytest.skip`). A broker that is there but fails to start raises in `start()` instead."""
    if binaries() is None or _epmd() is None:
        return "RabbitMQ server not found (apt-get install rabbitmq-server)"
    try:
        import pika  # noqa: F401
    except ImportError:
        return "the AMQP client pika is not installed (pip install -e '.[amqp]')"
    return None


def _speaks_amqp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(_AMQP_HEADER)
            frame = conn.recv(7)
    except OSError:
        return False
    return len(frame) == 7 and frame[0] == 1 and frame[1:3] == b"\x00\x00"


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


class Server:
    """A running node; `stop()` kills it (and its `epmd`) and removes its folder."""

    def __init__(self, folder: Path, bindir: Path, epmd: str) -> None:
        self.folder = folder
        self.bindir = bindir
        self.port = free_port()
        self.node = f"fsmc-test-{os.getpid()}-{secrets.token_hex(3)}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.log = folder / "server.log"  # the node's stdout (its log goes there too)
        epmd_port = free_port()
        cookie = folder / ".erlang.cookie"  # HOME is the folder: root's cookie is not used
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        (folder / "enabled_plugins").write_text("[].\n")  # no management plugin
        (folder / "rabbitmq.conf").write_text("log.file = false\nlog.console = true\n"
                                              "log.console.level = info\n"
                                              "log.console.use_colors = off\n")
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        self.env = {
            **{name: value for name, value in os.environ.items()
               if not name.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(folder),
            "ERL_EPMD_PORT": str(epmd_port),  # a private epmd, ended with the node
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),  # absent: no /etc
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(folder / "plugins"),
            "RABBITMQ_PID_FILE": str(folder / "vm.pid"),  # the VM writes its pid there
            # At most two schedulers (the defaults already skip busy-waiting): a broker for
            # tests needs no more, and leaves the other cores to them.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"+S 2:2 {loopback}",
            "RABBITMQ_CTL_ERL_ARGS": loopback,
        }
        self._epmd = subprocess.Popen([epmd, "-port", str(epmd_port), "-address", "127.0.0.1"],
                                      env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        self._vm: subprocess.Popen[bytes] | None = None
        # The VM starts an `epmd -daemon` of its own (never ended) if it finds none: wait
        # for ours to listen first.
        deadline = time.monotonic() + 10
        while _port_closed(epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                self._epmd.kill()
                self._epmd.wait()
                raise RuntimeError(f"epmd did not start on port {epmd_port}")
            time.sleep(0.01)
        # atexit does not run when the test process is killed (SIGTERM from `timeout`
        # included): a watchdog then kills the VM and epmd and removes the folder.
        self._watchdog = subprocess.Popen(
            ["sh", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
             'kill -9 "$(cat "$2")" "$3" 2>/dev/null; rm -rf "$4"', "fsmc-rabbit-watchdog",
             str(os.getpid()), self.env["RABBITMQ_PID_FILE"], str(self._epmd.pid),
             str(folder)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    # -- the node -------------------------------------------------------------------------

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(self.bindir / "rabbitmqctl"), "-n", self.node, *args],
                       env=self.env, check=True, capture_output=True, timeout=60)

    def _await_amqp(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not _speaks_amqp(self.port):
            if self._vm is None or self._vm.poll() is not None:
                raise RuntimeError(f"RabbitMQ exited while starting:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ did not start in {_START_TIMEOUT:.0f} s:\n"
                                   f"{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return "(no log)"

    def _kill_vm(self) -> None:
        # `rabbitmq-server` is a shell that runs the VM as its child: kill the whole group
        # (the shell, the VM, its helpers). The VM's sockets close at once; it then lingers
        # as a zombie until init reaps it (~1.5 s here), which nothing needs to wait for.
        if self._vm is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._vm.pid, signal.SIGKILL)
            self._vm.wait()
            self._vm = None
            Path(self.env["RABBITMQ_PID_FILE"]).unlink(missing_ok=True)  # no stale pid

    def _await_closed(self, *ports: int) -> None:
        deadline = time.monotonic() + 10
        while not all(_port_closed(port) for port in ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ ports {ports} still open after stop")
            time.sleep(0.02)

    def running(self) -> bool:
        """Whether the broker accepts AMQP connections now."""
        return _speaks_amqp(self.port)

    def start_node(self) -> None:
        """Start the broker again on the same port with the same data, and wait until it
        accepts connections (after `stop_node()`: ~1.5 s; after a crash: ~5 s)."""
        if self._vm is not None and self._vm.poll() is None:
            self._ctl("start_app")  # the VM is up: only the `rabbit` application was stopped
        else:
            self._kill_vm()
            self._await_closed(self.port, int(self.env["RABBITMQ_DIST_PORT"]))
            with open(self.log, "ab") as log:
                self._vm = subprocess.Popen([str(self.bindir / "rabbitmq-server")],
                                            env=self.env, cwd=self.folder,
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._await_amqp()

    def stop_node(self, crash: bool = False) -> None:
        """A broker outage; returns once the AMQP port is closed. By default the `rabbit`
        application stops cleanly (~0.7 s): clients get connection.close (320,
        CONNECTION_FORCED) and the listener closes, the Erlang VM stays for a quick
        `start_node()`. `crash=True` SIGKILLs the VM instead: clients see the TCP connection
        reset, and the next start recovers from what was on disk (confirmed persistent
        messages are there)."""
        if crash or self._vm is None or self._vm.poll() is not None:
            self._kill_vm()
        else:
            self._ctl("stop_app")
        self._await_closed(self.port)

    def restart(self, crash: bool = False) -> None:
        """`stop_node(crash)` then `start_node()`."""
        self.stop_node(crash)
        self.start_node()

    def stop(self) -> None:
        self._kill_vm()
        for process in (self._watchdog, self._epmd):
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Server:
    """Start a new broker (empty: only the default `/` vhost and the `guest` user, who may
    connect from 127.0.0.1 only)."""
    bindir, epmd = binaries(), _epmd()
    if bindir is None or epmd is None:
        raise RuntimeError("RabbitMQ server not found (apt-get install rabbitmq-server)")
    last_error: RuntimeError | None = None
    for _attempt in range(3):  # a port may be taken between probing and binding
        folder = Path(tempfile.mkdtemp(prefix="fsmc-rabbit-"))
        server: Server | None = None
        try:
            server = Server(folder, bindir, epmd)
            server.start_node()
            atexit.register(server.stop)  # stop() may run twice: the second does nothing
            return server
        except BaseException as error:
            if server is not None:
                server.stop()
            shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(error, RuntimeError):
                raise
            last_error = error
    assert last_error is not None
    raise last_error


_shared: Server | None = None


def shared() -> Server:
    """The process's test broker, running (started again if a test left it stopped)."""
    global _shared
    if _shared is None:
        _shared = start()
    elif not _shared.running():
        _shared.start_node()
    return _shared


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.rabbit [--url-file FILE]`: run a private broker until Ctrl-C (or
    SIGTERM), printing its URL (and writing it to FILE), e.g. for `fsmc demo --amqp`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.rabbit", description=main.__doc__)
    parser.add_argument("--url-file", type=Path, help="write the broker's URL here")
    args = parser.parse_args(argv)
    reason = available()
    if reason is not None:
        print(f"tests.rabbit: {reason}")
        return 2
    server = start()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    try:
        print(f"RabbitMQ at {server.url} (Ctrl-C stops it)", flush=True)
        if args.url_file:
            args.url_file.write_text(server.url + "\n")
        while not stop[0]:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if args.url_file:
            args.url_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
