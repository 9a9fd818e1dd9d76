"""Usage per resource and account over a time window, computed from a usage database.

The meter (`fsmc.contrib.usage`) stores raw events; everything here is computed at report
time from those events ordered by (time, id), so arrival order and duplicate deliveries do not
change the answer. `intervals` turns one resource's events into billed intervals (pure);
`usage_records` clips them to the window and sums them per (usage type, account, resource);
`load_report` reads a database; `format_report` prints a report as text.

A window is half-open, [start, end). Without bounds it runs from the first event in the
database to the last one: an interval still open then is billed up to the window's end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path

from .usage import RULES, UsageRule, connect

__all__ = ["Interval", "Point", "Report", "UsageRecord", "format_report", "intervals",
           "load_report", "usage_records"]

_US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_ACCOUNT = "(none)"


@dataclass(frozen=True)
class Point:
    """One stored event of a resource, as the rules see it."""

    time_us: int
    id: str
    new_state: str
    tagged: bool
    account: str | None = None
    size: float | None = None


@dataclass(frozen=True)
class Interval:
    """A billed interval, [start_us, end_us); `end_us` None while it is still open."""

    start_us: int
    end_us: int | None
    account: str | None
    size: float | None


@dataclass(frozen=True)
class UsageRecord:
    """A resource's usage of one type within the window, for one account."""

    usage_type: str
    machine: str
    resource_id: str
    account: str
    hours: float
    quantity: float
    size: float | None


def intervals(points: Iterable[Point], rule: UsageRule) -> list[Interval]:
    """The intervals `rule` bills for one resource, from its events in (time, id) order."""
    found: list[Interval] = []
    size: float | None = None
    account: str | None = None
    first_account: str | None = None
    open_at: int | None = None
    open_size: float | None = None
    open_account: str | None = None
    for point in points:
        if point.account is not None:
            account = point.account
            first_account = first_account or account
        if point.size is not None:
            size = point.size
        if not rule.counts(point.tagged):
            continue
        if point.new_state in rule.starts:
            if open_at is not None:
                found.append(Interval(open_at, point.time_us, open_account, open_size))
            open_at, open_size, open_account = point.time_us, size, account
        elif point.new_state in rule.stops and open_at is not None:
            found.append(Interval(open_at, point.time_us, open_account, open_size))
            open_at = None
    if open_at is not None:
        found.append(Interval(open_at, None, open_account, open_size))
    return [i if i.account is not None else Interval(i.start_us, i.end_us, first_account, i.size)
            for i in found]


def usage_records(resources: Iterable[tuple[str, str, list[Point]]],
                  rules: tuple[UsageRule, ...], start_us: int,
                  end_us: int) -> list[UsageRecord]:
    """Clip every resource's intervals to [start_us, end_us) and sum them per (usage type,
    account, resource). `resources` yields (machine, resource id, points in order)."""
    records: list[UsageRecord] = []
    for machine, resource_id, points in resources:
        for rule in rules:
            if rule.machine != machine:
                continue
            totals: dict[str, list[float]] = {}
            last_size: dict[str, float | None] = {}
            for interval in intervals(points, rule):
                end = end_us if interval.end_us is None else min(interval.end_us, end_us)
                overlap = end - max(interval.start_us, start_us)
                if overlap <= 0:
                    continue
                hours = overlap / _US_PER_HOUR
                quantity = hours * (interval.size or 0.0) if rule.size_key else hours
                account = interval.account or NO_ACCOUNT
                total = totals.setdefault(account, [0.0, 0.0])
                total[0] += hours
                total[1] += quantity
                last_size[account] = interval.size
            records.extend(UsageRecord(rule.usage_type, machine, resource_id, account,
                                       hours, quantity, last_size[account])
                           for account, (hours, quantity) in totals.items())
    return records


@dataclass(frozen=True)
class Report:
    """Usage records over the window [start, end)."""

    start: datetime
    end: datetime
    rules: tuple[UsageRule, ...]
    records: tuple[UsageRecord, ...]
    uncovered: tuple[tuple[str, int], ...] = ()  # (machine, events) no rule counts, stored

    def accounts(self) -> list[tuple[str, dict[str, float], int]]:
        """(account, usage type → quantity, number of resources), largest first (by the
        first rule's quantity, then the others')."""
        totals: dict[str, dict[str, float]] = {}
        resources: dict[str, set[tuple[str, str]]] = {}
        for record in self.records:
            row = totals.setdefault(record.account, {r.usage_type: 0.0 for r in self.rules})
            row[record.usage_type] = row.get(record.usage_type, 0.0) + record.quantity
            resources.setdefault(record.account, set()).add((record.machine,
                                                             record.resource_id))
        order = [r.usage_type for r in self.rules]
        rows = [(account, row, len(resources[account])) for account, row in totals.items()]
        rows.sort(key=lambda item: ([-item[1].get(t, 0.0) for t in order], item[0]))
        return rows

    def top(self, usage_type: str, count: int | None = None) -> list[UsageRecord]:
        """The records of `usage_type`, largest quantity first (ties by resource id)."""
        chosen = sorted((r for r in self.records if r.usage_type == usage_type),
                        key=lambda r: (-r.quantity, r.resource_id, r.account))
        return chosen if count is None else chosen[:count]

    def total(self, usage_type: str) -> float:
        return sum(r.quantity for r in self.records if r.usage_type == usage_type)

    def for_account(self, account: str) -> Report:
        return Report(self.start, self.end, self.rules,
                      tuple(r for r in self.records if r.account == account), self.uncovered)


