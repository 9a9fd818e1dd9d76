#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: unit and property tests, the golden
# files, the drift gates (`fsmc build --check specs/`, `fsmc fmt --check specs/`), ruff and mypy --strict, the browser test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k parser`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
echo "test: fsmc build --check specs/"
fsmc build --check specs/ --format json >/dev/null
echo "test: fsmc fmt --check specs/"
fsmc fmt --check specs/
echo "test: pytest"
python -m pytest -q "$@"
