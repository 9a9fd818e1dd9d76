"""End to end in a real editor: headless Neovim's built-in LSP client against `fsmc lsp`
(tests/editors/neovim_e2e.lua): diagnostics, hover, a quick fix, a rename and formatting,
with the buffer compared to the expected text after each step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

NVIM = shutil.which("nvim")
SCRIPT = ROOT / "tests" / "editors" / "neovim_e2e.lua"

BROKEN = """\
machine Door "A door 🚪" {
  initial Closed "Shut, not locked"
  state Open
  Closed->Opne : Pull
  Open -> Closed : Push
}
"""


@pytest.mark.skipif(NVIM is None, reason="Neovim is not installed (scripts/setup.sh installs "
                    "Debian's neovim: apt-get install neovim)")
def test_neovim_diagnostics_quick_fix_rename_and_format(tmp_path: Path) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(BROKEN, "utf-8")
    result = tmp_path / "result.json"
    fsmc = Path(sys.executable).with_name("fsmc")
    env = {**os.environ, "FSMC_BIN": str(fsmc), "FSMC_NVIM_SPEC": str(spec),
           "FSMC_NVIM_OUT": str(result), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([str(NVIM), "--headless", "-u", "NONE", "-i", "NONE", "-n",
                           "-c", f"luafile {SCRIPT}"], cwd=tmp_path, env=env, timeout=120,
                          capture_output=True, text=True, check=False)
    assert result.exists(), done.stdout + done.stderr
    seen = json.loads(result.read_text("utf-8"))
    assert "error" not in seen, seen
    assert seen["diagnostics"] == [{"line": 3, "col": 10, "code": "E101", "message":
                                    "state `Opne` is not declared\nhint: did you mean `Open`?"}]
    assert seen["hover"].startswith("**state** `Closed` (initial) of `Door`\n\nShut, not locked")
    assert seen["action"] == "Change to `Open`"
    assert seen["after_fix"] == BROKEN.replace("Opne", "Open")
    assert seen["after_rename"] == BROKEN.replace("Opne", "Ajar").replace("Open", "Ajar")
    assert seen["after_format"] == """\
machine Door "A door 🚪" {
    initial Closed "Shut, not locked"
    state Ajar

    Closed -> Ajar   : Pull
    Ajar   -> Closed : Push
}
"""
