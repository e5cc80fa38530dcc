#!/usr/bin/env bash
# Fjord against Apache Kafka 4.4, measured: the broker suite's main produce, consume and e2e
# rows (`fjord bench`, the parameters of benches/broker.sh) and Kafka's own
# kafka-producer-perf-test, against one broker after the other in the same run, each
# started the same way (a fresh data dir under one temp dir, a free port of 127.0.0.1, its
# default settings). Per case: throughput, latency, and the broker's CPU seconds per GB of
# records (utime + stime of the broker process, all its threads, from /proc/PID/stat before
# and after); per broker its peak RSS (VmHWM). Usage: bash benches/kafka.sh [OUT_DIR]
#
# Needs a release build (cargo build --release) and tests/clients/java/kafka/setup.sh.
# About two minutes with the default RECORDS=6000000 (100-byte records; at 2000000 the
# consume row lasts about 0.1 s, too short to say much).
#
# Kafka is started with tests/clients/java/kafka/kafka-reference-broker, whose JVM options
# (-Xmx512m -Xms512m -XX:+UseSerialGC, chosen for quick test starts) are replaced here with
# what Kafka's own bin/kafka-server-start.sh and kafka-run-class.sh give a broker: a 1 GiB
# heap and G1 (KAFKA_BROKER_HEAP, KAFKA_BROKER_GC). The script honours no variable for
# them, so a `java` wrapper put first on its PATH swaps them. It also gives the broker
# `log.segment.delete.delay.ms=100` and `log.initial.task.delay.ms=0`, so that a deleted
# topic's files go within a moment, as Fjord's do (Kafka keeps them 60 s by default, and
# runs its first deletion 30 s after the start), which the cases rely on (see fresh below).
set -euo pipefail
cd "$(dirname "$0")/.."
FJORD=${FJORD:-target/release/fjord}
OUT=${1:-target/bench-kafka}
# Records of the main rows, and their size.
RECORDS=${RECORDS:-6000000}
RECORD_BYTES=${RECORD_BYTES:-100}
# Records produced and consumed once, unmeasured, on every broker before its cases (Kafka's
# JIT compiles its hot paths; both brokers touch the same amount of new memory first).
WARMUP_RECORDS=${WARMUP_RECORDS:-$((RECORDS / 2))}
# The brokers, in the order they run.
BROKERS=${BROKERS:-kafka fjord}
# The rate of the e2e row run at the same rate on every broker, records/s; by default half
# the maximum (produce-small-max) of the first broker in BROKERS.
E2E_RATE=${E2E_RATE:-}
KAFKA_BROKER_HEAP=${KAFKA_BROKER_HEAP:--Xmx1G -Xms1G}
KAFKA_BROKER_GC=${KAFKA_BROKER_GC:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent}
# Limits: one case, a broker's start and stop, a deleted topic's files going away.
CASE_SECONDS_MAX=${CASE_SECONDS_MAX:-300}
START_SECONDS_MAX=${START_SECONDS_MAX:-90}
STOP_SECONDS_MAX=${STOP_SECONDS_MAX:-60}
DELETE_SECONDS_MAX=${DELETE_SECONDS_MAX:-60}

KAFKA_DIR=tests/clients/java/kafka
if [ ! -x "$FJORD" ]; then echo "kafka.sh: $FJORD is missing: cargo build --release first" >&2; exit 1; fi
if [ ! -s "$KAFKA_DIR/target/classpath.txt" ]; then echo "kafka.sh: run $KAFKA_DIR/setup.sh first" >&2; exit 1; fi
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$(mktemp -d)
TICKS=$(getconf CLK_TCK)
# The process started for the running broker (fjord itself, or kafka-reference-broker) and
# the broker process whose CPU and memory are read (fjord, or Kafka's JVM).
STARTED=""
BPID=""
# The running case (a `timeout` process), killed on the way out.
CASE_PID=""

stop_broker() {
    [ -n "$STARTED" ] || return 0
    kill -TERM "$STARTED" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_SECONDS_MAX))
    while kill -0 "$STARTED" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$STARTED" 2>/dev/null; then
        echo "kafka.sh: the broker did not stop within $STOP_SECONDS_MAX s; killing it" >&2
        [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null || true
        kill -KILL "$STARTED" 2>/dev/null || true
    fi
    wait "$STARTED" 2>/dev/null || true
    # The JVM is the reference script's child: it must be gone too.
    if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then kill -KILL "$BPID" 2>/dev/null || true; fi
    STARTED="" BPID=""
}
cleanup() {
    if [ -n "$CASE_PID" ]; then kill -TERM "$CASE_PID" 2>/dev/null || true; wait "$CASE_PID" 2>/dev/null || true; fi
    stop_broker
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Kafka's JVM options, swapped in for the reference script's (see the top).
REAL_JAVA=$(command -v java)
mkdir -p "$DATA/bin"
cat > "$DATA/bin/java" <<EOF
#!/usr/bin/env bash
# Written by benches/kafka.sh: the reference broker's JVM with Kafka's own start settings.
args=()
broker=no
for arg in "\$@"; do
    case "\$arg" in
        -Xmx512m|-Xms512m|-XX:+UseSerialGC) ;;
        kafka.Kafka) broker=yes; args+=("\$arg") ;;
        *) args+=("\$arg") ;;
    esac
