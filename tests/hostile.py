"""Hostile text, shared by the tests of every layer that carries text from a spec or a payload
(generated code, DOT and SVG, the review site, CloudEvents JSON, SSE, JSON Lines)."""

from __future__ import annotations

# Where `str.splitlines` breaks a line and Python's tokenizer does not, then the two both do.
LINE_BREAKS = ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\n", "\r")

# Text a spec can carry (no CR: a string has no escape for it; no NUL: E001, a binary file).
SPEC_TEXTS = (
    'a "quoted" \\ back\\slash \\n \\" \'\'\' """',
    "<script>alert(1)</script> & &amp; ]]> <!-- --> <b>bold</b> {{ 7 * 7 }} {% raw %}",
    "line\u2028sep\u2029par\x85nel\x0bvt\x0cff\x1cfs\x1dgs\x1ers\nnl\ttab",
    "\x01\x08\x1f\x7f\x9f \ufffe\uffff \ufeff\u200b\u202e right-to-left \U0001f600 \U0010ffff",
    "data: fake\n\nevent: x\nid: 1\n\n",
    '"); open("pwned", "w"); ("',
    "%0A %0D %00 \\x0b \\u2028",
)
# And what only a payload or an id can carry: CR, NUL and lone surrogates.
PAYLOAD_TEXTS = (*SPEC_TEXTS, "cr\r\nlf", "nul\x00", "lone \ud800 high \udfff low",
                 "\r\ndata: injected\r\n\r\n")
