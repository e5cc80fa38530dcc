"""Consumer-group client for tests/groups.rs, with one of two libraries behind one interface:
`ck` (confluent-kafka, i.e. librdkafka) or `kp` (kafka-python, an independent implementation).

Usage: groups_client.py COMMAND LIB BOOTSTRAP TOPIC GROUP [options]

    member     subscribe and report the assignment every time it changes, until --stop-file
               exists (then close(), which leaves the group) or --max-s passes
    consume    subscribe and read every partition from the committed offset (the beginning
               where none is committed) up to the end offsets seen at the start; with
               --commit-after K, stop after exactly K messages and commit synchronously the
               offset after each partition's last consumed message instead
    commit     commit P:OFFSET pairs without subscribing (a "simple" commit, no member id)

Output (tab-separated, see common.py for `msg`):

    pid        <pid>                       first line of every command
    assigned   <p,p,...|->                 member: the current assignment
    closed                                 member: close() returned
    committed  <partition> <offset>        consume --commit-after / commit: acknowledged commits
    end        <partition> <end offset>    consume: where reading stops
    msg ...                                consume: every message consumed

Offsets are committed explicitly and synchronously; auto commit is always off. Every failure
exits non-zero with the reason on stderr. Every command has a deadline (--max-s). Set
GROUPS_CLIENT_DEBUG=1 for the client library's debug log on stderr.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

# How often a member polls (and so notices a rebalance or the stop file), in seconds.
POLL_S = 0.1
# kafka-python's poll timeout, in milliseconds (see Kp.poll).
KP_POLL_MS = 1000
# How long a watermark query is repeated while the partition's leader is unknown, in seconds.
WATERMARK_WAIT_S = 20


def flush_emit(*fields):
    common.emit(*fields)
    sys.stdout.flush()


class Ck:
    """confluent-kafka."""

    def __init__(self, args, subscribe):
        from confluent_kafka import Consumer, TopicPartition

        self.TopicPartition = TopicPartition
        self.topic = args.topic
        self.c = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": args.session_ms,
                "heartbeat.interval.ms": max(100, args.session_ms // 6),
                "max.poll.interval.ms": max(args.session_ms, 30000),
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        if subscribe:
            self.c.subscribe([args.topic])

    def poll(self):
        """Messages as (partition, offset, key, value, timestamp)."""
        message = self.c.poll(POLL_S)
        if message is None:
            return []
        if message.error():
            common.fail("consumer error: %s" % message.error())
        return [(message.partition(), message.offset(), message.key(), message.value(), message.timestamp()[1])]

    def assignment(self):
        return sorted(tp.partition for tp in self.c.assignment() if tp.topic == self.topic)

    def partitions(self):
        metadata = self.c.list_topics(topic=self.topic, timeout=10)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None:
            common.fail("topic %s not in metadata: %r" % (self.topic, described and described.error))
        return sorted(described.partitions)

    def watermarks(self, partition):
        """(low, high), asked again while librdkafka reports the partition's leader unknown
        or unavailable: right after a broker's death its metadata may lag the election."""
        from confluent_kafka import KafkaError, KafkaException

        transient = (KafkaError._UNKNOWN_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TIMED_OUT)
        deadline = time.time() + WATERMARK_WAIT_S
        while True:
            try:
                return self.c.get_watermark_offsets(self.TopicPartition(self.topic, partition), timeout=10, cached=False)
            except KafkaException as error:
                if error.args[0].code() not in transient or time.time() > deadline:
                    raise
                sys.stderr.write("watermarks of partition %d: %s; asking again\n" % (partition, error))
                time.sleep(0.2)

    def end_offset(self, partition):
        return self.watermarks(partition)[1]

    def start_offset(self, partition):
        return self.watermarks(partition)[0]

    def committed(self, partitions):
        found = self.c.committed([self.TopicPartition(self.topic, p) for p in partitions], timeout=10)
        out = {}
        for tp in found:
            if tp.error is not None:
                common.fail("committed(%d) failed: %s" % (tp.partition, tp.error))
            out[tp.partition] = tp.offset if tp.offset >= 0 else None
        return out

    def commit(self, offsets):
        result = self.c.commit(offsets=[self.TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())], asynchronous=False)
        for tp in result:
            if tp.error is not None:
                common.fail("commit of %d:%d failed: %s" % (tp.partition, tp.offset, tp.error))

    def close(self):
        self.c.close()


