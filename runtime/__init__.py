"""fsmc's runtime: what generated machines and their users import.

Generated classes derive from `Machine`; every transition posts a `StateChanged` to an
`EventBus`. This package never imports the compiler.
"""

from __future__ import annotations

from .bus import EventBus
from .dispatch import Candidate, Dispatch, PostRecord, TransitionListener, candidate
from .enums import MachineEnum
from .errors import (
    BusClosed,
    BusFull,
    ConcurrentUpdate,
    FsmcError,
    GuardRejected,
    InvalidTransition,
    ReentrantTransition,
    TransitionError,
    UnknownEvent,
)
from .events import DeadEvent, StateChanged
from .machine import Machine
from .spec import MachineSpec, TransitionSpec
from .subscriptions import Registration, Subscription, subscribe
from .topics import topic_matches, validate_pattern

__all__ = [
    "BusClosed",
    "BusFull",
    "Candidate",
    "ConcurrentUpdate",
    "DeadEvent",
    "Dispatch",
    "EventBus",
    "FsmcError",
    "GuardRejected",
    "InvalidTransition",
    "Machine",
    "MachineEnum",
    "MachineSpec",
    "PostRecord",
    "ReentrantTransition",
    "Registration",
    "StateChanged",
    "Subscription",
    "TransitionError",
    "TransitionListener",
    "TransitionSpec",
    "UnknownEvent",
    "candidate",
    "subscribe",
    "topic_matches",
    "validate_pattern",
]
