"""The data a machine's transitions run on, and the protocols around it: dispatch tables
(`Dispatch`, `Candidate`, as generated modules write them), listener sets, and the marker of a
transition in progress (`_Busy`, for re-entrancy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from .events import StateChanged


class TransitionListener(Protocol):
    """What `add_listener` accepts. Either method may be missing; both get the transition's
    `StateChanged`. A pre-listener vetoes the transition by raising."""

    def pre_transition(self, event: StateChanged) -> object: ...

    def post_transition(self, event: StateChanged) -> object: ...


class Bus(Protocol):
    """Anything with `post`: an `EventBus`, or a test double."""

    def post(self, event: object) -> None: ...


class Candidate(NamedTuple):
    """One transition as the dispatcher sees it. `plain` = no guard and no action."""

    target: Any
    guard: str | None
    negated: bool
    action: str | None
    tags: tuple[str, ...]
    plain: bool


class Dispatch(NamedTuple):
    """Everything firing one event needs: the event and, per source state, its candidates
    in the order they are tried."""

    event: Any
    table: Mapping[Any, tuple[Candidate, ...]]


# What the generated code precomputes for each plain transition, so that posting its event
# reads no enum or spec: machine, event, old state and new state names, and its tags.
PostRecord = tuple[str, str, str, str, tuple[str, ...]]


def candidate(target: Any, *, guard: str | None = None, negated: bool = False,
              action: str | None = None, tags: tuple[str, ...] = ()) -> Candidate:
    return Candidate(target, guard, negated, action, tags, guard is None and action is None)


class _Hooks(NamedTuple):
    listeners: tuple[object, ...]
    pre: tuple[Callable[[StateChanged], object], ...]
    post: tuple[Callable[[StateChanged], object], ...]


_NO_HOOKS = _Hooks((), (), ())


def _make_hooks(listeners: tuple[object, ...]) -> _Hooks:
    pre = tuple(m for m in (getattr(o, "pre_transition", None) for o in listeners) if m)
    post = tuple(m for m in (getattr(o, "post_transition", None) for o in listeners) if m)
    return _Hooks(listeners, pre, post)


class _Busy:
    """Set while a transition with callbacks runs: who runs it, in which phase, and the
    events of nested transitions waiting to be posted after the current one."""

    __slots__ = ("owner", "pending", "posting", "task")

    def __init__(self, owner: int, task: object = None) -> None:
        self.owner = owner
        self.task = task
        self.posting = False
        self.pending: list[StateChanged] = []


def _guard_text(option: Candidate) -> str:
    return f"{'unless' if option.negated else 'if'} {option.guard}" if option.guard else "always"
