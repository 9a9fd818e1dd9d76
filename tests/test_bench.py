"""The benchmark runner keeps working: `python -m bench --quick --only <case>` exits 0 and
writes valid JSON (and Markdown) with ratios and target verdicts."""

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
