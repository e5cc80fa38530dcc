"""Prints the broker benchmark tables (Markdown) from the JSON files of benches/broker.sh."""
import json
import os
import sys

out = sys.argv[1]


def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)


def verdict(met):
    return "met" if met else "NOT met"


# The best of the baseline runs (start, middle, end): a slow moment would flatter the ratios.
bases = [load(name[:-5]) for name in sorted(os.listdir(out)) if name.startswith("baseline") and name.endswith(".json")]
loop = max(b["loopback_bytes_per_sec"] for b in bases)
write = max(b["file_write_bytes_per_sec"] for b in bases)
# The first write of a new file (pages the VM may have returned to its host), for context.
first = max(b.get("file_write_first_bytes_per_sec", 0) for b in bases)
sync = max(b["file_write_fdatasync_bytes_per_sec"] for b in bases)
# The same stream into a file (the least a produce does with each byte), and a cached file
# sent to it with sendfile (the least a consume from the page cache does); older runs lack them.
into_file = max(b.get("loopback_into_file_bytes_per_sec", 0) for b in bases)
from_file = max(b.get("file_to_loopback_bytes_per_sec", 0) for b in bases)
copied_file = max(b.get("file_copied_to_loopback_bytes_per_sec", 0) for b in bases)
spread = ", ".join(f"{b['loopback_bytes_per_sec']/1e6:,.0f}" for b in bases)
cpus = open(os.path.join(out, "nproc")).read().strip() if os.path.exists(os.path.join(out, "nproc")) else "?"
print(f"baseline (same run, best of {len(bases)}): loopback {loop/1e6:,.0f} MB/s (runs: {spread}), file write {write/1e6:,.0f} MB/s, "
      f"write+fdatasync per MiB {sync/1e6:,.0f} MB/s, first write of a new file {first/1e6:,.0f} MB/s; {cpus} CPUs, default shards = CPUs\n")

