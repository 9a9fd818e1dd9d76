"""The language server's features as pure functions (`fsmc.compiler.lsp.features`): UTF-16
conversion, and a fuzz: on mutated specs every feature answers at every kind of position
without raising (a server crash on any input is a bug)."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest
from fsmc.compiler.lsp import features
from fsmc.compiler.lsp.hooks import MethodFinder
from fsmc.compiler.lsp.index import analyse
from fsmc.compiler.lsp.positions import UTF8, UTF16, UTF32, PositionMap
from lsprotocol import types

from tests.test_fuzz import mutate, seeds

CASES = int(os.environ.get("FSMC_FUZZ_CASES", "400")) // 4


@pytest.mark.parametrize(("encoding", "column"), [(UTF16, 5), (UTF8, 8), (UTF32, 4)])
def test_positions_in_each_encoding(encoding: str, column: int) -> None:
    positions = PositionMap('"é😀" X\r\nY', encoding)
    assert positions.to_client(0, 4) == types.Position(line=0, character=column)
    assert positions.from_client(types.Position(line=0, character=column)) == (0, 4)
    assert positions.line(0) == '"é😀" X' and positions.line(5) == ""
    assert positions.whole().end == types.Position(line=1, character=1)


def test_rename_refusals_name_the_reason() -> None:
    analysis = analyse("machine M {\n  initial A\n  state B\n  A -> B : Go\n}\n", "m.fsm")
    positions = PositionMap(analysis.text)
    at = types.Position(line=3, character=7)
    edit = features.rename(analysis, positions, "u", at, "entry")  # a soft keyword is a name
    assert edit is not None and edit.changes is not None and len(edit.changes["u"]) == 2
    for name, reason in [("if", "keyword"), ("A", "already a state"), ("a-b", "not a name")]:
        with pytest.raises(features.RenameRefused, match=reason):
            features.rename(analysis, positions, "u", at, name)
    with pytest.raises(features.RenameRefused, match="only states and events"):
        features.rename(analysis, positions, "u", types.Position(line=0, character=9), "N")


def test_every_feature_answers_on_mutated_specs(tmp_path: Path) -> None:
    rng = random.Random(26)
    finder = MethodFinder()
    corpus = seeds()
    for _ in range(CASES):
        text = mutate(rng.choice(corpus), rng).decode("utf-8", errors="replace")
        analysis = analyse(text, "fuzz.fsm")
        good = analyse(corpus[0].decode(), "good.fsm")
        positions = PositionMap(text)
        features.diagnostics(analysis, positions, "u")
        features.symbols(analysis, positions)
        features.code_lenses(analysis, positions, "u")
        features.formatting(text, positions)
        found = features.diagnostics(analysis, positions, "u")
        features.code_actions(analysis, positions, "u", found)
        lines = text.split("\n")
        for _ in range(6):
            line = rng.randrange(len(lines) + 1)
            at = types.Position(line=line, character=rng.randint(0, 80))
            features.hover(analysis, positions, at)
            features.definition(analysis, positions, "u", at, finder, [tmp_path])
            features.references(analysis, positions, "u", at, True)
            features.highlights(analysis, positions, at)
            features.prepare_rename(analysis, positions, at)
            with contextlib.suppress(features.RenameRefused):
                features.rename(analysis, positions, "u", at, rng.choice(["New", "if", "A"]))
            features.completion(analysis, good, positions, at)
            features.completion(analysis, analysis, positions, at)
