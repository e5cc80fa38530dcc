#!/usr/bin/env bash
# Transactions benchmark (docs/benchmarks.md, "Transactions"): in one run, on a fresh broker,
# the Java producer (tests/clients/java/apps/src/TxnBench.java: acks=all, idempotent,
# linger.ms=5, batch.size=262144, no compression, records spread round-robin over the
# partitions) writes RECORDS records of RECORD_BYTES, one after the other,
# 1. as an idempotent producer without transactions,
# 2. in transactions of SMALL_TXN records,
# 3. in transactions of LARGE_TXN records,
# each to a topic of its own of PARTITIONS partitions. Each run then sends 1,000 records one
# at a time: the idempotent one waits for each acks=all produce, the transactional ones commit
# each in a transaction of its own. The summary gives each transactional throughput over the
# idempotent one, and the 1-record commit's p99 over the acks=all produce's p99.
# SERVE_ARGS adds `fjord serve` flags (e.g. "--fsync-acks-all false" for Kafka's durability
# model, replication without fdatasync). BROKER=kafka runs the same against Apache Kafka 4.4
# (tests/clients/java/kafka/kafka-reference-broker, built by that directory's setup.sh), for
# the ratios Kafka itself reaches on this machine.
# Usage: bash benches/transactions.sh [OUT_DIR]. Builds nothing: needs target/release/fjord
# (cargo build --release) and the Java apps (bash tests/clients/java/apps/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
APPS=tests/clients/java/apps
OUT=${1:-target/bench-transactions}
RECORDS=${RECORDS:-2000000}
RECORD_BYTES=${RECORD_BYTES:-100}
SMALL_TXN=${SMALL_TXN:-100}
LARGE_TXN=${LARGE_TXN:-10000}
PARTITIONS=${PARTITIONS:-6}

[ -x "$FJORD" ] || { echo "no $FJORD: build it first with cargo build --release" >&2; exit 1; }
if [ ! -s "$APPS/target/classpath.txt" ] || [ ! -f "$APPS/target/classes/TxnBench.class" ]; then
    echo "the Java apps are not built: run bash $APPS/setup.sh first" >&2
    exit 1
fi
rm -rf "$OUT" && mkdir -p "$OUT"
DATA=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

if [ "${BROKER:-fjord}" = kafka ]; then
    tests/clients/java/kafka/kafka-reference-broker "$DATA/broker" > "$DATA/broker.out" \
        2> "$OUT/broker.log" &
    PID=$!
    for _ in $(seq 900); do grep -q listening "$DATA/broker.out" 2>/dev/null && break; sleep 0.1; done
    B=$(sed -n 's/^listening on //p' "$DATA/broker.out")
else
    # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags.
    "$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/broker" ${SERVE_ARGS:-} \
        > "$DATA/broker.out" 2> "$OUT/broker.log" &
    PID=$!
    for _ in $(seq 100); do grep -q listening "$DATA/broker.out" 2>/dev/null && break; sleep 0.1; done
    B=$(sed -n 's/^fjord: listening on //p' "$DATA/broker.out")
fi
[ -n "$B" ] || { echo "the broker did not start" >&2; tail -5 "$OUT/broker.log" >&2; exit 1; }

# NAME MODE RECORDS_PER_TXN: a topic of its own, then TxnBench's lines into OUT/NAME.tsv.
bench() {
    local name=$1 mode=$2 per_txn=$3
    "$FJORD" topic create "txn-$name" -p "$PARTITIONS" -b "$B" > /dev/null
    # The previous run's writeback is not left to this one.
    sync
    echo "$name: $RECORDS records of $RECORD_BYTES bytes, $mode${per_txn:+, $per_txn per transaction}" >&2
    "$APPS/run" TxnBench "$B" "txn-$name" "$mode" "${per_txn:-0}" "$RECORDS" "$RECORD_BYTES" \
        > "$OUT/$name.tsv"
}
bench idempotent idempotent ""
bench "txn$SMALL_TXN" transactional "$SMALL_TXN"
bench "txn$LARGE_TXN" transactional "$LARGE_TXN"

kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
PID=

python3 - "$OUT" "$SMALL_TXN" "$LARGE_TXN" <<'PY'
import sys
out, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    return {k: float(v) for k, v in (line.split("\t") for line in open(f"{out}/{name}.tsv").read().split("\n") if line)}
idem = load("idempotent")
txns = [(n, load(f"txn{n}")) for n in (small, large)]
rate = idem["records_per_s"]
ack_p99 = idem["ack_p99_ms"]
print(f"| producer | records/s | / idempotent | commit p50 ms | commit p99 ms |")
print(f"|---|---:|---:|---:|---:|")
print(f"| idempotent | {rate:,.0f} | 1.00 | | |")
for n, t in txns:
    print(f"| transactions of {n:,} | {t['records_per_s']:,.0f} | **{t['records_per_s'] / rate:.2f}** "
          f"| {t['commit_p50_ms']:.2f} | {t['commit_p99_ms']:.2f} |")
print()
print(f"| one record at a time (1,000) | p50 ms | p99 ms | p99 / acks=all p99 |")
print(f"|---|---:|---:|---:|")
print(f"| acks=all produce (idempotent run) | {idem['ack_p50_ms']:.2f} | {ack_p99:.2f} | 1.00 |")
for n, t in txns:
    print(f"| 1-record commit (run of {n:,}) | {t['single_commit_p50_ms']:.2f} "
          f"| {t['single_commit_p99_ms']:.2f} | **{t['single_commit_p99_ms'] / ack_p99:.2f}** |")
PY
