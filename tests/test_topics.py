"""AMQP topic-exchange matching: the rules as a table, validation, and a property test against a
plain recursive reference over a small alphabet (empty words included)."""

from __future__ import annotations

import itertools
import pickle

import pytest
from fsmc.runtime.topics import (
    MAX_PATTERN_BYTES,
    TopicPattern,
    compile_pattern,
    pattern_warning,
    split_words,
    topic_matches,
    validate_pattern,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def reference(pattern: list[str], key: list[str]) -> bool:
    """RabbitMQ's `match_words`, written as plainly as possible."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference(rest, key) or (bool(key) and reference(pattern, key[1:]))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference(rest, key[1:])


TABLE = [
    # pattern, key, matches
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("#.#", "", True),
    ("#.#", "a", True),
    ("#.#", "a.b.c", True),
    ("#.#.#", "a.b", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    ("", "", True),
    ("", "a", False),
    ("a", "", False),
    ("a", "a", True),
    ("a", "A", False),
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("a.#", "b.a", False),
    ("a.#", "a.", True),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "ba", False),
    ("*.b", "b", False),
    ("*.b", "a.b", True),
    ("*.b", ".b", True),
    ("*.b", "a.c.b", False),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.b", "a..b", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("*.#", "a.b.c", True),
    ("#.*.#", "", False),
    ("#.*.#", "x", True),
    # empty words are words
    ("a..b", "a..b", True),
    ("a.b", "a..b", False),
    ("a.*.b", "a..b", True),
    ("*.*", ".", True),
    (".", ".", True),
    (".", "", False),
    ("a.*", "a.", True),
    ("a.", "a.", True),
    ("a.", "a", False),
    (".a", ".a", True),
    (".#", ".", True),
    (".#", "", False),
    (".#", ".a.b", True),
    ("*.#", ".", True),
    # `*` and `#` are wildcards only as whole words
    ("a*", "a*", True),
    ("a*", "ab", False),
    ("#b", "#b", True),
    ("#b", "b", False),
    ("**", "**", True),
    ("**", "a", False),
    ("a.b*.#", "a.b*.c", True),
    ("a.b*.#", "a.bc.c", False),
    # regex metacharacters are literal
    ("a+.(b)", "a+.(b)", True),
    ("a+.(b)", "aa.b", False),
    ("[x]", "x", False),
    ("$", "$", True),
    ("\\", "\\", True),
    # words may hold any character but a dot
    ("a b.*", "a b.c d", True),
    ("é.*", "é.ü", True),
    ("*", "line\nbreak", True),
    ("#.x", "line\n.x", True),
    # the routing key of a StateChanged
    ("VirtualMachine.#", "VirtualMachine.Running.StopRequested.Stopping", True),
    ("*.Running.*.*", "VirtualMachine.Running.StopRequested.Stopping", True),
    ("#.Stopping", "VirtualMachine.Running.StopRequested.Stopping", True),
    ("VirtualMachine.*.StopRequested", "VirtualMachine.Running.StopRequested.Stopping", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), TABLE)
def test_wildcard_table(pattern: str, key: str, expected: bool) -> None:
    assert TopicPattern(pattern).matches(key) is expected
    assert topic_matches(pattern, key) is expected
    assert reference(split_words(pattern), split_words(key)) is expected  # the table is right


def test_split_words() -> None:
    assert split_words("") == []
    assert split_words(".") == ["", ""]
    assert split_words("a..b") == ["a", "", "b"]
    assert split_words("a.") == ["a", ""]


def test_exhaustive_small_alphabet() -> None:
    """Every pattern and key of up to three words over an alphabet with the wildcards, an
    empty word and a word that merely contains `*`."""
    alphabet = ["a", "", "*", "#", "a*"]
    shapes = [()] + [w for n in (1, 2, 3) for w in itertools.product(alphabet, repeat=n)
                     if w != ("",)]
    for pattern_words in shapes:
        pattern = TopicPattern(".".join(pattern_words))
        for key_words in shapes:
            key = ".".join(key_words)
            assert pattern.matches(key) is reference(list(pattern_words), split_words(key)), \
                (pattern, key)


words = st.sampled_from(["a", "b", "", "*", "#", "ab", "a*"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(words, max_size=7), st.lists(st.sampled_from(["a", "b", "", "ab", "*", "#"]),
                                              max_size=9))
def test_matches_reference(pattern_words: list[str], key_words: list[str]) -> None:
    pattern = ".".join(pattern_words)
    key = ".".join(key_words)
    expected = reference(split_words(pattern), split_words(key))
    assert TopicPattern(pattern).matches(key) is expected


def test_many_hashes_do_not_backtrack_exponentially() -> None:
    """A pattern with many `#` against a long key that almost matches: a backtracking regular
    expression would take ages (the notification service accepts patterns from users)."""
    pattern = TopicPattern(".".join(["#", "a"] * 12 + ["b"]))
    assert pattern.matches(".".join(["a"] * 200)) is False
    assert pattern.matches(".".join(["a"] * 200 + ["b"])) is True


def test_validate_pattern() -> None:
    assert validate_pattern("a.*.#") == "a.*.#"
    assert validate_pattern("") == ""
    assert validate_pattern("a*.#b..") == "a*.#b.."  # legal in RabbitMQ: literal words
    assert validate_pattern("x" * MAX_PATTERN_BYTES) == "x" * MAX_PATTERN_BYTES
    with pytest.raises(ValueError, match="256 bytes long in UTF-8"):
        validate_pattern("x" * 256)
    with pytest.raises(ValueError, match="bytes long in UTF-8"):
        validate_pattern("é" * 128)  # 128 characters, 256 bytes
    with pytest.raises(ValueError, match="not valid text"):
        validate_pattern("a.\ud800")
    with pytest.raises(TypeError, match="must be a str, not bytes"):
        validate_pattern(b"a.b")
    with pytest.raises(TypeError):
        TopicPattern(None)  # type: ignore[arg-type]


def test_pattern_object() -> None:
    pattern = compile_pattern("a.*")
    assert compile_pattern("a.*") is pattern  # cached
    assert pattern == TopicPattern("a.*")
    assert hash(pattern) == hash(TopicPattern("a.*"))
    assert pattern != TopicPattern("a.#")
    assert pattern != "a.*"
    assert pattern("a.b") is True  # callable
    assert repr(pattern) == "TopicPattern('a.*')"
    assert pattern.words == ("a", "*")
    assert not pattern.is_literal
    assert TopicPattern("a.b*").is_literal
    assert pickle.loads(pickle.dumps(pattern)).matches("a.z")


SUSPICIOUS = [
    # pattern, what the warning must say
    ("VirtualMachine.#Running", ["word 2 '#Running' is no wildcard",
                                 "did you mean 'VirtualMachine.#.Running'?"]),
    ("a.b*", ["word 2 'b*' is no wildcard", "did you mean 'a.b.*'?"]),
    ("**", ["word 1 '**' is no wildcard"]),
    ("a..b", ["word 2 is empty (two dots in a row)", "no fsmc topic has an empty word"]),
    ("VirtualMachine.", ["word 2 is empty (the pattern ends with `.`)"]),
    (".a", ["word 1 is empty (the pattern starts with `.`)"]),
    (".", ["word 1 is empty", "word 2 is empty"]),
    ("", ["the empty topic pattern", "`#` matches every topic"]),
]


@pytest.mark.parametrize(("pattern", "said"), SUSPICIOUS)
def test_suspicious_patterns_are_named_and_keep_their_meaning(pattern: str,
                                                               said: list[str]) -> None:
    warning = pattern_warning(pattern)
    assert warning is not None
    for part in said:
        assert part in warning, warning
    assert "%23" not in warning  # the URL hint only for patterns from a URL
    # Still RabbitMQ's meaning: each of these words matches itself only.
    assert topic_matches(pattern, pattern)
    if "#" in pattern or "*" in pattern:
        assert not topic_matches(pattern, pattern.replace("#", "x").replace("*", "x"))


def test_a_trailing_dot_from_a_url_gets_the_percent_23_hint() -> None:
    warning = pattern_warning("VirtualMachine.", in_url=True)
    assert warning is not None
    assert "topic=VirtualMachine.%23 for 'VirtualMachine.#'" in warning
    assert "%23" not in (pattern_warning("a..b", in_url=True) or "")


@pytest.mark.parametrize("pattern", ["#", "*", "a", "a.*.b", "#.Running", "*.*.Start.#",
                                     "VirtualMachine.Stopped.StartRequested.Starting"])
def test_ordinary_patterns_get_no_warning(pattern: str) -> None:
    assert pattern_warning(pattern) is None
    assert pattern_warning(pattern, in_url=True) is None


@given(st.lists(st.sampled_from(["", "a", "b", "*", "#", "a*", "#b", "**", "a#b"]),
                min_size=0, max_size=5))
def test_a_warning_exactly_when_a_word_is_empty_or_holds_a_wildcard(words: list[str]) -> None:
    pattern = ".".join(words)
    odd = [number for number, word in enumerate(split_words(pattern), 1)
           if not word or (word not in ("*", "#") and ("*" in word or "#" in word))]
    warning = pattern_warning(pattern)
    assert (warning is None) == (bool(pattern) and not odd)
    for number in odd:
        assert f"word {number} " in (warning or "")
