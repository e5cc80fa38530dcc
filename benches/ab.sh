#!/usr/bin/env bash
# A/B of two fjord builds on the same load, alternating, a fresh broker and data directory
# per run (the order flips every round, so neither build always runs on freshly freed pages).
# Usage: A=path/to/fjord B=path/to/other/fjord bash benches/ab.sh ROUNDS BENCH-ARGS...
# e.g.   ... bash benches/ab.sh 8 produce --topic p8 --partitions 8 --record-bytes 100 --records 12000000 --acks 1 --connections 2
# Prints one line per run (build, records/s, MB/s, p50, p99, p99.9 and max µs) and the
# medians. The load generator is A's `fjord bench` in every run. SETUP="BENCH-ARGS..." runs
# first in each run, unmeasured (e.g. SETUP="produce --topic p8 ... --records N" before a
# consume of p8). A_FLAGS / B_FLAGS are extra `fjord serve` flags of each build (the same
# binary twice with different settings is an A/B too).
set -euo pipefail
: "${A:?path of build A}" "${B:?path of build B}"
ROUNDS=${1:?rounds}; shift
DATA=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT
OUT="$DATA/runs.txt"
for round in $(seq "$ROUNDS"); do
    order="A B"; [ $((round % 2)) -eq 0 ] && order="B A"
    for which in $order; do
        fjord=${!which}
        mkdir -p "$DATA/broker"
        flags=${which}_FLAGS
        # shellcheck disable=SC2086 # the flags are a list of arguments
        "$fjord" serve --listen 127.0.0.1:0 --data-dir "$DATA/broker" ${!flags:-} > "$DATA/serve.out" 2> "$DATA/serve.log" &
        PID=$!
        for _ in $(seq 100); do grep -q listening "$DATA/serve.out" 2>/dev/null && break; sleep 0.1; done
        address=$(sed -n 's/^fjord: listening on //p' "$DATA/serve.out")
        if [ -n "${SETUP:-}" ]; then
            # shellcheck disable=SC2086 # SETUP is a list of arguments
            "$A" bench $SETUP -b "$address" --json > /dev/null
        fi
        sync
        "$A" bench "$@" -b "$address" --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
l = d['latency_us']
print('$which', round(d['records_per_sec']), round(d['bytes_per_sec'] / 1e6), l['p50'], l['p99'], l['p999'], l['max'])" | tee -a "$OUT"
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
        rm -rf "$DATA/broker"
    done
done
python3 - "$OUT" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    which, rate, _mb, *latency = line.split()
    runs.setdefault(which, []).append((int(rate), *map(int, latency)))
for which in sorted(runs):
    rates = sorted(run[0] for run in runs[which])
    p50, p99, p999 = (statistics.median(run[i] for run in runs[which]) for i in (1, 2, 3))
    worst = max(run[4] for run in runs[which])
    print(f"{which}: median {statistics.median(rates):,.0f} records/s (range {rates[0]:,}-{rates[-1]:,}), median p50 {p50:,.0f} µs, p99 {p99:,.0f} µs, p99.9 {p999:,.0f} µs; worst max {worst:,} µs")
PY
