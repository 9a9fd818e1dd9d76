"""The emitter's last line of defence: only plain ASCII identifiers are written as code."""

from __future__ import annotations

import keyword
import re

import pytest
from fsmc.compiler.naming import is_identifier
from fsmc.compiler.pyemit import EmitError, ident
from hypothesis import given
from hypothesis import strategies as st

PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@given(st.text(max_size=12) | st.from_regex(PLAIN, fullmatch=True))
def test_is_identifier_is_exactly_an_ascii_python_name(text: str) -> None:
    assert is_identifier(text) == bool(PLAIN.fullmatch(text))


@pytest.mark.parametrize("name", ["VirtualMachine", "start_requested", "_S", "S0", "x"])
def test_ident_writes_plain_names(name: str) -> None:
    assert ident(name) == name


@pytest.mark.parametrize("name", ["", "0abc", "class", "None", "a-b", "a b", "Zé", "abc\n",
                                  "abc\r\n", "a.b", "x;import os"])
def test_ident_refuses_anything_else(name: str) -> None:
    with pytest.raises(EmitError, match="cannot be written as a Python name"):
        ident(name)


def test_every_keyword_is_refused() -> None:
    for word in keyword.kwlist:
        with pytest.raises(EmitError):
            ident(word)
