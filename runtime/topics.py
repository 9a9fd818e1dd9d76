"""Topic patterns with the matching rules of AMQP topic exchanges (as RabbitMQ implements them).

A routing key (an event's `topic`) and a pattern are both lists of *words* separated by `.`.
In a pattern, the word `*` matches exactly one word and the word `#` matches zero or more
words; every other word matches itself only. The rules, exactly as RabbitMQ's
`rabbit_exchange_type_topic` splits and matches keys:

- the empty string has zero words, so `#` and `` (the empty pattern) match the empty key, and
  `*` does not;
- an empty word is a word: `a..b` has three words (`a`, ``, `b`), `a.` has two, `.` has two;
- `*` and `#` are wildcards only as whole words: `a*`, `#b` or `**` are ordinary words that
  match themselves;
- `a.#` matches `a`, `a.b` and `a.b.c`; `*.b` never matches `b`; `#.#` means the same as `#`.

Which patterns are malformed? RabbitMQ accepts every binding key it can receive, so fsmc
refuses only what could not be sent to a broker as a routing key: a pattern that is not a
`str` (`TypeError`), that cannot be encoded as UTF-8 (a lone surrogate), or that is longer
than 255 bytes once encoded (the AMQP 0-9-1 short-string limit) (`ValueError`). Anything else
means the same thing in-process and on a broker.

Which patterns are suspicious? Some accepted patterns almost never mean what was meant: a
wildcard inside a word (`VirtualMachine.#Running`, `a.b*`: that word matches itself only), an
empty word (`a..b`, a leading or trailing `.`; no fsmc topic has an empty word, and a trailing
`.` is what a bare `#` at the end of a URL query leaves once the browser cuts the fragment),
and the empty pattern (it matches the empty topic only). They keep RabbitMQ's meaning;
`pattern_warning` says what is odd about them, and the bus and the notification service pass
that on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["MAX_PATTERN_BYTES", "TopicPattern", "compile_pattern", "pattern_warning",
           "split_words", "topic_matches", "validate_pattern"]

MAX_PATTERN_BYTES = 255


def split_words(key: str) -> list[str]:
    """The words of a routing key or pattern: `""` has none, and every `.` separates two."""
    return key.split(".") if key else []


def validate_pattern(pattern: object) -> str:
    """Return `pattern` if a broker would accept it as a binding key; raise `TypeError` for a
    non-string and `ValueError` (with the reason) for a malformed string."""
    if not isinstance(pattern, str):
        raise TypeError(f"a topic pattern must be a str, not {type(pattern).__name__}")
    try:
        size = len(pattern.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise ValueError(f"topic pattern {pattern!r} is not valid text: {error.reason} at "
                         f"position {error.start}") from None
    if size > MAX_PATTERN_BYTES:
        raise ValueError(f"topic pattern is {size} bytes long in UTF-8; AMQP limits routing "
                         f"and binding keys to {MAX_PATTERN_BYTES} bytes")
    return pattern


def pattern_warning(pattern: str, *, in_url: bool = False) -> str | None:
    """What makes `pattern` (a valid one) unlikely to mean what was meant, as one message
    naming every suspicious word, or None when nothing is. `in_url`: the pattern came from a
    URL query, so a trailing `.` gets the hint to write `#` as `%23` there."""
    if not pattern:
        return ("the empty topic pattern has no words and matches only the empty topic, which "
                "no fsmc event has; `#` matches every topic")
    words = split_words(pattern)
    odd: list[str] = []
    for number, word in enumerate(words, 1):
        if not word:
            where = ("the pattern starts with `.`" if number == 1 else
                     "the pattern ends with `.`" if number == len(words) else
                     "two dots in a row")
            odd.append(f"word {number} is empty ({where})")
        elif _inner_wildcard(word):
            odd.append(f"word {number} {word!r} is no wildcard and matches the word {word!r} "
                       f"only: `*` and `#` are wildcards only as whole words")
    if not odd:
        return None
    message = f"topic pattern {pattern!r}: " + "; ".join(odd)
    if "" in words:
        message += "; no fsmc topic has an empty word"
    if any(_inner_wildcard(word) for word in words):
        meant = ".".join(_split_wildcards(word) if _inner_wildcard(word) else word
                         for word in words)
        message += f" (did you mean {meant!r}?)"
    if in_url and pattern.endswith("."):
        message += (f"; in a URL query a bare `#` starts the fragment, which is never sent: "
                    f"write it `%23` (topic={pattern}%23 for {pattern + '#'!r})")
    return message


def _inner_wildcard(word: str) -> bool:
    return word not in ("*", "#") and ("*" in word or "#" in word)


def _split_wildcards(word: str) -> str:
    """`word` with each `*` and `#` in it made a word of its own: `#Running` -> `#.Running`."""
    return ".".join(part for part in re.split(r"([*#])", word) if part)


def _always(key: str) -> bool:
    return True


class TopicPattern:
    """A validated, compiled pattern. `matches(key)` (or calling it) tells whether a routing
    key matches. Equal patterns compare and hash equal."""

    __slots__ = ("_empty", "_test", "pattern", "words")

    pattern: str
    words: tuple[str, ...]

    def __init__(self, pattern: str) -> None:
        validate_pattern(pattern)
        self.pattern = pattern
        self.words = tuple(split_words(pattern))
        tokens = _collapse(self.words)
        # The empty key is the only key with zero words; decide it once, so that the matchers
        # below only ever see keys with at least one word.
        self._empty = all(word == "#" for word in tokens)
        self._test = _matcher(pattern, tokens)

    def matches(self, key: str) -> bool:
        """Whether routing key `key` matches this pattern."""
        if not key:
            return self._empty
        return self._test(key)

    __call__ = matches

    @property
    def is_literal(self) -> bool:
        """True when the pattern has no wildcard word (it matches one key only)."""
        return "*" not in self.words and "#" not in self.words

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TopicPattern):
            return self.pattern == other.pattern
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (TopicPattern, (self.pattern,))


def _collapse(words: tuple[str, ...]) -> list[str]:
    """Drop every `#` that follows another `#` (`#.#` matches exactly what `#` matches)."""
    tokens: list[str] = []
    for word in words:
        if word == "#" and tokens and tokens[-1] == "#":
            continue
        tokens.append(word)
    return tokens


def _matcher(pattern: str, tokens: list[str]) -> Callable[[str], bool]:
    """The cheapest test of a non-empty key: string equality for literal patterns, prefix tests
    for `literal.#`, a character test for `*`, a regular expression when the pattern has at
    most one `#` (then it cannot backtrack badly), else the word-list matcher."""
    hashes = tokens.count("#")
    if not hashes and "*" not in tokens:
        return pattern.__eq__
    if tokens == ["#"]:
        return _always
    if tokens == ["*"]:
        return lambda key: "." not in key
    if hashes == 1 and tokens[-1] == "#" and "*" not in tokens:
        prefix = ".".join(tokens[:-1])
        dotted = prefix + "."
        return lambda key: key == prefix or key.startswith(dotted)
    if hashes <= 1:
        fullmatch = re.compile(_regex(tokens), re.DOTALL).fullmatch
        return lambda key: fullmatch(key) is not None
    words = tuple(tokens)
    return lambda key: _match_words(words, key.split("."))


def _regex(tokens: list[str]) -> str:
    """A regular expression over non-empty keys equivalent to the word pattern `tokens` (in
    which no two `#` are adjacent). A word is `[^.]*`; `#` absorbs the separator next to it, so
    that it can stand for zero words."""
    last = len(tokens) - 1
    parts: list[str] = []
    for index, token in enumerate(tokens):
        if token == "#":
            if last == 0:
                parts.append(".*")
            elif index == 0:
                parts.append(r"(?:.*\.)?")
            elif index == last:
                parts.append(r"(?:\..*)?")
            else:
                parts.append(r"\.(?:.*\.)?")
            continue
        if index > 0 and tokens[index - 1] != "#":
            parts.append(r"\.")
        parts.append("[^.]*" if token == "*" else re.escape(token))
    return "".join(parts)


def _match_words(pattern: tuple[str, ...], key: list[str]) -> bool:
    """Glob matching over words (`#` like a shell `*`, `*` like `?`): on a mismatch, go back to
    the last `#` only and let it absorb one more word. O(len(pattern) * len(key)) at worst,
    where a backtracking regular expression with several `#` can take exponential time."""
    p = k = 0
    n_pattern, n_key = len(pattern), len(key)
    star = -1
    star_key = 0
    while k < n_key:
        if p < n_pattern:
            word = pattern[p]
            if word == "#":
                star, star_key = p, k
                p += 1
                continue
            if word == "*" or word == key[k]:
                p += 1
                k += 1
                continue
        if star < 0:
            return False
        p = star + 1
        star_key += 1
        k = star_key
    while p < n_pattern and pattern[p] == "#":
        p += 1
    return p == n_pattern


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> TopicPattern:
    """`TopicPattern(pattern)`, cached: compiling the same pattern twice returns one object."""
    return TopicPattern(pattern)


def topic_matches(pattern: str, key: str) -> bool:
    """Whether routing key `key` matches `pattern` (compiled once and cached)."""
    return compile_pattern(pattern).matches(key)
