"""Conformance replay: event logs checked against the machines of the specs, streaming.

Three kinds of line are read, told apart by their keys (one log may mix them):

- fsmc's audit trail (`contrib/audit.py`): `StateChanged.to_dict()`, `{machine, resource_id,
  event, old_state, new_state, ...}`; other kinds of event (`{"type", "repr"}`) are skipped;
- a broker dump of CloudEvents (`runtime/cloudevent.py`): `{specversion, type, data: {...}}`,
  with the same `data`; CloudEvents of other types are skipped;
- CloudStack's ResourceStateEvent: its description `{resource, id, old-state, new-state, ...}`,
  bare or inside CloudStack's `Event` (`{eventType, resourceType, description: "<json>"}`,
  which names the event). A bare description names no event, so it conforms when some
  transition leads from old-state to new-state. CloudStack publishes each transition twice
  (before and after its database write; Network four times): VM messages carry `status` and
  only `postStateTransitionEvent` counts; for the others a repeat of the previous message of the
  resource is dropped as a duplicate.

Each resource (machine, id) is replayed in log order: an event conforms when its old state is
the state the previous one left (else a *gap*, after which replay resumes from the old state)
and the spec has a transition from it on that event to its new state (guards count as possibly
true). Memory grows with the number of resources, not of events: per resource its state and
whether it has conformed so far; per kind of problem the first `keep` examples and a count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from fsmc.dsl.model import Machine

UNREADABLE = "unreadable"
NON_CONFORMING = "non-conforming"
GAP = "gap"
UNKNOWN_MACHINE = "unknown-machine"
UNKNOWN_STATE = "unknown-state"
UNKNOWN_EVENT = "unknown-event"
KINDS = (NON_CONFORMING, GAP, UNKNOWN_MACHINE, UNKNOWN_STATE, UNKNOWN_EVENT, UNREADABLE)


class _AuditLine(msgspec.Struct):
    """The fields replay reads from an audit-trail line; msgspec checks the whole line is JSON
    and skips the rest (about five times faster than `json.loads` building every dict).
    Any other line (other formats, wrong types, broken JSON) goes through `json.loads`."""

    machine: str | None = None
    resource_id: Any = None
    event: str | None = None
    old_state: str | None = None
    new_state: str | None = None


_decode_audit = msgspec.json.Decoder(_AuditLine).decode


@dataclass(frozen=True)
class MachineTable:
    """What replay needs of a machine: targets by (state, event), and (state, state) pairs."""

    name: str
    states: frozenset[str]
    events: frozenset[str]
    targets: dict[tuple[str, str], frozenset[str]]
    pairs: frozenset[tuple[str, str]]
    allowed: dict[str, tuple[str, ...]]  # state -> "Event -> Target", in spec order

    @classmethod
    def of(cls, machine: Machine) -> MachineTable:
        targets: dict[tuple[str, str], set[str]] = {}
        allowed: dict[str, list[str]] = {}
        for t in machine.transitions:
            targets.setdefault((t.source.text, t.event.text), set()).add(t.target.text)
            allowed.setdefault(t.source.text, []).append(f"{t.event.text} -> {t.target.text}")
        return cls(machine.name.text, frozenset(machine.state_names),
                   frozenset(machine.event_names),
                   {key: frozenset(value) for key, value in targets.items()},
                   frozenset((s, t) for (s, _), ts in targets.items() for t in ts),
                   {state: tuple(listed) for state, listed in allowed.items()})


@dataclass(frozen=True)
class Problem:
    kind: str
    where: str  # path:line
    machine: str | None
    resource: str | None
    message: str
    state: str | None = None  # the state the resource was in
    allowed: tuple[str, ...] = ()  # what the spec allows there


@dataclass
class Report:
    files: int = 0
    lines: int = 0
    events: int = 0  # state changes replayed
    conforming_events: int = 0
    skipped: int = 0  # other kinds of event
    duplicates: int = 0  # CloudStack's repeated messages
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    problems: dict[str, list[Problem]] = field(default_factory=lambda: {k: [] for k in KINDS})
    conforming: list[tuple[str, str]] = field(default_factory=list)
    resources: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    @property
    def fitness(self) -> float:
        return self.conforming_events / self.events if self.events else 1.0


class _Resource:
    __slots__ = ("conforms", "last", "reported", "state")

    def __init__(self, state: str) -> None:
        self.state = state
        self.conforms = True
        self.reported = False  # its first non-conforming event is reported
        self.last: tuple[str, str] | None = None


class Replayer:
    """Feed it lines (`feed`), then `finish()` for the report."""

    def __init__(self, machines: Iterable[Machine], *, keep: int = 100) -> None:
        self.tables = {m.name.text: MachineTable.of(m) for m in machines}
        self.keep = keep
        self.report = Report()
        self.resources: dict[tuple[str, str], _Resource] = {}

    def problem(self, kind: str, where: str, machine: str | None, resource: str | None,
                message: str, state: str | None = None,
                allowed: tuple[str, ...] = ()) -> None:
        self.report.counts[kind] += 1
        found = self.report.problems[kind]
        if len(found) < self.keep:
            found.append(Problem(kind, where, machine, resource, message, state, allowed))

    def feed(self, path: str, lines: Iterable[str]) -> None:
        self.report.files += 1
        loads = json.loads
        decode = _decode_audit
        error_type = msgspec.DecodeError
        step = self.step
        number = 0
        for number, line in enumerate(lines, 1):
            try:
                audit = decode(line)
            except error_type:
                pass
            else:
                if audit.machine is not None:
                    step(path, number, audit.machine, audit.resource_id, audit.event,
                         audit.old_state, audit.new_state)
                    continue
            if not line or line.isspace():
                continue
            try:
                data = loads(line)
            except ValueError as error:
                self.problem(UNREADABLE, f"{path}:{number}", None, None,
                             f"not a JSON line: {error}")
                continue
            if not isinstance(data, dict):
                self.problem(UNREADABLE, f"{path}:{number}", None, None, "not a JSON object")
                continue
            machine = data.get("machine")
            if machine is not None:
                step(path, number, machine, data.get("resource_id"), data.get("event"),
                     data.get("old_state"), data.get("new_state"))
            else:
                self.other(path, number, data)
        self.report.lines += number

    def other(self, path: str, number: int, data: dict[str, object]) -> None:
        inner = data.get("data")
        if "specversion" in data:
            if data.get("type") == "fsmc.StateChanged" and isinstance(inner, dict):
                self.step(path, number, inner.get("machine"), inner.get("resource_id"),
                          inner.get("event"), inner.get("old_state"), inner.get("new_state"))
            else:
                self.report.skipped += 1
            return
        event: object = None
        description: object = data
        if isinstance(data.get("description"), str):
            event = data.get("eventType")
            try:
                description = json.loads(str(data["description"]))
            except ValueError as error:
                self.problem(UNREADABLE, f"{path}:{number}", None, None,
                             f"description is not JSON: {error}")
                return
        if isinstance(description, dict) and "old-state" in description:
            if description.get("status") == "preStateTransitionEvent":
                self.report.skipped += 1  # the post message follows once the write succeeded
                return
            self.step(path, number, description.get("resource"), description.get("id"),
                      event, description.get("old-state"), description.get("new-state"),
                      dedupe=True)
            return
        if "type" in data and "repr" in data:
            self.report.skipped += 1
            return
        self.problem(UNREADABLE, f"{path}:{number}", None, None,
                     "not an fsmc StateChanged, CloudEvent or CloudStack ResourceStateEvent")

    def step(self, path: str, number: int, machine: object, resource_id: object,
             event: object, old: object, new: object, *, dedupe: bool = False) -> None:
        if not isinstance(machine, str) or not isinstance(old, str) or \
                not isinstance(new, str) or not (event is None or isinstance(event, str)) or \
                resource_id is None:
            self.problem(UNREADABLE, f"{path}:{number}", None, None,
                         "machine, old and new state (and event) must be strings, and the "
                         "resource id present")
            return
        table = self.tables.get(machine)
        report = self.report
        if table is None:
            self.problem(UNKNOWN_MACHINE, f"{path}:{number}", machine, str(resource_id),
                         f"no spec declares machine `{machine}`")
            return
        key = (machine, str(resource_id))
        resource = self.resources.get(key)
        if dedupe and resource is not None and resource.last == (old, new) and \
                resource.state == new:
            report.duplicates += 1
            return
        report.events += 1
        if resource is None:
            resource = self.resources[key] = _Resource(old)
        if old not in table.states or new not in table.states:
            unknown = old if old not in table.states else new
            self.problem(UNKNOWN_STATE, f"{path}:{number}", machine, key[1],
                         f"state `{unknown}` is not a state of `{machine}`")
            resource.conforms = False
            resource.state, resource.last = new, (old, new)
            return
        if event is not None and event not in table.events:
            self.problem(UNKNOWN_EVENT, f"{path}:{number}", machine, key[1],
                         f"event `{event}` is not an event of `{machine}`")
            resource.conforms = False
            resource.state, resource.last = new, (old, new)
            return
        if resource.state != old:
            self.problem(GAP, f"{path}:{number}", machine, key[1],
                         f"old state `{old}`, but the previous event left it in "
                         f"`{resource.state}`", resource.state)
            resource.conforms = False
        if (new in table.targets.get((old, event), ())) if event is not None \
                else ((old, new) in table.pairs):
            report.conforming_events += 1
        else:
            if not resource.reported:
                resource.reported = True
                shown = f"--{event}-->" if event is not None else "->"
                self.problem(NON_CONFORMING, f"{path}:{number}", machine, key[1],
                             f"`{old} {shown} {new}` is not a transition of `{machine}`",
                             old, table.allowed.get(old, ()))
            resource.conforms = False
        resource.state, resource.last = new, (old, new)

    def finish(self) -> Report:
        report = self.report
        report.resources = len(self.resources)
        report.conforming = sorted(key for key, r in self.resources.items() if r.conforms)
        return report


def replay_files(machines: Iterable[Machine], paths: Iterable[str], *,
                 keep: int = 100) -> Report:
    replayer = Replayer(machines, keep=keep)
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            replayer.feed(path, handle)
    return replayer.finish()


def report_lines(report: Report, *, shown: int = 20) -> Iterator[str]:
    conforming = len(report.conforming)
    yield (f"replayed {report.events} state changes of {report.resources} resources from "
           f"{report.files} log{'s' if report.files != 1 else ''} ({report.lines} lines, "
           f"{report.skipped} other events skipped, {report.duplicates} duplicates dropped)")
    listed = ", ".join(f"{m} {r}" for m, r in report.conforming[:shown])
    more = f", ... ({conforming - shown} more)" if conforming > shown else ""
    yield f"conforming: {conforming} resource{'s' if conforming != 1 else ''}" + \
        (f": {listed}{more}" if conforming else "")
    for kind in KINDS:
        count = report.counts[kind]
        if not count:
            continue
        yield f"{kind}: {count}"
        for problem in report.problems[kind]:
            who = f"{problem.machine} {problem.resource}: " if problem.resource else ""
            text = f"  {problem.where}: {who}{problem.message}"
            if kind == NON_CONFORMING:
                allowed = ", ".join(problem.allowed) or "nothing (no transition leaves it)"
                text += f"; in `{problem.state}` the spec allows {allowed}"
            yield text
        if count > len(report.problems[kind]):
            yield f"  ... ({count - len(report.problems[kind])} more)"
    yield (f"fitness: {report.conforming_events} of {report.events} state changes conform "
           f"({report.fitness:.1%}); {conforming} of {report.resources} resources conform")


def report_json(report: Report) -> str:
    return json.dumps({
        "files": report.files, "lines": report.lines, "events": report.events,
        "conforming_events": report.conforming_events, "fitness": report.fitness,
        "skipped": report.skipped, "duplicates": report.duplicates,
        "resources": report.resources,
        "conforming": [{"machine": m, "resource": r} for m, r in report.conforming],
        "counts": report.counts,
        "problems": {kind: [vars(p) | {"allowed": list(p.allowed)} for p in found]
                     for kind, found in report.problems.items()},
        "ok": report.ok}, indent=2, ensure_ascii=False)
