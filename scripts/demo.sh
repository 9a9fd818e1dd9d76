#!/usr/bin/env bash
# The main job, from a fresh machine: set up (scripts/setup.sh), build every spec in specs/
# into generated/ (Python classes + diagrams), then run the demo cloud simulation.
# Extra arguments go to `fsmc demo`, e.g. `bash scripts/demo.sh --vms 5000`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
fsmc build specs/
fsmc demo "$@"
