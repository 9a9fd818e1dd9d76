"""Is a spec change safe? Each change of `fsmc diff`, judged for the rows already stored (live
data) and for the code that uses the generated class.

Breaking for **live data**: rows that the new spec strands or traps — a removed state without a
`moved`, a machine removed, a move into a final state from a state that had a way out, a state
that lost its last way out or became final, a dropped `moved` (its rows would be stranded
again). Breaking for **code**: calls that worked and now fail or behave otherwise — a removed
state (`State.X`) or event (its method), a (state, event) that no longer fires or leads
elsewhere (a changed target), a new or changed guard (calls may now be refused), a new or
renamed action (the class calls a method you must provide), a removed entry point or a new
initial state (`create`). Everything else (additions, docs, tags, a guard removed) is
compatible. Pure: reads the structural diff only.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsmc.dsl.model import Machine, StateKind

from .diagrams.diff import MachineDiff, SpecDiff, Status, TransitionChange
from .naming import snake_case


@dataclass(frozen=True)
class Verdict:
    """One change: `data` / `code` say why it breaks live data / code (None: it does not)."""

    machine: str
    change: str
    data: str | None = None
    code: str | None = None

    @property
    def breaking(self) -> bool:
        return self.data is not None or self.code is not None


def classify(diff: SpecDiff) -> list[Verdict]:
    """A verdict for every change of every machine, in the diff's order."""
    return [verdict for machine in diff.machines for verdict in classify_machine(machine)]


def classify_machine(diff: MachineDiff) -> list[Verdict]:
    name, old, new = diff.name, diff.old, diff.new
    if old is None:
        return [Verdict(name, f"+ machine {name}")]
    if new is None:
        return [Verdict(name, f"- machine {name}",
                        data=f"stored {name} rows would belong to no spec (fsmc migrate "
                             "refuses to go on)",
                        code=f"the class {name} is gone")]
    verdicts = [Verdict(name, f"~ machine {detail}") for detail in diff.details]
    verdicts.extend(_state(name, change.name, change.status, old, new)
                    for change in diff.states if change.status is not Status.SAME)
    seen: set[str] = set()
    for change in diff.transitions:
        if change.status is Status.SAME:
            continue
        verdict = _transition(name, change, old, new)
        if verdict.change not in seen:  # one line per `*` statement changed as a whole
            seen.add(verdict.change)
            verdicts.append(verdict)
    verdicts.extend(Verdict(name, f"+ event {event}") for event in diff.events_added)
    verdicts.extend(Verdict(name, f"- event {event}",
                            code=f"`{snake_case(event)}()` is gone: its callers break (mypy "
                                 "--strict finds them)")
                    for event in diff.events_removed)
    verdicts.extend(Verdict(name, f"+ moved {source} -> {target}")
                    for source, target in diff.moves_added)
    verdicts.extend(Verdict(name, f"- moved {source} -> {target}",
                            data=f"rows still in {source} would be stranded again (fine once "
                                 f"`fsmc migrate` shows no store holds any)")
                    for source, target in diff.moves_removed if source not in new.state_names)
    verdicts.extend(Verdict(name, f"- moved {source} -> {target}")
                    for source, target in diff.moves_removed if source in new.state_names)
    return verdicts


def _state(machine: str, state: str, status: Status, old: Machine, new: Machine) -> Verdict:
    before = {d.name.text: d for d in old.states}.get(state)
    after = {d.name.text: d for d in new.states}.get(state)
    if status is Status.ADDED:
        return Verdict(machine, f"+ state {state}")
    if after is None:
        assert before is not None
        code = f"`{machine}.State.{state}` is gone"
        target = new.moved.get(state)
        if target is None:
            return Verdict(machine, f"- state {state}",
                           data=f"rows still in {state} would be stranded: add `moved {state} "
                                "-> <State>`", code=code)
        exits = _exits(old, state)
        if target in {d.name.text for d in new.finals} and before.kind is not StateKind.FINAL \
                and exits:
            return Verdict(machine, f"- state {state} (moved -> {target})",
                           data=f"rows moved into the final state {target} lose their way out "
                                f"of {state} ({', '.join(exits)})", code=code)
        return Verdict(machine, f"- state {state} (moved -> {target})", code=code)
    assert before is not None
    subject = f"~ state {state}"
    if before.kind is after.kind:
        return Verdict(machine, subject)  # its doc
    subject += f": {before.kind.value} -> {after.kind.value}"
    if after.kind is StateKind.FINAL:
        return Verdict(machine, subject, data=f"rows in {state} can never leave it now")
    if before.kind is StateKind.ENTRY:
        return Verdict(machine, subject,
                       code=f"`create(..., state=\"{state}\")` is refused now")
    if after.kind is StateKind.INITIAL:
        return Verdict(machine, subject, code=f"`create()` now starts new resources in {state}")
    if before.kind is StateKind.INITIAL and after.kind is not StateKind.ENTRY:
        return Verdict(machine, subject,
                       code=f"`create()` no longer starts new resources in {state}")
    return Verdict(machine, subject)


