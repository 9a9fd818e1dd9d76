"""Profile evidence for the transition targets: the generated fast path of `VirtualMachine`
rebuilt piece by piece (subclasses whose event methods drop one construct at a time), timed
interleaved with the fastest hand-written locked class. Diagnostic, not part of the suite.

    python -m bench.ablation [--quick]

Each variant keeps the previous ones' removals, so the step between two rows is what that one
construct costs. The variants are copies of the generated code as of this writing: if
`compiler/templates` changes the fast path, update `FAST_PATH` first (row `as generated` must
match the real class).
"""

from __future__ import annotations

import argparse
from typing import Any

from fsmc.runtime import StateChanged

import generated.virtual_machine as gvm
from bench import machines as m
from bench.cases_transition import cycle_timer
from bench.timing import Settings, interleaved

EVENTS = {"start_requested": "START_REQUESTED", "operation_succeeded": "OPERATION_SUCCEEDED",
          "stop_requested": "STOP_REQUESTED"}

FAST_PATH = '''
def {method}(self{params}):
    {take_stripe}
    try:
        stripe.pop()
    except IndexError:
        return self._fire(DISPATCH, {payload})
    try:
        target = None if {busy} else {lookup}
        if target is None or self._hooks is not None:
            record = None
        elif not self._observed:
            self._state = target
            return target
        else:
            record = POSTS[self._state]
            self._busy = owner = _get_ident()
            self._state = target
    finally:
        stripe.append(None)
    if record is None:
        return self._fire(DISPATCH, {payload})
    try:
        return self._post_plain(owner, record, target, {payload})
    finally:
        self._busy = None
        if _waiting[0]:
            _wake(stripe)
'''

STEPS: list[tuple[str, dict[str, str]]] = [
    ("as generated", {}),
    ("- **payload (no dict built per call)", {"params": "", "payload": "{}"}),
    ("- lazy stripe (`self._stripe or self._assign_stripe()`)",
     {"take_stripe": "stripe = self._stripe"}),
    ("- `.get()` (a plain subscript: the cycle never misses)",
     {"lookup": "PLAIN[self._state]"}),
    ("- the idle check (`self._busy is not None`; unsafe)", {"busy": "False"}),
]


def variant(changes: dict[str, str]) -> type[Any]:
    """A subclass of `VirtualMachine` whose three cycle methods are the fast path with
    `changes` applied."""
    fields = {"params": ", **payload", "payload": "payload", "busy": "self._busy is not None",
              "take_stripe": "stripe = self._stripe or self._assign_stripe()",
              "lookup": "PLAIN.get(self._state)"} | changes
    namespace: dict[str, Any] = {}
    for method, constant in EVENTS.items():
        scope = {"_get_ident": gvm._get_ident, "_waiting": gvm._waiting, "_wake": gvm._wake,
                 "DISPATCH": getattr(gvm, f"_VIRTUAL_MACHINE_{constant}"),
                 "PLAIN": getattr(gvm, f"_VIRTUAL_MACHINE_{constant}_PLAIN"),
                 "POSTS": getattr(gvm, f"_VIRTUAL_MACHINE_{constant}_POST")}
        exec(FAST_PATH.format(method=method, **fields), scope)
        namespace[method] = scope[method]
    namespace["__slots__"] = ()
    return type("Variant", (m.VirtualMachine,), namespace)


class DirectCall(m.VirtualMachine):
    """The publishing half without the bus: the same `StateChanged`, handed straight to one
    subscriber (errors isolated), no re-entrancy bookkeeping."""

    __slots__ = ()
    subscriber = staticmethod(m.sink())

    def _post_plain(self, owner: Any, record: Any, target: Any, payload: dict[str, Any]) -> Any:
        machine, event, old, new, tags = record
        try:  # noqa: SIM105 - as the bus does: a handler's error stops nothing
            self.subscriber(StateChanged(machine, self._resource_id, event, old, new, tags,
                                         payload))
        except Exception:
            pass
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    settings = Settings.make(parser.parse_args(argv).quick)
    timers = {"hand+lock": cycle_timer(m.HandLocked()),
              "real generated": cycle_timer(m.VirtualMachine("vm-1"))}
    accumulated: dict[str, str] = {}
    for label, changes in STEPS:
        accumulated = accumulated | changes
        machine = variant(accumulated)("vm-1")
        machine._assign_stripe()  # the variants without the lazy stripe need it there
        timers[label] = cycle_timer(machine)
    stats = interleaved(timers, settings)
    base = stats["hand+lock"].min
    print("Generated fast path, VirtualMachine cycle, no subscriber (ns/transition, min):")
    for name, stat in stats.items():
        print(f"  {name:<56} {stat.min:7.0f} {stat.median:7.0f}  {stat.min / base:5.2f}x")
    bus_stats = interleaved({
        "hand publish": cycle_timer(m.HandPublishing(m.sink())),
        "generated + bus": cycle_timer(m.generated_with_bus()),
        "generated, event handed to the subscriber directly":
            cycle_timer(DirectCall("vm-1", bus=m.EventBus())),
    }, settings)
    base = bus_stats["hand publish"].min
    print("Publishing to one sync subscriber (ns/transition, min):")
    for name, stat in bus_stats.items():
        print(f"  {name:<56} {stat.min:7.0f} {stat.median:7.0f}  {stat.min / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
