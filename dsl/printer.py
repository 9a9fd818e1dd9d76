"""Model → canonical `.fsm` text (declarations first, one transition per line).

Used to format specs and by the property tests: printing a model and parsing the text again
must give the same model (spans aside).
"""

from __future__ import annotations

from .model import Machine, SpecFile, StateKind, Transition


def quote(text: str) -> str:
    """A `.fsm` string literal for `text` (escapes `\\`, `"`, newline and tab)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\t", "\\t") + '"'


def print_spec(spec: SpecFile) -> str:
    return "\n".join(print_machine(machine) for machine in spec.machines)


def print_machine(machine: Machine) -> str:
    head = f"machine {machine.name.text}"
    if machine.doc is not None:
        head += f" {quote(machine.doc)}"
    lines = [head + " {"]
    for decl in machine.declarations:
        keyword = {StateKind.INITIAL: "initial", StateKind.ENTRY: "entry",
                   StateKind.FINAL: "final", StateKind.NORMAL: "state"}[decl.kind]
        doc = f" {quote(decl.doc)}" if decl.doc is not None else ""
        lines.append(f"    {keyword} {decl.name.text}{doc}")
    if machine.events is not None:
        lines.append(f"    events {', '.join(e.text for e in machine.events)}")
    lines.extend(f"    moved {move.source.text} -> {move.target.text}" for move in machine.moves)
    lines.extend(f"    {print_transition(t)}" for t in machine.transitions)
    lines.extend(f"    assert {assertion.text}" for assertion in machine.assertions)
    lines.append("}")
    return "\n".join(lines) + "\n"


def print_transition(transition: Transition) -> str:
    text = f"{transition.source.text} -> {transition.target.text} : {transition.event.text}"
    if transition.guard is not None:
        keyword = "unless" if transition.guard.negated else "if"
        text += f" {keyword} {transition.guard.name.text}"
    if transition.action is not None:
        text += f" do {transition.action.name.text}"
    if transition.tags:
        text += f" [{', '.join(transition.tag_names)}]"
    return text
