#!/usr/bin/env bash
# Builds the Go client matrix program (main.go and one file per client) twice:
#   bin/matrix         with the releases go.mod pins (franz-go, kadm, sarama, kafka-go);
#   bin/matrix-latest  with the newest release of each, from a copy of the module in a
#                      temporary directory after `go get MODULE@latest`, so a release that
#                      breaks Fjord fails tests/matrix_go.rs the day it appears. go.mod and
#                      go.sum here are left as they are.
# Idempotent: the module and build caches make a second run take seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export GOFLAGS="-mod=mod -buildvcs=false"
# Others may be building on the same two cores.
build_jobs="${GO_BUILD_JOBS:-1}"

go mod download
mkdir -p bin
go build -p "$build_jobs" -o bin/matrix .
echo "built bin/matrix:"
go version -m bin/matrix | grep -E 'twmb|sarama|kafka-go' || true

latest="$(mktemp -d)"
trap 'rm -rf "$latest"' EXIT
cp go.mod go.sum ./*.go "$latest"/
(
    cd "$latest"
    go get github.com/twmb/franz-go@latest github.com/twmb/franz-go/pkg/kadm@latest \
        github.com/twmb/franz-go/pkg/kmsg@latest github.com/IBM/sarama@latest \
        github.com/segmentio/kafka-go@latest
    go build -p "$build_jobs" -o "$here/bin/matrix-latest" .
)
echo "built bin/matrix-latest:"
go version -m bin/matrix-latest | grep -E 'twmb|sarama|kafka-go' || true
