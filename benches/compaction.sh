#!/usr/bin/env bash
# Compaction benchmarks (docs/benchmarks.md, "Compaction"): in one run,
# 1. a keyed log of BYTES_MB (UPDATES records of VALUE_BYTES over KEYS keys) is written to
#    a compacted topic whose segments may not be cleaned yet (min.compaction.lag.ms of an
#    hour), then made cleanable at once: the cleaner's pass over all of it is timed (the
#    broker logs it), and the disk's sequential read+write is measured on the same files
#    (dd copies the segments and fdatasyncs the copy);
# 2. a producer's latency (fjord bench produce, acks=all, one request in flight, a fixed
#    rate) without the cleaner, then while that pass runs, the cleaner's rate limit at its
#    default (unbounded, as Kafka's).
# Usage: bash benches/compaction.sh [OUT_DIR]. Needs a release build and kcat.
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
OUT=${1:-target/bench-compaction}
UPDATES=${UPDATES:-1500000}
KEYS=${KEYS:-300000}
VALUE_BYTES=${VALUE_BYTES:-1000}
LOAD_SECONDS=${LOAD_SECONDS:-20}
LOAD_RATE=${LOAD_RATE:-20000}
rm -rf "$OUT" && mkdir -p "$OUT"
DATA=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

"$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/broker" > "$DATA/broker.out" 2> "$OUT/broker.log" &
PID=$!
for _ in $(seq 100); do grep -q listening "$DATA/broker.out" 2>/dev/null && break; sleep 0.1; done
B=$(sed -n 's/^fjord: listening on //p' "$DATA/broker.out")
[ -n "$B" ] || { echo "the broker did not start" >&2; tail -5 "$OUT/broker.log" >&2; exit 1; }

# A dirty ratio of 1%: when the map fills before the log's end (more keys than it holds),
# the passes after the first go on at once.
"$FJORD" topic create compacted -p 1 -b "$B" -c cleanup.policy=compact \
    -c segment.bytes=67108864 -c min.compaction.lag.ms=3600000 \
    -c min.cleanable.dirty.ratio=0.01 > /dev/null
"$FJORD" topic create load -p 2 -b "$B" > /dev/null

echo "writing $UPDATES updates of $VALUE_BYTES bytes over $KEYS keys" >&2
python3 - "$UPDATES" "$KEYS" "$VALUE_BYTES" > "$DATA/updates.txt" <<'PY'
import sys
updates, keys, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
for i in range(updates):
    value = ("v%d-" % i).ljust(size, "x")
    out.write("k%d:%s\n" % (i % keys, value))
PY
kcat -P -b "$B" -t compacted -K: -l -X linger.ms=20 -X batch.size=1000000 "$DATA/updates.txt"
rm "$DATA/updates.txt"
sync

# The disk's sequential read+write on the same bytes the cleaner will read, in the page
# cache as they will be for it: read the segments and write a synced copy.
dir="$DATA/broker/compacted-0"
log_bytes=$(cat "$dir"/*.log | wc -c)
start=$(date +%s.%N)
cat "$dir"/*.log | dd of="$DATA/copy" bs=1M conv=fdatasync status=none
end=$(date +%s.%N)
rm -f "$DATA/copy"

# The producer alone.
"$FJORD" bench produce -b "$B" -t load --record-bytes 100 --acks -1 --inflight 1 \
    --batch-records 100 --rate "$LOAD_RATE" --duration "$LOAD_SECONDS" --json > "$OUT/alone.json"

# The whole log becomes cleanable at once; the producer runs through the pass.
"$FJORD" topic alter compacted -b "$B" -c min.compaction.lag.ms=0 > /dev/null
"$FJORD" bench produce -b "$B" -t load --record-bytes 100 --acks -1 --inflight 1 \
    --batch-records 100 --rate "$LOAD_RATE" --duration "$LOAD_SECONDS" --json > "$OUT/cleaning.json"
# The broker's log without its colours: the pass's line names the partition and its sizes.
passes() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/broker.log" | grep 'compacted-0' | grep 'INFO fjord::partition: compacted' || true; }
for _ in $(seq 600); do [ -n "$(passes)" ] && break; sleep 1; done
pass=$(passes | head -1)
[ -n "$pass" ] || { echo "no cleaning pass was logged" >&2; exit 1; }
echo "$pass" > "$OUT/pass.txt"

python3 - "$OUT" "$pass" "$log_bytes" "$start" "$end" <<'PY'
import json, re, sys
out, pass_line, log_bytes, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
field = lambda name: int(re.search(name + r"=(\d+)", pass_line).group(1))
before, after, elapsed = field("bytes_before"), field("bytes_after"), field("elapsed_ms") / 1000
# The pass reads the whole log (to map the dirty part, then again to rewrite what it cleans)
# and writes the cleaned segments: counted here as one read of the log plus the writes.
clean_rate = (log_bytes + after) / elapsed / 1e6
copy_rate = 2 * log_bytes / (end - start) / 1e6
alone = json.load(open(out + "/alone.json"))
cleaning = json.load(open(out + "/cleaning.json"))
def p99(report):
    return report["latency_us"]["p99"] / 1000
print("cleaning pass: a %.0f MB log, %.0f MB of segments rewritten into %.0f MB, in %.1f s: %.0f MB/s read+write" % (log_bytes / 1e6, before / 1e6, after / 1e6, elapsed, clean_rate))
print("disk copy of the same log: %.0f MB/s read+write" % copy_rate)
print("cleaning / disk: %.2f" % (clean_rate / copy_rate))
print("producer p99 alone: %.2f ms, while cleaning: %.2f ms, ratio %.2f" % (p99(alone), p99(cleaning), p99(cleaning) / p99(alone)))
PY
