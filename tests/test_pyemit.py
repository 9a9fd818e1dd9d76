"""The emitter with hostile text: every doc string a spec can carry builds a module that
compiles, imports, gives the text back exactly and runs none of it.

`FSMC_EMIT_EXAMPLES` sets the property tests' example count (default 200 in the suite; run it
once with 10,000+ after changing the emitter).
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.compiler.pyemit import docstring, pyliteral
from fsmc.dsl.printer import quote
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.generation import compile_spec
from tests.hostile import LINE_BREAKS, SPEC_TEXTS
from tests.test_build import load_module

EXAMPLES = int(os.environ.get("FSMC_EMIT_EXAMPLES", "200"))


# Every character but surrogates (UTF-8 cannot carry them) and the two a spec cannot hold: a
# string has no escape for a carriage return, and a NUL makes the file binary (E001).
SPEC_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00")
MARKER = "MARKER_PATH"
# Text that would do something if it landed in the module as code or as a template.
HOSTILE = [
    '"', '"""', "'''", "\\", "\\n", '\\"', "\n", "\t", *LINE_BREAKS[:-1], "\ufeff", "\u200b",
    "\u202e", "\U000e0001", "\U0010ffff", "\x7f", "{{ 7 * 7 }}", "{% raw %}", "{#", "#}",
    *SPEC_TEXTS,
    f'"); open({MARKER!r}, "w"); ("', f'"""; open({MARKER!r}, "w"); """',
    f"\n__import__('pathlib').Path({MARKER!r}).touch()\n", "# noqa", "\\N{BULLET}", "\\x00",
]
TEXTS = st.lists(st.text(SPEC_CHARACTERS, max_size=12) | st.sampled_from(HOSTILE),
                 max_size=6).map("".join)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_a_literal_is_the_text_on_one_printable_line(text: str) -> None:
    literal = pyliteral(text)
    assert ast.literal_eval(literal) == text
    assert literal.isprintable() and len(literal.splitlines()) == 1


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_an_exact_docstring_is_the_text(text: str) -> None:
    source = f"class C:\n    {docstring(text, 4, exact=True)}\n"
    module: dict[str, object] = {}
    exec(compile(source, "doc.py", "exec"), module)
    assert module["C"].__doc__ == text  # type: ignore[attr-defined]


@pytest.mark.parametrize("brk", LINE_BREAKS[:-1], ids=[f"U+{ord(c):04X}" for c in LINE_BREAKS[:-1]])
def test_every_unicode_line_break_stays_inside_its_literal(brk: str) -> None:
    doc = f"a{brk}b"
    spec = (f"machine M {quote(doc)} {{ initial A {quote(doc)}; final B {quote(doc)};"
            f" A -> B : Go }}")
    module = compile_spec(spec, "breaks")
    assert module.M.__doc__ == doc
    assert module.M.SPEC.docs == {"A": doc, "B": doc}


def test_build_writes_a_module_that_compiles_for_the_line_separator(tmp_path: Path) -> None:
    """The issue's reproduction, through `fsmc build` as a user runs it."""
    spec = tmp_path / "m.fsm"
    spec.write_text('machine M "a\u2028b" { initial A; A -> A : Go }\n', encoding="utf-8")
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--no-svg"]) == 0
    module = load_module(tmp_path / "out" / "m.py", "line_separator_m")
    assert module.M.__doc__ == "a\u2028b"


def spec_with_docs(docs: list[str]) -> str:
    machine, initial, entry, state, final = (quote(d) for d in docs)
    return (f"machine Hostile {machine} {{\n"
            f"    initial Start {initial}\n    entry Side {entry}\n    state Middle {state}\n"
            f"    final End {final}\n"
            "    Start -> Middle : Go\n    Middle, Side -> End : Finish\n}\n")


def test_docs_of_every_kind_round_trip_through_build() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        marker = root / "pwned"
        runs = iter(range(10**9))

        @settings(max_examples=EXAMPLES, deadline=None)
        @given(st.lists(TEXTS, min_size=5, max_size=5))
        def build_and_import(docs: list[str]) -> None:
            docs = [d.replace(MARKER, str(marker)) for d in docs]
            run = next(runs)
            spec = root / f"hostile{run}.fsm"
            spec.write_text(spec_with_docs(docs), encoding="utf-8")
            out = root / f"out{run}"
            err = io.StringIO()
            code = main(["build", str(spec), "-o", str(out), "--no-svg"],
                        stdout=io.StringIO(), stderr=err)
            assert code == 0, err.getvalue()
            module = load_module(out / f"hostile{run}.py", f"hostile_doc_{run}")
            assert not marker.exists()
            machine = module.Hostile
            assert machine.__doc__ == docs[0] and machine.SPEC.doc == docs[0]
            assert machine.SPEC.docs == dict(zip(("Start", "Side", "Middle", "End"), docs[1:],
                                                 strict=True))
            assert machine("r").go() is machine.State.Middle
            shutil.rmtree(out)
            spec.unlink()

        build_and_import()
        assert next(runs) >= EXAMPLES  # so many builds ran (the count a long run reports)
