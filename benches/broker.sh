#!/usr/bin/env bash
# Broker benchmarks: one run measures the machine's baseline and Fjord on it, so the ratios
# in docs/benchmarks.md come from the same conditions. Usage: bash benches/broker.sh [OUT_DIR]
# Needs a release build (cargo build --release) and kcat (for the librdkafka rows). Takes
# about ten minutes with RECORDS=6000000.
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
OUT=${1:-target/bench-broker}
RECORDS=${RECORDS:-2000000}
rm -rf "$OUT" && mkdir -p "$OUT"
DATA=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    "$FJORD" cluster down --dir "$DATA/cluster" >/dev/null 2>&1 || true
    rm -rf "$DATA"
}
trap cleanup EXIT

# Starts a broker with data in $DATA/$1 and extra flags; sets B (its address) and PID.
start() {
    local name=$1; shift
    "$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/$name" "$@" > "$DATA/$name.out" 2> "$DATA/$name.log" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do grep -q listening "$DATA/$name.out" 2>/dev/null && break; sleep 0.1; done
    B=$(sed -n 's/^fjord: listening on //p' "$DATA/$name.out")
    if [ -z "$B" ]; then echo "broker $name did not start:" >&2; tail -5 "$DATA/$name.log" >&2; exit 1; fi
}
# Stops the broker and deletes its data, freeing its page cache for the next one (see fresh).
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; rm -rf "$DATA/${1:?broker name}"; }
# Every case starts with no dirty pages left over from the one before (writeback of an
# earlier case would otherwise land inside this one).
run() { local name=$1; shift; sync; "$FJORD" bench "$@" -b "$B" --json > "$OUT/$name.json"; }
# Deletes every topic but the internal ones. Each produce case starts from this, as the file
# baseline starts from a deleted file: on this VM, page-cache pages that were recently freed
# are several times cheaper to fill than pages never used yet (docs/benchmarks.md), so
# data left over from earlier cases would tax later ones.
fresh() {
    "$FJORD" topic list -b "$B" | grep -v '^__' | while read -r topic; do "$FJORD" topic delete "$topic" -b "$B" > /dev/null; done
    sync
}
# The sum of a topic's end offsets, from `fjord topic describe`.
end_offsets() { "$FJORD" topic describe "$1" -b "$B" | awk 'NR > 2 && NF == 0 { exit } NR > 2 { sum += $4 } END { print sum + 0 }'; }
# Drops the page cache of every file under a directory (written back first), so reads go
# to the disk. posix_fadvise needs no root and touches only these files.
evict() {
    sync
    python3 - "$1" <<'EOF'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
EOF
}

# The machine's baseline, measured at the start, in the middle and at the end of the run;
# the table uses the best of the three (a slow moment would flatter every ratio).
baseline() { "$FJORD" bench baseline --bytes $((512 << 20)) --dir "$DATA" --json > "$OUT/baseline-$1.json"; }
baseline 1

# One broker, default settings (one shard per CPU).
start single
run produce-acks1 produce --topic p8 --partitions 8 --record-bytes 100 --records "$RECORDS" --acks 1 --connections 2
run consume consume --topic p8 --partitions 8 --record-bytes 100 --records "$RECORDS" --connections 2
fresh
run produce-acksall produce --topic pall --partitions 8 --record-bytes 100 --records "$RECORDS" --acks -1 --connections 2
fresh
run produce-1kb produce --topic p1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4)) --acks 1 --connections 2
run consume-1kb consume --topic p1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4)) --connections 2
# One producer and one consumer connection, as in the peer figures of the issue.
fresh
run produce-1conn produce --topic q8 --partitions 8 --record-bytes 100 --records "$RECORDS" --acks 1
run consume-1conn consume --topic q8 --partitions 8 --record-bytes 100 --records "$RECORDS"
fresh
run produce-1kb-1conn produce --topic q1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4)) --acks 1
run consume-1kb-1conn consume --topic q1k --partitions 8 --record-bytes 1000 --records $((RECORDS / 4))
# Latency at half the maximum rate, measured with small requests (100 records per batch, one
# connection) so that queueing behind large requests does not hide the broker's latency.
fresh
# The maximum is measured over RECORDS records (about a second): over a quarter of them (0.2-0.3 s)
# it swung 4.9-7.9M records/s between runs, and the half rate with it.
run produce-small-max produce --topic psmall --partitions 8 --record-bytes 100 --records "$RECORDS" --acks 1 --batch-records 100
RATE=$(python3 -c "import json;print(int(json.load(open('$OUT/produce-small-max.json'))['records_per_sec']/2))")
fresh
run produce-half-rate produce --topic phalf --partitions 8 --record-bytes 100 --records $((RATE * 5)) --acks 1 --rate "$RATE" --batch-records 100
fresh
run e2e e2e --topic pe2e --partitions 8 --record-bytes 100 --records $((RATE * 5)) --rate "$RATE" --batch-records 100

