"""`fsmc notify hash-key`: the hash the config stores, from stdin (one key a line) or from a
prompt on a real terminal that does not echo the key; never from the command line."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from fsmc.notify.config import hash_key, parse_config

COMMAND = [sys.executable, "-m", "fsmc.compiler.cli", "notify", "hash-key"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_keys_from_stdin_one_a_line_give_hashes_the_config_takes() -> None:
    done = run(stdin="key-acme\n\n  key with spaces \r\nlast-without-newline")
    assert done.returncode == 0, done.stderr
    hashes = done.stdout.splitlines()
    assert hashes == [hash_key("key-acme"), hash_key("key with spaces"),
                      hash_key("last-without-newline")]
    config = parse_config(f'[[tenants]]\nid = "acme"\napi_keys = ["{hashes[0]}"]\n')
    assert config.tenants[0].key_hashes == {hash_key("key-acme")}


def test_a_key_on_the_command_line_is_refused_and_never_echoed() -> None:
    done = run("very-secret-key")
    assert done.returncode == 2 and done.stdout == ""
    assert "does not take the key as an argument" in done.stderr
    assert "very-secret-key" not in done.stderr


def test_no_key_at_all_is_a_usage_error() -> None:
    done = run(stdin="\n  \n")
    assert (done.returncode, done.stdout) == (2, "")
    assert "no key given" in done.stderr


def converse(answers: list[str]) -> tuple[int, str]:
    """Run hash-key on a pseudo-terminal, answering each prompt in turn; (exit code, all the
    terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, its stdin a terminal
        os.execv(sys.executable, COMMAND)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            # One answer per prompt seen so far (counted, not read off the tail: the terminal
            # may echo an answer typed before the prompt turned echo off, after the next one).
            asked = shown.count(b"API key (not shown):") + shown.count(b"again:")
            while pending and len(answers) - len(pending) < asked:
                os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, signal.SIGKILL)  # never left waiting on a child that waits for input
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_the_prompt_asks_twice_and_never_shows_the_key() -> None:
    code, shown = converse(["typed-key", "typed-key"])
    assert code == 0, shown
    assert "API key (not shown):" in shown and "again:" in shown
    assert hash_key("typed-key") in shown
    assert "typed-key" not in shown.replace(hash_key("typed-key"), "")


def test_two_different_answers_hash_nothing() -> None:
    code, shown = converse(["typed-key", "typo-key"])
    assert code == 1
    assert "the two keys typed differ; nothing hashed" in shown
    assert "sha256:" not in shown
