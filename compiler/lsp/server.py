"""`fsmc lsp`: the pygls language server (stdio). Each document is analysed at most once per
version: diagnostics are published `DEBOUNCE_S` after the last change of a burst, and any
request analyses the current version first if that has not happened yet."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from . import features
from .hooks import MethodFinder
from .index import Analysis, analyse
from .positions import PositionMap

DEBOUNCE_S = 0.03


@dataclass
class Document:
    """The server's view of one open document."""

    version: int | None
    analysis: Analysis
    positions: PositionMap
    parsed: Analysis  # the latest version that parsed (names for completion while typing)


class SpecServer(LanguageServer):
    """The server object: documents by URI, pending diagnostics by URI."""

    def __init__(self, version: str) -> None:
        super().__init__("fsmc", version,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents: dict[str, Document] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.finder = MethodFinder()
        self.diagram_folder = Path(tempfile.gettempdir()) / "fsmc-diagrams"

    def encoding(self) -> str:
        chosen = getattr(self.server_capabilities, "position_encoding", None) or "utf-16"
        return str(chosen.value if hasattr(chosen, "value") else chosen)

    def current(self, uri: str) -> Document:
        """The analysis of the document's current text (made now if it is stale)."""
        text_document = self.workspace.get_text_document(uri)
        known = self.documents.get(uri)
        if known is not None and known.version == text_document.version and \
                known.analysis.text == text_document.source:
            return known
        text = text_document.source
        path = to_fs_path(uri) or uri
        analysis = analyse(text, path)
        parsed = analysis if analysis.spec is not None or known is None else known.parsed
        document = Document(text_document.version, analysis,
                            PositionMap(text, self.encoding()), parsed)
        self.documents[uri] = document
        return document

    def publish(self, uri: str) -> None:
        document = self.current(uri)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=document.version,
            diagnostics=features.diagnostics(document.analysis, document.positions, uri)))

    def schedule(self, uri: str) -> None:
        """Publish diagnostics after a pause in the edits."""
        pending = self.pending.pop(uri, None)
        if pending is not None:
            pending.cancel()

        async def later() -> None:
            await asyncio.sleep(DEBOUNCE_S)
            self.pending.pop(uri, None)
            if uri in self.workspace.text_documents:
                self.publish(uri)

        self.pending[uri] = asyncio.get_running_loop().create_task(later())

    def roots(self) -> list[Path]:
        """The workspace folders (where guard and action methods are looked for)."""
        folders = [to_fs_path(f.uri) for f in self.workspace.folders.values()]
        roots = [Path(f) for f in folders if f]
        if not roots and self.workspace.root_path:
            roots = [Path(self.workspace.root_path)]
        return roots


def create_server(version: str) -> SpecServer:
    server = SpecServer(version)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SpecServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SpecServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: SpecServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SpecServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        pending = ls.pending.pop(uri, None)
        if pending is not None:
            pending.cancel()
        ls.documents.pop(uri, None)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: SpecServer, params: types.HoverParams) -> types.Hover | None:
        document = ls.current(params.text_document.uri)
        return features.hover(document.analysis, document.positions, params.position)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: SpecServer, params: types.DefinitionParams) -> list[types.Location]:
        uri = params.text_document.uri
        document = ls.current(uri)
        return features.definition(document.analysis, document.positions, uri,
                                   params.position, ls.finder, ls.roots())

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(ls: SpecServer, params: types.ReferenceParams) -> list[types.Location]:
        uri = params.text_document.uri
        document = ls.current(uri)
        return features.references(document.analysis, document.positions, uri, params.position,
                                   params.context.include_declaration)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
    def highlight(ls: SpecServer,
                  params: types.DocumentHighlightParams) -> list[types.DocumentHighlight]:
        document = ls.current(params.text_document.uri)
        return features.highlights(document.analysis, document.positions, params.position)

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    def prepare_rename(ls: SpecServer, params: types.PrepareRenameParams
                       ) -> types.PrepareRenamePlaceholder | None:
        document = ls.current(params.text_document.uri)
        return features.prepare_rename(document.analysis, document.positions, params.position)

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    def rename(ls: SpecServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
        uri = params.text_document.uri
        document = ls.current(uri)
        try:
            return features.rename(document.analysis, document.positions, uri, params.position,
                                   params.new_name)
        except features.RenameRefused as refused:
            raise JsonRpcInvalidParams(str(refused)) from None

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(
        trigger_characters=[">", ":", " ", "["]))
    def completion(ls: SpecServer, params: types.CompletionParams) -> types.CompletionList:
        document = ls.current(params.text_document.uri)
        items = features.completion(document.analysis, document.parsed, document.positions,
                                    params.position)
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(ls: SpecServer,
                params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        document = ls.current(params.text_document.uri)
        return features.symbols(document.analysis, document.positions)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: SpecServer,
                   params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        document = ls.current(params.text_document.uri)
        return features.formatting(document.analysis.text, document.positions)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.QuickFix]))
    def code_action(ls: SpecServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        document = ls.current(uri)
        return features.code_actions(document.analysis, document.positions, uri,
                                     params.context.diagnostics)

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    def code_lens(ls: SpecServer, params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        document = ls.current(uri)
        return features.code_lenses(document.analysis, document.positions, uri)

    @server.command(features.SHOW_DIAGRAM)
    async def show_diagram(ls: SpecServer, uri: str, machine: str) -> str:
        """Write the machine's diagram and ask the client to open it; returns its path."""
        if uri not in ls.workspace.text_documents:
            raise JsonRpcInvalidRequest(f"{uri} is not open")
        document = ls.current(uri)
        try:
            path = features.diagram(document.analysis, machine, ls.diagram_folder)
        except ValueError as error:
            raise JsonRpcInvalidRequest(str(error)) from None
        window = ls.client_capabilities.window
        if window is not None and window.show_document is not None and \
                window.show_document.support:
            await ls.window_show_document_async(types.ShowDocumentParams(
                uri=path.resolve().as_uri(), external=True))
        return str(path)

    return server


def serve(version: str, **streams: Any) -> None:
    create_server(version).start_io(**streams)
