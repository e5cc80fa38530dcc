#!/usr/bin/env bash
# Creates or refreshes the Python venvs of the client tests (tests/clients/README.md):
#
#   .venv                            confluent-kafka and kafka-python for the older tests
#                                    (ck.py, kp.py, groups_client.py ...), kafka-python and
#                                    aiokafka pinned for the matrix
#   .venvs/ck-<version>              confluent-kafka pinned at each release of CK_PINNED
#   .venvs/ck-latest                 confluent-kafka, upgraded to the newest on every run
#   .venvs/kafka-python-<version>    kafka-python pinned at an older release line
#   .venvs/kafka-python-latest       kafka-python, upgraded on every run
#   .venvs/aiokafka-latest           aiokafka, upgraded on every run
#
# The "latest" venvs are there so that a release that breaks Fjord fails the tests the day
# it appears. Idempotent: a venv that exists is reused, pip only changes what differs from
# the pins. The venvs are built side by side (each logs to .venvs/<name>.log, printed if it
# fails); pip's cache is shared. The pins are mirrored in tests/matrix_python.rs.
set -euo pipefail
cd "$(dirname "$0")/../../.."

PYTHON=${PYTHON:-python3}
CK_PINNED=(2.3.0 2.6.1 2.10.1 2.14.2 2.16.1)
KAFKA_PYTHON_PINNED=3.0.12
KAFKA_PYTHON_OLD=2.3.3
AIOKAFKA_PINNED=0.14.0

# venv DIR PIP-ARGS...: creates DIR if needed, then installs PIP-ARGS into it.
venv() {
    local dir=$1
    shift
    if [ ! -x "$dir/bin/python" ]; then
        "$PYTHON" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    "$dir/bin/python" -m pip freeze --disable-pip-version-check | grep -iE '^(confluent-kafka|kafka-python|aiokafka)=' || true
}

mkdir -p .venvs
names=()
pids=()
start() {
    local name=$1
    shift
    venv "$@" >".venvs/$name.log" 2>&1 &
    names+=("$name")
    pids+=($!)
}

start venv .venv confluent-kafka "kafka-python==$KAFKA_PYTHON_PINNED" "aiokafka==$AIOKAFKA_PINNED"
for version in "${CK_PINNED[@]}"; do
    start "ck-$version" ".venvs/ck-$version" "confluent-kafka==$version"
done
start ck-latest .venvs/ck-latest -U confluent-kafka
start "kafka-python-$KAFKA_PYTHON_OLD" ".venvs/kafka-python-$KAFKA_PYTHON_OLD" "kafka-python==$KAFKA_PYTHON_OLD"
start kafka-python-latest .venvs/kafka-python-latest -U kafka-python
start aiokafka-latest .venvs/aiokafka-latest -U aiokafka

failed=0
for i in "${!names[@]}"; do
    if wait "${pids[$i]}"; then
        echo "${names[$i]}: $(tr '\n' ' ' <".venvs/${names[$i]}.log")"
    else
        echo "setup.sh: the venv ${names[$i]} failed:" >&2
        cat ".venvs/${names[$i]}.log" >&2
        failed=1
    fi
done
exit "$failed"
