"""Class-level listeners of machines, and the generated fast path they switch off.

`Machine.add_class_listener` / `remove_class_listener` land here. Besides recomputing the
listeners each class in the hierarchy sees, a change empties (or refills) the `{source:
target}` tables of plain transitions that the generated class's fast path reads: while any
class of a generated class's family has class listeners, every transition of the family takes
the full path (`Machine._fire`), which calls them. So the fast path only has to check its
instance, never its class.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from .dispatch import _NO_HOOKS, _make_hooks

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["add", "remove"]

# Class listeners change rarely; this keeps two threads (or a class dying during a change)
# from interleaving the emptying and refilling of the plain tables. Reentrant: a finalizer
# may run while the same thread holds it.
_lock = threading.RLock()
_watched: weakref.WeakSet[type] = weakref.WeakSet()


def add(cls: type[Machine[Any, Any]], listener: object) -> None:
    with _lock:
        own = cls.__dict__.get("_own_class_listeners", ())
        if any(existing is listener for existing in own):
            return
        cls._own_class_listeners = (*own, listener)
        _refresh(cls)
        if "_PLAIN" not in cls.__dict__ and cls not in _watched:
            _watched.add(cls)
            # A subclass (maybe made at run time) that dies with listeners must give the
            # generated class its fast path back.
            weakref.finalize(cls, _sync_fast_paths, cls.__mro__[1:])


def remove(cls: type[Machine[Any, Any]], listener: object) -> None:
    with _lock:
        own = cls.__dict__.get("_own_class_listeners", ())
        remaining = tuple(o for o in own if o is not listener)
        if len(remaining) == len(own):
            raise ValueError(f"{listener!r} is not a class listener of {cls.__name__}")
        cls._own_class_listeners = remaining
        _refresh(cls)


def _refresh(cls: type[Machine[Any, Any]]) -> None:
    """Recompute the class listeners of `cls` and its subclasses, then the fast path of the
    generated class(es) it derives from."""
    _recompute_hooks(cls)
    _sync_fast_paths(cls.__mro__)


def _sync_fast_paths(classes: tuple[type, ...]) -> None:
    with _lock:
        for owner in classes:
            if "_PLAIN" in owner.__dict__:
                _sync_fast_path(owner)


def _recompute_hooks(cls: type[Machine[Any, Any]]) -> None:
    """The effective class listeners of `cls` and every subclass (base first)."""
    listeners: list[object] = []
    for klass in reversed(cls.__mro__):
        listeners.extend(klass.__dict__.get("_own_class_listeners", ()))
    cls._class_hooks = _make_hooks(tuple(listeners)) if listeners else _NO_HOOKS
    cls._class_observed = bool(listeners) or cls._persistent
    for subclass in cls.__subclasses__():
        _recompute_hooks(subclass)


def _sync_fast_path(owner: type[Machine[Any, Any]]) -> None:
    """Empty the plain tables of generated class `owner` while a class of its family has
    class listeners; refill them when none has."""
    family = [owner]
    for klass in family:
        family.extend(klass.__subclasses__())
    listened = any(klass.__dict__.get("_own_class_listeners") for klass in family)
    saved: tuple[dict[Any, Any], ...] | None = owner.__dict__.get("_plain_saved")
    if listened and saved is None:
        owner._plain_saved = tuple(dict(table) for table in owner._PLAIN)
        for table in owner._PLAIN:
            table.clear()
    elif not listened and saved is not None:
        for table, content in zip(owner._PLAIN, saved, strict=True):
            table.update(content)
        del owner._plain_saved
