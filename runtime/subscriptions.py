"""Subscriptions: the `subscribe` decorator, the handles the bus returns, and which
subscriptions an event reaches.

A subscription is a handler plus a filter: an event class (dispatch follows the class
hierarchy, so `object` means every event) and optionally a topic pattern (AMQP topic-exchange
rules, see `fsmc.runtime.topics`). When both are given, an event must pass both.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

from .events import DeadEvent
from .topics import TopicPattern, compile_pattern, pattern_warning

__all__ = ["Registration", "Subscription", "subscribe", "warn_if_suspicious"]

logger = logging.getLogger("fsmc")

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__fsmc_subscriptions__"

Handler = Callable[[Any], object]


# The class overload comes first: a class is callable too, and would otherwise match the bare
# decorator's overload (turning the decorated method into the event class for type checkers).
@overload
def subscribe(event_type: type[Any] | None = None, /, *,
              topic: str | None = None) -> Callable[[F], F]: ...


@overload
def subscribe(event_type: F, /) -> F: ...


def subscribe(event_type: Any = None, /, *, topic: str | None = None) -> Any:
    """Mark a method as a subscriber, for `EventBus.register(obj)`.

    `@subscribe(SomeEvent)`, `@subscribe(topic="VirtualMachine.#")`, both, or bare
    `@subscribe` (every event). A method may carry several marks; each becomes one
    subscription. The arguments are checked here, when the class is defined.
    """
    if event_type is not None and not isinstance(event_type, type) and callable(event_type):
        return _mark(event_type, None, None)  # bare @subscribe
    _check_filter(event_type, topic)

    def decorate(function: F) -> F:
        warn_if_suspicious(topic, function)
        return _mark(function, event_type, topic)

    return decorate


def _mark(function: F, event_type: type[Any] | None, topic: str | None) -> F:
    target = function.__func__ if isinstance(function, staticmethod | classmethod) else function
    marks: list[tuple[type[Any] | None, str | None]] = list(getattr(target, _MARK, ()))
    marks.append((event_type, topic))
    try:
        setattr(target, _MARK, tuple(marks))
    except (AttributeError, TypeError):
        raise TypeError(f"@subscribe cannot mark {function!r}") from None
    return function


def _check_filter(event_type: object, topic: str | None) -> TopicPattern | None:
    if event_type is not None and not isinstance(event_type, type):
        raise TypeError(f"event_type must be a class or None, not {event_type!r}")
    return None if topic is None else compile_pattern(topic)


def warn_if_suspicious(topic: str | None, handler: object) -> None:
    """Log one warning on the `fsmc` logger when `topic` (valid) is a pattern that almost
    never means what was meant (`fsmc.runtime.topics.pattern_warning`); it keeps its meaning."""
    warning = None if topic is None else pattern_warning(topic)
    if warning is not None:
        name = getattr(handler, "__qualname__", None) or repr(handler)
        logger.warning("subscriber %s: %s; it is subscribed with that meaning (RabbitMQ's)",
                       name, warning)


def marked_methods(obj: object) -> Iterator[tuple[Handler, type[Any] | None, str | None]]:
    """(bound method, event_type, topic) for every mark on a method of `obj`'s class, base
    classes first and then in definition order; an overriding method is subscribed once, with
    the marks of the most derived class that has any."""
    seen: dict[str, tuple[tuple[type[Any] | None, str | None], ...]] = {}
    for klass in reversed(type(obj).__mro__):
        for name, value in vars(klass).items():
            function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            marks = getattr(function, _MARK, None) if callable(function) else None
            if marks:
                seen[name] = marks
    for name, marks in seen.items():
        handler = getattr(obj, name)
        for event_type, topic in marks:
            yield handler, event_type, topic


def is_async_handler(handler: object) -> bool:
    """Whether calling `handler` gives a coroutine: `async def` functions and methods,
    `functools.partial` of them, and objects whose `__call__` is `async def`."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.isfunction(handler) or inspect.ismethod(handler):
        return inspect.iscoroutinefunction(handler)
    for klass in type(handler).__mro__:
        call = vars(klass).get("__call__")
        if call is not None:
            return inspect.iscoroutinefunction(call)
    return False


