"""`fsmc usage report|load`: usage per resource and account from a usage database (written by
`fsmc.contrib.usage.UsageMeter`, e.g. by `fsmc demo`), and loading audit trails into one."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any, TextIO

from .common import add_actions

HELP = """\
report: print usage over a time window [FROM, TO) (ISO 8601; a time without a zone is UTC;
default: from the first event to the last one in the database): one row per account with
every rule's measure (CloudStack's: running VM hours, volume GB-hours and public IP hours),
then the TOP resources of each kind.

The rules are CloudStack's, those installed packages declare under the entry point group
fsmc.usage_rules ("module:attribute" naming a UsageRule or an iterable of them), and those of
--rules FILE (TOML: [[rules]] tables, `include = ["module:attribute"]`, and `cloudstack =
false` or `entry_points = false` to leave those out; see docs/usage.md). Give `load` the same
rules as the meter that should have counted: events no rule counts are not kept.

load: read audit trails (JSON Lines, as `fsmc demo` writes) into a usage database; events
already in it are ignored (by event id), so loading a trail twice changes nothing.

examples:
  fsmc usage report --db demo-output/usage.db
  fsmc usage report --db demo-output/usage.db --from 2025-01-08 --to 2025-01-15 --top 5
  fsmc usage report --db demo-output/usage.db --account acct-03 --top 0
  fsmc usage load --db copy.db demo-output/audit.jsonl
  fsmc usage report --db usage.db --rules billing.toml
"""


def add_parser(subparsers: Any) -> None:
    actions = add_actions(subparsers, "usage", "usage reports from a usage database", HELP)
    report = actions.add_parser("report", help="usage per account and resource")
    report.add_argument("--db", required=True, metavar="FILE", help="the usage database")
    report.add_argument("--from", dest="start", type=_moment, metavar="ISO",
                        help="window start (inclusive)")
    report.add_argument("--to", dest="end", type=_moment, metavar="ISO",
                        help="window end (exclusive)")
    report.add_argument("--account", help="only this account")
    report.add_argument("--top", type=int, default=10, metavar="N",
                        help="accounts and resources of each kind to list; 0: all (default 10)")
    _add_rules(report)
    report.set_defaults(run=run_report)
    load = actions.add_parser("load", help="load audit trails into a usage database")
    load.add_argument("--db", required=True, metavar="FILE", help="the usage database")
    load.add_argument("trails", nargs="+", metavar="TRAIL", help="JSON Lines audit trails")
    _add_rules(load)
    load.set_defaults(run=run_load)


def _add_rules(parser: Any) -> None:
    parser.add_argument("--rules", metavar="FILE",
                        help="usage rules (TOML), besides CloudStack's and the installed ones")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from fsmc.contrib.usage_report import format_report, load_report
    from fsmc.contrib.usage_rules import RulesError, find_rules

    if args.start and args.end and args.end <= args.start:
        err.write("fsmc: error: --to must be later than --from\n")
        return 2
    try:
        rules = find_rules(args.rules)
        report = load_report(args.db, start=args.start, end=args.end, account=args.account,
                             rules=rules)
    except RulesError as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    except (FileNotFoundError, OSError) as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    out.write(format_report(report, top=args.top or None) + "\n")
    return 0


def run_load(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from fsmc.contrib.audit import read_trail
    from fsmc.contrib.usage import UsageMeter
    from fsmc.contrib.usage_rules import RulesError, find_rules

    try:
        rules = find_rules(args.rules)
    except RulesError as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    with UsageMeter(args.db, rules=rules) as meter:
        for trail in args.trails:
            try:
                for event in read_trail(trail):
                    meter.record(event)
            except (OSError, ValueError) as error:
                err.write(f"fsmc: error: {error}\n")
                return 2
        meter.flush()
        stats = meter.stats()
    out.write(f"{args.db}: {stats['recorded']:,} usage events read, "
              f"{stats['recorded'] - stats['duplicates']:,} new, "
              f"{stats['duplicates']:,} already there; {stats['skipped']:,} events not "
              "billable\n")
    return 0