def load_report(path: str | Path, *, start: datetime | None = None,
                end: datetime | None = None, account: str | None = None,
                rules: tuple[UsageRule, ...] = RULES) -> Report:
    """Read the database at `path` and compute the report for [start, end) (default: from
    the first event to the last), for one account or all, with `rules` (`fsmc usage` gives
    `fsmc.contrib.usage_rules.find_rules()`: CloudStack's, the installed packages' and a
    file's). The events of machines no rule counts are in `uncovered`."""
    connection = connect(path, read_only=True)
    try:
        low, high = connection.execute(
            "SELECT min(time_us), max(time_us) FROM usage_events").fetchone()
        start_us = _to_us(start) if start is not None else (low or 0)
        end_us = _to_us(end) if end is not None else (high or start_us)
        records = usage_records(_resources(connection, rules, end_us), rules, start_us,
                                end_us)
        counted = {rule.machine for rule in rules}
        uncovered = tuple((machine, count) for machine, count in connection.execute(
            "SELECT machine, count(*) FROM usage_events GROUP BY machine ORDER BY machine")
            if machine not in counted)
    finally:
        connection.close()
    report = Report(_from_us(start_us), _from_us(end_us), rules, tuple(records), uncovered)
    return report if account is None else report.for_account(account)


def _resources(connection: sqlite3.Connection, rules: tuple[UsageRule, ...],
               end_us: int) -> Iterator[tuple[str, str, list[Point]]]:
    machines = sorted({rule.machine for rule in rules})
    marks = ", ".join("?" for _ in machines)
    rows = connection.execute(
        "SELECT machine, resource_id, time_us, id, new_state, tagged, account, size "
        f"FROM usage_events WHERE machine IN ({marks}) AND time_us < ? "
        "ORDER BY machine, resource_id, time_us, id", (*machines, end_us))
    for (machine, resource_id), group in groupby(rows, key=lambda row: (row[0], row[1])):
        yield machine, resource_id, [Point(row[2], row[3], row[4], bool(row[5]), row[6], row[7])
                                     for row in group]


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_report(report: Report, *, top: int | None = 10) -> str:
    """The report as text: one row per account (the `top` largest), then the `top` resources
    of each usage type. `top=None` prints everything."""
    hours = (report.end - report.start) / timedelta(hours=1)
    accounts = report.accounts()
    lines = [f"usage from {_iso(report.start)} to {_iso(report.end)} ({hours:,.1f} hours): "
             f"{_count(len(accounts), 'account')}, {_count(len(report.records), 'usage record')}",
             ""]
    labels = [rule.label for rule in report.rules]
    widths = [max(len(label), 14) for label in labels]
    name_width = max([len("account"), *(len(a) for a, _, _ in accounts)])
    header = "  ".join([f"{'account':<{name_width}}",
                        *(f"{label:>{w}}" for label, w in zip(labels, widths, strict=True)),
                        f"{'resources':>9}"])
    lines.append(header)
    shown = accounts if top is None else accounts[:top]
    for account, row, count in shown:
        cells = (f"{row.get(rule.usage_type, 0.0):>{w},.2f}"
                 for rule, w in zip(report.rules, widths, strict=True))
        lines.append("  ".join([f"{account:<{name_width}}", *cells, f"{count:>9,}"]))
    if len(shown) < len(accounts):
        lines.append(f"... {len(accounts) - len(shown)} more accounts")
    totals = (f"{report.total(rule.usage_type):>{w},.2f}"
              for rule, w in zip(report.rules, widths, strict=True))
    lines.append("  ".join([f"{'total':<{name_width}}", *totals,
                            f"{sum(c for _, _, c in accounts):>9,}"]))
    for rule in report.rules:
        lines.extend(_top_resources(report, rule, top))
    if report.uncovered:
        kept = ", ".join(f"{_count(count, 'event')} of {machine}"
                         for machine, count in report.uncovered)
        lines.extend(["", f"not reported: {kept}: no usage rule counts "
                      f"{'that machine' if len(report.uncovered) == 1 else 'those machines'} "
                      "(give its rules with --rules FILE, or install the package that "
                      "declares them under the fsmc.usage_rules entry point)"])
    return "\n".join(lines)


def _top_resources(report: Report, rule: UsageRule, top: int | None) -> list[str]:
    records = report.top(rule.usage_type, top)
    if not records:
        return []
    which = "all" if top is None else f"top {len(records)}"
    lines = ["", f"{rule.machine} resources by {rule.label} ({which})"]
    sized = rule.size_key is not None
    id_width = max(len("resource"), *(len(r.resource_id) for r in records))
    acct_width = max(len("account"), *(len(r.account) for r in records))
    head = f"  {'resource':<{id_width}}  {'account':<{acct_width}}  {'hours':>10}"
    lines.append(head + (f"  {'size':>8}  {rule.unit:>14}" if sized else ""))
    for record in records:
        line = (f"  {record.resource_id:<{id_width}}  {record.account:<{acct_width}}  "
                f"{record.hours:>10,.2f}")
        if sized:
            size = "?" if record.size is None else f"{record.size:,.0f}"
            line += f"  {size:>8}  {record.quantity:>14,.2f}"
        lines.append(line)
    return lines
