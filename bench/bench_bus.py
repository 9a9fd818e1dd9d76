"""Kept for old habits: `python -m bench.bench_bus [--quick]` is now
`python -m bench --only bus --only async [--quick]` (see bench/__main__.py)."""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "bus", "--only", "async", *sys.argv[1:]]))
