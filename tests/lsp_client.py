"""A scripted LSP client (pygls's) driving a real `fsmc lsp` process, for the tests and the
benchmark: open documents, edit them, wait for their diagnostics, send requests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

SERVER = [sys.executable, "-m", "fsmc.compiler.cli", "lsp"]


class Session:
    """One server process and what it published."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.published: dict[str, list[types.PublishDiagnosticsParams]] = {}
        self.arrived = asyncio.Condition()
        self.versions: dict[str, int] = {}

    async def _record(self, params: types.PublishDiagnosticsParams) -> None:
        async with self.arrived:
            self.published.setdefault(params.uri, []).append(params)
            self.arrived.notify_all()

    async def diagnostics(self, uri: str, version: int | None = None,
                          timeout: float = 20.0) -> list[types.Diagnostic]:
        """The diagnostics published for `uri` (for `version`, when given), waiting for them."""
        def ready() -> bool:
            sent = self.published.get(uri, [])
            return bool(sent) and (version is None or sent[-1].version == version)
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(ready), timeout)
            return list(self.published[uri][-1].diagnostics)

    def open(self, path: Path, text: str) -> str:
        uri = path.resolve().as_uri()
        self.versions[uri] = 1
        self.published.pop(uri, None)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="fsm", version=1,
                                                 text=text)))
        return uri

    def change(self, uri: str, text: str, at: types.Range | None = None) -> int:
        """Replace the document (or, with `at`, that range: an incremental change)."""
        self.versions[uri] += 1
        change: types.TextDocumentContentChangeEvent = (
            types.TextDocumentContentChangeWholeDocument(text=text) if at is None else
            types.TextDocumentContentChangePartial(range=at, text=text))
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=self.versions[uri]), content_changes=[change]))
        return self.versions[uri]


@asynccontextmanager
async def session(root: Path, capabilities: types.ClientCapabilities | None = None
                  ) -> AsyncIterator[Session]:
    client = LanguageClient("fsmc-tests", "1")
    state = Session(client)

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    async def published(params: types.PublishDiagnosticsParams) -> None:
        await state._record(params)

    await client.start_io(*SERVER)
    try:
        await client.initialize_async(types.InitializeParams(
            capabilities=capabilities or types.ClientCapabilities(),
            root_uri=root.resolve().as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.resolve().as_uri(), name="w")]))
        client.initialized(types.InitializedParams())
        yield state
        await asyncio.wait_for(client.shutdown_async(None), 10)
    finally:
        client.exit(None)  # the server stops on it, even after a failed test
        await asyncio.wait_for(client.stop(), 10)
