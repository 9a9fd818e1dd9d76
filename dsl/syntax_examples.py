"""Malformed snippets that teach the parser to name its syntax errors in words a user knows.

Each label maps to snippets that fail in the same parser state as the error it describes;
`lark.UnexpectedInput.match_examples` picks the label whose snippets fail like the user's text.
Every snippet is tested to fail (tests/test_syntax_errors.py).
"""

from __future__ import annotations

# label: (message, snippets)
EXAMPLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "arrow": (
        "expected `->` after the source state",
        ("machine M {\n A B : E\n}", "machine M {\n A, B C : E\n}", "machine M {\n A : E\n}",
         "machine M {\n A\n}", "machine M {\n A, B\n}", "machine M {\n entry -\n}"),
    ),
    "target": (
        "expected the target state's name after `->`",
        ("machine M {\n A -> : E\n}", "machine M {\n A ->\n}", "machine M {\n A -> *\n}",
         "machine M {\n A -> \"x\"\n}"),
    ),
    "colon": (
        "expected `:` and an event name after the target state",
        ("machine M {\n A -> B E\n}", "machine M {\n A -> B\n}", "machine M {\n A -> B -> C\n}"),
    ),
    "event": (
        "expected an event name after `:`",
        ("machine M {\n A -> B :\n}", "machine M {\n A -> B : [usage]\n}",
         "machine M {\n A -> B : if g\n}", "machine M {\n A -> B : \"x\"\n}"),
    ),
    "clause": (
        "expected `if`, `unless`, `do`, `[tags]` or the end of the line after the event",
        ("machine M {\n A -> B : E F\n}", "machine M {\n A -> B : E \"x\"\n}",
         "machine M {\n A -> B : E, F\n}", "machine M {\n A -> B : E -> C\n}"),
    ),
    "hook-name": (
        "expected a name after `if`, `unless` or `do`",
        ("machine M {\n A -> B : E if\n}", "machine M {\n A -> B : E do\n}",
         "machine M {\n A -> B : E unless [x]\n}", "machine M {\n A -> B : E do \"x\"\n}"),
    ),
    "tag": (
        "expected a tag name, `,` or `]` in the tag list",
        ("machine M {\n A -> B : E [\n}", "machine M {\n A -> B : E [a b]\n}",
         "machine M {\n A -> B : E [a,]\n}", "machine M {\n A -> B : E [\"a\"]\n}"),
    ),
    "declared-name": (
        "expected a state name after the keyword",
        ("machine M {\n initial\n}", "machine M {\n state \"doc\"\n}", "machine M {\n final *\n}",
         "machine M {\n entry \"x\"\n}"),
    ),
    "name-list": (
        "expected a comma-separated list of names",
        ("machine M {\n states\n}", "machine M {\n events\n}", "machine M {\n states A B\n}",
         "machine M {\n states A,\n}", "machine M {\n events A, \"x\"\n}"),
    ),
    "end-of-declaration": (
        "expected the end of the line after the declaration (one name and an optional doc string)",
        ("machine M {\n state A B\n}", "machine M {\n state A \"x\" \"y\"\n}",
         "machine M {\n initial A, B\n}", "machine M {\n state A -> B : E\n}"),
    ),
    "move": (
        "expected `moved OldState -> NewState` (a removed state, `->`, a declared state)",
        ("machine M {\n moved A B\n}", "machine M {\n moved A ->\n}",
         "machine M {\n moved A -> B : E\n}", "machine M {\n moved A\n}",
         "machine M {\n moved A -> *\n}", "machine M {\n moved A, B -> C\n}",
         "machine M {\n moved * -> A\n}"),
    ),
    "statement": (
        "expected a statement: a declaration (`initial`, `entry`, `final`, `state`, `states`, "
        "`events`) or a transition `Source -> Target : Event`",
        ("machine M {\n -> B : E\n}", "machine M {\n \"x\"\n}", "machine M {\n : E\n}",
         "machine M {\n [a]\n}", "machine M {\n machine N {\n}\n}"),
    ),
    "machine-name": (
        "expected the machine's name after `machine`",
        ("machine {\n}", "machine \"doc\" {\n}", "machine\n"),
    ),
    "machine-open": (
        "expected `{` (after the machine's name and optional doc string)",
        ("machine M\n initial A\n}", "machine M initial A }", "machine M \"d\" \"e\" {\n}"),
    ),
    "machine-close": (
        "missing `}`: the machine block is not closed",
        ("machine M {\n initial A\n", "machine M {\n"),
    ),
    "top-level": (
        "expected `machine Name {` at the top level of the file",
        ("initial A\n", "A -> B : E\n", "}\n", "{\n", "\"doc\"\n", "machine M {\n}\n}\n"),
    ),
}

# Keywords of the core language; none of them can be a name.
KEYWORDS = frozenset(
    {"machine", "initial", "final", "state", "states", "events", "if", "unless", "do"})
