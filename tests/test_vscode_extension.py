"""editors/vscode: the manifest, the TextMate grammar, and (with npm) `vsce package`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXTENSION = ROOT / "editors" / "vscode"


def grammar_patterns(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(grammar_patterns(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(grammar_patterns(item))
    return found


def test_manifest_wires_language_grammar_and_server() -> None:
    manifest = json.loads((EXTENSION / "package.json").read_text("utf-8"))
    language = manifest["contributes"]["languages"][0]
    assert language["id"] == "fsm" and language["extensions"] == [".fsm"]
    grammar = manifest["contributes"]["grammars"][0]
    assert (EXTENSION / grammar["path"]).is_file() and grammar["scopeName"] == "source.fsm"
    assert (EXTENSION / language["configuration"]).is_file()
    assert manifest["contributes"]["configuration"]["properties"]["fsmc.command"]["default"] \
        == ["fsmc", "lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]


def test_grammar_patterns_compile_and_scope_a_spec() -> None:
    grammar = json.loads((EXTENSION / "syntaxes" / "fsm.tmLanguage.json").read_text("utf-8"))
    patterns = grammar_patterns(grammar)
    assert len(patterns) > 10
    for pattern in patterns:  # the grammar uses the subset Oniguruma and Python share
        re.compile(pattern)
    line = "    Closed -> Open : Pull if ok do act [usage]"
    scoped = {}
    for rule in grammar["patterns"]:
        if "match" in rule and "captures" in rule:
            for found in re.finditer(rule["match"], line):
                for group, capture in rule["captures"].items():
                    scoped[found.group(int(group))] = capture["name"]
    assert scoped["Pull"] == "entity.name.label.event.fsm"
    assert scoped["ok"] == scoped["act"] == "entity.name.function.fsm"


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("npx") is None,
                    reason="npm is not installed")
def test_extension_packages_with_vsce(tmp_path: Path) -> None:
    work = tmp_path / "vscode"
    shutil.copytree(EXTENSION, work, ignore=shutil.ignore_patterns("node_modules", "*.vsix"))
    for command in (["npm", "install", "--no-audit", "--no-fund"],
                    ["npx", "--yes", "@vscode/vsce", "package", "--skip-license"]):
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600,
                              check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
    package = work / "fsmc-0.1.0.vsix"
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
    assert {"extension/package.json", "extension/extension.js",
            "extension/syntaxes/fsm.tmLanguage.json",
            "extension/node_modules/vscode-languageclient/package.json"} <= names
