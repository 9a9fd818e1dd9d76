"""The benchmark runner keeps working: `python -m bench --quick --only <case>` exits 0 and
writes valid JSON (and Markdown) with ratios and target verdicts; bench.notify's SSE readers
(a process of their own) parse the stream and receive every event."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("transitions")
pytest.importorskip("statemachine")


def test_quick_bus_case_writes_json(tmp_path: Path) -> None:
    out, md = tmp_path / "results.json", tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "bus", "--json", str(out),
         "--markdown", str(md)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["environment"]["mode"] == "quick"
    assert data["environment"]["versions"]["fsmc"]
    [section] = data["sections"]
    assert section["key"] == "bus"
    baseline = [row for row in section["rows"] if row["ratio_min"] == 1.0]
    assert baseline and all(row["min"] > 0 for row in section["rows"])
    assert {v["met"] for v in data["targets"]} <= {True, False}
    assert "## Targets" in md.read_text(encoding="utf-8")
    assert "post to 1 sync subscriber" in done.stdout


def test_sse_reader_parses_chunks_and_events_split_anywhere() -> None:
    from bench.sse_readers import Dechunker, SseParser

    body = (b'retry: 2000\n\n: heartbeat\n\nid: e1\nevent: StateChanged\ndata: {"a": 1}\n\n'
            b'id: e2\r\nevent: StateChanged\r\ndata: {"b": 2}\r\n\r\n'
            b"event: shutdown\ndata: {}\n\n")
    pieces = [body[:7], body[7:40], body[40:41], body[41:]]
    wire = b"".join(b"%x;ext\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    dechunker, parser = Dechunker(), SseParser()
    events = [event for byte in range(len(wire))
              for event in parser.feed(dechunker.feed(wire[byte:byte + 1]))]
    assert dechunker.done
    assert events == [("StateChanged", "e1", '{"a": 1}'), ("StateChanged", "e2", '{"b": 2}'),
                      ("shutdown", "e2", "{}")]


def test_notify_sse_latency_with_readers_in_a_process() -> None:
    """bench.notify's SSE path for real: the service in this process, the readers in
    `python -m bench.sse_readers`; every event reaches every client, once, in order."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from bench.notify import sse_latency, summary

    run = sse_latency(clients=3, events=20, rate=200.0)
    assert (run.lost, run.reordered, run.duplicated, run.unexpected) == (0, 0, 0, 0)
    assert run.errors == {}
    assert len(run.latencies_ns) == 3 * 20 and min(run.latencies_ns) >= 0
    assert len(run.direct_ns) == 20
    assert set(summary(run.latencies_ns)) == {"p50", "p99", "max"}


def test_target_lines_of_a_script_become_verdicts() -> None:
    from bench.__main__ import read_output
    from bench.report import Section

    section = Section("durability", "9. Durability")
    read_output(section, 'table line\n@target {"text": "relay >= 70%", "value": 0.5, '
                         '"op": ">=", "limit": 0.7, "measured": "50%"}\nlast line\n')
    assert section.raw == "table line\nlast line"
    [verdict] = section.verdicts
    assert (verdict.target, verdict.met, verdict.measured) == ("relay >= 70%", False, "50%")
