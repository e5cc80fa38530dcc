#!/usr/bin/env bash
# 10,000 partitions on one broker (default settings): idle RSS, open files, the time a clean
# restart takes to serve again, and produce over 1,000 partitions against 8 in the same run.
# Usage: bash benches/partitions.sh [OUT_DIR]. Needs a release build. Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
OUT=${1:-target/bench-partitions}
RECORDS=${RECORDS:-4000000}
rm -rf "$OUT" && mkdir -p "$OUT"
DATA=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

# Starts the broker on the data dir, at LISTEN; sets B, PID and SERVED_AFTER (seconds from
# start until it serves).
LISTEN=127.0.0.1:0
start() {
    local t0
    t0=$(date +%s.%N)
    "$FJORD" serve --listen "$LISTEN" --data-dir "$DATA/data" > "$DATA/out" 2>> "$DATA/log" &
    PID=$!
    for _ in $(seq 1000); do grep -q listening "$DATA/out" 2>/dev/null && break; sleep 0.01; done
    B=$(sed -n 's/^fjord: listening on //p' "$DATA/out")
    [ -n "$B" ] || { echo "the broker did not start:" >&2; tail -5 "$DATA/log" >&2; exit 1; }
    SERVED_AFTER=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
}

start
LISTEN=$B
T0=$(date +%s.%N)
"$FJORD" topic create many -p 10000 -b "$B" > /dev/null
CREATE=$(python3 -c "print(round($(date +%s.%N) - $T0, 1))")
sleep 2
RSS=$(awk '/VmRSS/ { print $2 * 1024 }' "/proc/$PID/status")
FILES=$(ls "/proc/$PID/fd" | wc -l)
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
start
RESTART=$SERVED_AFTER
"$FJORD" bench produce -b "$B" --topic p1000 --partitions 1000 --records "$RECORDS" --connections 2 --batch-records 100 --json > "$OUT/p1000.json"
sync
"$FJORD" bench produce -b "$B" --topic p8 --partitions 8 --records "$RECORDS" --connections 2 --batch-records 100 --json > "$OUT/p8.json"
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
PID=
python3 - "$OUT" "$CREATE" "$RSS" "$FILES" "$RESTART" <<'EOF'
import json, os, sys
out, create, rss, files, restart = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
p1000 = json.load(open(os.path.join(out, "p1000.json")))
p8 = json.load(open(os.path.join(out, "p8.json")))
ratio = p1000["records_per_sec"] / p8["records_per_sec"]
result = {"create_seconds": create, "idle_rss_bytes": rss, "open_files": files, "restart_seconds": restart,
          "p1000_records_per_sec": p1000["records_per_sec"], "p8_records_per_sec": p8["records_per_sec"], "ratio": ratio}
json.dump(result, open(os.path.join(out, "partitions.json"), "w"))
print(f"| creating 10,000 partitions | {create} s | | |")
print(f"| idle RSS with 10,000 partitions | {rss / 2**20:,.0f} MiB | <= 1 GiB | {'met' if rss <= 2**30 else 'NOT met'} |")
print(f"| open file descriptors | {files:,} | | |")
print(f"| clean restart to serving | {restart} s | <= 3 s | {'met' if restart <= 3 else 'NOT met'} |")
print(f"| produce over 1,000 partitions vs 8 (100-record batches) | {p1000['records_per_sec']:,.0f} vs {p8['records_per_sec']:,.0f} records/s: {ratio:.2f} | >= 0.5 | {'met' if ratio >= 0.5 else 'NOT met'} |")
EOF
