#!/usr/bin/env bash
# Builds the Kafka applications that run against Fjord (pom.xml): compiles src/ into
# target/classes and writes the runtime classpath (Kafka Connect's runtime and FileStream
# connectors, Kafka Streams and its examples, kafka-clients) to target/classpath.txt, which
# `run` reads. Maven resolves from ~/.m2 offline first and goes to Maven Central only for
# what is missing there. Idempotent: a build newer than pom.xml and src/, whose jars are all
# still in ~/.m2, is not built again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

up_to_date() {
    local jar jars newest
    [ -s target/classpath.txt ] && [ -f target/classes/CompactedUpdates.class ] || return 1
    [ target/classpath.txt -nt pom.xml ] || return 1
    newest=$(find src -name "*.java" -printf "%T@ %p\n" | sort -n | tail -1 | cut -d" " -f2)
    [ target/classpath.txt -nt "$newest" ] || return 1
    # The file has no final newline, so read reports end of input: that is not a failure.
    IFS=: read -r -a jars < target/classpath.txt || true
    for jar in "${jars[@]}"; do
        [ -f "$jar" ] || return 1
    done
}

if up_to_date; then
    echo "setup.sh: Kafka applications: up to date"
    exit 0
fi
mkdir -p target
rm -f target/classpath.txt
goals=(-q -B compile dependency:build-classpath
    -Dmdep.outputFile=target/classpath.txt -Dmdep.includeScope=runtime)
# Maven's output goes to a file (even -q prints terminal escapes), shown only on failure.
if ! mvn -o "${goals[@]}" >target/mvn.log 2>&1; then
    if ! mvn "${goals[@]}" >target/mvn.log 2>&1; then
        cat target/mvn.log >&2
        echo "setup.sh: building the Kafka applications failed" >&2
        exit 1
    fi
fi
echo "setup.sh: Kafka applications: built"
