"""The contenders of the transition and memory cases, all on the VirtualMachine cycle
Stopped → Starting → Running → Stopping → Stopped (events StartRequested, OperationSucceeded,
StopRequested, OperationSucceeded), plus a synthetic large machine.

- the generated `VirtualMachine` (specs/virtual_machine.fsm: 11 states, 54 transitions);
- hand-written: one method per event, a `{state: target}` dict per event, states an `Enum`
  hashed by identity, a `threading.Lock` held around the lookup (the generated class is
  thread-safe by default); and the same without the lock (the floor of plain Python).

transitions and python-statemachine are in `bench.competitors`. Each contender is written the
fastest way plain Python (or its library) allows; none is weakened.
"""

from __future__ import annotations

import enum
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from fsmc.runtime import EventBus as EventBus
from fsmc.runtime import InvalidTransition, StateChanged
from fsmc.runtime.exclusion import take

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `generated` is importable from the repository root
    sys.path.insert(0, str(ROOT))

from generated.virtual_machine import VirtualMachine as VirtualMachine  # noqa: E402

CYCLE = (("Stopped", "start_requested", "Starting"), ("Starting", "operation_succeeded", "Running"),
         ("Running", "stop_requested", "Stopping"), ("Stopping", "operation_succeeded", "Stopped"))
STATES = ("Stopped", "Starting", "Running", "Stopping")
ALLOWED = {"Stopped": ("StartRequested",), "Starting": ("OperationSucceeded",),
           "Running": ("StopRequested",), "Stopping": ("OperationSucceeded",)}
_log = logging.getLogger("bench")


class S(enum.Enum):
    """Hand-written states: an `Enum` hashed by identity (a plain `Enum` hashes in Python)."""

    __hash__ = object.__hash__
    Stopped = "Stopped"
    Starting = "Starting"
    Running = "Running"
    Stopping = "Stopping"


_START = {S.Stopped: S.Starting}
_SUCCEED = {S.Starting: S.Running, S.Stopping: S.Stopped}
_STOP = {S.Running: S.Stopping}


def _invalid(state: S, event: str) -> InvalidTransition:
    return InvalidTransition(machine="VirtualMachine", resource_id="vm-1", state=state.name,
                             event=event, allowed=ALLOWED[state.name])


class Hand:
    """Hand-written, no lock: the fastest plain Python (not thread-safe)."""

    __slots__ = ("resource_id", "state")

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id
        self.state = S.Stopped

    def start_requested(self) -> S:
        try:
            target = _START[self.state]
        except KeyError:
            raise _invalid(self.state, "StartRequested") from None
        self.state = target
        return target

    def operation_succeeded(self) -> S:
        try:
            target = _SUCCEED[self.state]
        except KeyError:
            raise _invalid(self.state, "OperationSucceeded") from None
        self.state = target
        return target

    def stop_requested(self) -> S:
        try:
            target = _STOP[self.state]
        except KeyError:
            raise _invalid(self.state, "StopRequested") from None
        self.state = target
        return target


class HandLockedWith:
    """Hand-written + lock, the idiomatic way: a `with` block per transition."""

    __slots__ = ("_lock", "resource_id", "state")

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id
        self.state = S.Stopped
        self._lock = threading.Lock()

    def start_requested(self) -> S:
        with self._lock:
            try:
                target = _START[self.state]
            except KeyError:
                raise _invalid(self.state, "StartRequested") from None
            self.state = target
            return target

    def operation_succeeded(self) -> S:
        with self._lock:
            try:
                target = _SUCCEED[self.state]
            except KeyError:
                raise _invalid(self.state, "OperationSucceeded") from None
            self.state = target
            return target

    def stop_requested(self) -> S:
        with self._lock:
            try:
                target = _STOP[self.state]
            except KeyError:
                raise _invalid(self.state, "StopRequested") from None
            self.state = target
            return target


class HandLocked:
    """Hand-written with the generated class's guarantee (transitions serialised by a lock),
    locking the fastest way: `acquire()` without arguments (a C call returning at once when
    the lock is free; cheaper than `with` and than `acquire(False)`, which parses its
    argument); `try`/`finally` costs nothing when nothing raises."""

    __slots__ = ("_lock", "resource_id", "state")

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id
        self.state = S.Stopped
        self._lock = threading.Lock()

    def start_requested(self) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _START[self.state]
            except KeyError:
                raise _invalid(self.state, "StartRequested") from None
            self.state = target
            return target
        finally:
            lock.release()

    def operation_succeeded(self) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _SUCCEED[self.state]
            except KeyError:
                raise _invalid(self.state, "OperationSucceeded") from None
            self.state = target
            return target
        finally:
            lock.release()

    def stop_requested(self) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _STOP[self.state]
            except KeyError:
                raise _invalid(self.state, "StopRequested") from None
            self.state = target
            return target
        finally:
            lock.release()


