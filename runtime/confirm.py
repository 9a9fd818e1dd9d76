"""Confirmations: how a sender learns that the next hop holds a batch of events durably.

A `ConfirmingSink` (such as `fsmc.runtime.amqp.AmqpPublisher`) takes a batch with
`send(events)` and returns a `Confirmation`; `confirmation.wait(timeout)` is True once the next
hop confirmed every event of the batch (for RabbitMQ: a publisher confirm). The outbox relay
marks rows delivered only for confirmed events (`fsmc.runtime.outbox`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol, runtime_checkable

from .events import StateChanged

__all__ = ["Confirmation", "ConfirmingSink"]

_WAITING, _CONFIRMED, _FAILED = 0, 1, 2


class Confirmation:
    """What became of the events of one `send`, by position in the batch.

    Each event is waiting, confirmed (the next hop holds it), or failed (it was not taken, or
    the sender was closed before it was confirmed: it may or may not have arrived). An event
    that is resent after a lost connection or a nack stays waiting. `wait` returns once none
    is waiting (or on timeout)."""

    def __init__(self, size: int, condition: threading.Condition) -> None:
        self._cond = condition
        self._states = bytearray(size)
        self._waiting = size
        self._confirmed = 0

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return (f"<Confirmation {self._confirmed} of {len(self)} confirmed, "
                f"{self._waiting} waiting>")

    @property
    def done(self) -> bool:
        """Whether every event is settled (confirmed or failed)."""
        return self._waiting == 0

    @property
    def confirmed(self) -> int:
        return self._confirmed

    @property
    def failed(self) -> int:
        return len(self) - self._confirmed - self._waiting

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None: no limit) until every event is settled; True
        if all of them were confirmed."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0, timeout)
            return self._confirmed == len(self._states)

    def confirmed_flags(self) -> list[bool]:
        """For each event of the batch, in order: whether it is confirmed now."""
        with self._cond:
            return [state == _CONFIRMED for state in self._states]

    def ticket(self, index: int) -> Callable[[bool], None]:
        """The callback that settles event `index`: True confirmed, False failed. The sender
        calls it with `condition`'s lock held; only the first call counts."""
        return partial(self._settle, index)

    def _settle(self, index: int, confirmed: bool) -> None:
        if self._states[index] != _WAITING:
            return
        self._states[index] = _CONFIRMED if confirmed else _FAILED
        self._waiting -= 1
        self._confirmed += confirmed
        if not self._waiting:
            self._cond.notify_all()


@runtime_checkable
class ConfirmingSink(Protocol):
    """Something that takes a batch of events and says when the next hop holds them."""

    def send(self, events: Sequence[StateChanged]) -> Confirmation: ...
