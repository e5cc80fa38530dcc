"""The matrix scenario (tests/clients/README.md) with kcat, the command-line client on
librdkafka: Debian's kcat 1.7.1 on librdkafka 2.0.2. kcat has no admin API, so step 2 does
nothing and `admin` is empty; everything else is kcat's own work, driven from here.

    python matrix.py BOOTSTRAP TOPIC GROUP

Group membership is read from kcat's stderr, where it reports each rebalance:
`% Group G rebalanced (memberid M): assigned: T [0], T [2]`.
"""

import json
import re
import signal
import subprocess
import sys
import threading
import time

# Longest one kcat call may take (metadata, the producer, the fresh member).
KCAT_SECONDS_MAX = 60
# How long the two members may take to read the first records and settle into a split.
GROUP_SECONDS_MAX = 60
# How long the fresh member of step 5 reads.
RESUME_SECONDS_MAX = 15
PARTITIONS = 3
FIRST, MORE = 300, 50


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def kcat(bootstrap, *args, stdin=None):
    cmd = ["kcat", "-b", bootstrap, *args]
    out = subprocess.run(cmd, input=stdin, capture_output=True, timeout=KCAT_SECONDS_MAX)
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return out.stdout.decode()


def metadata(bootstrap, topic=None):
    args = ["-L", "-J"] + (["-t", topic] if topic else [])
    return json.loads(kcat(bootstrap, *args))


def produce(bootstrap, topic, start, end):
    lines = "".join(f"key-{i % 10}:key-{i % 10}:{i}\n" for i in range(start, end))
    # acks=all with the idempotent producer; kcat exits non-zero if any delivery fails.
    kcat(bootstrap, "-P", "-t", topic, "-K", ":", "-X", "acks=all", "-X", "enable.idempotence=true", stdin=lines.encode())
    return end - start


class Member:
    """One `kcat -G` process: its records (partition, offset, value) and latest assignment."""

    def __init__(self, bootstrap, group, topic, extra=()):
        cmd = ["kcat", "-b", bootstrap, "-u", "-G", group, topic, "-f", "%p %o %s\\n",
               "-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=200", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.records = []
        self.assigned = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) == 3:
                with self.lock:
                    self.records.append((int(parts[0]), int(parts[1]), parts[2]))

    def _read_stderr(self):
        for line in self.proc.stderr:
            log("kcat:", line.rstrip())
            m = re.search(r"rebalanced.*?: (assigned|revoked): (.*)$", line)
            if m:
                parts = {int(p) for p in re.findall(r"\[(\d+)\]", m.group(2))}
                with self.lock:
                    self.assigned = parts if m.group(1) == "assigned" else set()

    def snapshot(self):
        with self.lock:
            return list(self.records), set(self.assigned)

    def stop(self):
        # SIGTERM: kcat closes the consumer, which commits what it consumed.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=KCAT_SECONDS_MAX)


def main():
    bootstrap, topic, group = sys.argv[1:4]
    report = {"client": "kcat " + kcat_version(), "admin": []}

    listing = metadata(bootstrap)
    found = [t for t in listing["topics"] if t["topic"] == topic]
    report["listed"] = len(found) == 1 and len(found[0]["partitions"]) == PARTITIONS
    described = metadata(bootstrap, topic)
    report["described"] = sum(len(t["partitions"]) for t in described["topics"] if t["topic"] == topic)

    report["produced"] = produce(bootstrap, topic, 0, FIRST)

    members = [Member(bootstrap, group, topic), Member(bootstrap, group, topic)]
    deadline = time.time() + GROUP_SECONDS_MAX
    try:
        while time.time() < deadline:
            snaps = [m.snapshot() for m in members]
            seen = {(p, o) for records, _ in snaps for p, o, _ in records}
            a, b = snaps[0][1], snaps[1][1]
            if len(seen) >= FIRST and a and b and not (a & b) and (a | b) == set(range(PARTITIONS)):
                break
            time.sleep(0.1)
        # Let the auto-commit pass over the last records before the members close.
        time.sleep(0.5)
        snaps = [m.snapshot() for m in members]
    finally:
        for m in members:
            m.stop()
    unique = {}
    for records, _ in snaps:
        for p, o, v in records:
            unique[(p, o)] = v
    report["consumed"] = len(unique)
    a, b = snaps[0][1], snaps[1][1]
    report["split"] = bool(a and b and not (a & b) and (a | b) == set(range(PARTITIONS)))
    report["per_key_order"] = per_key_order(unique)

    produce(bootstrap, topic, FIRST, FIRST + MORE)
    fresh = Member(bootstrap, group, topic)
    deadline = time.time() + RESUME_SECONDS_MAX
    try:
        while time.time() < deadline and len(fresh.snapshot()[0]) < MORE:
            time.sleep(0.1)
        time.sleep(0.5)  # anything beyond the 50 would show now
    finally:
        fresh.stop()
    records, _ = fresh.snapshot()
    indexes = [int(v.rsplit(":", 1)[1]) for _, _, v in records]
    new = sum(1 for i in indexes if i >= FIRST)
    old = sum(1 for i in indexes if i < FIRST)
    report["resumed"] = new - old
    print(json.dumps(report), flush=True)


def per_key_order(unique):
    """Each key's records in one partition, in increasing index by offset."""
    by_key = {}
    for (p, o), v in sorted(unique.items()):
        key, index = v.rsplit(":", 1)
        by_key.setdefault(key, []).append((p, o, int(index)))
    for entries in by_key.values():
        if len({p for p, _, _ in entries}) != 1:
            return False
        indexes = [i for _, _, i in sorted(entries)]
        if indexes != sorted(indexes):
            return False
    return True


def kcat_version():
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    kcat_v = re.search(r"Version ([\w.\-]+)", out)
    rdkafka_v = re.search(r"librdkafka ([\w.\-]+)", out)
    return f"{kcat_v.group(1) if kcat_v else '?'} (librdkafka {rdkafka_v.group(1) if rdkafka_v else '?'})"


if __name__ == "__main__":
    main()
