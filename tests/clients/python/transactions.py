"""Transactions through confluent-kafka (librdkafka), for tests/transactions.rs.

Usage: transactions.py SCENARIO BOOTSTRAP PREFIX

    commit-abort   creates PREFIX-a (3 partitions) and PREFIX-b (2); one transactional
                   producer commits 10 records to every partition ("c1-..."), aborts 10 more
                   ("a2-..."), commits 5 more ("c3-..."). A read_committed consumer reads
                   exactly the 15 committed records of each partition, in order; a
                   read_uncommitted one all 25. Prints `committed <total>` and
                   `uncommitted <total>` (75 and 125).
    fenced         two producers with one transactional.id: the second's init_transactions
                   fences the first: its next record and its commit fail, fatally. Prints
                   `fenced <error name>`, then `p2 committed` once the second producer has
                   committed a transaction of its own.
    timeout        a producer with transaction.timeout.ms=3000 leaves a transaction of 5
                   records to PREFIX-t open for 10 s; the coordinator aborts it, so 3 records
                   another producer commits next are readable (the LSO moved on). Prints
                   `after-timeout 3`, then `stale <error name>` for the first producer's
                   failed commit.
    send-offsets   100 records on PREFIX-in (2 partitions) go through a
                   consume-transform-produce loop (group PREFIX-g) to PREFIX-out, upper-cased,
                   each batch of up to 10 in a transaction with its consumer offsets; one
                   batch is aborted and then processed again. Prints `out 100` (each input
                   exactly once on PREFIX-out, read_committed) and `committed 100` (the
                   group's committed offsets).
    held-open      creates PREFIX-t (3 partitions); a transaction of 10 records to each is
                   left open: prints `open`, then waits for a line on stdin (the test kills
                   the coordinator's broker meanwhile) and commits it, retrying as the
                   client does, then a second transaction of 5 more. Prints `committed 45`
                   once a read_committed consumer reads exactly those records.

Output lines are tab-separated; any failed expectation exits non-zero with the reason.
"""

import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from common import emit, fail

# Bounds of each wait on the broker.
TIMEOUT_S = 30
# How long a read to the end of the topics may take.
READ_DEADLINE_S = 60


def create_topics(bootstrap, topics):
    """Creates each (name, partitions) with the broker's default replication factor (1 on
    one broker, the cluster's in a cluster)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, n, -1) for name, n in topics],
                                  operation_timeout=TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(TIMEOUT_S)
        except KafkaException as e:
            fail("creating %s: %s" % (name, e))


def partitions_of(topics):
    return [TopicPartition(name, p) for name, n in topics for p in range(n)]


def transactional_producer(bootstrap, txid, **extra):
    config = {"bootstrap.servers": bootstrap, "transactional.id": txid}
    config.update(extra)
    return Producer(config)


def error_of(exception):
    """The KafkaError a confluent-kafka call raised."""
    if isinstance(exception, KafkaException) and exception.args and \
            isinstance(exception.args[0], KafkaError):
        return exception.args[0]
    fail("not a Kafka error: %r" % (exception,))


def produce_all(producer, partitions, count, prefix):
    """`count` records to each partition, values `<prefix>-<topic>-<partition>-<i>`."""
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(err)

    for tp in partitions:
        for i in range(count):
            value = "%s-%s-%d-%d" % (prefix, tp.topic, tp.partition, i)
            producer.produce(tp.topic, value=value.encode(), partition=tp.partition,
                             on_delivery=report)
            producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0:
        fail("%s: records still undelivered after %d s" % (prefix, TIMEOUT_S))
    if failures:
        fail("%s: deliveries failed: %s" % (prefix, failures[:3]))


def end_offsets(bootstrap, partitions):
    """The high watermark of each partition (a read_uncommitted query: control records and
    open transactions included)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "transactions-ends",
                         "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    try:
        ends = {}
        for tp in partitions:
            _low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)
            ends[(tp.topic, tp.partition)] = high
        return ends
    finally:
        consumer.close()