def _transition(machine: str, change: TransitionChange, old: Machine, new: Machine) -> Verdict:
    t = change.transition
    source, event = t.source.text, t.event.text
    subject = f"{change.status.value} {change.text(any_source=t.via_star)}"
    method = f"`{snake_case(event)}()`"
    if change.status is Status.ADDED:
        targets = _targets(old, source, event)
        if targets and t.target.text not in targets:
            return Verdict(machine, subject,
                           code=f"{method} in {source} now leads to {t.target.text} (was "
                                f"{' or '.join(targets)})")
        return Verdict(machine, subject)
    if change.status is Status.REMOVED:
        if source not in new.state_names:
            return Verdict(machine, subject)  # goes with its source state (judged there)
        if _targets(new, source, event):
            return Verdict(machine, subject)  # a changed target: judged on the new transition
        finals = {d.name.text for d in new.finals}
        data = (f"rows in {source} lose their last way out"
                if not _exits(new, source) and source not in finals else None)
        return Verdict(machine, subject, data=data,
                       code=f"{method} in {source} now raises InvalidTransition")
    assert change.old is not None and change.new is not None
    before, after = change.old, change.new
    code = []
    if after.guard is not None and (before.guard is None or
                                    (before.guard.name.text, before.guard.negated) !=
                                    (after.guard.name.text, after.guard.negated)):
        word = "unless" if after.guard.negated else "if"
        code.append(f"a new guard `{word} {after.guard.name.text}` may refuse {method} in "
                    f"{source}")
    if after.action is not None and (before.action is None or
                                     before.action.name.text != after.action.name.text):
        code.append(f"the transition now calls the action `{after.action.name.text}`")
    return Verdict(machine, subject, code="; ".join(code) or None)


def _targets(machine: Machine, source: str, event: str) -> list[str]:
    targets: dict[str, None] = {}
    for t in machine.transitions:
        if t.source.text == source and t.event.text == event:
            targets.setdefault(t.target.text, None)
    return list(targets)


def _exits(machine: Machine, state: str) -> list[str]:
    """The events that lead out of `state` (self-loops excluded)."""
    events: dict[str, None] = {}
    for t in machine.transitions:
        if t.source.text == state and t.target.text != state:
            events.setdefault(t.event.text, None)
    return list(events)


def report(verdicts: list[Verdict]) -> str:
    """The text section `fsmc diff` prints after the changes."""
    if not verdicts:
        return ""
    lines = ["compatibility (for stored rows and for code using the classes):"]
    for verdict in verdicts:
        if not verdict.breaking:
            lines.append(f"  compatible      {verdict.machine}: {verdict.change}")
            continue
        lines.append(f"  BREAKING        {verdict.machine}: {verdict.change}")
        if verdict.data:
            lines.append(f"    live data: {verdict.data}")
        if verdict.code:
            lines.append(f"    code: {verdict.code}")
    data = sum(1 for v in verdicts if v.data)
    code = sum(1 for v in verdicts if v.code)
    fine = sum(1 for v in verdicts if not v.breaking)
    lines.append(f"{_n(data)} breaking for live data, {_n(code)} breaking for code, "
                 f"{_n(fine)} compatible")
    return "\n".join(lines) + "\n"


def _n(count: int) -> str:
    return f"{count} change{'' if count == 1 else 's'}"