print("| case | records/s | MB/s | p50 µs | p99 µs | p99.9 µs | baseline MB/s | ratio | target |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
rows = [
    ("produce, acks=1, 100 B, 8 partitions, 2 connections", "produce-acks1", loop, "loopback", 0.6),
    ("consume from page cache, 100 B, 2 connections", "consume", loop, "loopback", 0.8),
    ("produce, acks=all + fdatasync, 100 B", "produce-acksall", sync, "write+fdatasync", 0.5),
    ("produce, acks=1, 1000 B", "produce-1kb", loop, "loopback", None),
    ("consume, 1000 B", "consume-1kb", loop, "loopback", None),
    ("produce, 100 B, 1 connection", "produce-1conn", loop, "loopback", None),
    ("consume, 100 B, 1 connection", "consume-1conn", loop, "loopback", None),
    ("produce, 1000 B, 1 connection", "produce-1kb-1conn", loop, "loopback", None),
    ("consume, 1000 B, 1 connection", "consume-1kb-1conn", loop, "loopback", None),
    ("produce, acks=1, 100 B, `--shards 1`", "produce-shards1", loop, "loopback", None),
    ("produce, acks=all + fdatasync, `--shards 1`", "produce-acksall-shards1", sync, "write+fdatasync", None),
    ("rf=1 (3-broker cluster, `cluster up` shards: CPUs / brokers), acks=1", "rf1-acks1", loop, "loopback", None),
    ("rf=3, acks=1", "rf3-acks1", loop, "loopback", None),
    ("rf=3, acks=all", "rf3-acksall", loop, "loopback", None),
    ("rf=1 (3-broker cluster, one shard per CPU in every broker), acks=1", "rf1-acks1-shards-cpus", loop, "loopback", None),
    ("rf=3, acks=1, one shard per CPU in every broker", "rf3-acks1-shards-cpus", loop, "loopback", None),
    ("rf=3, acks=all, one shard per CPU in every broker", "rf3-acksall-shards-cpus", loop, "loopback", None),
]
for label, name, baseline, what, target in rows:
    r = load(name)
    ratio = r["bytes_per_sec"] / baseline
    goal = "" if target is None else f">= {target}: {verdict(ratio >= target)}"
    lat = r["latency_us"]
    print(f"| {label} | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | {baseline/1e6:,.0f} ({what}) | {ratio:.2f} | {goal} |")
r = load("produce-small-max")
print(f"| produce, acks=1, 100 B, 100-record batches, 1 connection (max rate for the latency rows) | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {r['latency_us']['p50']} | {r['latency_us']['p99']} | {r['latency_us']['p999']} | - | - |  |")
for label, name, p99_max, p999_max in [("produce at half that rate, acks=1", "produce-half-rate", 1000, 5000), ("produce-to-consume (e2e) at half rate", "e2e", 2000, None)]:
    r = load(name)
    lat = r["latency_us"]
    met = lat["p99"] <= p99_max and (p999_max is None or lat["p999"] <= p999_max)
    goal = f"p99 <= {p99_max}" + (f", p99.9 <= {p999_max}" if p999_max else "")
    print(f"| {label} | {r['records_per_sec']:,.0f} | {r['bytes_per_sec']/1e6:,.1f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | - | - | {goal}: {verdict(met)} |")

if into_file and from_file:
    print("\nThe same cases against the least their work takes on this machine, measured in the same baseline runs"
          " (best of each): produce against a loopback stream whose reader writes every chunk into a file, consume"
          " from the page cache against a cached file sent into a loopback stream with sendfile:\n")
    print("| case | MB/s | floor MB/s | ratio |")
    print("|---|---:|---:|---:|")
    for label, name, floor, what in [("produce, acks=1, 100 B, 8 partitions, 2 connections", "produce-acks1", into_file, "loopback into a file"),
                                     ("consume from page cache, 100 B, 2 connections", "consume", from_file, "cached file to loopback"),
                                     ("consume, 1000 B", "consume-1kb", from_file, "cached file to loopback")]:
        r = load(name)
        print(f"| {label} | {r['bytes_per_sec']/1e6:,.1f} | {floor/1e6:,.0f} ({what}) | {r['bytes_per_sec']/floor:.2f} |")
    if copied_file:
        print(f"\nThe cached file copied to loopback through user space (pread + write) instead: {copied_file/1e6:,.0f} MB/s"
              f" ({copied_file/from_file:.2f}x sendfile, {copied_file/loop:.2f} of the plain loopback stream).")

print("\nCold reader (producers at half rate, the broker's files evicted from the page cache first):\n")
print("| case | records/s | p50 µs | p99 µs | p99.9 µs | max µs |")
print("|---|---:|---:|---:|---:|---:|")
alone, beside, reader = load("cold-alone"), load("cold-with-reader"), load("cold-reader")
warm_beside, warm_reader = load("warm-with-reader"), load("warm-reader")
for label, r in [("producers alone", alone), ("producers beside the cold reader", beside), ("the cold reader (from the disk)", reader),
                 ("producers beside the same reader, warm (control)", warm_beside), ("the warm reader (page cache)", warm_reader)]:
    lat = r["latency_us"]
    print(f"| {label} | {r['records_per_sec']:,.0f} | {lat['p50']} | {lat['p99']} | {lat['p999']} | {lat['max']} |")
growth = beside["latency_us"]["p99"] / max(alone["latency_us"]["p99"], 1)
warm_growth = warm_beside["latency_us"]["p99"] / max(alone["latency_us"]["p99"], 1)
print(f"\nproducer p99 beside the cold reader / alone: {growth:.2f} (target <= 2: {verdict(growth <= 2)}); "
      f"beside the warm reader / alone: {warm_growth:.2f}; the cold reader ran {reader['seconds']:.1f} s, "
      f"the warm one {warm_reader['seconds']:.1f} s, the producers {beside['seconds']:.1f} s each time")

o, ob = load("overload"), load("overload-broker")
print("\nOverload (16 connections x 16 requests of ~0.9 MB in flight, `--request-memory-max 64MiB`):\n")
print(f"- {o['records_per_sec']:,.0f} records/s, p50 {o['latency_us']['p50']} µs, p99 {o['latency_us']['p99']} µs, "
      f"max {o['latency_us']['max']} µs, errors {o['errors']}")
print(f"- broker peak RSS (VmHWM) {ob['peak_rss_bytes']/2**20:,.0f} MiB with a request budget of "
      f"{ob['request_memory_max']/2**20:,.0f} MiB; records sent {ob['records']:,}, stored {ob['stored']:,} "
      f"({verdict(ob['stored'] == ob['records'] and o['errors'] == 0)}: nothing lost, no errors)")

k = load("kcat")
print("\nlibrdkafka (kcat), 100-byte records, 8 partitions:\n")
print(f"- produce: {k['records']:,} records in {k['produce_seconds']:.2f} s = {k['records']/k['produce_seconds']:,.0f} records/s "
      f"(stored {k['stored']:,})")
print(f"- consume: {k['consumed']:,} records in {k['consume_seconds']:.2f} s = {k['consumed']/k['consume_seconds']:,.0f} records/s")
