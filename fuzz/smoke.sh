#!/usr/bin/env bash
# Fuzz smoke run, for CI: builds every target once (release, debug assertions and overflow
# checks on, AddressSanitizer), then runs each target for SECONDS_PER_TARGET seconds
# (default 20), one at a time, on a scratch copy of its seed corpus plus the inputs of
# its past crashes. Exits non-zero if any target crashes, leaks, times out or runs out of
# memory, and names the input and the command that reproduces it.
#
# Usage: fuzz/smoke.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
# Inputs as large as a request frame the fuzzer is likely to find useful; memory and time
# per input bounded so that a blow-up is reported as the bug it is.
libfuzzer_flags=(
    "-max_total_time=$seconds"
    -max_len=1048576
    -rss_limit_mb=2048
    -malloc_limit_mb=512
    -timeout=10
    -print_final_stats=1
)
build_flags=(--release --debug-assertions)

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

echo "fuzz smoke: building all targets"
cargo +nightly fuzz build "${build_flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
    # A scratch corpus: what the run adds stays out of the tree.
    corpus="$scratch/$target"
    mkdir -p "$corpus" "artifacts/$target"
    [ -d "corpus/$target" ] && cp corpus/"$target"/* "$corpus"/ 2>/dev/null || true
    [ -d "regressions/$target" ] && cp regressions/"$target"/* "$corpus"/ 2>/dev/null || true
    log="$scratch/$target.log"
    start=$SECONDS
    if cargo +nightly fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
        "${libfuzzer_flags[@]}" "-artifact_prefix=artifacts/$target/" >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        echo "fuzz smoke: $target ok ($runs runs in $((SECONDS - start)) s)"
    else
        failed+=("$target")
        echo "fuzz smoke: $target FAILED after $((SECONDS - start)) s; the end of its log:" >&2
        tail -n 40 "$log" >&2
        input=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/Test unit written to //')
        if [ -n "$input" ]; then
            echo "fuzz smoke: crash input fuzz/$input" >&2
            echo "fuzz smoke: reproduce with: cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $target $input" >&2
        fi
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz smoke: failed: ${failed[*]} (keep each input under fuzz/regressions/<target>/ with a regression test; see fuzz/README.md)" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${seconds} s without a crash"
