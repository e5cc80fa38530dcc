"""Prints the broker benchmark table (Markdown) from the JSON files of benches/broker.sh."""
import json
import os
import sys

out = sys.argv[1]


def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)


base = load("baseline")
loop = base["loopback_bytes_per_sec"]
write = base["file_write_bytes_per_sec"]
sync = base["file_write_fdatasync_bytes_per_sec"]
rows = [
    ("produce, acks=1, 100 B, 8 partitions", "produce-acks1", loop, "loopback", 0.6),
    ("consume from page cache, 100 B", "consume", loop, "loopback", 0.8),
    ("produce, acks=all + fdatasync, 100 B", "produce-acksall", sync, "write+fdatasync", 0.5),
    ("produce, acks=1, 1000 B", "produce-1kb", loop, "loopback", None),
    ("consume, 1000 B", "consume-1kb", loop, "loopback", None),
    ("rf=1 (3-broker cluster), acks=1", "rf1-acks1", loop, "loopback", None),
    ("rf=3, acks=1", "rf3-acks1", loop, "loopback", None),
    ("rf=3, acks=all", "rf3-acksall", loop, "loopback", None),
]
print(f"baseline: loopback {loop/1e6:.0f} MB/s, file write {write/1e6:.0f} MB/s, write+fdatasync/MiB {sync/1e6:.0f} MB/s\n")
print("| case | records/s | MB/s | p50 µs | p99 µs | p99.9 µs | baseline MB/s | ratio | target |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for label, name, baseline, what, target in rows:
    r = load(name)
    ratio = r["bytes_per_sec"] / baseline
    verdict = "" if target is None else (f">= {target}: {'met' if ratio >= target else 'NOT met'}")
    lat = r["latency_us"]
    print(f"| {label} | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | {baseline/1e6:,.0f} ({what}) | {ratio:.2f} | {verdict} |")
r = load("produce-small-max")
print(f"| produce, acks=1, 100 B, 100-record batches (max rate for the latency rows) | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {r['latency_us']['p50']} | {r['latency_us']['p99']} | {r['latency_us']['p999']} | - | - |  |")
for label, name, p99_max, p999_max in [("produce at half the max rate, acks=1", "produce-half-rate", 1000, 5000), ("produce-to-consume (e2e) at half rate", "e2e", 2000, None)]:
    r = load(name)
    lat = r["latency_us"]
    met = lat["p99"] <= p99_max and (p999_max is None or lat["p999"] <= p999_max)
    target = f"p99 <= {p99_max}" + (f", p99.9 <= {p999_max}" if p999_max else "")
    print(f"| {label} | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | - | - | {target}: {'met' if met else 'NOT met'} |")
