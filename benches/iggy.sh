#!/usr/bin/env bash
# Fjord beside Apache Iggy, produce only, in one run: the same shape of load on each (one
# producer connection, one partition, 1000-message batches, one request in flight, as
# iggy-bench sends), alternating the brokers, each on a fresh data directory after a
# `sync`. Iggy is built outside this repository from its release tag (see
# docs/benchmarks.md for the commands); nothing of it is kept here.
# Usage: IGGY_SERVER=path/to/iggy-server IGGY_BENCH=path/to/iggy-bench bash benches/iggy.sh [ROUNDS]
# Prints one line per run: broker, record bytes, messages/s, MB/s, p50, p99, p99.9, max (ms).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IGGY_SERVER:?path of iggy-server}" "${IGGY_BENCH:?path of iggy-bench}"
FJORD=${FJORD:-target/release/fjord}
ROUNDS=${1:-2}
# Bytes written per case: past the dirty thresholds' start (2.3 GB here) at 1000 B.
BYTES_1000=${BYTES_1000:-5000000000}
BYTES_100=${BYTES_100:-2000000000}
DATA=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

iggy_case() {
    local bytes=$1 total=$2
    mkdir -p "$DATA/iggy" && cd "$DATA/iggy"
    IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy "$IGGY_SERVER" > "$DATA/iggy.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do grep -q "TCP server has started" "$DATA/iggy.log" 2>/dev/null && break; sleep 0.1; done
    cd - > /dev/null
    "$IGGY_BENCH" -m "$bytes" -P 1000 -T "${total}B" pinned-producer --streams 1 --producers 1 tcp 2>&1 \
        | sed 's/\x1b\[[0-9;]*m//g' | grep "^Producers Results" | python3 -c "
import re, sys
line = sys.stdin.read()
get = lambda name: re.search(name + r': ([0-9.]+)', line).group(1)
print('iggy', $bytes, re.search(r'([0-9]+) messages/s', line).group(1), get('Total throughput'), get('p50 latency'), get('p99 latency'), get('p999 latency'), get('max'))"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    rm -rf "$DATA/iggy"
}

fjord_case() {
    local bytes=$1 total=$2
    "$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/fjord" > "$DATA/fjord.out" 2> "$DATA/fjord.log" &
    PID=$!
    for _ in $(seq 100); do grep -q listening "$DATA/fjord.out" 2>/dev/null && break; sleep 0.1; done
    local address
    address=$(sed -n 's/^fjord: listening on //p' "$DATA/fjord.out")
    "$FJORD" bench produce -b "$address" --topic i1 --partitions 1 --record-bytes "$bytes" \
        --batch-records 1000 --records $((total / bytes)) --acks 1 --inflight 1 --json | python3 -c "
import json, sys
d = json.load(sys.stdin); l = d['latency_us']
print('fjord', $bytes, round(d['records_per_sec']), round(d['bytes_per_sec'] / 1e6, 2), *(round(l[k] / 1000, 2) for k in ('p50', 'p99', 'p999', 'max')))"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    rm -rf "$DATA/fjord"
}

for round in $(seq "$ROUNDS"); do
    for bytes in 1000 100; do
        total=$BYTES_1000; [ "$bytes" = 100 ] && total=$BYTES_100
        order="iggy fjord"; [ $((round % 2)) -eq 0 ] && order="fjord iggy"
        for broker in $order; do
            sync
            "${broker}_case" "$bytes" "$total"
        done
    done
done
