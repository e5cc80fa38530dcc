#!/usr/bin/env bash
# Builds src/Matrix.java (the client matrix scenario, tests/clients/README.md) once per
# kafka-clients version in VERSIONS: target/<version>/classes, and the runtime classpath of
# that version in target/<version>/classpath.txt, which `run` reads. Maven resolves from
# ~/.m2 offline first and goes to Maven Central only for what is missing there.
# Idempotent: a version whose build is newer than pom.xml and src/, and whose jars are all
# still in ~/.m2, is not built again.
set -euo pipefail
cd "$(dirname "$0")"

# The newest 3.9.x on Maven Central, and 4.4.0. tests/matrix_java.rs names the same ones.
VERSIONS=(3.9.2 4.4.0)
# And the newest release on Maven Central, whatever it is today, so a release that breaks
# Fjord fails the tests the day it appears: its version goes into target/newest-version.txt,
# which kafka_clients_newest_runs_the_matrix reads.
METADATA_URL=https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-clients/maven-metadata.xml

if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if [ "${java_major%%.*}" -lt 17 ]; then
    echo "setup.sh: this build targets Java 17 or newer, found $java_major" >&2
    exit 1
fi

# Whether target/$1 is a complete build newer than its sources.
up_to_date() {
    local dir="target/$1" jar jars
    [ -s "$dir/classpath.txt" ] && [ -f "$dir/classes/Matrix.class" ] || return 1
    [ "$dir/classpath.txt" -nt pom.xml ] && [ "$dir/classpath.txt" -nt src/Matrix.java ] || return 1
    # The file has no final newline, so read reports end of input: that is not a failure.
    IFS=: read -r -a jars < "$dir/classpath.txt" || true
    for jar in "${jars[@]}"; do
        [ -f "$jar" ] || return 1
    done
}

newest=$(curl -fsS --max-time 60 "$METADATA_URL" | sed -n 's:.*<release>\(.*\)</release>.*:\1:p')
if [ -z "$newest" ]; then
    echo "setup.sh: cannot read the newest kafka-clients release from $METADATA_URL" >&2
    exit 1
fi
mkdir -p target
echo "$newest" > target/newest-version.txt
case " ${VERSIONS[*]} " in
    *" $newest "*) ;;
    *) VERSIONS+=("$newest") ;;
esac

for version in "${VERSIONS[@]}"; do
    if up_to_date "$version"; then
        echo "setup.sh: kafka-clients $version: up to date"
        continue
    fi
    mkdir -p "target/$version"
    rm -f "target/$version/classpath.txt"
    goals=(-q -B -Dkafka.version="$version" compile dependency:build-classpath
        -Dmdep.outputFile="target/$version/classpath.txt" -Dmdep.includeScope=runtime)
    # Maven's output goes to a file (even -q prints terminal escapes), shown only on failure.
    log="target/$version/mvn.log"
    if ! mvn -o "${goals[@]}" >"$log" 2>&1; then
        if ! mvn "${goals[@]}" >"$log" 2>&1; then
            cat "$log" >&2
            echo "setup.sh: building the matrix program against kafka-clients $version failed" >&2
            exit 1
        fi
    fi
    echo "setup.sh: kafka-clients $version: built"
done
