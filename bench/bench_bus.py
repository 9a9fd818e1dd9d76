"""Event records and event bus: costs as ratios against baselines measured in the same run.

    python -m bench.bench_bus [--quick]

Every figure is ns per operation (per event, per post, per transition), the min and the median
of the repeats; the timers of one table are interleaved round by round so that a noisy machine
disturbs all of them alike. A ratio is `ours / baseline` (lower is better) unless the row says
`x faster`. Targets are printed beside the ratios.

Baselines:
- `dict-of-lists loop`: `for h in subs[type(e)]: h(e)`, inline (as a statement) and as a
  function (a bus is called, so the function is the like-for-like one). It counts nothing,
  isolates no error and does not handle re-entrancy.
- blinker `Signal.send` and pyee `EventEmitter.emit` with the same number of receivers.
- `queue.SimpleQueue` + one worker thread, no bound, no counting: the floor of any threaded
  delivery.
- a hand-written transition: a `{state: target}` dict under a `threading.Lock`, a counter id,
  `time.time_ns()`, a `NamedTuple` record and one listener call.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, NamedTuple

from fsmc.runtime.bus import EventBus
from fsmc.runtime.events import StateChanged
from fsmc.runtime.topics import _match_words, _regex

Row = tuple[str, float, float, str, float, float, str]


class Event:
    __slots__ = ("topic",)

    def __init__(self, topic: str = "VirtualMachine.Running.StopRequested.Stopping") -> None:
        self.topic = topic


def handlers(count: int) -> list[Callable[[Any], None]]:
    """`count` distinct no-op functions (blinker and pyee ignore duplicates)."""
    made = []
    for _ in range(count):
        def handler(event: Any) -> None:
            pass
        made.append(handler)
    return made


def interleaved(timers: dict[str, Callable[[int], float]], number: int,
                rounds: int) -> dict[str, tuple[float, float]]:
    """(min, median) ns per operation of each timer, run round-robin `rounds` times."""
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(timer(number) / number * 1e9)
    return {name: (min(values), statistics.median(values)) for name, values in samples.items()}


def stmt(code: str, namespace: dict[str, Any]) -> Callable[[int], float]:
    return timeit.Timer(code, globals=namespace).timeit


def ratio_row(name: str, ours: tuple[float, float], baseline_name: str,
              baseline: tuple[float, float], target: str) -> Row:
    return (name, ours[0], ours[1], baseline_name, ours[0] / baseline[0],
            ours[1] / baseline[1], target)


def speedup_row(name: str, ours: tuple[float, float], other_name: str,
                other: tuple[float, float], target: str) -> Row:
    return (name, ours[0], ours[1], f"{other_name} (x faster)", other[0] / ours[0],
            other[1] / ours[1], target)


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"  {'case':<44} {'min ns':>8} {'med ns':>8}  {'vs':<34} {'ratio min':>9} "
          f"{'ratio med':>9}  target")
    for name, low, mid, other, r_low, r_mid, target in rows:
        print(f"  {name:<44} {low:>8.0f} {mid:>8.0f}  {other:<34} {r_low:>9.2f} "
              f"{r_mid:>9.2f}  {target}")


# -- sync publishing -------------------------------------------------------------------------


def sync_publish(number: int, rounds: int) -> list[Row]:
    import blinker
    import pyee

    rows: list[Row] = []
    event = Event()
    for count in (1, 10):
        functions = handlers(count)
        subs = {Event: functions}

        def publish(e: Any, subs: dict[type, list[Callable[[Any], None]]] = subs) -> None:
            for h in subs[type(e)]:
                h(e)

        bus = EventBus()
        for function in functions:
            bus.subscribe(function, Event)
        signal = blinker.Signal()
        for function in functions:
            signal.connect(function)
        emitter = pyee.EventEmitter()
        for function in functions:
            emitter.on("Event", function)
        namespace = {"subs": subs, "e": event, "publish": publish, "post": bus.post,
                     "send": signal.send, "emit": emitter.emit}
        results = interleaved({
            "inline": stmt("for h in subs[type(e)]: h(e)", namespace),
            "function": stmt("publish(e)", namespace),
            "bus": stmt("post(e)", namespace),
            "blinker": stmt("send(e)", namespace),
            "pyee": stmt("emit('Event', e)", namespace),
        }, number, rounds)
        label = f"post, {count} sync subscriber{'s' if count > 1 else ''}"
        rows.append(ratio_row(label, results["bus"], "dict-of-lists loop (function)",
                              results["function"], "<= 1.5"))
        rows.append(ratio_row(label, results["bus"], "dict-of-lists loop (inline)",
                              results["inline"], "(info)"))
        rows.append(speedup_row(label, results["bus"], "blinker send", results["blinker"],
                                ">= 5"))
        rows.append(speedup_row(label, results["bus"], "pyee emit", results["pyee"], ">= 5"))
        bus.close()
    return rows


def reentrancy_cost(number: int, rounds: int) -> list[Row]:
    """The per-thread state that makes nested posts queue, against the same post without it
    (a copy of `EventBus.post` with the re-entrancy lines removed; never use it for real)."""

    class NoReentrancy(EventBus):
        __slots__ = ()

        def post(self, event: object) -> None:
            try:
                handlers, count = self._table[event.__class__]
            except KeyError:
                handlers, count = self._lookup(event)
            else:
                if count is None:
                    try:
                        handlers, count = handlers[getattr(event, "topic", None)]
                    except (KeyError, TypeError):
                        handlers, count = self._lookup(event)
            next(count)
            for handler in handlers:
                try:
                    handler(event)
                except Exception:
                    self._failed.add()

    event = Event()
    real, stripped = EventBus(), NoReentrancy()
    for bus in (real, stripped):
        bus.subscribe(handlers(1)[0], Event)
    namespace = {"real": real.post, "stripped": stripped.post, "e": event}
    results = interleaved({"real": stmt("real(e)", namespace),
                           "stripped": stmt("stripped(e)", namespace)}, number, rounds)
    low = results["real"][0] - results["stripped"][0]
    mid = results["real"][1] - results["stripped"][1]
    return [("post, 1 sub: re-entrancy detection (delta ns)", low, mid,
             "same post without it", results["real"][0] / results["stripped"][0],
             results["real"][1] / results["stripped"][1], "(info)")]


def topics(number: int, rounds: int) -> list[Row]:
    """20 topic subscriptions (one matches), after the first event of the key, against one
    exact-class subscription."""
    rows: list[Row] = []
    exact, topical, single = EventBus(), EventBus(), EventBus()
    exact.subscribe(handlers(1)[0], Event)
    patterns = [f"Volume.*.Op{i}.#" for i in range(19)] + ["VirtualMachine.*.StopRequested.*"]
    for pattern, function in zip(patterns, handlers(20), strict=True):
        topical.subscribe(function, topic=pattern)
    single.subscribe(handlers(1)[0], topic=patterns[-1])
    event = Event()
    topical.post(event)
    single.post(event)
    namespace = {"exact": exact.post, "topical": topical.post, "single": single.post,
                 "e": event, "SC": StateChanged}
    results = interleaved({"exact": stmt("exact(e)", namespace),
                           "topical": stmt("topical(e)", namespace),
                           "single": stmt("single(e)", namespace)}, number, rounds)
    rows.append(ratio_row("post, 20 topic patterns (topic attribute)", results["topical"],
                          "post, 1 exact-class subscriber", results["exact"], "<= 1.0"))
    rows.append(ratio_row("post, 20 topic patterns (topic attribute)", results["topical"],
                          "post, 1 topic pattern", results["single"], "(info) ~1.0"))
    exact_sc, topical_sc = EventBus(), EventBus()
    exact_sc.subscribe(handlers(1)[0], StateChanged)
    for pattern, function in zip(patterns, handlers(20), strict=True):
        topical_sc.subscribe(function, topic=pattern)
    make = "SC('VirtualMachine', 1, 'StopRequested', 'Running', 'Stopping', (), {})"
    namespace.update(exact_sc=exact_sc.post, topical_sc=topical_sc.post)
    exec(f"topical_sc({make})", namespace)
    results = interleaved({"exact": stmt(f"exact_sc({make})", namespace),
                           "topical": stmt(f"topical_sc({make})", namespace)}, number, rounds)
    rows.append(ratio_row("new StateChanged + post, 20 topic patterns", results["topical"],
                          "new StateChanged + post, exact class", results["exact"],
                          "(info: topic built per event)"))
    return rows


def matchers(number: int, rounds: int) -> list[Row]:
    """What a cache miss costs: the regular expression against the word-list matcher."""
    rows: list[Row] = []
    key = "VirtualMachine.Running.StopRequested.Stopping"
    for pattern in ("VirtualMachine.*.StopRequested.#", "#.StopRequested.*", "*.Running.*.*"):
        words = [w for w in pattern.split(".")]
        fullmatch = re.compile(_regex(words), re.DOTALL).fullmatch
        namespace = {"fullmatch": fullmatch, "words": tuple(words), "key": key,
                     "match_words": _match_words}
        results = interleaved({
            "regex": stmt("fullmatch(key) is not None", namespace),
            "words": stmt("match_words(words, key.split('.'))", namespace),
        }, number // 4, rounds)
        rows.append(ratio_row(f"match {pattern!r}: regex", results["regex"],
                              "word-list matcher", results["words"], "(info)"))
    return rows


# -- records and transitions -----------------------------------------------------------------


class Record(NamedTuple):
    id: int
    time: int
    machine: str
    resource_id: object
    event: str
    old_state: str
    new_state: str
    tags: tuple[str, ...]
    payload: dict[str, Any]


def records(number: int, rounds: int) -> list[Row]:
    counter = itertools.count()
    namespace = {"SC": StateChanged, "Record": Record, "next": next, "counter": counter,
                 "time_ns": time.time_ns, "tags": ("usage",)}
    results = interleaved({
        "ours": stmt("SC('VM', 1, 'Go', 'A', 'B', tags, {})", namespace),
        "hand": stmt("Record(next(counter), time_ns(), 'VM', 1, 'Go', 'A', 'B', tags, {})",
                     namespace),
        "ours_payload": stmt("SC('VM', 1, 'Go', 'A', 'B', tags, {'host': 'h1'})", namespace),
    }, number, rounds)
    return [ratio_row("StateChanged(...), empty payload", results["ours"],
                      "NamedTuple + counter + time_ns", results["hand"], "(info)"),
            ratio_row("StateChanged(...), one payload item", results["ours_payload"],
                      "NamedTuple + counter + time_ns", results["hand"], "(info)")]


def transitions(number: int, rounds: int) -> list[Row]:
    """Four transitions of the generated VirtualMachine on a sync bus with one subscriber,
    against a hand-written locked class that builds a NamedTuple and calls one listener."""
    sys.path.insert(0, ".")
    try:
        from generated.virtual_machine import VirtualMachine
    except ImportError:  # pragma: no cover - run from the repository root
        return []
    import enum

    class S(enum.Enum):
        __hash__ = object.__hash__
        Stopped = "Stopped"
        Starting = "Starting"
        Running = "Running"
        Stopping = "Stopping"

    counter = itertools.count()
    time_ns = time.time_ns
    start = {S.Stopped: S.Starting}
    succeed = {S.Starting: S.Running, S.Stopping: S.Stopped}
    stop = {S.Running: S.Stopping}

    class Hand:
        __slots__ = ("listener", "lock", "state")

        def __init__(self, listener: Callable[[Record], None]) -> None:
            self.state = S.Stopped
            self.lock = threading.Lock()
            self.listener = listener

        def _move(self, table: dict[S, S], event: str, tags: tuple[str, ...],
                  payload: dict[str, Any]) -> S:
            with self.lock:
                source = self.state
                target = table[source]
                self.state = target
                self.listener(Record(next(counter), time_ns(), "VirtualMachine", "vm-1", event,
                                     source.name, target.name, tags, payload))
                return target

        def start_requested(self, **payload: Any) -> S:
            return self._move(start, "StartRequested", (), payload)

        def operation_succeeded(self, **payload: Any) -> S:
            return self._move(succeed, "OperationSucceeded", ("usage",), payload)

        def stop_requested(self, **payload: Any) -> S:
            return self._move(stop, "StopRequested", (), payload)

    def cycle(machine: Any) -> Callable[[], None]:
        a, b, c = machine.start_requested, machine.operation_succeeded, machine.stop_requested

        def run() -> None:
            a()
            b()
            c()
            b()
        return run

    bus = EventBus()
    bus.subscribe(handlers(1)[0], StateChanged)
    ours = cycle(VirtualMachine("vm-1", bus=bus))
    hand = cycle(Hand(handlers(1)[0]))
    results = interleaved({"ours": lambda n: timeit.timeit(ours, number=n) / 4,
                           "hand": lambda n: timeit.timeit(hand, number=n) / 4},
                          number // 4, rounds)
    return [ratio_row("transition + StateChanged + 1 sync sub", results["ours"],
                      "hand-written, NamedTuple, listener", results["hand"], "<= 1.5")]


# -- threads mode ----------------------------------------------------------------------------


def threads_mode(events: int, rounds: int) -> list[Row]:
    """Time to post `events` and have them all handled: bus in threads mode (defaults: one
    worker, bounded queue, block) against a bare SimpleQueue and one thread."""
    stop = object()

    def bare(handler: Callable[[Any], None]) -> float:
        queue: SimpleQueue[Any] = SimpleQueue()

        def work() -> None:
            get = queue.get
            while True:
                item = get()
                if item is stop:
                    return
                handler(item)

        worker = threading.Thread(target=work)
        worker.start()
        event = Event()
        put = queue.put
        begin = time.perf_counter()
        for _ in range(events):
            put(event)
        put(stop)
        worker.join()
        return time.perf_counter() - begin

    def ours(handler: Callable[[Any], None]) -> float:
        bus = EventBus(mode="threads")
        bus.subscribe(handler, Event)
        event = Event()
        post = bus.post
        begin = time.perf_counter()
        for _ in range(events):
            post(event)
        bus.close()
        elapsed = time.perf_counter() - begin
        assert bus.stats()["delivered"] == events
        return elapsed

    def noop(event: Any) -> None:
        pass

    def work_1us(event: Any, box: list[int] = [0]) -> None:  # noqa: B006 - a cheap sink
        total = 0
        for value in range(40):
            total += value
        box[0] = total

    rows: list[Row] = []
    for label, handler in (("no-op handler", noop), ("handler doing ~1.5 us of work",
                                                        work_1us)):
        samples: dict[str, list[float]] = {"bare": [], "ours": []}
        for _ in range(rounds):
            samples["bare"].append(bare(handler) / events * 1e9)
            samples["ours"].append(ours(handler) / events * 1e9)
        result = {k: (min(v), statistics.median(v)) for k, v in samples.items()}
        # throughput ratio = bare time / our time (>= 0.70 wanted)
        rows.append((f"threads mode, {label}", result["ours"][0], result["ours"][1],
                     "SimpleQueue+1 thread (throughput)", result["bare"][0] / result["ours"][0],
                     result["bare"][1] / result["ours"][1], ">= 0.70"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args(argv)
    number, rounds, events = (20_000, 5, 50_000) if args.quick else (200_000, 15, 200_000)
    print(f"Python {sys.version.split()[0]}; number={number}, rounds={rounds}")
    print_table("Synchronous publishing", sync_publish(number, rounds)
                + reentrancy_cost(number, rounds))
    print_table("Topic subscriptions (after the first event of the key)",
                topics(number, rounds) + matchers(number, rounds))
    print_table("Records and transitions", records(number, rounds)
                + transitions(number, rounds))
    print_table("Threads mode (ns per event, end to end)",
                threads_mode(events, max(3, rounds // 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
