#!/usr/bin/env python3
"""Prints the storage benchmarks from target/criterion as Markdown tables.

Each case run by benches/storage.rs as `<group>/fjord/<size>` next to `<group>/baseline/<size>`
becomes a row: Fjord MB/s, baseline MB/s, and their ratio. Everything else (reads that only
resolve regions, index lookups, batch validation) goes in a second table with its time per
iteration. MB/s is 10^6 bytes per second, from criterion's throughput (benchmark.json) and
its median time per iteration (new/estimates.json) unless --estimate says otherwise.

Usage: python3 benches/ratios.py [--criterion-dir target/criterion] [--estimate median]
Python 3 standard library only.
"""

import argparse
import json
import re
import sys
from pathlib import Path

SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024, "GiB": 1024 * 1024 * 1024}


def size_key(value):
    """Sorts values like 1KiB < 64KiB < 1MiB; anything else after them, by name."""
    match = re.fullmatch(r"(\d+)(B|KiB|MiB|GiB)", value or "")
    if match:
        return (0, int(match.group(1)) * SIZE_UNITS[match.group(2)], "")
    return (1, 0, value or "")


def load(criterion_dir, estimate):
    """{(group, function, value): (ns per iteration, bytes per iteration or None)}."""
    results = {}
    for benchmark_path in criterion_dir.glob("**/new/benchmark.json"):
        estimates_path = benchmark_path.with_name("estimates.json")
        if not estimates_path.exists():
            continue
        benchmark = json.loads(benchmark_path.read_text())
        estimates = json.loads(estimates_path.read_text())
        chosen = estimates.get(estimate)
        if chosen is None:
            # `slope` is absent when criterion sampled flat; the median always exists.
            chosen = estimates["median"]
        throughput = benchmark.get("throughput") or {}
        bytes_per_iter = throughput.get("Bytes", throughput.get("BytesDecimal"))
        key = (benchmark["group_id"], benchmark.get("function_id") or "", benchmark.get("value_str") or "")
        results[key] = (chosen["point_estimate"], bytes_per_iter)
    return results


def mb_per_s(ns, bytes_per_iter):
    return bytes_per_iter / ns * 1e3  # bytes/ns * 1e9 / 1e6


def format_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.1f} ns"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion-dir", default="target/criterion", type=Path)
    parser.add_argument("--estimate", default="median", choices=["median", "mean", "slope"])
    args = parser.parse_args()

    results = load(args.criterion_dir, args.estimate)
    if not results:
        print(f"ratios.py: no criterion results under {args.criterion_dir} (run `cargo bench --bench storage` first)", file=sys.stderr)
        return 1

    group_order = ["append_never", "append_fdatasync", "read"]

    def case_key(group_value):
        group, value = group_value
        rank = group_order.index(group) if group in group_order else len(group_order)
        return (rank, group, size_key(value))

    paired = set()
    rows = []
    cases = {(group, value) for (group, function, value) in results if function == "fjord"}
    for group, value in sorted(cases, key=case_key):
        fjord = results.get((group, "fjord", value))
        baseline = results.get((group, "baseline", value))
        if baseline is None or fjord[1] is None or baseline[1] is None:
            continue
        paired.update({(group, "fjord", value), (group, "baseline", value)})
        fjord_mbs = mb_per_s(*fjord)
        baseline_mbs = mb_per_s(*baseline)
        rows.append((f"{group} {value}", fjord_mbs, baseline_mbs, fjord_mbs / baseline_mbs))

    print(f"| case | Fjord MB/s | baseline MB/s | ratio |")
    print("|---|---:|---:|---:|")
    for case, fjord_mbs, baseline_mbs, ratio in rows:
        print(f"| {case} | {fjord_mbs:,.0f} | {baseline_mbs:,.0f} | {ratio:.2f} |")

    others = [key for key in results if key not in paired]
    if others:
        print()
        print(f"| case | time per iteration ({args.estimate}) | MB/s |")
        print("|---|---:|---:|")
        for group, function, value in sorted(others, key=lambda k: (case_key((k[0], k[2]))[0], k[0], k[1], size_key(k[2]))):
            ns, bytes_per_iter = results[(group, function, value)]
            rate = f"{mb_per_s(ns, bytes_per_iter):,.0f}" if bytes_per_iter else "-"
            name = "/".join(part for part in (group, function, value) if part)
            print(f"| {name} | {format_time(ns)} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
