"""The exception tree shared by every phase of fsmc.

`FsmcError` is the root. The front end and compiler raise `SpecError` subclasses (defined there);
running machines raise `TransitionError` subclasses, which carry the machine, the resource id,
the state and the event involved so that a caller can act on them.
"""

from __future__ import annotations

from collections.abc import Sequence


class FsmcError(Exception):
    """Base of every exception fsmc raises on purpose."""


class TransitionError(FsmcError):
    """A transition could not happen; the machine is unchanged."""

    def __init__(self, message: str, *, machine: str, resource_id: object, state: str,
                 event: str) -> None:
        super().__init__(message)
        self.machine = machine
        self.resource_id = resource_id
        self.state = state
        self.event = event

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments would be lost by the default pickling of exceptions.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[TransitionError], args: tuple[object, ...],
             attrs: dict[str, object]) -> TransitionError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(attrs)
    return error


class InvalidTransition(TransitionError):
    """The spec has no transition for this event from the current state."""

    def __init__(self, *, machine: str, resource_id: object, state: str, event: str,
                 allowed: Sequence[str] = ()) -> None:
        hint = f"allowed: {', '.join(allowed)}" if allowed else "no event is allowed there"
        super().__init__(f"{machine} {resource_id}: {event} is not allowed in {state}; {hint}",
                         machine=machine, resource_id=resource_id, state=state, event=event)
        self.allowed = tuple(allowed)


class GuardRejected(TransitionError):
    """Every candidate transition for this event was blocked by its guard."""

    def __init__(self, *, machine: str, resource_id: object, state: str, event: str,
                 guards: Sequence[str] = ()) -> None:
        names = ", ".join(guards)
        super().__init__(
            f"{machine} {resource_id}: {event} from {state} was rejected by its guards ({names})",
            machine=machine, resource_id=resource_id, state=state, event=event)
        self.guards = tuple(guards)


class UnknownEvent(TransitionError, ValueError):
    """An event name that the machine does not declare."""

    def __init__(self, *, machine: str, resource_id: object, state: str, event: str,
                 known: Sequence[str] = ()) -> None:
        super().__init__(f"{machine} {resource_id}: unknown event {event!r}; "
                         f"events: {', '.join(known)}",
                         machine=machine, resource_id=resource_id, state=state, event=event)


class ReentrantTransition(TransitionError):
    """`fire` was called on a machine from inside one of its own transitions."""


class ConcurrentUpdate(TransitionError):
    """Another writer moved the persisted machine first; reload and retry."""


class BusClosed(FsmcError):
    """`post` was called on an event bus after `close()`."""


class BusFull(FsmcError):
    """A bounded bus queue was full and the overflow policy is `raise`."""
