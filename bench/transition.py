"""Kept for old habits: `python -m bench.transition [--quick]` is now
`python -m bench --only transition [--quick]` (see bench/__main__.py)."""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "transition", *sys.argv[1:]]))