# A consumer reading old data from the disk beside producers at half rate: the producers'
# latency alone, then with the cold reader, both after evicting the broker's files.
fresh
run cold-fill produce --topic cold --partitions 8 --record-bytes 100 --records $((RECORDS * 4)) --acks 1 --connections 2
evict "$DATA/single"
run cold-alone produce --topic pcold1 --partitions 8 --record-bytes 100 --records $((RATE * 3)) --acks 1 --rate "$RATE" --batch-records 100
evict "$DATA/single"
"$FJORD" bench consume -b "$B" --topic cold --partitions 8 --record-bytes 100 --records $((RECORDS * 4)) --json > "$OUT/cold-reader.json" &
READER=$!
"$FJORD" bench produce -b "$B" --topic pcold2 --partitions 8 --record-bytes 100 --records $((RATE * 3)) --acks 1 --rate "$RATE" --batch-records 100 --json > "$OUT/cold-with-reader.json"
wait "$READER"
# The control: the same reader once more, now from the page cache (the cold read left the
# data there), beside the same producers. What the cold reader adds beyond this is the disk.
"$FJORD" bench consume -b "$B" --topic cold --partitions 8 --record-bytes 100 --records $((RECORDS * 4)) --json > "$OUT/warm-reader.json" &
READER=$!
"$FJORD" bench produce -b "$B" --topic pcold3 --partitions 8 --record-bytes 100 --records $((RATE * 3)) --acks 1 --rate "$RATE" --batch-records 100 --json > "$OUT/warm-with-reader.json"
wait "$READER"
stop single

baseline 2

# librdkafka (kcat) as the client: 100-byte records, 8 partitions, keyless (spread by
# librdkafka's partitioner), read back whole. The counts are checked.
start rdkafka
KCAT_RECORDS=$((RECORDS / 3))
"$FJORD" topic create rdk -p 8 -b "$B" > /dev/null
python3 -c "
import sys
line = b'x' * 99 + b'\n'
with open('$DATA/records.txt', 'wb') as f:
    for _ in range($KCAT_RECORDS // 10000): f.write(line * 10000)
    f.write(line * ($KCAT_RECORDS % 10000))"
sync
T0=$(date +%s.%N)
kcat -P -b "$B" -t rdk -l "$DATA/records.txt" -X linger.ms=5 -X batch.num.messages=10000 -X queue.buffering.max.messages=1000000 -X queue.buffering.max.kbytes=1048576
T1=$(date +%s.%N)
GOT=$(kcat -C -b "$B" -t rdk -o beginning -e -q -f '\n' -X fetch.max.bytes=52428800 | wc -l)
T2=$(date +%s.%N)
STORED=$(end_offsets rdk)
python3 -c "
import json
print(json.dumps({'records': $KCAT_RECORDS, 'stored': $STORED, 'consumed': $GOT, 'produce_seconds': $T1 - $T0, 'consume_seconds': $T2 - $T1}))" > "$OUT/kcat.json"
stop rdkafka

# Overload: 16 producer connections (one per partition) with 16 requests of about 0.9 MB in
# flight each (about 230 MB of requests at once) against a broker allowed 64 MiB of requests
# in memory. Peak RSS, errors and the stored record count are recorded.
start overload --request-memory-max $((64 << 20)) --request-bytes-max $((8 << 20))
OVERLOAD_RECORDS=$((RECORDS * 2))
run overload produce --topic over --partitions 16 --record-bytes 100 --records "$OVERLOAD_RECORDS" --acks 1 --connections 16 --inflight 16 --batch-records 8000
HWM=$(awk '/VmHWM/ { print $2 * 1024 }' "/proc/$PID/status")
STORED=$(end_offsets over)
echo "{\"records\": $OVERLOAD_RECORDS, \"stored\": $STORED, \"peak_rss_bytes\": $HWM, \"request_memory_max\": $((64 << 20))}" > "$OUT/overload-broker.json"
stop overload

# The same produce with one shard, for the shard comparison.
start shards1 --shards 1
run produce-shards1 produce --topic p8 --partitions 8 --record-bytes 100 --records "$RECORDS" --acks 1 --connections 2
fresh
run produce-acksall-shards1 produce --topic pall --partitions 8 --record-bytes 100 --records "$RECORDS" --acks -1 --connections 2
stop shards1

# Three brokers, replication factor 3 beside factor 1, same run: with the shard count
# `cluster up` gives each broker (its share of the CPUs: 1 here), then with one shard per CPU
# in every broker (what each would run alone).
cluster_rows() {
    local suffix=$1; shift
    B=$("$FJORD" cluster up --brokers 3 --dir "$DATA/cluster" -- "$@")
    run "rf1-acks1$suffix" produce --topic rf1 --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks 1 --connections 2
    "$FJORD" topic create rf3a -p 6 -r 3 -b "$B" >/dev/null
    "$FJORD" topic create rf3b -p 6 -r 3 -b "$B" >/dev/null
    run "rf3-acks1$suffix" produce --topic rf3a --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks 1 --connections 2
    run "rf3-acksall$suffix" produce --topic rf3b --partitions 6 --record-bytes 100 --records $((RECORDS / 2)) --acks -1 --connections 2
    "$FJORD" cluster down --dir "$DATA/cluster" >/dev/null
    rm -rf "$DATA/cluster"
}
cluster_rows ""
cluster_rows "-shards-cpus" --shards "$(nproc)"

baseline 3
nproc > "$OUT/nproc"
python3 benches/broker_table.py "$OUT"
