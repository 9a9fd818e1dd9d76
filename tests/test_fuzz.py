"""Property tests and a mutation fuzzer for the front end.

- random valid specs round-trip (text → model → canonical text → the same model);
- the lexer's diverted-transition fast path builds exactly the model the plain LALR parse does;
- random mutations of valid specs, and arbitrary bytes, never raise anything: they give
  diagnostics at positions inside the file.

`FSMC_FUZZ_CASES` sets the mutation fuzzer's case count (default 400 in the suite; the long
run in bench/fuzz.py uses 10,000+).
"""

from __future__ import annotations

import os
import random

from fsmc.compiler.project import check_results
from fsmc.dsl.builder import build
from fsmc.dsl.loader import load_bytes, load_text
from fsmc.dsl.model import Machine, SpecFile
from fsmc.dsl.parser import grammar
from fsmc.dsl.printer import print_spec, quote
from fsmc.dsl.spans import SourceText
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DESIGN_EXAMPLE, ROOT

CASES = int(os.environ.get("FSMC_FUZZ_CASES", "400"))

names = st.from_regex(r"\A[A-Z][a-z]{0,5}[0-9]?\Z").filter(
    lambda n: n.lower() not in {"machine", "initial", "final", "state", "states", "events",
                                "if", "unless", "do", "entry"})
doc_characters = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00")
docs = st.text(alphabet=doc_characters, max_size=20) | st.sampled_from(
    ['a "quoted" \\ doc', "tab\there", "line\nbreak"])


@st.composite
def spec_texts(draw: st.DrawFn) -> str:
    states = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    events = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    lines = [f"machine {draw(names)} {quote(draw(docs))} {{"]
    kinds = ["initial"] + [draw(st.sampled_from(["state", "final", "entry"])) for _ in states[1:]]
    for kind, state in zip(kinds, states, strict=True):
        doc = draw(st.none() | docs)
        lines.append(f"    {kind} {state}" + (f" {quote(doc)}" if doc is not None else ""))
    if draw(st.booleans()):
        lines.append(f"    events {', '.join(events)}")
    sources = [s for s, k in zip(states, kinds, strict=True) if k != "final"]
    for _ in range(draw(st.integers(0, 8))):
        source = draw(st.sampled_from(["*", ", ".join(
            draw(st.lists(st.sampled_from(sources), min_size=1, max_size=2, unique=True)))]))
        line = f"    {source} -> {draw(st.sampled_from(states))} : {draw(st.sampled_from(events))}"
        clauses = []
        if draw(st.booleans()):
            clauses.append(f"{draw(st.sampled_from(['if', 'unless']))} g{draw(st.integers(0, 2))}")
        if draw(st.booleans()):
            clauses.append(f"do a{draw(st.integers(0, 2))}")
        if draw(st.booleans()):
            clauses.append(f"[{', '.join(draw(st.lists(names, max_size=2)))}]")
        lines.append(" ".join([line, *draw(st.permutations(clauses))]))
    for _ in range(draw(st.integers(0, 2))):  # anywhere in the body: order is kept
        lines.insert(draw(st.integers(1, len(lines))),
                     f"    moved {draw(names)} -> {draw(st.sampled_from(states))}")
    lines.append("}")
    separator = draw(st.sampled_from(["\n", "\r\n", "\n\n", " ; \n"]))
    return separator.join(lines) + "\n"


def shape(spec: SpecFile) -> list[object]:
    """A model without positions (and without `*`, which printing expands)."""
    def machine(m: Machine) -> object:
        return (m.name.text, m.doc, [(d.name.text, d.kind, d.doc) for d in m.declarations],
                None if m.events is None else [e.text for e in m.events],
                [(t.source.text, t.target.text, t.event.text,
                  t.guard and (t.guard.name.text, t.guard.negated),
                  t.action and t.action.name.text, t.tag_names) for t in m.transitions],
                [(move.source.text, move.target.text) for move in m.moves])
    return [machine(m) for m in spec.machines]


@settings(max_examples=150, deadline=None)
@given(spec_texts())
def test_valid_specs_round_trip(text: str) -> None:
    first = load_text(text, "a.fsm")
    assert first.spec is not None and not any(d.code.startswith("E0") for d in first.diagnostics)
    printed = print_spec(first.spec)
    second = load_text(printed, "b.fsm")
    assert second.spec is not None, second.diagnostics
    assert shape(second.spec) == shape(first.spec)
    assert print_spec(second.spec) == printed


@settings(max_examples=150, deadline=None)
@given(spec_texts())
def test_diverted_transitions_build_the_same_model(text: str) -> None:
    fast = load_text(text, "a.fsm")
    assert fast.spec is not None
    source = SourceText("a.fsm", text)
    plain, diagnostics = build(grammar().parse(text), source, [])  # the lexer diverts nothing
    assert plain.machines == fast.spec.machines
    assert diagnostics == fast.diagnostics


def seeds() -> list[bytes]:
    texts = [DESIGN_EXAMPLE.encode()]
    texts.extend(p.read_bytes() for p in sorted((ROOT / "specs").glob("*.fsm")))
    texts.extend(p.read_bytes() for p in sorted((ROOT / "tests" / "cases").rglob("*.fsm")))
    return texts


FRAGMENTS = [b"->", b":", b"*", b"[", b"]", b",", b"{", b"}", b"\"", b"\\", b"#", b";", b"\n",
             b"\r\n", b"\t", b"if", b"unless", b"do", b"state", b"machine", b"entry", b"final",
             b"initial", b"events", b"\xff", b"\xef\xbb\xbf", b"\x00", b"\xe2\x82\xac", b"{{{{",
             b"A -> B : C", b"\"unterminated", b"\\q"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randint(0, len(buffer))
        if choice < 0.3 and buffer:
            del buffer[at:at + rng.randint(1, 8)]
        elif choice < 0.6:
            buffer[at:at] = rng.choice(FRAGMENTS)
        elif choice < 0.75 and buffer:
            buffer[min(at, len(buffer) - 1)] = rng.randint(0, 255)
        elif choice < 0.9:
            lines = bytes(buffer).split(b"\n")
            rng.shuffle(lines)
            buffer = bytearray(b"\n".join(lines))
        else:
            other = rng.choice(seeds())
            start = rng.randint(0, len(other))
            buffer[at:at] = other[start:start + rng.randint(1, 60)]
    return bytes(buffer)


def assert_only_diagnostics(data: bytes) -> None:
    result = load_bytes(data, "fuzz.fsm")
    project = check_results([result])
    lines = data.count(b"\n") + 1
    for diagnostic in project.diagnostics:
        assert 1 <= diagnostic.span.line <= lines + 1, diagnostic
        assert diagnostic.span.column >= 1, diagnostic
        assert diagnostic.message


def test_mutation_fuzzer_finds_no_traceback() -> None:
    rng = random.Random(20261125)
    corpus = seeds()
    for _ in range(CASES):
        assert_only_diagnostics(mutate(rng.choice(corpus), rng))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_diagnostics(data: bytes) -> None:
    assert_only_diagnostics(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="machine{}->:*[],;\"\\#\n \tifdostaeABC", max_size=120))
def test_spec_like_noise_gives_diagnostics(text: str) -> None:
    assert_only_diagnostics(text.encode())
