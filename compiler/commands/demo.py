"""`fsmc demo`: simulate a small cloud on the generated CloudStack machines, print a summary,
and write the audit trail, the usage database and the review site of the specs."""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from . import review
from .common import positive_int

HELP = """\
Simulate a CloudStack zone: ACCOUNTS accounts with VMS user VMs, their volumes, NICs, public
IPs and snapshots, networks and template uploads, driven for DAYS simulated days through the
machines generated from specs/ (in generated/), with random failures (failed operations,
crashes reported by agents, retries) and some invalid transitions attempted on purpose. Every
event goes through a threaded event bus to three subscribers: the usage meter, the audit trail
and live counters. The simulated period is played back over SECONDS of wall time (0: as fast
as possible); a run is the same for the same --seed (but for event ids and timings).

Writes OUT/audit.jsonl (every event, JSON Lines), OUT/usage.db (usage events, SQLite; see
`fsmc usage report`) and the review site of SPECS into SITE, then prints a summary with the
usage report's top 10. Run it from a checkout of fsmc (it needs generated/ and specs/).
Exit status: 0 when every event reached every subscriber, 1 otherwise, 2 on usage errors.

examples:
  fsmc demo
  fsmc demo --vms 10000 --accounts 40 --seconds 0
  fsmc usage report --db demo-output/usage.db --account acct-03
  fsmc demo --amqp amqp://guest:guest@localhost:5672/%2F   (beside `fsmc events bill`)
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="simulate a small cloud and bill it",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=positive_int, default=10, metavar="N",
                        help="accounts (default 10)")
    parser.add_argument("--vms", type=positive_int, default=2000, metavar="N",
                        help="user VMs (default 2000)")
    parser.add_argument("--days", type=_positive_float, default=30.0, metavar="DAYS",
                        help="simulated days (default 30)")
    parser.add_argument("--seconds", type=_not_negative, default=20.0, metavar="SECONDS",
                        help="wall-clock seconds to play the period over; 0: as fast as "
                             "possible (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--workers", type=positive_int, default=2, metavar="N",
                        help="event bus delivery threads (default 2)")
    parser.add_argument("--out", default="demo-output", metavar="DIR",
                        help="where the audit trail and usage database go "
                             "(default demo-output/)")
    parser.add_argument("--site", default=None, metavar="DIR",
                        help="where the review site goes (default OUT/site/)")
    parser.add_argument("--specs", default="specs", metavar="DIR",
                        help="the specs of the review site (default specs/)")
    parser.add_argument("--no-site", action="store_true", help="do not write the review site")
    parser.add_argument("--amqp", metavar="URL",
                        help="also publish every event to this RabbitMQ broker (exchange "
                             "fsmc.events; queue fsmc.billing is declared for `fsmc events "
                             "bill`)")
    parser.set_defaults(run=run)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def generated_importable() -> str | None:
    """Make `generated` importable (adding the current directory to `sys.path` if it holds
    one); None when it is, else why not."""
    try:
        importlib.import_module("generated.virtual_machine")
        return None
    except ModuleNotFoundError as error:
        if error.name not in ("generated", "generated.virtual_machine"):
            return f"generated/ cannot be imported: {error}"
    here = Path.cwd()
    if not (here / "generated" / "virtual_machine.py").is_file():
        return ("no generated/virtual_machine.py here: run `fsmc build specs/` first, from a "
                "checkout of fsmc")
    sys.path.insert(0, str(here))
    importlib.invalidate_caches()
    try:
        importlib.import_module("generated.virtual_machine")
    except ImportError as error:
        return f"generated/ cannot be imported: {error}"
    return None


def write_site(specs: str, site: Path, err: TextIO) -> str:
    """Write the review site with `fsmc review`'s machinery; one line saying what happened."""
    if not Path(specs).exists():
        return f"no review site: {specs} not found"
    options = argparse.Namespace(paths=[specs], out=str(site), title="fsmc demo: the specs",
                                 strict=False, format="text", color="never")
    diagnostics, messages = io.StringIO(), io.StringIO()
    status = review.run(options, diagnostics, messages)
    for line in messages.getvalue().splitlines():
        if "warning" in line:
            err.write(line + "\n")
    if status != 0:
        return f"no review site: {specs} has errors (fsmc check {specs})"
    return f"the review site of {specs}; open {site / 'index.html'}"


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    problem = generated_importable()
    if problem is not None:
        err.write(f"fsmc: error: {problem}\n")
        return 2
    from fsmc.contrib.demo import DemoConfig, format_summary, run_demo

    config = DemoConfig(accounts=args.accounts, vms=args.vms, days=args.days,
                        seconds=args.seconds, seed=args.seed, out=Path(args.out),
                        workers=args.workers, amqp=args.amqp)
    if args.amqp:
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # fsmc says what matters
    try:
        result = run_demo(config, progress=err)
    except OSError as error:  # an output folder that cannot be written
        err.write(f"fsmc: error: {error}\n")
        return 2
    except Exception as error:  # the broker cannot be reached to declare the queue
        if not args.amqp or type(error).__module__.split(".")[0] != "pika":
            raise
        err.write(f"fsmc: error: cannot reach the broker at {args.amqp}: {error!r}\n")
        return 2
    out.write(format_summary(result) + "\n")
    if not args.no_site:
        site = Path(args.site) if args.site else config.out / "site"
        out.write(f"  {site}/  {write_site(args.specs, site, err)}\n")
    out.flush()
    return 0 if result.ok else 1
