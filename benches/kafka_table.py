"""Prints the Fjord and Apache Kafka side-by-side table (Markdown) from the files of benches/kafka.sh."""
import json
import os
import re
import sys

out = sys.argv[1]


def path(name):
    return os.path.join(out, name)


def read(name, default=None):
    if not os.path.exists(path(name)):
        return default
    with open(path(name)) as f:
        return f.read().strip()


def brokers():
    """The brokers of the run, in the order they ran (from run.txt, else those with results)."""
    found = []
    for line in (read("run.txt") or "").splitlines():
        if line.startswith("records:") and "brokers:" in line:
            found = line.split("brokers:")[1].split()
    return found or [b for b in ("kafka", "fjord") if os.path.exists(path(f"{b}-produce-acks1.json"))]


NAMES = {"kafka": "Kafka 4.4", "fjord": "Fjord"}
PERF = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg latency, "
    r"(?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, \d+ ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th")


def perf_test(broker):
    """kafka-producer-perf-test's summary line as fjord bench's JSON (latency in µs)."""
    text = read(f"{broker}-perf-test.txt") or ""
    match = None
    for match in PERF.finditer(text):
        pass
    if match is None:
        raise SystemExit(f"no kafka-producer-perf-test summary in {broker}-perf-test.txt")
    rps = float(match["rps"])
    size = int(re.search(r"x (\d+) B", read("run.txt") or "x 100 B")[1])
    return {"records": int(match["records"]), "records_per_sec": rps, "bytes_per_sec": rps * size,
            "bytes": int(match["records"]) * size,
            "latency_us": {k: int(float(match[k]) * 1000) for k in ("p50", "p99", "p999", "max")}, "errors": 0}


def load(broker, case):
    if case == "perf-test":
        return perf_test(broker)
    with open(path(f"{broker}-{case}.json")) as f:
        return json.load(f)


def cpu_per_gb(broker, case, result):
    seconds = float(read(f"{broker}-{case}.cpu", "nan"))
    return seconds, seconds / (result["bytes"] / 1e9) if result["bytes"] else float("nan")


def times(a, b, better, worse):
    """How many times a is b, as `N.Nx better`, or `N.Nx worse` when a is the smaller."""
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.1f}x {better}" if a >= b else f"{b / a:.1f}x {worse}"


def mib(value):
    return f"{int(value) / 2**20:,.0f} MiB" if value else "-"


order = brokers()
print(read("run.txt") or "")
print(f"CPUs: {read('nproc', '?')}\n")

rows = [
    ("produce, acks=1, 8 partitions, 2 connections (`produce-acks1`)", "produce-acks1"),
    ("consume from the page cache, 2 connections (`consume`)", "consume"),
    ("produce, acks=1, 100-record batches, 1 connection: the maximum (`produce-small-max`)", "produce-small-max"),
    ("e2e at half of that broker's own maximum (`e2e`)", "e2e"),
    ("e2e at the same rate on both", "e2e-same-rate"),
    ("`kafka-producer-perf-test`, acks=1, 8 partitions, 1 producer", "perf-test"),
]
print("| case | broker | records/s | MB/s | p50 µs | p99 µs | p99.9 µs | broker CPU s | CPU s per GB | Fjord / Kafka |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
for label, case in rows:
    results = {}
    for broker in order:
        try:
            results[broker] = load(broker, case)
        except (OSError, SystemExit) as error:
            print(f"| {label} | {NAMES.get(broker, broker)} | missing: {error} | | | | | | | |")
    for broker, r in results.items():
        lat = r["latency_us"]
        cpu, per_gb = cpu_per_gb(broker, case, r)
        errors = f" ({r['errors']} errors)" if r.get("errors") else ""
        ratio = ""
        if broker == "fjord" and "kafka" in results:
            k = results["kafka"]
            _, k_per_gb = cpu_per_gb("kafka", case, k)
            if case.startswith("e2e"):
                parts = [times(k["latency_us"]["p99"], lat["p99"], "lower p99", "higher p99")]
            else:
                parts = [times(r["records_per_sec"], k["records_per_sec"], "the records/s", "fewer records/s")]
            parts.append(times(k_per_gb, per_gb, "less CPU/GB", "more CPU/GB"))
            ratio = "; ".join(parts)
        rate = f" at {r['config']['rate']:,}/s" if r.get("config", {}).get("rate") not in (None, "null") and case.startswith("e2e") else ""
        print(f"| {label}{rate} | {NAMES.get(broker, broker)}{errors} | {r['records_per_sec']:,.0f} | {r['bytes_per_sec'] / 1e6:,.1f} | "
              f"{lat['p50']:,} | {lat['p99']:,} | {lat['p999']:,} | {cpu:.2f} | {per_gb:.1f} | {ratio} |")

print("\n| broker | start s | RSS after start | peak RSS (VmHWM) at the end |")
print("|---|---:|---:|---:|")
for broker in order:
    print(f"| {NAMES.get(broker, broker)} | {read(f'{broker}-start-seconds', '-')} | {mib(read(f'{broker}-idle-rss-bytes'))} | "
          f"{mib(read(f'{broker}-peak-rss-bytes'))} |")