class HandLockedPayload:
    """`HandLocked` with the generated class's signature: every event method takes
    `**payload` (CPython builds a dict for it on every call, even an empty one)."""

    __slots__ = ("_lock", "resource_id", "state")

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id
        self.state = S.Stopped
        self._lock = threading.Lock()

    def start_requested(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _START[self.state]
            except KeyError:
                raise _invalid(self.state, "StartRequested") from None
            self.state = target
            return target
        finally:
            lock.release()

    def operation_succeeded(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _SUCCEED[self.state]
            except KeyError:
                raise _invalid(self.state, "OperationSucceeded") from None
            self.state = target
            return target
        finally:
            lock.release()

    def stop_requested(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            try:
                target = _STOP[self.state]
            except KeyError:
                raise _invalid(self.state, "StopRequested") from None
            self.state = target
            return target
        finally:
            lock.release()


class HandToken:
    """Hand-written with the generated class's exclusion primitive instead of a Lock: a
    one-token list per instance, taken with `pop()` and given back with `append()` (a quarter
    of a Lock's cost; `fsmc.runtime.exclusion`), yielding while another thread holds it.
    Shown for context: the target's baseline is the Lock, which the issue names."""

    __slots__ = ("_token", "resource_id", "state")

    def __init__(self, resource_id: object = "vm-1") -> None:
        self.resource_id = resource_id
        self.state = S.Stopped
        self._token: list[None] = [None]

    def start_requested(self) -> S:
        token = self._token
        try:
            token.pop()
        except IndexError:
            take(token)
        try:
            try:
                target = _START[self.state]
            except KeyError:
                raise _invalid(self.state, "StartRequested") from None
            self.state = target
            return target
        finally:
            token.append(None)

    def operation_succeeded(self) -> S:
        token = self._token
        try:
            token.pop()
        except IndexError:
            take(token)
        try:
            try:
                target = _SUCCEED[self.state]
            except KeyError:
                raise _invalid(self.state, "OperationSucceeded") from None
            self.state = target
            return target
        finally:
            token.append(None)

    def stop_requested(self) -> S:
        token = self._token
        try:
            token.pop()
        except IndexError:
            take(token)
        try:
            try:
                target = _STOP[self.state]
            except KeyError:
                raise _invalid(self.state, "StopRequested") from None
            self.state = target
            return target
        finally:
            token.append(None)


class Record(NamedTuple):
    """What the hand-written publisher hands its subscriber: the fields of a `StateChanged`."""

    id: int
    time_ns: int
    machine: str
    resource_id: object
    event: str
    old_state: str
    new_state: str
    tags: tuple[str, ...]
    payload: Any


_EMPTY: Any = MappingProxyType({})
_ids = itertools.count()
_time_ns = time.time_ns


class HandPublishing:
    """Hand-written, locked, publishing to one synchronous subscriber with the bus's
    guarantees: an immutable record (counter id, `time_ns`, read-only payload) built and handed
    over under the lock (so one resource's events arrive in order), the subscriber's exception
    isolated from the caller. State names are read with `_name_` (`Enum.name` is a Python-level
    property, several times slower)."""

    __slots__ = ("_lock", "resource_id", "state", "subscriber")

    def __init__(self, subscriber: Callable[[Record], object]) -> None:
        self.state = S.Stopped
        self.resource_id = "vm-1"
        self._lock = threading.Lock()
        self.subscriber = subscriber

    def start_requested(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            source = self.state
            try:
                target = _START[source]
            except KeyError:
                raise _invalid(source, "StartRequested") from None
            self.state = target
            try:
                self.subscriber(Record(next(_ids), _time_ns(), "VirtualMachine",
                                       self.resource_id, "StartRequested", source._name_,
                                       target._name_, (),
                                       MappingProxyType(payload) if payload else _EMPTY))
            except Exception:
                _log.exception("subscriber failed")
            return target
        finally:
            lock.release()

    def operation_succeeded(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            source = self.state
            try:
                target = _SUCCEED[source]
            except KeyError:
                raise _invalid(source, "OperationSucceeded") from None
            self.state = target
            try:
                self.subscriber(Record(next(_ids), _time_ns(), "VirtualMachine",
                                       self.resource_id, "OperationSucceeded", source._name_,
                                       target._name_, ("usage",),
                                       MappingProxyType(payload) if payload else _EMPTY))
            except Exception:
                _log.exception("subscriber failed")
            return target
        finally:
            lock.release()

    def stop_requested(self, **payload: Any) -> S:
        lock = self._lock
        lock.acquire()
        try:
            source = self.state
            try:
                target = _STOP[source]
            except KeyError:
                raise _invalid(source, "StopRequested") from None
            self.state = target
            try:
                self.subscriber(Record(next(_ids), _time_ns(), "VirtualMachine",
                                       self.resource_id, "StopRequested", source._name_,
                                       target._name_, (),
                                       MappingProxyType(payload) if payload else _EMPTY))
            except Exception:
                _log.exception("subscriber failed")
            return target
        finally:
            lock.release()


class Slots2:
    """The memory yardstick: an object with two `__slots__` fields (a state and an id)."""

    __slots__ = ("resource_id", "state")

    def __init__(self, resource_id: object) -> None:
        self.resource_id = resource_id
        self.state = S.Stopped


def sink() -> Callable[[object], None]:
    """A subscriber that does nothing but exist (a distinct function each call)."""
    def subscriber(event: object) -> None:
        pass
    return subscriber


def generated_with_bus(state: str = "Stopped") -> VirtualMachine:
    bus = EventBus()
    bus.subscribe(sink(), StateChanged)
    return VirtualMachine("vm-1", bus=bus, state=state)
