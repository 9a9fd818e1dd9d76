"""`fsmc demo`: simulate a small cloud on the generated CloudStack machines, print a summary,
and write the audit trail, the usage database and the review site of the specs."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from . import review
from .common import not_negative_int, positive_int

if TYPE_CHECKING:
    from fsmc.contrib import demo as contrib_demo
    from fsmc.contrib.notify_demo import DemoService

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
  fsmc demo --notify 8080 --wait-clients 1 --linger 60
      (then: curl -N -H 'Authorization: Bearer demo-acct-01' http://127.0.0.1:8080/v1/events)

With --notify, the notification service (docs/notify.md) follows the demo's bus on HOST:PORT
(default host 127.0.0.1): one tenant per account, acct-01 with the API key demo-acct-01 and so
on, the admin with demo-admin (or the tenants and keys of --notify-config FILE). Open the URL in
a browser and enter a key, or follow the stream with curl.
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
    notify = parser.add_argument_group("the notification service")
    notify.add_argument("--notify", type=_address, metavar="[HOST:]PORT",
                        help="serve the events to tenants over HTTP while the demo runs")
    notify.add_argument("--notify-config", metavar="FILE",
                        help="the service's TOML config (default: a tenant per demo account)")
    notify.add_argument("--wait-clients", type=not_negative_int, default=0, metavar="N",
                        help="wait for N stream clients before simulating (default 0)")
    notify.add_argument("--linger", type=_not_negative, default=0.0, metavar="SECONDS",
                        help="keep serving SECONDS after the simulation (default 0)")
    parser.set_defaults(run=run)


def _address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (an IPv6 host in brackets: `[::1]:8080`) as (host, port)."""
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if colon else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536 or (colon and not host):
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT with a port from 0 (any free "
                                         f"one) to 65535, not {text!r}")
    return host, int(port)


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
    from fsmc.contrib.demo import DemoConfig

    config = DemoConfig(accounts=args.accounts, vms=args.vms, days=args.days,
                        seconds=args.seconds, seed=args.seed, out=Path(args.out),
                        workers=args.workers, amqp=args.amqp)
    service = _service(args, err)
    if isinstance(service, int):
        return service
    if args.amqp:
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # fsmc says what matters
    try:
        with _sigterm_interrupts():
            return _run(args, config, service, out, err)
    finally:
        if service is not None:
            service.stop()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does (files closed, the service's streams ended, exit
    status 130), also where SIGINT is ignored (a background job of a script)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _service(args: argparse.Namespace, err: TextIO) -> DemoService | int | None:
    """The notification service asked for with --notify (None: not asked for), or the exit
    status of a usage error."""
    if args.notify is None:
        for option, given in (("--notify-config", args.notify_config),
                              ("--wait-clients", args.wait_clients),
                              ("--linger", args.linger)):
            if given:
                err.write(f"fsmc: error: {option} needs --notify [HOST:]PORT\n")
                return 2
        return None
    try:
        from fsmc.contrib.notify_demo import DemoService, demo_config
        from fsmc.notify.config import ConfigError, load_config
    except ImportError as error:
        err.write(f"fsmc: error: --notify needs the service's extra: pip install 'fsmc[notify]' "
                  f"({error})\n")
        return 2
    try:
        config = (load_config(args.notify_config) if args.notify_config
                  else demo_config(args.accounts))
    except ConfigError as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    host, port = args.notify
    return DemoService(host, port, config, announce=err, wait_clients=args.wait_clients,
                       demo_keys=not args.notify_config)


def _run(args: argparse.Namespace, config: contrib_demo.DemoConfig, service: DemoService | None,
         out: TextIO, err: TextIO) -> int:
    from fsmc.contrib.demo import format_summary, run_demo

    # An output folder that cannot be written, or the notification service cannot start.
    refusals: tuple[type[Exception], ...] = (OSError,)
    if service is not None:
        from fsmc.contrib.notify_demo import ServiceUnavailable

        refusals = (OSError, ServiceUnavailable)
    try:
        result = run_demo(config, progress=err, service=service)
    except refusals as error:
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
    if service is not None:
        service.linger(args.linger)
    return 0 if result.ok else 1
