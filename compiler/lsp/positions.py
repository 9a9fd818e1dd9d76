"""Spans (1-based lines, columns in code points) ↔ LSP positions (0-based, in the client's
units: UTF-16 code units unless the client negotiated UTF-8 or UTF-32)."""

from __future__ import annotations

from fsmc.dsl.spans import Span
from lsprotocol import types

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(char: str, encoding: str) -> int:
    point = ord(char)
    if encoding == UTF32:
        return 1
    if encoding == UTF16:
        return 2 if point > 0xFFFF else 1
    return 1 if point < 0x80 else 2 if point < 0x800 else 3 if point < 0x10000 else 4


class PositionMap:
    """Position conversion for one text. Lines split at `\\n` (a `\\r` before it belongs to the
    line ending); ASCII lines (most of a spec) convert without looking at their characters."""

    def __init__(self, text: str, encoding: str = UTF16) -> None:
        self.lines = [line.removesuffix("\r") for line in text.split("\n")]
        self.encoding = encoding

    def line(self, index: int) -> str:
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def to_client(self, line: int, column: int) -> types.Position:
        """0-based line and code-point column → LSP position."""
        text = self.line(line)
        column = max(0, min(column, len(text)))
        if self.encoding == UTF32 or text.isascii():
            return types.Position(line=max(line, 0), character=column)
        return types.Position(line=line, character=sum(
            _units(char, self.encoding) for char in text[:column]))

    def from_client(self, position: types.Position) -> tuple[int, int]:
        """LSP position → 0-based line and code-point column (clamped to the line)."""
        text = self.line(position.line)
        if self.encoding == UTF32 or text.isascii():
            return position.line, min(position.character, len(text))
        units = 0
        for index, char in enumerate(text):
            if units >= position.character:
                return position.line, index
            units += _units(char, self.encoding)
        return position.line, len(text)

    def range(self, span: Span) -> types.Range:
        return types.Range(start=self.to_client(span.line - 1, span.column - 1),
                           end=self.to_client(span.end_line - 1, span.end_column - 1))

    def whole(self) -> types.Range:
        """The range of the whole text (for edits that replace it)."""
        last = len(self.lines) - 1
        return types.Range(start=types.Position(line=0, character=0),
                           end=self.to_client(last, len(self.lines[last])))
