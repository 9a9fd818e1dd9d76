"""Where things are in a spec: source files and the spans that point into them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple


class Span(NamedTuple):
    """A range of a source file. Lines and columns are 1-based; columns count code points.

    `end_column` is the column just past the last character, so an empty span at the end of a
    line has `end_column == column`. (A named tuple: immutable, ordered by position, and cheap
    to build by the hundred thousand.)
    """

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.path, self.line, self.column, other.end_line, other.end_column)


@dataclass(frozen=True)
class SourceText:
    """The decoded text of one spec file, with fast offset → line/column conversion."""

    path: str
    text: str
    _line_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts = [0]
        find = self.text.find
        index = find("\n")
        while index >= 0:  # one step per line, not per character
            starts.append(index + 1)
            index = find("\n", index + 1)
        object.__setattr__(self, "_line_starts", tuple(starts))

    @property
    def line_count(self) -> int:
        return len(self._line_starts)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line ending."""
        if not 1 <= line <= len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end].rstrip("\r")

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based (line, column) of a 0-based character offset."""
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def span(self, start: int, end: int) -> Span:
        """The span covering character offsets [start, end)."""
        line, column = self.position(start)
        end_line, end_column = self.position(max(start, end))
        return Span(self.path, line, column, end_line, end_column)

    def end_of_line(self, line: int) -> Span:
        """An empty span just past the last character of a line (for "expected ..." errors)."""
        line = max(1, min(line, len(self._line_starts)))
        column = len(self.line_text(line)) + 1
        return Span(self.path, line, column, line, column)
