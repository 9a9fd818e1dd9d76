"""JSON on one line for every reader: CloudEvents bodies, SSE `data:` lines, JSON Lines files.

`json.dumps(..., ensure_ascii=False)` escapes the C0 controls (so no `\\n` or `\\r` is left raw)
but leaves U+0085, U+2028 and U+2029 as they are, which `str.splitlines` (and JavaScript
before ES2019) take for line breaks, and lone surrogates, which UTF-8 cannot encode (a payload
string can hold one). `dumps` escapes those too: the text is still the same JSON value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_UNSAFE = re.compile("[\\x85\\u2028\\u2029\\ud800-\\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


def dumps(value: object, *, default: Callable[[Any], Any] | None = str,
          allow_nan: bool = True) -> str:
    """Compact JSON of `value`, non-ASCII text kept, on one line under any line splitting,
    encodable as UTF-8."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default,
                      allow_nan=allow_nan)
    if text.isascii() or not _UNSAFE.search(text):  # isascii: a C scan, the common case
        return text
    return _UNSAFE.sub(_escape, text)
