"""Exactly-once processing through confluent-kafka (librdkafka), for tests/exactly_once.rs.

Usage: eos_loop.py COMMAND BOOTSTRAP ...

    setup BOOTSTRAP SOURCE SINK COUNT [--replication-factor R]
                   creates SOURCE and SINK (2 partitions each, R replicas: 1) and produces
                   COUNT records to SOURCE (acks=all), value `v<i>` to partition i % 2.
                   Prints `produced <COUNT>`.
    ctp-loop BOOTSTRAP SOURCE SINK GROUP TXID [--batch N] [--pause-ms MS]
                   a consume-transform-produce loop: a read_committed consumer of group
                   GROUP reads SOURCE; each batch of up to N records (50) goes to SINK
                   upper-cased (`V<i>`, same partition) in one transaction of producer
                   TXID, with the consumer's positions (send_offsets_to_transaction).
                   Inside each transaction, once its records are delivered (written, not
                   committed), it prints `open <records>` and sleeps MS (100) before it
                   commits, so a test can kill it there; after each commit it prints
                   `committed <sum of the group's committed offsets>`. An error the client
                   may retry (a broker or coordinator gone) is retried; one that requires
                   an abort aborts the transaction, rewinds the consumer to the group's
                   committed offsets and prints `aborted <reason>`, as an application of
                   the transactional API does. It ends, printing
                   `done <sum>`, when the group's committed offsets reach the end of SOURCE
                   (as seen at its start). Started again with the same TXID, its
                   init_transactions fences a killed predecessor and aborts its open
                   transaction; the group's committed offsets say where to go on.
    read BOOTSTRAP TOPIC ISOLATION [--counts]
                   every record of TOPIC (all partitions) with isolation.level ISOLATION, up
                   to the end offsets that isolation level sees at the start (read_committed:
                   the last stable offsets): `value <partition> <value>` per record, or with
                   --counts `count <partition> <key> <8-byte count>` (a Kafka Streams count),
                   then `records <n>`.
    trickle BOOTSTRAP TOPIC LINE [--interval-ms MS]
                   produces LINE as a record's value to TOPIC every MS (20), one record at a
                   time (linger.ms 0), until its stdin is closed; then prints
                   `produced <records>`, all of them delivered.
    await-open BOOTSTRAP TOPIC [--timeout-s S]
                   asks for the high watermarks of TOPIC's partitions and then their last
                   stable offsets, again and again, until a partition's last stable offset
                   is below the high watermark asked for before it: a transaction with
                   records there is open. Prints `open <partition> <lso> <hw>` the moment
                   it sees one, or `none` after S seconds (30).
    offsets BOOTSTRAP TOPIC
                   per partition, `offsets <partition> <last stable offset> <high
                   watermark>` (ListOffsets latest, read_committed and read_uncommitted).

Output lines are tab-separated and flushed as written; any failed expectation exits
non-zero with the reason.
"""

import argparse
import os
import select
import struct
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from common import emit, fail

# Bounds of each wait on the broker.
TIMEOUT_S = 30
# How long a loop may go without committing anything before it gives up (a restarted loop
# waits for its killed predecessor's session to expire before it is assigned anything).
STALL_S = 60
# How long a read to the end of a topic may take.
READ_DEADLINE_S = 60
# Partitions of the source and the sink.
PARTITIONS = 2


def say(*fields):
    emit(*fields)
    sys.stdout.flush()


def partitions(topic):
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