done
if [ "\$broker" = yes ]; then
    args+=(--override log.segment.delete.delay.ms=100 --override log.initial.task.delay.ms=0)
fi
exec "$REAL_JAVA" $KAFKA_BROKER_HEAP $KAFKA_BROKER_GC "\${args[@]}"
EOF
chmod +x "$DATA/bin/java"

# utime + stime of a process (all its threads, live and exited), in seconds.
cpu_seconds() { sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$TICKS" '{ printf "%.2f\n", ($12 + $13) / t }'; }
# A field of /proc/PID/status, in bytes.
status_bytes() { awk -v f="$2:" '$1 == f { print $2 * 1024 }' "/proc/$1/status"; }

# Starts broker $1 with a fresh data dir; sets B (its address), STARTED and BPID.
start_broker() {
    local name=$1 t0=$SECONDS
    case "$name" in
        fjord)
            "$FJORD" serve --listen 127.0.0.1:0 --data-dir "$DATA/fjord" > "$DATA/fjord.out" 2> "$DATA/fjord.log" &
            STARTED=$! BPID=$!
            for _ in $(seq $((START_SECONDS_MAX * 10))); do grep -q listening "$DATA/fjord.out" 2>/dev/null && break; sleep 0.1; done
            B=$(sed -n 's/^fjord: listening on //p' "$DATA/fjord.out")
            ;;
        kafka)
            PATH="$DATA/bin:$PATH" KAFKA_REFERENCE_START_SECONDS_MAX=$START_SECONDS_MAX \
                "$KAFKA_DIR/kafka-reference-broker" "$DATA/kafka" > "$DATA/kafka.out" 2> "$DATA/kafka.err" &
            STARTED=$!
            for _ in $(seq $((START_SECONDS_MAX * 10 + 50))); do
                grep -q listening "$DATA/kafka.out" 2>/dev/null && break
                kill -0 "$STARTED" 2>/dev/null || break
                sleep 0.1
            done
            B=$(sed -n 's/^listening on //p' "$DATA/kafka.out")
            BPID=$(pgrep -P "$STARTED" -x java || true)
            ;;
        *) echo "kafka.sh: unknown broker $name (BROKERS: kafka, fjord)" >&2; exit 2 ;;
    esac
    if [ -z "$B" ] || [ -z "$BPID" ]; then
        echo "kafka.sh: broker $name did not start:" >&2
        tail -20 "$DATA/$name.log" "$DATA/$name.err" "$DATA/kafka/broker.log" 2>/dev/null >&2 || true
        exit 1
    fi
    echo "$((SECONDS - t0))" > "$OUT/$name-start-seconds"
    status_bytes "$BPID" VmRSS > "$OUT/$name-idle-rss-bytes"
    tr '\0' ' ' < "/proc/$BPID/cmdline" | { sed 's/-cp [^ ]* /-cp CLASSPATH /'; echo; } > "$OUT/$name-cmdline"
}

# Creates topic $1 with 8 partitions and waits until every partition answers ListOffsets
# (`fjord topic describe`): Kafka lists a new partition's leader in Metadata a moment before
# that broker serves it, and `fjord bench` does not retry a NOT_LEADER_OR_FOLLOWER.
create_topic() {
    "$FJORD" topic create "$1" -p 8 -b "$B" > /dev/null
    local deadline=$((SECONDS + START_SECONDS_MAX))
    until "$FJORD" topic describe "$1" -b "$B" > /dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "kafka.sh: topic $1 not served after $START_SECONDS_MAX s" >&2; exit 1; fi
        sleep 0.1
    done
}

# Deletes every topic but the internal ones and waits until their files are gone (Kafka
# renames a deleted partition's directory to *-delete first), then syncs. Every produce case
# starts from this, as in broker.sh: on this VM, page-cache pages freed a moment ago are
# several times cheaper to fill than pages not used for a while (docs/benchmarks.md).
# Kafka's topics are deleted with its own kafka-topics: `fjord topic delete` fills only the
# topic names of DeleteTopics v0-5, and Kafka 4.4 answers it at v6 (topics by name or id).
fresh() {
    local topics
    topics=$("$FJORD" topic list -b "$B" | { grep -v '^__' || true; } | paste -sd '|')
    if [ -n "$topics" ]; then
        case "$1" in
            kafka) "$KAFKA_DIR/kafka-tool" kafka-topics --bootstrap-server "$B" --delete --topic "$topics" > /dev/null ;;
            *) for topic in ${topics//|/ }; do "$FJORD" topic delete "$topic" -b "$B" > /dev/null; done ;;
        esac
    fi
    local deadline=$((SECONDS + DELETE_SECONDS_MAX))
    while [ -n "$("$FJORD" topic list -b "$B" | grep -v '^__' || true)" ] || compgen -G "$DATA/$1/logs/*-delete" > /dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "kafka.sh: deleted topics still there after $DELETE_SECONDS_MAX s" >&2; exit 1; fi
        sleep 0.2
    done
    sync
}

