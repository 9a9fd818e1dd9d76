"""`fsmc lsp` as an editor sees it: a real server process driven by pygls's client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp_client import Session, session

BROKEN = """\
machine Door "Une porte — «bien fermée» 🚪" {
    initial Closed "Fermée à clé? non 🔓"
    state Open
    state Open
    Closed -> Opne : Pull
    Open -> Closed : Push if shut_ok do slam
}
"""


def run(test: Callable[[Session, Path], Awaitable[None]], tmp_path: Path,
        capabilities: types.ClientCapabilities | None = None) -> None:
    async def main() -> None:
        async with session(tmp_path, capabilities) as state:
            await test(state, tmp_path)
    asyncio.run(main())


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def at(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def test_diagnostics_match_fsmc_check(tmp_path: Path) -> None:
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", BROKEN)
        found = await s.diagnostics(uri)
        by_code = {d.code: d for d in found}
        assert sorted(by_code) == ["E101", "E103"]
        duplicate = by_code["E103"]
        assert duplicate.range == types.Range(start=at(3, 10), end=at(3, 14))
        assert duplicate.related_information is not None
        assert duplicate.related_information[0].location.range.start == at(2, 10)
        assert "first declared here" in duplicate.related_information[0].message
        misspelt = by_code["E101"]
        assert misspelt.range == types.Range(start=at(4, 14), end=at(4, 18))
        assert misspelt.message == ("state `Opne` is not declared\n"
                                    "hint: did you mean `Open`?")
        assert misspelt.severity == types.DiagnosticSeverity.Error and misspelt.source == "fsmc"
    run(test, tmp_path)


def test_full_and_incremental_changes_are_debounced_into_diagnostics(tmp_path: Path) -> None:
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", BROKEN)
        assert len(await s.diagnostics(uri)) == 2
        # Incremental: fix the misspelt `Opne` (line 5, UTF-16 columns 14-18).
        version = s.change(uri, "Open", types.Range(start=at(4, 14), end=at(4, 18)))
        assert [d.code for d in await s.diagnostics(uri, version)] == ["E103"]
        # A burst of keystrokes: only the last version's diagnostics are published.
        for text in ("machine Door {\n  initial A\n  A -> ", "machine Door {\n  initial A\n"):
            s.change(uri, text)
        version = s.change(uri, "machine Door {\n  initial A\n}\n")
        assert await s.diagnostics(uri, version) == []
        versions = [p.version for p in s.published[uri]]
        assert version - 1 not in versions and version - 2 not in versions
    run(test, tmp_path)


def test_positions_are_utf16_after_non_ascii_text(tmp_path: Path) -> None:
    text = 'machine M "😀😀" { initial A "é😀" ; state Bé }\n'
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "m.fsm", text.replace("Bé", "B") + "machine N {\n initial X\n}\n")
        await s.diagnostics(uri)
        # `state B` follows `"é😀" ; ` : the emoji is two UTF-16 units, so B is at 38, not 37.
        line = text.split("\n")[0].replace("Bé", "B")
        column = len(line[:line.index("state B") + 6].encode("utf-16-le")) // 2
        hover = await s.client.text_document_hover_async(types.HoverParams(
            text_document=doc(uri), position=at(0, column)))
        assert hover is not None and "**state** `B`" in hover.contents.value  # type: ignore[union-attr]
        assert hover.range == types.Range(start=at(0, column), end=at(0, column + 1))
        symbols = await s.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=doc(uri)))
        assert symbols is not None
        machine = symbols[0]
        assert isinstance(machine, types.DocumentSymbol) and machine.children is not None
        a = machine.children[0]
        assert (a.name, a.selection_range.start.character) == ("A", line.index("A") + 2)
    run(test, tmp_path)


def test_hover_shows_doc_declaration_and_transitions(tmp_path: Path) -> None:
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", BROKEN)
        await s.diagnostics(uri)
        hover = await s.client.text_document_hover_async(types.HoverParams(
            text_document=doc(uri), position=at(5, 5)))
        assert hover is not None
        value = hover.contents.value  # type: ignore[union-attr]
        assert value.startswith("**state** `Open` of `Door`\n\nDeclared on line 3.")
        assert "Out (1):" in value and "Open -> Closed : Push if shut_ok do slam  (line 6)" in value
        hover = await s.client.text_document_hover_async(types.HoverParams(
            text_document=doc(uri), position=at(1, 14)))
        assert hover is not None and "Fermée à clé? non 🔓" in hover.contents.value  # type: ignore[union-attr]
    run(test, tmp_path)


def test_definition_references_and_guard_methods(tmp_path: Path) -> None:
    (tmp_path / "door_impl.py").write_text(
        "from generated.door import Door\n\n\nclass MyDoor(Door):\n"
        "    def shut_ok(self, **payload):\n        return True\n")
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", BROKEN.replace("Opne", "Open"))
        await s.diagnostics(uri)
        found = await s.client.text_document_definition_async(types.DefinitionParams(
            text_document=doc(uri), position=at(5, 13)))
        assert isinstance(found, list) and found[0].range.start == at(1, 12)
        found = await s.client.text_document_definition_async(types.DefinitionParams(
            text_document=doc(uri), position=at(5, 29)))
        assert isinstance(found, list) and len(found) == 1
        assert found[0].uri == (root / "door_impl.py").resolve().as_uri()
        assert found[0].range.start == at(4, 8)
        refs = await s.client.text_document_references_async(types.ReferenceParams(
            text_document=doc(uri), position=at(2, 11),
            context=types.ReferenceContext(include_declaration=False)))
        assert refs is not None
        assert sorted((r.range.start.line, r.range.start.character) for r in refs) == [
            (4, 14), (5, 4)]
    run(test, tmp_path)


async def refused(call: Awaitable[Any]) -> str:
    try:
        await call
    except Exception as error:  # pygls raises the server's JSON-RPC error
        return str(error)
    raise AssertionError("the request was not refused")


def test_rename_a_state_and_the_refusals(tmp_path: Path) -> None:
    text = BROKEN.replace("Opne", "Open").replace("    state Open\n    state Open\n",
                                                  "    state Open\n")
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", text)
        await s.diagnostics(uri)
        def rename(name: str, line: int = 2, character: int = 11) -> Awaitable[Any]:
            return s.client.text_document_rename_async(types.RenameParams(
                text_document=doc(uri), position=at(line, character), new_name=name))
        edit = await rename("Ajar")
        assert edit is not None and edit.changes is not None
        assert sorted((e.range.start.line, e.range.start.character, e.new_text)
                      for e in edit.changes[uri]) == [(2, 10, "Ajar"), (3, 14, "Ajar"),
                                                       (4, 4, "Ajar")]
        assert "keyword" in await refused(rename("states"))
        assert "already a state" in await refused(rename("Closed"))
        assert "not a name" in await refused(rename("9lives"))
        prepared = await s.client.text_document_prepare_rename_async(types.PrepareRenameParams(
            text_document=doc(uri), position=at(4, 29)))
        assert prepared is None  # a guard is not renamed here
    run(test, tmp_path)


def test_quick_fix_formatting_completion_and_lens(tmp_path: Path) -> None:
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", BROKEN)
        found = await s.diagnostics(uri)
        misspelt = next(d for d in found if d.code == "E101")
        actions = await s.client.text_document_code_action_async(types.CodeActionParams(
            text_document=doc(uri), range=misspelt.range,
            context=types.CodeActionContext(diagnostics=[misspelt])))
        assert actions is not None and len(actions) == 1
        action = actions[0]
        assert isinstance(action, types.CodeAction) and action.title == "Change to `Open`"
        assert action.edit is not None and action.edit.changes is not None
        assert action.edit.changes[uri][0].new_text == "Open"
        edits = await s.client.text_document_formatting_async(types.DocumentFormattingParams(
            text_document=doc(uri), options=types.FormattingOptions(tab_size=4,
                                                                   insert_spaces=True)))
        assert edits is not None and "    Closed -> Opne   : Pull\n" in edits[0].new_text
        completion = await s.client.text_document_completion_async(types.CompletionParams(
            text_document=doc(uri), position=at(4, 14)))
        assert completion is not None and not isinstance(completion, list)
        assert {"Closed", "Open"} <= {item.label for item in completion.items}
        lenses = await s.client.text_document_code_lens_async(types.CodeLensParams(
            text_document=doc(uri)))
        assert lenses is not None and lenses[0].command is not None
        assert lenses[0].command.title == "Show diagram"
    run(test, tmp_path)


def test_show_diagram_command_writes_the_diagram(tmp_path: Path) -> None:
    text = "machine Door {\n  initial Closed\n  state Open\n  Closed -> Open : Pull\n}\n"
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "door.fsm", text)
        await s.diagnostics(uri)
        path = await s.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="fsmc.showDiagram", arguments=[uri, "Door"]))
        written = Path(path)
        assert written.name in ("Door.svg", "Door.dot")
        assert "Closed" in written.read_text("utf-8")
        assert "errors" in await refused(s.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="fsmc.showDiagram",
                                       arguments=[s.open(root / "bad.fsm", BROKEN), "Door"])))
    run(test, tmp_path)


@pytest.mark.parametrize("seed", range(3))
def test_server_survives_mutated_documents(tmp_path: Path, seed: int) -> None:
    """Every request on broken text answers (possibly with nothing) and the server lives."""
    import random

    from tests.test_fuzz import mutate, seeds
    rng = random.Random(seed)
    async def test(s: Session, root: Path) -> None:
        uri = s.open(root / "fuzz.fsm", BROKEN)
        for _ in range(15):
            text = mutate(rng.choice(seeds()), rng).decode("utf-8", errors="replace")
            version = s.change(uri, text)
            await s.diagnostics(uri, version)
            lines = text.split("\n")
            line = rng.randrange(len(lines))
            position = at(line, rng.randint(0, len(lines[line]) + 2))
            await s.client.text_document_hover_async(types.HoverParams(
                text_document=doc(uri), position=position))
            await s.client.text_document_completion_async(types.CompletionParams(
                text_document=doc(uri), position=position))
            await s.client.text_document_formatting_async(types.DocumentFormattingParams(
                text_document=doc(uri), options=types.FormattingOptions(
                    tab_size=4, insert_spaces=True)))
    run(test, tmp_path)
