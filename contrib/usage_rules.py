"""Which usage rules apply: CloudStack's (`fsmc.contrib.usage.RULES`), those installed
packages declare under the entry point group `fsmc.usage_rules`, and those of a TOML file.

An entry point (in a package's `pyproject.toml`)

    [project.entry-points."fsmc.usage_rules"]
    backups = "mycloud.billing:RULES"

names a `UsageRule` or an iterable of them. A rules file (`fsmc usage report --rules FILE`)

    cloudstack = true             # CloudStack's rules too (default true)
    entry_points = true           # the rules of installed packages (default true)
    include = ["billing:RULES"]   # module:attribute, as an entry point; a module next to
                                  # the file is found
    [[rules]]
    usage_type = "backup"         # the name of the measure
    machine = "Backup"            # the machine whose events it counts
    starts = ["Stored"]           # entering one of these starts billing
    stops = ["Deleted"]           # entering one of these stops it
    tagged_only = false           # only `[usage]`-tagged events count (default false)
    unit = "GB-hours"             # default "hours"
    label = "backup GB-hours"     # the report's column (default "<usage_type> <unit>")
    size_key = "size_gb"          # the payload field multiplying the hours (optional)

Every mistake raises `RulesError`, saying where (the file, `[[rules]] #n`, the key, or the
entry point) and what is wrong; two rules of one `usage_type` are an error naming both
origins.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from fsmc.runtime.errors import FsmcError

from .usage import RULES, UsageRule

__all__ = ["ENTRY_POINT_GROUP", "RulesError", "find_rules", "import_rules", "rules_from_file"]

ENTRY_POINT_GROUP = "fsmc.usage_rules"
_TOP_KEYS = ("cloudstack", "entry_points", "include", "rules")
_RULE_KEYS = ("usage_type", "machine", "starts", "stops", "tagged_only", "unit", "label",
              "size_key")


class RulesError(FsmcError):
    """Usage rules that cannot be used; the message says where and why."""


def find_rules(path: str | os.PathLike[str] | None = None) -> tuple[UsageRule, ...]:
    """The rules that apply: CloudStack's and the installed packages' (unless the file at
    `path` turns them off), then the file's, in that order."""
    origins: list[tuple[str, UsageRule]] = []
    settings: dict[str, Any] = {"cloudstack": True, "entry_points": True}
    own: list[tuple[str, UsageRule]] = []
    if path is not None:
        settings, own = _read_file(Path(path))
    if settings["cloudstack"]:
        origins.extend(("fsmc's CloudStack rules", rule) for rule in RULES)
    if settings["entry_points"]:
        origins.extend(_installed())
    origins.extend(own)
    return _unique(origins)


def rules_from_file(path: str | os.PathLike[str]) -> tuple[UsageRule, ...]:
    """The rules a file gives itself (its `include` and `[[rules]]`), nothing else."""
    return _unique(_read_file(Path(path))[1])


def import_rules(target: str, where: str = "") -> tuple[UsageRule, ...]:
    """The rules `module:attribute` names (a `UsageRule` or an iterable of them)."""
    where = where or target
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise RulesError(f"{where}: {target!r} is not of the form module:attribute")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as error:
        raise RulesError(f"{where}: cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise RulesError(f"{where}: module {module_name!r} has no {attribute!r}") from None
    return _as_rules(found, where)


def _installed() -> Iterator[tuple[str, UsageRule]]:
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP!r}"
        try:
            loaded = point.load()
        except Exception as error:  # whatever the package's import raises
            raise RulesError(f"{where}: cannot load it: {type(error).__name__}: "
                             f"{error}") from None
        yield from ((where, rule) for rule in _as_rules(loaded, where))


def _as_rules(found: object, where: str) -> tuple[UsageRule, ...]:
    if isinstance(found, UsageRule):
        return (found,)
    if isinstance(found, Iterable) and not isinstance(found, str | bytes | Mapping):
        rules = tuple(found)
        wrong = [item for item in rules if not isinstance(item, UsageRule)]
        if not wrong:
            return rules
        found = wrong[0]
    raise RulesError(f"{where}: not a UsageRule or an iterable of them, but "
                     f"{type(found).__name__}")


def _unique(origins: Iterable[tuple[str, UsageRule]]) -> tuple[UsageRule, ...]:
    seen: dict[str, str] = {}
    rules: list[UsageRule] = []
    for where, rule in origins:
        if rule.usage_type in seen:
            raise RulesError(f"usage type {rule.usage_type!r} is defined twice: by "
                             f"{seen[rule.usage_type]} and by {where}")
        seen[rule.usage_type] = where
        rules.append(rule)
    return tuple(rules)


def _read_file(path: Path) -> tuple[dict[str, Any], list[tuple[str, UsageRule]]]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RulesError(f"{path}: cannot read the rules: {error.strerror or error}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise RulesError(f"{path}: not valid TOML: {error}") from None
    _known(raw, _TOP_KEYS, f"{path}")
    settings = {name: _flag(raw, name, True, f"{path}: {name}")
                for name in ("cloudstack", "entry_points")}
    origins: list[tuple[str, UsageRule]] = []
    includes = raw.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise RulesError(f"{path}: include must be a list of \"module:attribute\" strings")
    with _importable_from(path.parent):
        for number, target in enumerate(includes, 1):
            where = f"{path}: include item #{number} ({target})"
            origins.extend((where, rule) for rule in import_rules(target, where))
    tables = raw.get("rules", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{path}: rules must be [[rules]] tables")
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[rules]] #{number}"
        origins.append((where, _rule(table, where)))
    return settings, origins


def _rule(table: dict[str, Any], where: str) -> UsageRule:
    usage_type = _text(table, "usage_type", where)
    where = f"{where} ({usage_type})"
    _known(table, _RULE_KEYS, where)
    unit = _text(table, "unit", where, "hours")
    size_key = table.get("size_key")
    if size_key is not None and (not isinstance(size_key, str) or not size_key):
        raise RulesError(f"{where}: size_key must be a non-empty string")
    return UsageRule(usage_type, _text(table, "machine", where), _states(table, "starts", where),
                     _states(table, "stops", where),
                     _flag(table, "tagged_only", False, f"{where}: tagged_only"),
                     _text(table, "label", where, f"{usage_type} {unit}"), unit, size_key)


def _known(table: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise RulesError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; known: {', '.join(keys)}")


def _text(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise RulesError(f"{where}: {key} is missing")
    if not isinstance(value, str) or not value:
        raise RulesError(f"{where}: {key} must be a non-empty string")
    return value


def _states(table: dict[str, Any], key: str, where: str) -> frozenset[str]:
    value = table.get(key)
    if value is None:
        raise RulesError(f"{where}: {key} is missing (a list of state names)")
    if not isinstance(value, list) or not value or \
            not all(isinstance(item, str) and item for item in value):
        raise RulesError(f"{where}: {key} must be a non-empty list of state names")
    return frozenset(value)


def _flag(table: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise RulesError(f"{where} must be true or false")
    return value


@contextmanager
def _importable_from(folder: Path) -> Iterator[None]:
    """Modules in `folder` (the rules file's) can be imported while the block runs."""
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)
