#!/usr/bin/env bash
# Broker benchmarks: one run measures the machine's baseline and Fjord on it, so the ratios
# in docs/benchmarks.md come from the same conditions. Usage: bash benches/broker.sh [OUT_DIR]
# Needs a release build (cargo build --release). Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
OUT=${1:-target/bench-broker}
RECORDS=${RECORDS:-2000000}
rm -rf "$OUT" && mkdir -p "$OUT"
DATA=$(mktemp -d)
cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
    "$FJORD" cluster down --dir "$DATA/cluster" >/dev/null 2>&1 || true
    rm -rf "$DATA"
}
trap cleanup EXIT

"$FJORD" bench baseline --bytes $((512 << 20)) --dir "$DATA" --json > "$OUT/baseline.json"

# One broker.
"$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/single" > "$DATA/single.out" 2> "$DATA/single.log" &
PID=$!
for _ in $(seq 100); do grep -q listening "$DATA/single.out" 2>/dev/null && break; sleep 0.1; done
B=$(sed -n 's/^fjord: listening on //p' "$DATA/single.out")
run() { local name=$1; shift; "$FJORD" bench "$@" -b "$B" --json > "$OUT/$name.json"; }
run produce-acks1 produce --topic p8 --partitions 8 --record-bytes 100 --records "$RECORDS" --acks 1 --connections 2
run consume consume --topic p8 --partitions 8 --record-bytes 100 --records "$RECORDS" --connections 2
run produce-acksall produce --topic pall --partitions 8 --record-bytes 100 --records "$RECORDS" --acks -1 --connections 2
run produce-1kb produce --topic p1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4)) --acks 1 --connections 2
run consume-1kb consume --topic p1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4)) --connections 2
# Latency at half the maximum rate, measured with small requests (100 records per batch, one
# connection) so that queueing behind large requests does not hide the broker's latency.
run produce-small-max produce --topic psmall --partitions 8 --record-bytes 100 --records $((RECORDS / 4)) --acks 1 --batch-records 100
RATE=$(python3 -c "import json;print(int(json.load(open('$OUT/produce-small-max.json'))['records_per_sec']/2))")
run produce-half-rate produce --topic phalf --partitions 8 --record-bytes 100 --records $((RATE * 5)) --acks 1 --rate "$RATE" --batch-records 100
run e2e e2e --topic pe2e --partitions 8 --record-bytes 100 --records $((RATE * 5)) --rate "$RATE" --batch-records 100
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

# Three brokers, replication factor 3 beside factor 1, same run.
B=$("$FJORD" cluster up --brokers 3 --dir "$DATA/cluster")
run rf1-acks1 produce --topic rf1 --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks 1 --connections 2
"$FJORD" topic create rf3a -p 6 -r 3 -b "$B" >/dev/null
"$FJORD" topic create rf3b -p 6 -r 3 -b "$B" >/dev/null
run rf3-acks1 produce --topic rf3a --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks 1 --connections 2
run rf3-acksall produce --topic rf3b --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks -1 --connections 2
"$FJORD" cluster down --dir "$DATA/cluster" >/dev/null

python3 benches/broker_table.py "$OUT"
