"""fsmc as a user's project sees it: an application outside this repository, with modules
generated into it, checked by the installed `mypy --strict` and by ruff with its defaults and
with more rules, from the application's own directory (no fsmc configuration around)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fsmc.compiler.cli import main

from tests.conftest import ROOT

APP = '''\
import json

from fsmc.runtime import EventBus, StateChanged

from machines.door import Door
from machines.volume import Volume


def run() -> str:
    bus = EventBus()
    seen: list[StateChanged] = []
    bus.subscribe(seen.append, StateChanged)
    door = Door("front", bus=bus)
    state: Door.State = door.push()
    volume = Volume("vol-1")
    assert volume.state == "Allocated" and door.state == "Open"
    return json.dumps({"door": state, "volume": volume.state, "seen": len(seen)})
'''
DOOR = 'machine Door { initial Shut; state Open; Shut -> Open : Push; Open -> Shut : Pull }\n'


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An application directory: two specs (one of them CloudStack's Volume, with the longest
    lines), their generated package, and a module using both."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "door.fsm").write_text(DOOR)
    shutil.copy(ROOT / "specs" / "volume.fsm", project / "volume.fsm")
    assert main(["build", str(project / "door.fsm"), str(project / "volume.fsm"),
                 "-o", str(project / "machines"), "--no-svg"]) == 0
    (project / "app.py").write_text(APP)
    return project


def test_mypy_strict_passes_on_an_application_with_the_documented_install(app: Path) -> None:
    """With the install scripts/setup.sh makes (and the README shows), not a symlinked tree."""
    pytest.importorskip("mypy")
    result = run([sys.executable, "-m", "mypy", "--strict", "--cache-dir",
                  str(app / ".mypy_cache"), "app.py"], app)
    assert result.returncode == 0, result.stdout + result.stderr
    done = run([sys.executable, "-c", "import app; print(app.run())"], app)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"door": "Open", "volume": "Allocated", "seen": 1}'


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("rules", [[], ["--extend-select", "RUF"],
                                   ["--extend-select", "RUF,I,UP,W,B,SIM,N"]],
                         ids=["defaults", "ruf", "common"])
def test_generated_modules_pass_ruff_in_a_users_project(app: Path, rules: list[str]) -> None:
    """ruff's defaults, and with RUF (RUF100: no unused `noqa`) and other common rule sets
    selected on top, at ruff's default line length."""
    result = run(["ruff", "check", "--isolated", "--no-cache", *rules, "machines"], app)
    assert result.returncode == 0, result.stdout + result.stderr
