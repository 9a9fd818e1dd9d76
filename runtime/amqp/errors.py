"""Errors of the broker bridge."""

from __future__ import annotations

from ..errors import FsmcError

__all__ = ["DeliveryError", "PublisherClosed"]


class DeliveryError(FsmcError):
    """`AmqpPublisher.close()` could not get every accepted event confirmed in time.
    `undelivered` counts them (overflowed ones included); `spilled` says how many of those
    wait in the spill file for the next publisher on it."""

    def __init__(self, message: str, *, undelivered: int, spilled: int = 0) -> None:
        super().__init__(message)
        self.undelivered = undelivered
        self.spilled = spilled

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (str(self), self.undelivered, self.spilled))


def _rebuild(message: str, undelivered: int, spilled: int) -> DeliveryError:
    return DeliveryError(message, undelivered=undelivered, spilled=spilled)


class PublisherClosed(FsmcError):
    """An event was given to a publisher after `close()`; it was not accepted."""