def read_to_end(bootstrap, partitions, isolation):
    """Every data record of `partitions` from the beginning, as {(topic, partition): [value]},
    read until the consumer's position reaches each partition's high watermark: with
    read_committed that needs every transaction below it decided (the LSO past it)."""
    ends = end_offsets(bootstrap, partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "transactions-reader",
                         "enable.auto.commit": False, "isolation.level": isolation})
    try:
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
                         for tp in partitions])
        records = {key: [] for key in ends}
        deadline = time.time() + READ_DEADLINE_S
        while True:
            positions = consumer.position([TopicPartition(t, p) for t, p in ends])
            # An empty partition has no position to reach (it stays OFFSET_INVALID).
            behind = [(tp.topic, tp.partition, tp.offset, ends[(tp.topic, tp.partition)])
                      for tp in positions
                      if ends[(tp.topic, tp.partition)] > 0
                      and tp.offset < ends[(tp.topic, tp.partition)]]
            if not behind:
                return records
            if time.time() > deadline:
                fail("%s: positions behind the high watermarks after %d s "
                     "(topic, partition, position, end): %s" % (isolation, READ_DEADLINE_S, behind))
            for message in consumer.consume(100, 0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    fail("%s read: %s" % (isolation, message.error()))
                records[(message.topic(), message.partition())].append(message.value().decode())
    finally:
        consumer.close()


def commit_abort(bootstrap, prefix):
    topics = [(prefix + "-a", 3), (prefix + "-b", 2)]
    create_topics(bootstrap, topics)
    partitions = partitions_of(topics)
    producer = transactional_producer(bootstrap, prefix + "-tx")
    producer.init_transactions(TIMEOUT_S)
    for prefix_, count, commit in [("c1", 10, True), ("a2", 10, False), ("c3", 5, True)]:
        producer.begin_transaction()
        produce_all(producer, partitions, count, prefix_)
        if commit:
            producer.commit_transaction(TIMEOUT_S)
        else:
            producer.abort_transaction(TIMEOUT_S)

    def expected(tp, prefixes):
        return ["%s-%s-%d-%d" % (p, tp.topic, tp.partition, i)
                for p, count in prefixes for i in range(count)]

    for isolation, prefixes, tag in [
            ("read_committed", [("c1", 10), ("c3", 5)], "committed"),
            ("read_uncommitted", [("c1", 10), ("a2", 10), ("c3", 5)], "uncommitted")]:
        records = read_to_end(bootstrap, partitions, isolation)
        for tp in partitions:
            got = records[(tp.topic, tp.partition)]
            want = expected(tp, prefixes)
            if got != want:
                fail("%s %s[%d]: got %d records %s..., expected %d %s..."
                     % (isolation, tp.topic, tp.partition, len(got), got[:3], len(want), want[:3]))
        emit(tag, sum(len(v) for v in records.values()))


def fenced(bootstrap, prefix):
    topic = prefix + "-f"
    create_topics(bootstrap, [(topic, 1)])
    txid = prefix + "-tx"
    p1 = transactional_producer(bootstrap, txid)
    p1.init_transactions(TIMEOUT_S)
    p1.begin_transaction()
    p1.produce(topic, value=b"p1-0")
    if p1.flush(TIMEOUT_S) != 0:
        fail("p1's record undelivered after %d s" % TIMEOUT_S)
    p2 = transactional_producer(bootstrap, txid)
    p2.init_transactions(TIMEOUT_S)
    # The partition leader refuses p1's next record (its epoch is old), which is fatal to
    # p1: its flush or commit raises the error. (No delivery callback: confluent-kafka
    # 2.16 calls it with the fatal error already raised, a SystemError.)
    error = None
    try:
        p1.produce(topic, value=b"p1-1")
        p1.flush(TIMEOUT_S)
        p1.commit_transaction(TIMEOUT_S)
    except KafkaException as e:
        error = error_of(e)
    if error is None:
        fail("p1 committed after p2's init_transactions fenced it")
    if not error.fatal():
        fail("p1's failure is not fatal: %s" % error)
    emit("fenced", error.name())
    p2.begin_transaction()
    p2.produce(topic, value=b"p2-0")
    p2.commit_transaction(TIMEOUT_S)
    records = read_to_end(bootstrap, [TopicPartition(topic, 0)], "read_committed")
    if records[(topic, 0)] != ["p2-0"]:
        fail("read_committed after the fencing: %s, expected ['p2-0']" % records[(topic, 0)])
    emit("p2", "committed")


def timeout(bootstrap, prefix):
    topic = prefix + "-t"
    create_topics(bootstrap, [(topic, 1)])
    tp = TopicPartition(topic, 0)
    stale = transactional_producer(bootstrap, prefix + "-stale", **{"transaction.timeout.ms": 3000})
    stale.init_transactions(TIMEOUT_S)
    stale.begin_transaction()
    produce_all(stale, [tp], 5, "late")
    time.sleep(10)
    fresh = transactional_producer(bootstrap, prefix + "-fresh")
    fresh.init_transactions(TIMEOUT_S)
    fresh.begin_transaction()
    produce_all(fresh, [tp], 3, "ok")
    fresh.commit_transaction(TIMEOUT_S)
    records = read_to_end(bootstrap, [tp], "read_committed")[(topic, 0)]
    want = ["ok-%s-0-%d" % (topic, i) for i in range(3)]
    if records != want:
        fail("read_committed after the timeout: %s, expected %s" % (records, want))
    emit("after-timeout", len(records))
    try:
        stale.commit_transaction(TIMEOUT_S)
    except KafkaException as e:
        emit("stale", error_of(e).name())
        return
    fail("the timed-out transaction committed")


def send_offsets(bootstrap, prefix):
    source, sink, group = prefix + "-in", prefix + "-out", prefix + "-g"
    create_topics(bootstrap, [(source, 2), (sink, 2)])
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(100):
        plain.produce(source, value=("v%d" % i).encode(), partition=i % 2)
    if plain.flush(TIMEOUT_S) != 0:
        fail("input records undelivered after %d s" % TIMEOUT_S)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([source])
    producer = transactional_producer(bootstrap, prefix + "-tx")
    producer.init_transactions(TIMEOUT_S)
    committed_positions = {}
    aborted = False
    deadline = time.time() + READ_DEADLINE_S
    while sum(committed_positions.values()) < 100:
        if time.time() > deadline:
            fail("after %d s, committed positions %s" % (READ_DEADLINE_S, committed_positions))
        batch = consumer.consume(10, 1.0)
        for message in batch:
            if message.error():
                fail("consume: %s" % message.error())
        if not batch:
            continue
        producer.begin_transaction()
        for message in batch:
            producer.produce(sink, value=message.value().upper(), partition=message.partition())
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                             TIMEOUT_S)
        # The third batch is aborted once: its output goes, its offsets are not committed,
        # and the consumer goes back to the committed positions to process it again.
        if not aborted and sum(committed_positions.values()) >= 20:
            aborted = True
            producer.abort_transaction(TIMEOUT_S)
            assignment = consumer.assignment()
            for tp in consumer.committed(assignment, TIMEOUT_S):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            continue
        producer.commit_transaction(TIMEOUT_S)
        for tp in positions:
            committed_positions[(tp.topic, tp.partition)] = tp.offset
    if not aborted:
        fail("no batch was aborted")
    group_offsets = consumer.committed([TopicPartition(source, p) for p in range(2)], TIMEOUT_S)
    consumer.close()
    total = sum(tp.offset for tp in group_offsets if tp.offset >= 0)
    if total != 100:
        fail("the group's committed offsets sum to %d: %s" % (total, group_offsets))

    records = read_to_end(bootstrap, partitions_of([(sink, 2)]), "read_committed")
    values = sorted(v for vs in records.values() for v in vs)
    want = sorted("V%d" % i for i in range(100))
    if values != want:
        seen = set(values)
        twice = sorted({v for v in values if values.count(v) > 1})
        missing = [v for v in want if v not in seen]
        fail("output: %d records, duplicated %s, missing %s"
             % (len(values), twice[:10], missing[:10]))
    emit("out", len(values))
    emit("committed", total)


