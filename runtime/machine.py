"""The base class of every generated machine: the transition algorithm, listeners, locking.

A transition, in order: look up the candidates for (state, event) → try guards in spec order →
pre-listeners (any may veto by raising) → the action → the state changes → post-listeners →
one `StateChanged` posted to the bus. If a guard, a pre-listener or the action raises, nothing
has changed and nothing is posted.

Thread safety: `fire` calls on one instance are serialised. A transition with callbacks marks
the instance busy (`_busy`) until its event has been handed to the bus, so every subscriber
sees one resource's events in the order its transitions happened; another thread firing it
meanwhile waits. The mark is claimed under a token shared by a stripe of instances and held
for a few bytecodes only (`fsmc.runtime.exclusion`): an instance costs no lock of its own. Calling
`fire` on the same instance from its own guard, pre-listener or action raises
`ReentrantTransition` (the state is not decided yet); from a post-listener or a synchronous bus
subscriber the nested transition runs at once and its event is posted right after the current
one.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable
from typing import Any, ClassVar, Generic, TypeVar

from . import class_listeners, exclusion
from .dispatch import (
    _NO_HOOKS,
    Bus,
    Candidate,
    Dispatch,
    PostRecord,
    TransitionListener,
    _Busy,
    _guard_text,
    _Hooks,
    _make_hooks,
)
from .enums import MachineEnum
from .errors import GuardRejected, InvalidTransition, ReentrantTransition, UnknownEvent
from .events import StateChanged
from .spec import MachineSpec

S = TypeVar("S", bound=MachineEnum)
E = TypeVar("E", bound=MachineEnum)

_get_ident = threading.get_ident
_take = exclusion.take
_waiting = exclusion.waiting
_wake = exclusion.wake
_assigning = threading.Lock()


class Machine(Generic[S, E]):
    """Base of generated machines. Subclasses set `State`, `Event`, `SPEC` and the tables."""

    __slots__ = ("_bus", "_busy", "_hooks", "_observed", "_resource_id", "_state", "_stripe")

    State: ClassVar[type[Any]]
    Event: ClassVar[type[Any]]
    SPEC: ClassVar[MachineSpec]
    _DISPATCH: ClassVar[dict[object, Dispatch]]
    _ALLOWED: ClassVar[dict[Any, tuple[Any, ...]]]
    _INITIAL: ClassVar[Any]
    _class_hooks: ClassVar[_Hooks] = _NO_HOOKS
    # True when this class has class listeners (its own or inherited), or persists.
    _class_observed: ClassVar[bool] = False
    # Set by classes whose transitions must be persisted (`fsmc.runtime.store`): they always
    # build the event and take the full path, so that `_apply` runs.
    _persistent: ClassVar[bool] = False
    # What `_hooks` is when an instance has no listener: None lets the generated fast path
    # run; a class that must never take it (persistence) sets `_NO_HOOKS`.
    _idle_hooks: ClassVar[_Hooks | None] = None
    # The generated class's `{source: target}` tables of plain transitions, read by its fast
    # path. While any class of its family has class listeners they are emptied (so every
    # transition takes `_fire`, which sees them) and refilled when the last one goes: the fast
    # path then only has to check the instance (`_observed`).
    _PLAIN: ClassVar[tuple[dict[Any, Any], ...]]
    _plain_saved: ClassVar[tuple[dict[Any, Any], ...]]  # the tables' content while emptied
    _own_class_listeners: ClassVar[tuple[object, ...]] = ()

    def __init__(self, resource_id: object, *, bus: Bus | None = None,
                 state: S | str | None = None) -> None:
        self._resource_id = resource_id
        self._bus = bus
        self._hooks: _Hooks | None = None
        # The stripe (`fsmc.runtime.exclusion`), given on the first transition.
        self._stripe: exclusion.Stripe | None = None
        # None when idle; a `_Busy` during a transition with callbacks; the owner's thread id
        # while `_post_plain` posts. Claimed holding the stripe's token.
        self._busy: _Busy | int | None = None
        self._observed = bus is not None
        self._state: S = self._INITIAL if state is None else self._coerce_state(state)

    @classmethod
    def create(cls, resource_id: object, *, bus: Bus | None = None,
               state: S | str | None = None) -> Machine[S, E]:
        """A new resource: in the initial state, or in `state` if the spec makes it an entry
        point (`entry`). Any other state is refused; use the constructor's `state=` to rebuild
        a resource from storage."""
        if state is not None:
            member = cls._coerce_state(state)
            if member.name not in cls.SPEC.start_states:
                raise ValueError(
                    f"{cls.SPEC.name}: a new resource cannot start in {member.name}; it starts "
                    f"in {' or '.join(cls.SPEC.start_states)}")
        return cls(resource_id, bus=bus, state=state)

    @classmethod
    def _coerce_state(cls, state: object) -> Any:
        if isinstance(state, cls.State):
            return state
        if isinstance(state, str):
            try:
                return cls.State[state]
            except KeyError:
                pass
        raise ValueError(f"{cls.SPEC.name}: unknown state {state!r}; states: "
                         f"{', '.join(cls.SPEC.states)}")

    def __getstate__(self) -> object:
        """Copies and pickles take the resource, not its place in the exclusion: a copy starts
        idle, with a stripe of its own given on its first transition."""
        state = super().__getstate__()
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            slots = dict(state[1])
            slots.update(_busy=None, _stripe=None)
            return state[0], slots
        return state

    # -- reading ------------------------------------------------------------------------------

    @property
    def state(self) -> S:
        return self._state

    @property
    def resource_id(self) -> object:
        return self._resource_id

    @property
    def bus(self) -> Bus | None:
        return self._bus

    def allowed_events(self) -> tuple[E, ...]:
        """Events with a transition from the current state, in declaration order (guards are
        not run)."""
        return self._ALLOWED.get(self._state, ())

    def can_fire(self, event: E | str, /, **payload: Any) -> bool:
        """Whether `fire(event, **payload)` would change the state (listeners aside): runs the
        guards with `payload`, changes nothing."""
        candidates = self._dispatch(event).table.get(self._state)
        return candidates is not None and \
            self._first_open(candidates, payload, "acan_fire") is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._resource_id!r} in {self._state.name}>"

    # -- listeners ----------------------------------------------------------------------------

    def add_listener(self, listener: TransitionListener | object) -> None:
        """Call `listener.pre_transition(event)` / `post_transition(event)` around every
        transition of this instance. Adding the same listener twice has no effect."""
        current = self._hooks or _NO_HOOKS
        if not any(existing is listener for existing in current.listeners):
            self._hooks = _make_hooks((*current.listeners, listener))
            self._observed = True

    def remove_listener(self, listener: TransitionListener | object) -> None:
        current = self._hooks or _NO_HOOKS
        remaining = tuple(o for o in current.listeners if o is not listener)
        if len(remaining) == len(current.listeners):
            raise ValueError(f"{listener!r} is not a listener of {self!r}")
        self._hooks = _make_hooks(remaining) if remaining else self._idle_hooks
        self._observed = self._hooks is not None or self._bus is not None

    @classmethod
    def add_class_listener(cls, listener: TransitionListener | object) -> None:
        """Listen to every instance of this class (and of its subclasses)."""
        class_listeners.add(cls, listener)

    @classmethod
    def remove_class_listener(cls, listener: TransitionListener | object) -> None:
        class_listeners.remove(cls, listener)

    # -- firing -------------------------------------------------------------------------------

    def fire(self, event: E | str, /, **payload: Any) -> S:
        """Fire `event` (a member of `Event` or its name) and return the new state."""
        try:
            dispatch = self._DISPATCH[event]
        except (KeyError, TypeError):
            dispatch = self._dispatch(event)
        return self._fire(dispatch, payload)

    def _dispatch(self, event: object) -> Dispatch:
        try:
            return self._DISPATCH[event]
        except (KeyError, TypeError):
            raise UnknownEvent(machine=self.SPEC.name, resource_id=self._resource_id,
                               state=self._state.name, event=str(event),
                               known=self.SPEC.events) from None

    def _fire(self, dispatch: Dispatch, payload: dict[str, Any]) -> S:
        stripe = self._stripe or self._assign_stripe()
        try:
            stripe.pop()
        except IndexError:
            _take(stripe)
        try:  # the token goes back on every way out, a RecursionError's included
            if self._busy is None:
                candidates = dispatch.table.get(self._state)
                if candidates is not None:
                    first = candidates[0]
                    if first.plain and not self._observed and not self._class_observed:
                        self._state = first.target
                        return first.target  # type: ignore[no-any-return]
        finally:
            stripe.append(None)
        return self._fire_marked(dispatch, payload, stripe)

    def _fire_marked(self, dispatch: Dispatch, payload: dict[str, Any],
                     stripe: exclusion.Stripe) -> S:
        """`fire` through the whole algorithm, with the instance marked busy meanwhile (or
        nested in this thread's own transition of it)."""
        me = _get_ident()
        mark = _Busy(me)
        busy, candidates = self._claim(dispatch, mark, stripe)
        if busy is not None:
            if (busy.owner if type(busy) is _Busy else busy) == me:
                return self._reentrant(dispatch, payload)
            exclusion.wait_while_busy(self, stripe)  # returns holding the token
            busy, candidates = self._claim(dispatch, mark, stripe, holding=True)
        if candidates is None:
            raise self._invalid(dispatch.event)
        try:
            return self._transition(dispatch, candidates, payload, mark, nested=False)
        finally:
            self._busy = None  # first, no call before it: a failing call cannot leave it set
            if _waiting[0]:
                _wake(stripe)

    def _claim(self, dispatch: Dispatch, mark: _Busy, stripe: exclusion.Stripe, *,
               holding: bool = False) -> tuple[_Busy | int | None, tuple[Candidate, ...] | None]:
        """Under the stripe's token (taken here unless `holding`; given back on every way
        out): if the instance is idle, look its candidates up and, when there are some, mark
        it busy with `mark`. Returns the mark found (None: idle) and the candidates."""
        if not holding:
            _take(stripe)  # held for a few bytecodes by anyone: never long
        try:
            busy = self._busy
            candidates = None
            if busy is None:
                candidates = dispatch.table.get(self._state)
                if candidates is not None:
                    self._busy = mark
        finally:
            stripe.append(None)
        return busy, candidates

    def _post_plain(self, owner: int, record: PostRecord, target: Any,
                    payload: dict[str, Any]) -> S:
        """The generated fast path's second half: post the event of a plain transition (no
        guard, no action) observed only by the bus. The state has changed and the instance is
        marked busy by `owner` (this thread's id) until the event is posted, as in
        `_transition`; the generated code clears the mark. `record` gives the event's fields
        (machine, event, old and new state names, tags), precomputed by the generated code. A
        subscriber that fires this machine again nests (see `_reentrant`) and its event is
        posted after this one."""
        machine, event, old, new, tags = record
        self._bus.post(StateChanged(  # type: ignore[union-attr]
            machine, self._resource_id, event, old, new, tags, payload))
        nested = self._busy
        if nested is not owner and isinstance(nested, _Busy):
            while nested.pending:
                self._bus.post(nested.pending.pop(0))  # type: ignore[union-attr]
        return target  # type: ignore[no-any-return]

    def _assign_stripe(self) -> exclusion.Stripe:
        """The instance's stripe, given on its first transition (once, whatever the race)."""
        stripe = exclusion.assign()
        with _assigning:
            if self._stripe is None:
                self._stripe = stripe
            return self._stripe

    def _reentrant(self, dispatch: Dispatch, payload: dict[str, Any]) -> S:
        """`fire` from inside this thread's own transition of this instance."""
        busy = self._busy
        if type(busy) is not _Busy:
            # Fired from a subscriber while `_post_plain` posts: nest, as in a post phase.
            busy = self._busy = _Busy(busy)  # type: ignore[arg-type]
            busy.posting = True
        if not busy.posting:
            raise ReentrantTransition(
                f"{self.SPEC.name} {self._resource_id}: {dispatch.event.name} was fired from a "
                f"guard, pre-listener or action of this machine's own transition, before its "
                "state changed; fire it from a post-listener or a bus subscriber instead",
                machine=self.SPEC.name, resource_id=self._resource_id,
                state=self._state.name, event=dispatch.event.name)
        candidates = dispatch.table.get(self._state)
        if candidates is None:
            raise self._invalid(dispatch.event)
        return self._transition(dispatch, candidates, payload, busy, nested=True)

    def _transition(self, dispatch: Dispatch, candidates: tuple[Candidate, ...],
                    payload: dict[str, Any], busy: _Busy, *, nested: bool) -> S:
        """The full algorithm, with the instance marked busy by `busy` (this thread's own
        transition, or the one this one nests in, in its post phase)."""
        was_posting, busy.posting = busy.posting, False
        try:
            chosen = self._choose(dispatch, candidates, payload)
            source = self._state
            hooks = self._effective_hooks()
            event = None
            if hooks.listeners or self._bus is not None or self._persistent:
                event = StateChanged(self.SPEC.name, self._resource_id, dispatch.event._name_,
                                     source._name_, chosen.target._name_, chosen.tags, payload)
            for pre in hooks.pre:
                pre(event)  # type: ignore[arg-type]
            if chosen.action is not None:
                getattr(self, chosen.action)(**payload)
            self._apply(chosen.target, event)
            busy.posting = True
            self._after(event, hooks, busy, nested=nested)
        finally:
            busy.posting = was_posting
        return chosen.target  # type: ignore[no-any-return]

    def _after(self, event: StateChanged | None, hooks: _Hooks, busy: _Busy, *,
               nested: bool) -> None:
        """Post-listeners, then the bus. A nested transition's event waits until its parent's
        event is posted. A failing post-listener does not stop the others nor the posting; the
        first failure is raised once the event is posted."""
        failure: BaseException | None = None
        for post in hooks.post:
            try:
                post(event)  # type: ignore[arg-type]
            except Exception as error:
                failure = failure or error
        self._post(event, busy, nested=nested)
        if failure is not None:
            raise failure

    def _post(self, event: StateChanged | None, busy: _Busy, *, nested: bool) -> None:
        """Hand the event to the bus, then the events of transitions nested in this one."""
        if event is None or self._bus is None:
            return
        if nested:
            busy.pending.append(event)
            return
        self._bus.post(event)
        while busy.pending:
            self._bus.post(busy.pending.pop(0))

    def _apply(self, target: Any, event: StateChanged | None) -> None:
        """Make the state change: the last step before post-listeners and the bus. A subclass
        that persists transitions overrides it to write first (and raise to change nothing);
        `event` is always given to such a class (`_persistent = True`)."""
        self._state = target

    def _choose(self, dispatch: Dispatch, candidates: tuple[Candidate, ...],
                payload: dict[str, Any]) -> Candidate:
        chosen = self._first_open(candidates, payload, "afire")
        if chosen is None:
            raise self._rejected(dispatch, candidates)
        return chosen

    def _first_open(self, candidates: tuple[Candidate, ...], payload: dict[str, Any],
                    remedy: str) -> Candidate | None:
        """The first candidate, in spec order, whose guard holds (or that has none)."""
        for option in candidates:
            if option.guard is None:
                return option
            verdict = getattr(self, option.guard)(**payload)
            if inspect.isawaitable(verdict):
                _close(verdict)
                raise TypeError(f"guard {option.guard} is async; use `await {remedy}(...)`")
            if bool(verdict) is not option.negated:
                return option
        return None

    async def _afirst_open(self, candidates: tuple[Candidate, ...],
                           payload: dict[str, Any]) -> Candidate | None:
        """`_first_open` for guards that may be async."""
        for option in candidates:
            if option.guard is None or bool(await _resolve(
                    getattr(self, option.guard)(**payload))) is not option.negated:
                return option
        return None

    def _rejected(self, dispatch: Dispatch, candidates: tuple[Candidate, ...]) -> GuardRejected:
        return GuardRejected(machine=self.SPEC.name, resource_id=self._resource_id,
                             state=self._state.name, event=dispatch.event.name,
                             guards=[_guard_text(o) for o in candidates])

    def _effective_hooks(self) -> _Hooks:
        own = self._hooks
        shared = self._class_hooks
        if own is None:
            return shared
        if not shared.listeners:
            return own
        return _Hooks(shared.listeners + own.listeners, shared.pre + own.pre,
                      shared.post + own.post)

    def _invalid(self, event: Any) -> InvalidTransition:
        return InvalidTransition(machine=self.SPEC.name, resource_id=self._resource_id,
                                 state=self._state.name, event=event.name,
                                 allowed=[e._name_ for e in self.allowed_events()])

    # -- asyncio ------------------------------------------------------------------------------

    async def afire(self, event: E | str, /, **payload: Any) -> S:
        """`fire` for asyncio code: guards, actions and listeners may be `async def` (or
        return awaitables). Concurrent `afire` calls on one instance wait for each other."""
        dispatch = self._dispatch(event)
        me = _get_ident()
        task = asyncio.current_task()
        mark = _Busy(me, task)
        stripe = self._stripe or self._assign_stripe()
        while True:
            busy, candidates = self._claim(dispatch, mark, stripe)
            if busy is None:
                break
            if type(busy) is _Busy and busy.owner == me and busy.task is task:
                return self._reentrant(dispatch, payload)
            await asyncio.sleep(0.0005)  # busy with another task or thread: never block the loop
        if candidates is None:
            raise self._invalid(dispatch.event)
        try:
            return await self._atransition(dispatch, candidates, payload, mark)
        finally:
            self._busy = None
            if _waiting[0]:
                _wake(stripe)

    async def acan_fire(self, event: E | str, /, **payload: Any) -> bool:
        """`can_fire` for async guards."""
        candidates = self._dispatch(event).table.get(self._state)
        return candidates is not None and await self._afirst_open(candidates, payload) is not None

    async def _atransition(self, dispatch: Dispatch, candidates: tuple[Candidate, ...],
                           payload: dict[str, Any], busy: _Busy) -> S:
        """`_transition` for `afire`, with the instance marked busy by `busy`."""
        chosen = await self._afirst_open(candidates, payload)
        if chosen is None:
            raise self._rejected(dispatch, candidates)
        source = self._state
        hooks = self._effective_hooks()
        event = StateChanged(self.SPEC.name, self._resource_id, dispatch.event._name_,
                             source._name_, chosen.target._name_, chosen.tags, payload)
        for pre in hooks.pre:
            await _resolve(pre(event))
        if chosen.action is not None:
            await _resolve(getattr(self, chosen.action)(**payload))
        self._apply(chosen.target, event)
        busy.posting = True
        failure: BaseException | None = None
        for post in hooks.post:
            try:
                await _resolve(post(event))
            except Exception as error:
                failure = failure or error
        self._post(event, busy, nested=False)
        if failure is not None:
            raise failure
        return chosen.target  # type: ignore[no-any-return]


async def _resolve(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


def _close(value: Awaitable[object]) -> None:
    close = getattr(value, "close", None)
    if close is not None:
        close()
