"""`fsmc events tail|bill`: follow the events a broker carries (see docs/broker.md)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .common import add_actions, positive_int

HELP = """\
tail: print the events of the exchange whose topics match the --bind patterns (AMQP topic
rules: `*` one word, `#` zero or more), one line each or their CloudEvents JSON (--json),
until Ctrl-C or --count events. It reads a queue of its own that lives as long as it runs.

bill: record usage from the durable queue fsmc.billing (bound to every event) into a usage
database, as `fsmc demo` does in-process, until Ctrl-C or, with --idle, until no event came
for that many seconds; then print the usage report. Run it beside `fsmc demo --amqp URL`.

examples:
  fsmc events tail --amqp amqp://guest:guest@localhost:5672/%2F --bind 'VirtualMachine.#'
  fsmc events tail --amqp URL --bind '*.*.*.Error' --json --count 10
  fsmc events bill --amqp URL --db billing.db --idle 5
"""


def add_parser(subparsers: Any) -> None:
    actions = add_actions(subparsers, "events", "follow events through a RabbitMQ broker", HELP)
    tail = actions.add_parser("tail", help="print events as they arrive")
    _broker_options(tail)
    tail.add_argument("--bind", action="append", metavar="PATTERN",
                      help="topic pattern to follow (repeatable; default: '#', everything)")
    tail.add_argument("--json", action="store_true", help="print each event's CloudEvent")
    tail.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    tail.set_defaults(run=run_tail)
    bill = actions.add_parser("bill", help="record usage from the broker")
    _broker_options(bill)
    bill.add_argument("--db", required=True, metavar="FILE", help="the usage database")
    bill.add_argument("--queue", default="fsmc.billing", help="queue (default fsmc.billing)")
    bill.add_argument("--idle", type=float, metavar="SECONDS",
                      help="stop once no event came for SECONDS (after the first)")
    bill.set_defaults(run=run_bill)


def _broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp", required=True, metavar="URL",
                        help="the broker, e.g. amqp://guest:guest@localhost:5672/%%2F")
    parser.add_argument("--exchange", default="fsmc.events",
                        help="topic exchange (default fsmc.events)")


@contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, so the command stops cleanly."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {number: signal.signal(number, lambda *_: stop.set())
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _problem(args: argparse.Namespace) -> str | None:
    try:
        from fsmc.runtime.amqp.url import parameters
    except ImportError as error:
        return f"--amqp needs its extra: pip install 'fsmc[amqp]' ({error})"
    try:
        parameters(args.amqp)
    except ValueError as error:
        return f"--amqp: {error}"
    from fsmc.runtime import validate_pattern

    for pattern in getattr(args, "bind", None) or ():
        try:
            validate_pattern(pattern)
        except ValueError as error:
            return f"--bind: {error}"
    # Connection failures are retried (and logged once by fsmc); pika's own log is noise here.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    return None


def run_tail(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    problem = _problem(args)
    if problem:
        err.write(f"fsmc: error: {problem}\n")
        return 2
    from fsmc.contrib.broker import tail

    bindings = args.bind or ["#"]
    err.write(f"fsmc: following {', '.join(bindings)} on {args.exchange} (Ctrl-C stops)\n")
    with _until_interrupted() as stop:
        tail(args.amqp, bindings, out, exchange=args.exchange, as_json=args.json,
             count=args.count, stop=stop)
    return 0


def run_bill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    problem = _problem(args)
    if problem:
        err.write(f"fsmc: error: {problem}\n")
        return 2
    from fsmc.contrib.broker import bill
    from fsmc.contrib.usage_report import format_report, load_report

    err.write(f"fsmc: billing from queue {args.queue} into {args.db} (Ctrl-C stops)\n")
    with _until_interrupted() as stop:
        stats = bill(args.amqp, Path(args.db), queue=args.queue, exchange=args.exchange,
                     idle=args.idle, stop=stop)
    out.write(f"received {stats['received']:,} events ({stats['duplicates']:,} duplicates "
              f"dropped, {stats['dead_lettered']:,} malformed), {stats['recorded']:,} "
              f"kept for usage\n")
    if stats["recorded"] or Path(args.db).exists():
        out.write(format_report(load_report(args.db)) + "\n")
    return 0