class Subscription:
    """The handle `EventBus.subscribe` returns; pass it to `EventBus.unsubscribe`.

    Read-only attributes: `handler`, `event_type` (a class; `object` when none was given),
    `topic` (the pattern text or None) and `is_async`. The bus holds a strong reference to the
    handler (and so to a bound method's object) until the subscription is removed.
    """

    __slots__ = ("_owner", "active", "event_type", "handler", "is_async", "mailbox", "pattern",
                 "seq", "target", "topic", "worker")

    handler: Handler
    event_type: type[Any]
    topic: str | None
    pattern: TopicPattern | None
    is_async: bool
    seq: int
    active: bool
    target: Handler
    worker: int
    mailbox: Any
    _owner: object

    def __init__(self, owner: object, handler: Handler, event_type: type[Any] | None,
                 topic: str | None, seq: int) -> None:
        if not callable(handler):
            raise TypeError(f"a subscriber must be callable, not {handler!r}")
        self.pattern = _check_filter(event_type, topic)
        self._owner = owner
        self.handler = handler
        self.event_type = object if event_type is None else event_type
        self.topic = topic
        self.is_async = is_async_handler(handler)
        self.seq = seq
        self.active = False
        self.target = handler
        self.worker = 0
        self.mailbox = None

    def accepts_type(self, cls: type[Any]) -> bool:
        return issubclass(cls, self.event_type)

    def accepts_key(self, key: object) -> bool:
        pattern = self.pattern
        return pattern is None or (isinstance(key, str) and pattern.matches(key))

    def __repr__(self) -> str:
        name = getattr(self.handler, "__qualname__", None) or repr(self.handler)
        parts = [name]
        if self.event_type is not object:
            parts.append(f"event_type={self.event_type.__qualname__}")
        if self.topic is not None:
            parts.append(f"topic={self.topic!r}")
        if self.is_async:
            parts.append("async")
        if not self.active:
            parts.append("inactive")
        return f"<Subscription {' '.join(parts)}>"


class Registration:
    """The handle `EventBus.register(obj)` returns: `obj` and its `subscriptions` (one per
    `@subscribe` mark). `EventBus.unsubscribe(registration)` and `EventBus.unregister(obj)`
    both remove them all."""

    __slots__ = ("obj", "subscriptions")

    def __init__(self, obj: object, subscriptions: Iterable[Subscription]) -> None:
        self.obj = obj
        self.subscriptions = tuple(subscriptions)

    @property
    def active(self) -> bool:
        return any(sub.active for sub in self.subscriptions)

    def __repr__(self) -> str:
        return f"<Registration of {self.obj!r}: {len(self.subscriptions)} subscriptions>"


def by_type(subs: tuple[Subscription, ...], cls: type[Any]) -> list[Subscription]:
    """The subscriptions whose event class filter `cls` passes, in subscription order."""
    return [sub for sub in subs if issubclass(cls, sub.event_type)]


def by_key(candidates: list[Subscription], key: object) -> list[Subscription]:
    """Of `candidates`, those whose topic filter (if any) passes routing key `key` (a key that
    is not a `str`, e.g. `None` for an event without a `topic`, passes no pattern)."""
    return [sub for sub in candidates if sub.accepts_key(key)]


def dead_letter_subscribers(subs: tuple[Subscription, ...]) -> list[Subscription]:
    """Who receives the `DeadEvent` of an event nobody subscribed to: subscriptions whose class
    filter takes `DeadEvent` and that have no topic pattern (a `DeadEvent` has no topic)."""
    return [sub for sub in by_type(subs, DeadEvent) if sub.pattern is None]