# Runs a command in the background under the case time limit and waits for it (a signal to
# this script is handled at once, not after the command).
bounded() {
    timeout "$CASE_SECONDS_MAX" "$@" &
    CASE_PID=$!
    local status=0
    wait "$CASE_PID" || status=$?
    CASE_PID=""
    if [ "$status" -ne 0 ]; then echo "kafka.sh: $1 failed (status $status; 124: over $CASE_SECONDS_MAX s)" >&2; exit 1; fi
}

# One case: `run BROKER CASE CMD...`; the command's stdout goes to OUT/BROKER-CASE.json (or
# .txt), the broker's CPU seconds over it to OUT/BROKER-CASE.cpu.
run() {
    local broker=$1 name=$2 ext=json before; shift 2
    case "$1" in kafka-producer-perf-test) ext=txt ;; esac
    sync
    before=$(cpu_seconds "$BPID")
    if [ "$1" = kafka-producer-perf-test ]; then
        bounded "$KAFKA_DIR/kafka-tool" "$@" > "$OUT/$broker-$name.$ext"
    else
        bounded "$FJORD" bench "$@" -b "$B" --json > "$OUT/$broker-$name.$ext"
    fi
    python3 -c "print(f'{$(cpu_seconds "$BPID") - $before:.2f}')" > "$OUT/$broker-$name.cpu"
}

half_rate() { python3 -c "import json; print(int(json.load(open('$OUT/$1-produce-small-max.json'))['records_per_sec'] / 2))"; }

for broker in $BROKERS; do
    echo "kafka.sh: $broker" >&2
    start_broker "$broker"
    # Warm-up, not measured.
    create_topic warmup
    bounded "$FJORD" bench produce -b "$B" --topic warmup --partitions 8 --record-bytes "$RECORD_BYTES" --records "$WARMUP_RECORDS" --acks 1 --connections 2 --json > "$OUT/$broker-warmup-produce.json"
    bounded "$FJORD" bench consume -b "$B" --topic warmup --partitions 8 --record-bytes "$RECORD_BYTES" --records "$WARMUP_RECORDS" --connections 2 --json > "$OUT/$broker-warmup-consume.json"
    fresh "$broker"
    # broker.sh's main rows: produce and consume, 8 partitions, 2 connections.
    create_topic p8
    run "$broker" produce-acks1 produce --topic p8 --partitions 8 --record-bytes "$RECORD_BYTES" --records "$RECORDS" --acks 1 --connections 2
    run "$broker" consume consume --topic p8 --partitions 8 --record-bytes "$RECORD_BYTES" --records "$RECORDS" --connections 2
    # The maximum with 100-record batches on one connection, and e2e at half of it.
    fresh "$broker"
    create_topic psmall
    run "$broker" produce-small-max produce --topic psmall --partitions 8 --record-bytes "$RECORD_BYTES" --records "$RECORDS" --acks 1 --batch-records 100
    RATE=$(half_rate "$broker")
    E2E_RATE=${E2E_RATE:-$RATE}
    fresh "$broker"
    create_topic pe2e
    run "$broker" e2e e2e --topic pe2e --partitions 8 --record-bytes "$RECORD_BYTES" --records $((RATE * 5)) --rate "$RATE" --batch-records 100
    # e2e at the same rate on every broker.
    fresh "$broker"
    create_topic pe2es
    run "$broker" e2e-same-rate e2e --topic pe2es --partitions 8 --record-bytes "$RECORD_BYTES" --records $((E2E_RATE * 5)) --rate "$E2E_RATE" --batch-records 100
    # Kafka's Java producer as the load generator: one producer, its default batching
    # (batch.size 16384, linger.ms 5), acks=1, as fast as it goes, into 8 partitions.
    fresh "$broker"
    create_topic perf
    run "$broker" perf-test kafka-producer-perf-test --topic perf --num-records "$RECORDS" --record-size "$RECORD_BYTES" --throughput -1 \
        --command-property bootstrap.servers="$B" acks=1 --print-metrics
    status_bytes "$BPID" VmHWM > "$OUT/$broker-peak-rss-bytes"
    fresh "$broker"
    t0=$SECONDS
    stop_broker
    echo "$((SECONDS - t0))" > "$OUT/$broker-stop-seconds"
    if [ "$broker" = kafka ]; then cp "$DATA/kafka/broker.log" "$OUT/kafka-broker.log"; fi
    rm -rf "${DATA:?}/$broker"
done

nproc > "$OUT/nproc"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "fjord: $("$FJORD" --version) ($FJORD)"
    echo "java: $("$REAL_JAVA" -version 2>&1 | head -1)"
    echo "kafka broker JVM: $KAFKA_BROKER_HEAP $KAFKA_BROKER_GC; --override log.segment.delete.delay.ms=100 --override log.initial.task.delay.ms=0"
    echo "records: $RECORDS x $RECORD_BYTES B, warm-up $WARMUP_RECORDS, e2e same rate $E2E_RATE records/s, brokers: $BROKERS"
} > "$OUT/run.txt"
python3 benches/kafka_table.py "$OUT"
