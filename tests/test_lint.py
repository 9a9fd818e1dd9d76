"""Lint and types are part of the suite: ruff on the tree, `mypy --strict` on every package
and on the generated modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = {"dsl": "dsl", "compiler": "compiler", "runtime": "runtime", "contrib": "contrib",
            "notify": "notify"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff() -> None:
    result = run(["ruff", "check", "--no-cache", "."], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def type_tree(tmp_path: Path) -> Path:
    """The import layout with symbolic links: tmp/fsmc/{dsl,compiler,runtime,...},
    tmp/generated and tmp/golden (the golden modules). A user's install is checked as a user
    runs it by tests/test_install_types.py."""
    tree = tmp_path / "types"
    (tree / "fsmc").mkdir(parents=True)
    (tree / "fsmc" / "__init__.py").write_text("")
    for name, folder in PACKAGES.items():
        os.symlink(ROOT / folder, tree / "fsmc" / name)
    os.symlink(ROOT / "generated", tree / "generated")
    os.symlink(ROOT / "tests" / "typing_samples.py", tree / "typing_samples.py")
    golden = tree / "golden"  # the golden modules, multi-machine files among them
    golden.mkdir()
    (golden / "__init__.py").write_text("")
    for expected in (ROOT / "tests" / "cases" / "golden").glob("*.py.expected"):
        os.symlink(expected, golden / expected.name.removesuffix(".expected"))
    return tree


def test_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    tree = type_tree(tmp_path)
    result = run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                  "--config-file", str(ROOT / "pyproject.toml"),
                  "--cache-dir", str(tmp_path / "cache"), "-p", "fsmc", "-p", "generated",
                  "-p", "golden", "-m", "typing_samples"], tree)
    assert result.returncode == 0, result.stdout + result.stderr
