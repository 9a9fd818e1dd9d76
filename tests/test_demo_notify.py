"""`fsmc demo --notify`: the demo run as a user runs it (a process of its own), followed over
real HTTP by two tenants and the admin; each tenant gets exactly its own account's events, the
admin every event, all in the order of the audit trail."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.contrib.audit import read_trail

from tests.conftest import ROOT
from tests.notify_server import Reader

URL = re.compile(r"notify: the notification service is on (http://\S+)/")


def test_tenants_follow_their_own_accounts_while_the_demo_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "fsmc.compiler.cli", "demo", "--accounts", "3", "--vms", "30",
         "--days", "2", "--seconds", "2", "--seed", "5", "--no-site", "--out", str(out),
         "--notify", "0", "--wait-clients", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None and process.stdout is not None
    try:
        told = []
        for line in process.stderr:
            told.append(line)
            if "waiting for 3 stream clients" in line:
                break
        found = URL.search("".join(told))
        assert found, "".join(told) + process.stdout.read()
        base = found.group(1)
        assert "curl -N -H 'Authorization: Bearer demo-acct-01'" in "".join(told)
        rest, stderr = io.StringIO(), process.stderr
        drain = threading.Thread(target=lambda: rest.write(stderr.read()))
        drain.start()
        readers = {key: Reader(base, key).start()
                   for key in ("demo-acct-01", "demo-acct-02", "demo-admin")}
        stdout = process.stdout.read()
        assert process.wait(120) == 0, stdout + rest.getvalue()
        drain.join(10)
    finally:
        process.kill()
    assert "every event reached every subscriber" in stdout
    trail = list(read_trail(out / "audit.jsonl"))
    served = int(re.search(r"notify +the service at \S+ took all ([\d,]+) events", stdout)
                 .group(1).replace(",", ""))  # type: ignore[union-attr]
    assert served == len(trail) > 0
    for key, reader in readers.items():
        assert reader.done.wait(10), f"{key}: the stream did not end with the demo"
        assert [kind for kind, _ in reader.notices] == ["shutdown"], key
        account = key.removeprefix("demo-")
        expected = [event.id for event in trail
                    if account == "admin" or event.payload.get("account") == account]
        got = [ident for ident, _ in reader.events]
        assert got == expected, f"{key}: {len(got)} events, expected {len(expected)}"
    assert 0 < len(readers["demo-acct-01"].events) < len(readers["demo-admin"].events)


def test_notify_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    small = ["demo", "--vms", "5", "--accounts", "2", "--days", "1", "--seconds", "0",
             "--no-site", "--out", str(tmp_path / "out")]
    assert main([*small, "--linger", "5"]) == 2
    assert "--linger needs --notify [HOST:]PORT" in capsys.readouterr().err
    assert main([*small, "--notify", "host:port"]) == 2
    assert "expected [HOST:]PORT" in capsys.readouterr().err
    config = tmp_path / "notify.toml"
    config.write_text('[[tenants]]\nid = "acct-01"\napi_keys = ["plain-key"]\n')
    assert main([*small, "--notify", "0", "--notify-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fsmc: error: {config}") and "hashed" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([*small, "--notify", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"the notification service cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_a_subscriptions_database_it_cannot_use_is_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notify.db").write_text("not a database")
    before = {thread.name for thread in threading.enumerate()}
    assert main(["demo", "--vms", "5", "--accounts", "2", "--days", "1", "--seconds", "0",
                 "--no-site", "--out", str(out), "--notify", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (f"fsmc: error: the notification service cannot use {out / 'notify.db'}: "
                   "file is not a database\n")
    assert {thread.name for thread in threading.enumerate()} <= before  # nothing left running


def test_sigterm_stops_a_waiting_demo_cleanly(tmp_path: Path) -> None:
    """A demo waiting for its stream clients, stopped with SIGTERM (what a script's background
    job gets, where SIGINT is ignored): `fsmc: interrupted`, exit 130, the port released."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fsmc.compiler.cli", "demo", "--vms", "5", "--accounts", "2",
         "--days", "1", "--no-site", "--out", str(tmp_path / "out"), "--notify", "0",
         "--wait-clients", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        told = ""
        for line in process.stderr:
            told += line
            if "waiting for 1 stream client" in line:
                break
        found = URL.search(told)
        assert found, told
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 130
        rest = process.stderr.read()
    finally:
        process.kill()
    assert rest.endswith("fsmc: interrupted\n") and "Traceback" not in rest, rest
    port = int(found.group(1).rsplit(":", 1)[1])
    with socket.socket() as probe:  # free again
        probe.bind(("127.0.0.1", port))
