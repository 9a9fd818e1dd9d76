"""Mutual exclusion for machine instances, without a lock per instance.

A machine is "busy" while a transition with callbacks runs (its `_busy` slot names the owner);
only the owner changes its state then. Claiming and clearing that mark, and the plain
transitions that change the state at once, happen while holding the token of a stripe shared
by many instances (`STRIPES` of them, handed out in turn on an instance's first transition).

A stripe is a list holding one token when free: `stripe.pop()` takes it (`IndexError` when
another thread has it), `stripe.append(None)` gives it back. Both are single operations the
interpreter never interrupts, and together they cost about a quarter of a `threading.Lock`'s
`acquire()` + `release()`. A token is only ever held for a few bytecodes: no guard, action,
listener, bus subscriber or database write runs while it is held. So stripes add no deadlock,
however machines fire each other, and a slow transition delays nothing but its own instance.
(Two instances whose listeners fire each other, from two threads at once, still wait for each
other forever, as they would with a lock each: that cycle is the application's.)
A thread that finds the token taken yields until it is back (`take`).

Every way out of those few bytecodes gives the token back, a `RecursionError` raised by a call
among them included. The token is not reentrant: code that the interpreter runs in the middle
of them (a signal handler, a `__del__`) must not fire machines, and a `KeyboardInterrupt`
landing just after a `pop()` may lose the token of one stripe. A thread stuck for seconds
waiting for a token says so in a log warning. A forked child starts with every stripe free
(`os.register_at_fork`).

A thread that finds an instance busy with another thread's transition waits, without the
token, on the stripe's condition until the owner clears the mark and calls `wake`
(`wait_while_busy`).
Waking is race-free without any lock on the uncontended path: a waiter counts itself in
`waiting` before it looks at `_busy` under the condition's lock; the owner clears `_busy` before
it reads `waiting`. Either the waiter sees the mark cleared, or the owner sees the waiter and
notifies it under the condition's lock, which the waiter only gives up inside `wait`. (The
argument relies on the order the interpreter lock gives to these steps, as in CPython 3.11;
waiters also look again every 0.1 s.)
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

__all__ = ["STRIPES", "Stripe", "assign", "get_ident", "take", "wait_while_busy",
           "waiting", "wake"]

STRIPES = 256

Stripe = list[None]
"""A stripe: `[None]` when its token is free, `[]` while a thread holds it."""

_stripes: tuple[Stripe, ...] = tuple([None] for _ in range(STRIPES))
_conditions = {id(stripe): threading.Condition(threading.Lock()) for stripe in _stripes}
_turn = itertools.count().__next__  # atomic in CPython: no two instances race for a number

waiting = [0]
"""Threads waiting, in `wait_while_busy`, for some instance to become free (a cell, read
without a lock by owners releasing an instance; changed under `_waiting_lock`)."""
_waiting_lock = threading.Lock()

_STUCK_SPINS = 50_000  # about 10 s of yielding (see `take`)
_RECHECK = 0.1  # seconds between a waiter's looks at its instance, should a wake-up be missed
_logger = logging.getLogger("fsmc")

get_ident = threading.get_ident


def assign() -> Stripe:
    """The stripe for an instance's first transition."""
    return _stripes[_turn() % STRIPES]


def take(stripe: Stripe) -> None:
    """Take `stripe`'s token, yielding to the thread that holds it until it gives it back."""
    pop = stripe.pop
    for spin in itertools.count():
        try:
            pop()
            return
        except IndexError:
            # The holder needs a few bytecodes, and the interpreter lock to run them: yield.
            time.sleep(0 if spin < 64 else 0.0002)
            if spin == _STUCK_SPINS:
                _logger.warning(
                    "thread %s has waited ~10 s for a machine stripe that is held for a few "
                    "bytecodes at a time: is a machine fired from a signal handler or a "
                    "__del__ method, in the middle of another transition of the same "
                    "thread? Still waiting.", threading.current_thread().name)


def wait_while_busy(machine: Any, stripe: Stripe) -> None:
    """Wait, not holding `stripe`'s token, until `machine` is not busy; return holding the
    token, the machine idle. If it raises, the token is not held. The mark must belong to
    another thread (or this would wait for itself)."""
    condition = _conditions[id(stripe)]
    while True:
        with _waiting_lock:
            waiting[0] += 1
        try:
            with condition:
                while machine._busy is not None:
                    # Timed: an owner whose wake-up failed (a RecursionError inside
                    # `notify_all`, say) costs a waiter a tenth of a second, not forever.
                    condition.wait(_RECHECK)
        finally:
            with _waiting_lock:
                waiting[0] -= 1
        take(stripe)
        if machine._busy is None:
            return
        stripe.append(None)  # claimed again meanwhile: wait again


def wake(stripe: Stripe) -> None:
    """Wake the threads waiting on `stripe` (each looks at its own instance again)."""
    condition = _conditions[id(stripe)]
    with condition:
        condition.notify_all()


def _reset_after_fork() -> None:
    """In a forked child only the forking thread lives on: tokens held and waiters counted by
    the others would never come back. Every stripe starts free again."""
    global _conditions, _waiting_lock
    for stripe in _stripes:
        stripe[:] = [None]
    _conditions = {id(stripe): threading.Condition(threading.Lock()) for stripe in _stripes}
    _waiting_lock = threading.Lock()
    waiting[0] = 0


os.register_at_fork(after_in_child=_reset_after_fork)
