#!/usr/bin/env bash
# The demo across two processes through RabbitMQ: `fsmc events bill` reads the broker in the
# background while `fsmc demo --amqp` simulates and publishes; then the usage report of each
# (one computed in-process, one from the broker alone) is printed and compared.
# Uses the broker at $BROKER_URL, or starts a private one (tests/rabbit.py) for the run.
# Extra arguments go to `fsmc demo`, e.g. `bash scripts/demo_broker.sh --vms 500`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
fsmc build specs/
out=demo-output/broker
mkdir -p "$out"
rm -f "$out"/billing.db* "$out"/broker.url
if [ -z "${BROKER_URL:-}" ]; then
    python -m tests.rabbit --url-file "$out/broker.url" &
    broker=$!
    trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true' EXIT
    for _ in $(seq 1 300); do [ -s "$out/broker.url" ] && break; sleep 0.2; done
    [ -s "$out/broker.url" ] || { echo "demo_broker: the broker did not start" >&2; exit 1; }
    BROKER_URL=$(cat "$out/broker.url")
fi
fsmc events bill --amqp "$BROKER_URL" --db "$out/billing.db" --idle 5 > "$out/bill.txt" &
billing=$!
fsmc demo --amqp "$BROKER_URL" --no-site "$@"
wait "$billing"
echo
echo "== the billing process (it only saw the broker) =="
head -n 3 "$out/bill.txt"
fsmc usage report --db "$out/billing.db" > "$out/from-broker.txt"
fsmc usage report --db demo-output/usage.db > "$out/in-process.txt"
if cmp -s "$out/from-broker.txt" "$out/in-process.txt"; then
    echo "usage reports: identical (in-process and from the broker; $out/)"
else
    echo "usage reports DIFFER: diff $out/in-process.txt $out/from-broker.txt" >&2
    exit 1
fi