def ends_of(bootstrap, topic, isolation):
    """The end offset of each partition of `topic` that a consumer with `isolation` sees:
    the high watermark, or with read_committed the last stable offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "eos-loop-ends",
                         "enable.auto.commit": False, "isolation.level": isolation})
    try:
        described = consumer.list_topics(topic=topic, timeout=TIMEOUT_S).topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            fail("topic %s not in metadata: %r" % (topic, described and described.error))
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S,
                                               cached=False)[1]
                for p in range(len(described.partitions))]
    finally:
        consumer.close()


def setup(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(t, PARTITIONS, args.replication_factor)
                                   for t in (args.source, args.sink)],
                                  operation_timeout=TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(TIMEOUT_S)
        except KafkaException as e:
            fail("creating %s: %s" % (name, e))
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all",
                         "enable.idempotence": True})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(err)

    for i in range(args.count):
        producer.produce(args.source, value=("v%d" % i).encode(), partition=i % PARTITIONS,
                         on_delivery=report)
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0:
        fail("input records undelivered after %d s" % TIMEOUT_S)
    if failures:
        fail("deliveries failed: %s" % failures[:3])
    say("produced", args.count)


def rewind(consumer):
    """Seeks every assigned partition back to the group's committed offset (its start if
    none): the records of an aborted transaction are processed again."""
    for tp in consumer.committed(consumer.assignment(), TIMEOUT_S):
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)


def abort(producer):
    """Aborts the transaction, retrying while the client says it may."""
    while True:
        try:
            producer.abort_transaction(TIMEOUT_S)
            return
        except KafkaException as e:
            if not e.args[0].retriable():
                fail("abort: %s" % e.args[0])
            time.sleep(0.1)


def end_transaction(producer, consumer):
    """Sends the consumer's positions and commits, retrying what the client may retry;
    aborts (and rewinds) on an error that requires it. Whether it committed."""
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    step = "send_offsets"
    while True:
        try:
            if step == "send_offsets":
                producer.send_offsets_to_transaction(
                    positions, consumer.consumer_group_metadata(), TIMEOUT_S)
                step = "commit"
            producer.commit_transaction(TIMEOUT_S)
            return True
        except KafkaException as e:
            error = e.args[0]
            if error.retriable():
                time.sleep(0.1)
                continue
            if error.txn_requires_abort():
                say("aborted", "%s: %s" % (step, error.name()))
                abort(producer)
                rewind(consumer)
                return False
            fail("%s: %s" % (step, error))


def ctp_loop(args):
    ends = ends_of(args.bootstrap, args.source, "read_uncommitted")
    if len(ends) != PARTITIONS:
        fail("%s has %d partitions, expected %d" % (args.source, len(ends), PARTITIONS))
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest",
                         # A killed predecessor holds its partitions until its session ends.
                         "session.timeout.ms": 6000})
    consumer.subscribe([args.source])
    producer = Producer({"bootstrap.servers": args.bootstrap, "transactional.id": args.txid})
    # Fences a predecessor with this id, and aborts its open transaction.
    producer.init_transactions(TIMEOUT_S)
    say("ready")
    last_progress = time.time()

    def all_committed():
        stored = consumer.committed(partitions(args.source), TIMEOUT_S)
        return sum(max(tp.offset, 0) for tp in stored), \
            all(tp.offset >= ends[tp.partition] for tp in stored)

    while True:
        if time.time() - last_progress > STALL_S:
            fail("nothing committed for %d s (ends %s)" % (STALL_S, ends))
        batch = consumer.consume(args.batch, 1.0)
        for message in batch:
            if message.error():
                fail("consume: %s" % message.error())
        if not batch:
            # Idle: done if a predecessor committed everything already.
            if all_committed()[1]:
                break
            continue
        producer.begin_transaction()
        for message in batch:
            producer.produce(args.sink, value=message.value().upper(),
                             partition=message.partition())
        if producer.flush(TIMEOUT_S) != 0:
            fail("records of the transaction undelivered after %d s" % TIMEOUT_S)
        say("open", len(batch))
        time.sleep(args.pause_ms / 1000.0)
        if not end_transaction(producer, consumer):
            continue
        last_progress = time.time()
        committed, done = all_committed()
        say("committed", committed)
        if done:
            break
    consumer.close()
    say("done", sum(ends))


def read(args):
    # Up to the end this isolation level sees now: with read_committed the last stable
    # offset, so a read does not wait for transactions still open (or left open by a killed
    # producer), and it ends even while the topic grows.
    ends = ends_of(args.bootstrap, args.topic, args.isolation)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "eos-loop-reader",
                         "enable.auto.commit": False, "isolation.level": args.isolation})
    count = 0
    try:
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING)
                         for p in range(len(ends))])
        deadline = time.time() + READ_DEADLINE_S
        while True:
            positions = consumer.position([TopicPartition(args.topic, p)
                                           for p in range(len(ends))])
            # An empty partition has no position to reach (it stays OFFSET_INVALID).
            behind = [(tp.partition, tp.offset, ends[tp.partition]) for tp in positions
                      if ends[tp.partition] > 0 and tp.offset < ends[tp.partition]]
            if not behind:
                break
            if time.time() > deadline:
                fail("%s: positions behind the ends after %d s (partition, position, end): %s"
                     % (args.isolation, READ_DEADLINE_S, behind))
            for message in consumer.consume(500, 0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    fail("%s read: %s" % (args.isolation, message.error()))
                if message.offset() >= ends[message.partition()]:
                    continue
                if args.counts:
                    (number,) = struct.unpack(">q", message.value())
                    emit("count", message.partition(), message.key().decode(), number)
                else:
                    emit("value", message.partition(), message.value().decode())
                count += 1
    finally:
        consumer.close()
    say("records", count)


def trickle(args):
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 0})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(err)

    count = 0
    while True:
        producer.produce(args.topic, value=args.line.encode(), on_delivery=report)
        count += 1
        producer.poll(0)
        ready, _, _ = select.select([sys.stdin], [], [], args.interval_ms / 1000.0)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break
    if producer.flush(TIMEOUT_S) != 0:
        fail("records undelivered after %d s" % TIMEOUT_S)
    if failures:
        fail("deliveries failed: %s" % failures[:3])
    say("produced", count)


def await_open(args):
    committed = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "eos-loop-ends",
                          "enable.auto.commit": False, "isolation.level": "read_committed"})
    uncommitted = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "eos-loop-ends",
                            "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    count = len(ends_of(args.bootstrap, args.topic, "read_uncommitted"))
    deadline = time.time() + args.timeout_s
    try:
        while time.time() < deadline:
            for p in range(count):
                tp = TopicPartition(args.topic, p)
                # The high watermark first: a last stable offset below it, asked for after
                # it, is held by a transaction open now (the LSO never goes back).
                high = uncommitted.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)[1]
                stable = committed.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)[1]
                if stable < high:
                    say("open", p, stable, high)
                    return
            time.sleep(0.005)
        say("none")
    finally:
        committed.close()
        uncommitted.close()


def offsets(args):
    lso = ends_of(args.bootstrap, args.topic, "read_committed")
    hw = ends_of(args.bootstrap, args.topic, "read_uncommitted")
    for p, (stable, high) in enumerate(zip(lso, hw)):
        say("offsets", p, stable, high)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    for name in ("bootstrap", "source", "sink"):
        p.add_argument(name)
    p.add_argument("count", type=int)
    p.add_argument("--replication-factor", type=int, default=1)
    p = sub.add_parser("ctp-loop")
    for name in ("bootstrap", "source", "sink", "group", "txid"):
        p.add_argument(name)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--pause-ms", type=int, default=100)
    p = sub.add_parser("read")
    for name in ("bootstrap", "topic"):
        p.add_argument(name)
    p.add_argument("isolation", choices=["read_committed", "read_uncommitted"])
    p.add_argument("--counts", action="store_true",
                   help="string keys and 8-byte big-endian counts (Kafka Streams' Long serde)")
    p = sub.add_parser("trickle")
    for name in ("bootstrap", "topic", "line"):
        p.add_argument(name)
    p.add_argument("--interval-ms", type=int, default=20)
    p = sub.add_parser("await-open")
    for name in ("bootstrap", "topic"):
        p.add_argument(name)
    p.add_argument("--timeout-s", type=int, default=30)
    p = sub.add_parser("offsets")
    for name in ("bootstrap", "topic"):
        p.add_argument(name)
    args = parser.parse_args()
    commands = {"setup": setup, "ctp-loop": ctp_loop, "read": read, "trickle": trickle,
                "await-open": await_open, "offsets": offsets}
    try:
        commands[args.command](args)
    except KafkaException as e:
        fail("%s: unexpected Kafka error: %s" % (args.command, e))


if __name__ == "__main__":
    main()
