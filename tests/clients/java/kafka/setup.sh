#!/usr/bin/env bash
# Resolves Apache Kafka 4.4.0 (broker, storage tool, command-line tools) from Maven Central
# into ~/.m2 and writes its classpath to target/classpath.txt, which kafka-tool and
# kafka-reference-broker read. Idempotent: a second run reuses ~/.m2 and rewrites the file
# only when pom.xml is newer than it.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if [ "${java_major%%.*}" -lt 17 ]; then
    echo "setup.sh: Kafka 4.4 needs Java 17 or newer, found $java_major" >&2
    exit 1
fi

if [ -s target/classpath.txt ] && [ target/classpath.txt -nt pom.xml ]; then
    # Still valid only if every jar it names is there (~/.m2 may have been cleaned).
    missing=0
    # The file has no final newline, so read reports end of input: that is not a failure.
    IFS=: read -r -a jars < target/classpath.txt || true
    for jar in "${jars[@]}"; do
        [ -f "$jar" ] || { missing=1; break; }
    done
    [ "$missing" = 0 ] && exit 0
fi

mkdir -p target
# Maven's output goes to a file (even -q prints terminal escapes), shown only on failure.
if ! mvn -q -B dependency:build-classpath \
    -Dmdep.outputFile=target/classpath.txt.tmp -Dmdep.includeScope=runtime >target/mvn.log 2>&1; then
    cat target/mvn.log >&2
    echo "setup.sh: resolving Apache Kafka with Maven failed" >&2
    exit 1
fi
mv target/classpath.txt.tmp target/classpath.txt