class Kp:
    """kafka-python."""

    def __init__(self, args, subscribe):
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        self.TopicPartition = TopicPartition
        self.OffsetAndMetadata = OffsetAndMetadata
        self.topic = args.topic
        self.pending = []
        self.c = KafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=args.session_ms,
            heartbeat_interval_ms=max(100, args.session_ms // 6),
            max_poll_interval_ms=max(args.session_ms, 30000),
        )
        if subscribe:
            # kafka-python 3.0.12 loses a rebalance when its first assignment as leader was made
            # without the topic's metadata: that forces a second join, and if poll()'s timeout
            # expires while that join's SyncGroup is in flight, the finished join is never
            # applied (need_rejoin() is False by then), so no assignment and no heartbeats.
            # Knowing the partitions before subscribing avoids the second join.
            self.partitions()
            self.c.subscribe([args.topic])

    def poll(self):
        # A long poll: kafka-python 3.0.12 can also drop a join whose poll() timed out while
        # it was in flight (see __init__), so give every join time to finish inside one poll.
        batches = self.c.poll(timeout_ms=KP_POLL_MS)
        out = []
        for tp, messages in sorted(batches.items()):
            for m in messages:
                out.append((m.partition, m.offset, m.key, m.value, m.timestamp))
        return out

    def assignment(self):
        return sorted(tp.partition for tp in (self.c.assignment() or ()) if tp.topic == self.topic)

    def partitions(self):
        deadline = time.time() + 10
        numbers = self.c.partitions_for_topic(self.topic)
        while not numbers:
            if time.time() > deadline:
                common.fail("no partitions known for %s" % self.topic)
            time.sleep(0.1)
            numbers = self.c.partitions_for_topic(self.topic)
        return sorted(numbers)

    def end_offset(self, partition):
        tp = self.TopicPartition(self.topic, partition)
        return self.c.end_offsets([tp])[tp]

    def start_offset(self, partition):
        tp = self.TopicPartition(self.topic, partition)
        return self.c.beginning_offsets([tp])[tp]

    def committed(self, partitions):
        return {p: self.c.committed(self.TopicPartition(self.topic, p), timeout_ms=10000) for p in partitions}

    def commit(self, offsets):
        self.c.commit(offsets={self.TopicPartition(self.topic, p): self.OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}, timeout_ms=10000)

    def close(self):
        self.c.close(autocommit=False, timeout_ms=10000)


def client(args, subscribe=True):
    return {"ck": Ck, "kp": Kp}[args.lib](args, subscribe)


def member(args, deadline):
    c = client(args)
    shown = None
    while not os.path.exists(args.stop_file):
        if time.time() > deadline:
            common.fail("member still running after %ds (no stop file %s)" % (args.max_s, args.stop_file))
        c.poll()
        now = c.assignment()
        if now != shown:
            flush_emit("assigned", ",".join(str(p) for p in now) or "-")
            shown = now
    c.close()
    flush_emit("closed")


def consume(args, deadline):
    c = client(args)
    partitions = c.partitions()
    ends = {p: c.end_offset(p) for p in partitions}
    for p in partitions:
        flush_emit("end", p, ends[p])
    if args.commit_after is not None:
        consumed = 0
        nexts = {}
        while consumed < args.commit_after:
            if time.time() > deadline:
                common.fail("consumed %d of %d messages in %ds" % (consumed, args.commit_after, args.max_s))
            for partition, offset, k, v, ts in c.poll():
                if consumed == args.commit_after:
                    break
                common.emit_message(partition, offset, k, v, ts)
                nexts[partition] = offset + 1
                consumed += 1
        c.commit(nexts)
        for p, o in sorted(nexts.items()):
            flush_emit("committed", p, o)
        c.close()
        return
    # Where this member must read to: from the committed offset, or the log start.
    committed = c.committed(partitions)
    nexts = {p: committed[p] if committed[p] is not None else c.start_offset(p) for p in partitions}
    while any(nexts[p] < ends[p] for p in partitions):
        if time.time() > deadline:
            common.fail("timed out: positions %r, end offsets %r, assignment %r" % (nexts, ends, c.assignment()))
        for partition, offset, k, v, ts in c.poll():
            common.emit_message(partition, offset, k, v, ts)
            nexts[partition] = max(nexts[partition], offset + 1)
    sys.stdout.flush()
    c.close()


def commit(args, deadline):
    c = client(args, subscribe=False)
    offsets = {}
    for pair in args.offsets:
        p, o = pair.split(":")
        offsets[int(p)] = int(o)
    c.commit(offsets)
    for p, o in sorted(offsets.items()):
        flush_emit("committed", p, o)
    c.close()


def main():
    if os.environ.get("GROUPS_CLIENT_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["member", "consume", "commit"])
    parser.add_argument("lib", choices=["ck", "kp"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("offsets", nargs="*", help="commit: PARTITION:OFFSET pairs")
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--stop-file", help="member: close and exit once this file exists")
    parser.add_argument("--commit-after", type=int, help="consume: stop after this many messages and commit")
    parser.add_argument("--max-s", type=int, default=40, help="deadline of the whole command")
    args = parser.parse_args()
    if args.command == "member" and not args.stop_file:
        parser.error("member needs --stop-file")
    flush_emit("pid", os.getpid())
    deadline = time.time() + args.max_s
    {"member": member, "consume": consume, "commit": commit}[args.command](args, deadline)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
