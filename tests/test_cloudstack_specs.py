"""The CloudStack specs are faithful to CloudStack, checked through the generated classes.

`specs/<module>.fsm` is built by `fsmc build specs/` into `generated/<module>.py`. For every
machine, the generated class is compared with the reference transcribed from CloudStack's
source (`tests/data/cloudstack/<Machine>.json`, provenance in its README): the same states,
events and initial state, and, for every (state, event) pair, the same answer: the reference's
target, or `InvalidTransition` with nothing changed. Impact.USAGE must be the tag `usage`.

CloudStack has no state machine for public IP addresses, only their states; `IpAddress` is
fsmc's design, so its transitions are checked against `IP_ADDRESS_DESIGN` below and its states
against the reference.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fsmc.runtime import InvalidTransition

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "cloudstack"

# Machine name -> module generated from specs/<module>.fsm.
MODULES = {
    "VirtualMachine": "virtual_machine",
    "Volume": "volume",
    "Snapshot": "snapshot",
    "Network": "network",
    "Nic": "nic",
    "IpAddress": "ip_address",
    "VirtualMachineTemplate": "virtual_machine_template",
}

# fsmc's design for IpAddress (CloudStack's reference has its states but no events or
# transitions): (source, event, target, tagged usage).
IP_ADDRESS_EVENTS = ["AllocateRequested", "ReserveRequested", "ReleaseRequested",
                     "OperationSucceeded", "OperationFailed"]
IP_ADDRESS_DESIGN = [
    ("Free", "AllocateRequested", "Allocating", False),
    ("Free", "ReserveRequested", "Reserved", False),
    ("Reserved", "AllocateRequested", "Allocating", False),
    ("Reserved", "ReleaseRequested", "Free", False),
    ("Allocating", "OperationSucceeded", "Allocated", True),
    ("Allocating", "OperationFailed", "Releasing", False),
    ("Allocated", "ReleaseRequested", "Releasing", True),
    ("Releasing", "OperationSucceeded", "Free", False),
    ("Releasing", "OperationFailed", "Releasing", False),
]


def _expected(machine: str) -> dict[str, Any]:
    """What the generated class must match: states, events, initial, transitions."""
    reference = json.loads((REFERENCE / f"{machine}.json").read_text(encoding="utf-8"))
    assert reference["machine"] == machine
    if machine == "IpAddress":
        events, transitions = IP_ADDRESS_EVENTS, IP_ADDRESS_DESIGN
    else:
        events = reference["events"]
        transitions = [(t["from"], t["event"], t["to"], "USAGE" in t["impacts"])
                       for t in reference["transitions"]]
    table = {(source, event): target for source, event, target, _ in transitions}
    assert len(table) == len(transitions), f"{machine}: a (state, event) pair with two targets"
    return {"states": reference["states"], "events": events, "initial": reference["initial"],
            "transitions": transitions, "table": table}


EXPECTED = {machine: _expected(machine) for machine in MODULES}


@functools.cache
def machine_class(machine: str) -> Any:
    """The class generated for `machine`, imported as `generated.<module>`."""
    if importlib.util.find_spec("generated") is None:
        # Plain `pytest` does not put the repository root on sys.path.
        sys.path.insert(0, str(REPO))
    module = importlib.import_module(f"generated.{MODULES[machine]}")
    return getattr(module, machine)


def _pairs() -> list[Any]:
    return [pytest.param(machine, state, event, expected["table"].get((state, event)),
                         id=f"{machine}-{state}-{event}")
            for machine, expected in EXPECTED.items()
            for state in expected["states"]
            for event in expected["events"]]


def _rows() -> list[Any]:
    return [pytest.param(machine, state, id=f"{machine}-{state}")
            for machine, expected in EXPECTED.items()
            for state in expected["states"]]


machines = pytest.mark.parametrize("machine", list(MODULES))


def test_every_reference_names_its_source_and_commit() -> None:
    """The tables are test data of this repository (a fresh clone runs every case above); each
    names the CloudStack file and commit it was transcribed from."""
    files = sorted(REFERENCE.glob("*.json"))
    assert [path.stem for path in files] == sorted(MODULES)
    for path in files:
        reference = json.loads(path.read_text(encoding="utf-8"))
        assert reference["source"].endswith(".java"), path
        assert len(reference["commit"]) == 40 and int(reference["commit"], 16) >= 0, path
        assert reference["commit"] in (REFERENCE / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("machine", "state", "event", "target"), _pairs())
def test_fire_matches_reference(machine: str, state: str, event: str, target: str | None) -> None:
    cls = machine_class(machine)
    m = cls("r-1", state=state)
    if target is not None:
        assert m.fire(event) is cls.State[target]
        assert m.state is cls.State[target]
    else:
        with pytest.raises(InvalidTransition):
            m.fire(event)
        assert m.state is cls.State[state]


@pytest.mark.parametrize(("machine", "state"), _rows())
def test_allowed_events_match_reference(machine: str, state: str) -> None:
    cls = machine_class(machine)
    expected = EXPECTED[machine]
    allowed = tuple(cls.Event[event] for event in expected["events"]
                    if (state, event) in expected["table"])
    assert cls("r-1", state=state).allowed_events() == allowed


@machines
def test_states_match_reference(machine: str) -> None:
    cls = machine_class(machine)
    states = EXPECTED[machine]["states"]
    names = [s.name for s in cls.State]
    assert set(names) == set(states)
    assert names == states  # declared in CloudStack's order
    assert list(cls.SPEC.states) == states


@machines
def test_events_match_reference(machine: str) -> None:
    cls = machine_class(machine)
    events = EXPECTED[machine]["events"]
    assert [e.name for e in cls.Event] == events
    assert list(cls.SPEC.events) == events


@machines
def test_initial_matches_reference(machine: str) -> None:
    cls = machine_class(machine)
    initial = EXPECTED[machine]["initial"]
    assert cls.SPEC.name == machine
    assert cls.SPEC.initial == initial
    assert cls("r-1").state is cls.State[initial]


@machines
def test_usage_tags_match_reference(machine: str) -> None:
    cls = machine_class(machine)
    spec = {(t.source, t.event, t.target): "usage" in t.tags for t in cls.SPEC.transitions}
    expected = {(source, event, target): usage
                for source, event, target, usage in EXPECTED[machine]["transitions"]}
    assert len(cls.SPEC.transitions) == len(expected)
    assert spec == expected


@machines
def test_every_state_is_documented(machine: str) -> None:
    cls = machine_class(machine)
    assert cls.SPEC.doc
    undocumented = [s for s in EXPECTED[machine]["states"] if not cls.SPEC.docs.get(s)]
    assert undocumented == []


def test_ip_address_lifecycle() -> None:
    """fsmc's public-IP design: allocate, bill, release, reserve, and back to the pool."""
    cls = machine_class("IpAddress")
    state = cls.State
    assert "no state machine" in cls.SPEC.doc  # says that the lifecycle is fsmc's, not CloudStack's

    ip = cls("ip-1")
    assert ip.state is state.Free
    assert ip.allocate_requested() is state.Allocating
    assert ip.operation_succeeded() is state.Allocated
    assert ip.release_requested() is state.Releasing
    assert ip.operation_failed() is state.Releasing  # a failed release is retried
    assert ip.operation_succeeded() is state.Free

    assert ip.reserve_requested() is state.Reserved
    assert ip.release_requested() is state.Free
    assert ip.reserve_requested() is state.Reserved
    assert ip.allocate_requested() is state.Allocating
    assert ip.operation_failed() is state.Releasing  # a failed association is undone
    assert ip.operation_succeeded() is state.Free
