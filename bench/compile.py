"""Compile-time benchmarks: `fsmc check` on synthetic specs of growing size (with the growth
exponent fitted), and `fsmc build` of many small spec files.

    python -m bench.compile            # 1k, 10k, 100k transitions; 1,000 files of 50
    python -m bench.compile --quick    # 1k, 10k; 200 files

Each size is checked in a fresh process state (the grammar is loaded before timing); the
figure is the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from pathlib import Path

from fsmc.compiler.cli import main as fsmc_main
from fsmc.compiler.project import check_results
from fsmc.dsl.loader import load_text
from fsmc.dsl.parser import grammar

from bench.synthetic import synthetic_spec


def time_check(transitions: int, repeat: int) -> float:
    text = synthetic_spec(transitions)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        project = check_results([load_text(text, "synthetic.fsm")])
        best = min(best, time.perf_counter() - start)
        assert project.ok and not project.diagnostics
    return best


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) over log(size): 1.0 is linear."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(t) for t in seconds]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs)


def time_build(files: int, transitions: int, *extra: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        specs = root / "specs"
        specs.mkdir()
        for index in range(files):
            (specs / f"machine_{index:04d}.fsm").write_text(
                synthetic_spec(transitions, name=f"Machine{index:04d}", fan_out=5))
        start = time.perf_counter()
        code = fsmc_main(["build", str(specs), "-o", str(root / "out"), "--format", "json",
                          *extra], stdout=io.StringIO())  # its JSON report: `[]`
        elapsed = time.perf_counter() - start
        assert code == 0
        return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    grammar()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    seconds = [time_check(size, args.repeat if size < 100_000 else 1) for size in sizes]
    print("fsmc check on one synthetic spec (parse + build model + all analyses)")
    print(f"{'transitions':>12} {'seconds':>9} {'µs/transition':>14}")
    for size, elapsed in zip(sizes, seconds, strict=True):
        print(f"{size:>12,} {elapsed:>9.3f} {elapsed / size * 1e6:>14.1f}")
    print(f"growth exponent (1.0 = linear): {growth_exponent(sizes, seconds):.2f}")
    files = 200 if args.quick else 1_000
    for label, extra in (("modules + DOT (--no-svg)", ["--no-svg"]), ("with SVGs", [])):
        elapsed = time_build(files, 50, *extra)
        print(f"fsmc build of {files:,} spec files x 50 transitions, {label}: {elapsed:.2f} s "
              f"({elapsed / files * 1e3:.1f} ms a file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
