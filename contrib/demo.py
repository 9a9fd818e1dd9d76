"""The demo: a simulated cloud on the threaded bus, with the usage meter, the audit trail and
live counters subscribed, and a summary at the end.

`run_demo(DemoConfig(...), progress=stream)` plays `days` simulated days of a zone
(`fsmc.contrib.cloud`) through the generated CloudStack machines. Their events are stamped
with the simulated time and posted to an `EventBus(mode="threads")` that delivers each one to
three subscribers: `UsageMeter` (SQLite), `AuditTrail` (JSON Lines) and `LiveCounters`.
The simulated period is played back over `seconds` of wall time (0: as fast as it goes), so
the progress bar moves steadily; a seeded run produces the same events, usage and summary
each time (only event ids and timings differ). `format_summary` prints the outcome: rates,
bus counters (every event delivered to every subscriber), invalid transitions rejected, and
the usage report's top 10.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fsmc.runtime import StateChanged
from fsmc.runtime.bus import EventBus
from fsmc.runtime.errors import FsmcError

from .audit import AuditTrail
from .cloud import Cloud
from .counters import Counts, LiveCounters
from .progress import ProgressBar, Ticker
from .simulation import SimulatedTime, Simulation
from .usage import UsageMeter
from .usage_report import Report, format_report, load_report

if TYPE_CHECKING:
    from fsmc.runtime.amqp import AmqpPublisher

    from .notify_demo import DemoService

__all__ = ["ORIGIN", "DemoConfig", "DemoResult", "format_summary", "run_demo"]

ORIGIN = datetime(2025, 1, 1, tzinfo=UTC)
"""When every simulation starts (simulated time)."""

SUBSCRIBERS = 3
AUDIT_FILE = "audit.jsonl"
USAGE_FILE = "usage.db"


@dataclass(frozen=True)
class DemoConfig:
    accounts: int = 10
    vms: int = 2000
    days: float = 30.0
    seconds: float = 15.0
    seed: int = 1
    out: Path = Path("demo-output")
    workers: int = 2
    amqp: str | None = None  # also publish every event to this broker (fsmc.events)

    def __post_init__(self) -> None:
        for name in ("accounts", "vms", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.days <= 0 or self.seconds < 0:
            raise ValueError("days must be positive and seconds not negative")


@dataclass(frozen=True)
class DemoResult:
    config: DemoConfig
    elapsed: float
    busy: float
    transitions: int
    posted_by_machines: int
    rejected: Counter[tuple[str, str, str]]
    unexpected: list[str]
    bus_stats: dict[str, int]
    undelivered: int
    counts: Counts
    created: Counter[str]
    audit_lines: int
    meter_stats: dict[str, int]
    report: Report
    files: dict[str, Path] = field(default_factory=dict)
    broker: dict[str, int] | None = None  # the publisher's counters with --amqp
    broker_error: str | None = None
    notify: dict[str, int] | None = None  # the notification service's counters with --notify
    notify_url: str = ""

    @property
    def subscribers(self) -> int:
        return SUBSCRIBERS + (self.broker is not None) + (self.notify is not None)

    @property
    def all_delivered(self) -> bool:
        """Every event posted reached every subscriber, and nothing failed."""
        stats = self.bus_stats
        return (self.undelivered == 0 and stats["failed"] == 0 and stats["dropped"] == 0
                and stats["posted"] == self.posted_by_machines == self.transitions
                and stats["delivered"] == stats["posted"] * self.subscribers
                and self.counts.total == self.audit_lines == stats["posted"]
                and (self.notify is None or self.notify["published"] == stats["posted"])
                and self.broker_error is None)

    @property
    def ok(self) -> bool:
        return self.all_delivered and not self.unexpected


class _Pacer:
    """Keeps the simulation at `seconds` of wall time for the whole period; counts the time
    spent waiting so that the busy time can be told apart."""

    def __init__(self, seconds: float, period: float) -> None:
        self.seconds = seconds
        self.period = period
        self.started = time.monotonic()
        self.waited = 0.0

    def __call__(self, simulated: float) -> None:
        if self.seconds <= 0:
            return
        delay = self.started + simulated / self.period * self.seconds - time.monotonic()
        if delay > 0.002:
            time.sleep(delay)
            self.waited += delay


def _fresh(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"audit": out / AUDIT_FILE, "usage": out / USAGE_FILE}
    for path in (files["audit"], files["usage"], out / f"{USAGE_FILE}-wal",
                 out / f"{USAGE_FILE}-shm"):
        path.unlink(missing_ok=True)
    return files


def run_demo(config: DemoConfig, *, progress: TextIO | None = None,
             service: DemoService | None = None) -> DemoResult:
    """Run the simulation (see the module documentation) and return what happened. With a
    `service` (`fsmc.contrib.notify_demo`), the notification service follows the bus from
    before the first event; the caller stops it."""
    files = _fresh(config.out)
    period = config.days * 86400.0
    bus = EventBus(mode="threads", workers=config.workers)
    meter = UsageMeter(files["usage"])
    audit = AuditTrail(files["audit"])
    counters = LiveCounters()
    bus.subscribe(meter.record, StateChanged)
    bus.subscribe(audit.write)
    bus.subscribe(counters.count, StateChanged)
    publisher = _publisher(config.amqp)
    if publisher is not None:
        bus.subscribe(publisher, topic="#")
    ticker = None
    broker_error = None
    try:
        if service is not None:  # before the first event; its failure closes what is open
            service.attach(bus, config.out)
        clock = SimulatedTime(bus, ORIGIN)
        sim = Simulation(clock, period, seed=config.seed)
        cloud = Cloud(sim, clock, accounts=config.accounts, vms=config.vms)
        cloud.populate()
        bar = ProgressBar(progress) if progress is not None else None

        def status() -> str:
            day = min(clock.now, period) / 86400.0
            return (f"day {day:4.1f}/{config.days:g}  {sim.transitions:,} transitions, "
                    f"{counters.total:,} delivered, {sim.rejections:,} rejected")

        pacer = _Pacer(config.seconds, period)
        if bar is not None:
            shown = bar
            ticker = Ticker(lambda: shown.update(clock.now / period, status())).start()
        sim.run(before_step=pacer)
        undelivered = bus.close()
    finally:
        if ticker:
            ticker.stop()
        bus.close()
        meter.close()
        audit.close()
        if publisher is not None:
            try:
                publisher.close(timeout=120)
            except FsmcError as error:  # DeliveryError
                broker_error = str(error)
    elapsed = time.monotonic() - pacer.started
    if bar:
        bar.finish(status())
    report = load_report(files["usage"], start=ORIGIN, end=ORIGIN + timedelta(seconds=period))
    return DemoResult(config, elapsed, elapsed - pacer.waited, sim.transitions, clock.posted,
                      sim.rejected, sim.unexpected, bus.stats(), undelivered,
                      counters.snapshot(), Counter(cloud.created), audit.written,
                      meter.stats(), report, files,
                      None if publisher is None else publisher.stats(), broker_error,
                      None if service is None else service.stats(),
                      "" if service is None else service.url)


def _publisher(url: str | None) -> AmqpPublisher | None:
    """With a broker: declare the billing queue first (so a billing process started later
    still gets every event), then a publisher to the exchange."""
    if url is None:
        return None
    from fsmc.runtime.amqp import AmqpPublisher, declare_queue

    from .broker import BILLING_QUEUE

    declare_queue(url, BILLING_QUEUE)
    return AmqpPublisher(url, buffer=100_000)


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def format_summary(result: DemoResult, *, top: int = 10) -> str:
    """The demo's outcome as text."""
    config, stats = result.config, result.bus_stats
    lines = [f"fsmc demo: {config.accounts} accounts, {config.vms:,} VMs, "
             f"{config.days:g} simulated days, seed {config.seed}", ""]
    add = lines.append
    add(f"transitions  {result.transitions:,} in {result.elapsed:.1f} s "
        f"({_rate(result.transitions, result.elapsed)}); the driver was busy "
        f"{result.busy:.1f} s of it ({_rate(result.transitions, result.busy)})")
    add(f"bus          {stats['posted']:,} events posted, {stats['delivered']:,} deliveries to "
        f"{result.subscribers} subscribers; failed {stats['failed']}, dead {stats['dead']}, "
        f"dropped {stats['dropped']}, undelivered at close {result.undelivered}")
    add("             every event reached every subscriber" if result.all_delivered
        else "             NOT every event reached every subscriber")
    add("resources    " + ", ".join(f"{name} {count:,}"
                                    for name, count in sorted(result.created.items())))
    add("by machine   " + ", ".join(f"{name} {count:,}" for name, count in sorted(
        result.counts.by_machine.items(), key=lambda item: -item[1])))
    add("busiest      " + ", ".join(f"{machine}.{event} {count:,}"
                                    for (machine, event), count in result.counts.busiest(4)))
    rejected = sum(result.rejected.values())
    add(f"invalid      {rejected:,} invalid transitions attempted on purpose, all rejected "
        "with InvalidTransition; most frequent:")
    for (machine, state, event), count in sorted(result.rejected.items(),
                                                 key=lambda item: (-item[1], item[0]))[:5]:
        add(f"               {machine} in {state}: {event} x{count}")
    if result.unexpected:
        add(f"UNEXPECTED   {len(result.unexpected)} lifecycle steps were refused, e.g. "
            f"{result.unexpected[0]}")
    if result.broker is not None:
        add(f"broker       {result.broker['confirmed']:,} of {result.broker['accepted']:,} "
            f"events confirmed by RabbitMQ (exchange fsmc.events, {result.broker['resent']} "
            "resent); bill them with `fsmc events bill`")
    if result.broker_error:
        add(f"BROKER       {result.broker_error}")
    if result.notify is not None:
        add(f"notify       the service at {result.notify_url}/ took all "
            f"{result.notify['published']:,} events from the bus (each client gets its own); "
            f"{_count(result.notify['clients'], 'stream client')} connected at the end")
    meter = result.meter_stats
    add(f"usage meter  {meter['recorded']:,} events kept, {meter['skipped']:,} not billable, "
        f"{meter['duplicates']} duplicates")
    add("")
    add(format_report(result.report, top=top))
    add("")
    add("files")
    add(f"  {result.files['audit']}  the audit trail, {result.audit_lines:,} events as JSON Lines")
    add(f"  {result.files['usage']}  usage events; fsmc usage report --db "
        f"{result.files['usage']}")
    return "\n".join(lines)