def held_open(bootstrap, prefix):
    topics = [(prefix + "-t", 3)]
    create_topics(bootstrap, topics)
    partitions = partitions_of(topics)
    producer = transactional_producer(bootstrap, prefix + "-tx",
                                      **{"transaction.timeout.ms": 60000})
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    produce_all(producer, partitions, 10, "first")
    emit("open", 1)
    sys.stdout.flush()
    sys.stdin.readline()
    producer.commit_transaction(READ_DEADLINE_S)
    producer.begin_transaction()
    produce_all(producer, partitions, 5, "second")
    producer.commit_transaction(READ_DEADLINE_S)
    records = read_to_end(bootstrap, partitions, "read_committed")
    for key, values in records.items():
        want = ["first-%s-%d-%d" % (key[0], key[1], i) for i in range(10)]
        want += ["second-%s-%d-%d" % (key[0], key[1], i) for i in range(5)]
        if values != want:
            fail("%s-%d: read %s" % (key[0], key[1], values))
    emit("committed", sum(len(v) for v in records.values()))


SCENARIOS = {"held-open": held_open, "commit-abort": commit_abort, "fenced": fenced, "timeout": timeout,
             "send-offsets": send_offsets}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SCENARIOS:
        fail("usage: transactions.py %s BOOTSTRAP PREFIX" % "|".join(SCENARIOS))
    try:
        SCENARIOS[sys.argv[1]](sys.argv[2], sys.argv[3])
    except KafkaException as e:
        fail("%s: unexpected Kafka error: %s" % (sys.argv[1], e))


if __name__ == "__main__":
    main()
