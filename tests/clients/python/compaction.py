"""confluent-kafka (librdkafka) against a compacted topic, for tests/compaction.rs.

Usage: compaction.py BOOTSTRAP TOPIC UPDATES KEYS DEADLINE_S [COMPRESSION]

Creates TOPIC (one partition, cleanup.policy=compact, segments rolled every 200 ms, a
dirty ratio of 1%), produces UPDATES records over KEYS keys (compressed with COMPRESSION,
`none` by default), key `key-{i % KEYS}` with
value `value-{i}`, the last update of every tenth key a tombstone (a null value), then
consumes the topic from the beginning until the cleaner has left each key at most one
record, or DEADLINE_S seconds passed. Prints, tab-separated:

    produced <updates>
    live <keys with a value> dead <keys whose last record is a tombstone>
    read <records> <distinct keys>     each read from the beginning, until one is clean
    clean                              every key at most once, every live key's last value

and exits non-zero, with the reason, if a read after the deadline still fails the check.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import emit, fail


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    updates, keys, deadline_s = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    compression = sys.argv[6] if len(sys.argv) > 6 else "none"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {
        "cleanup.policy": "compact",
        "segment.ms": "200",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    }
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                         "compression.type": compression})
    failures = []
    model = {}
    for i in range(updates):
        k = "key-%d" % (i % keys)
        last_round = i >= updates - keys
        v = None if last_round and (i % keys) % 10 == 0 else ("value-%d" % i)
        while True:
            try:
                producer.produce(topic, key=k.encode(), value=None if v is None else v.encode(),
                                 on_delivery=lambda err, _msg: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        model[k] = v
        producer.poll(0)
    if producer.flush(60) != 0 or failures:
        fail("deliveries failed or pending: %s" % failures[:3])
    emit("produced", updates)
    live = {k: v for k, v in model.items() if v is not None}
    emit("live", len(live), "dead", len(model) - len(live))

    end = time.time() + deadline_s
    while True:
        records = read_all(bootstrap, topic)
        seen = {}
        for k, v in records:
            seen.setdefault(k, []).append(v)
        emit("read", len(records), len(seen))
        problems = []
        for k, values in seen.items():
            if len(values) > 1:
                problems.append("%s %d times" % (k, len(values)))
            elif k not in model:
                problems.append("%s was never produced" % k)
            elif values[0] != model[k]:
                problems.append("%s holds %r, its last update was %r" % (k, values[0], model[k]))
        for k, v in live.items():
            if k not in seen:
                problems.append("live key %s (last %r) is gone" % (k, v))
        if not problems:
            emit("clean")
            return
        if time.time() > end:
            fail("not clean after %s s: %s" % (deadline_s, "; ".join(problems[:5])))
        time.sleep(0.5)


def read_all(bootstrap, topic):
    """Every record of partition 0 from the beginning to the high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-check",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records = []
        while True:
            message = consumer.poll(10)
            if message is None:
                fail("no message and no end of partition within 10 s")
            if message.error():
                if message.error().code() == -191:  # _PARTITION_EOF
                    return records
                raise KafkaException(message.error())
            k = message.key().decode()
            v = None if message.value() is None else message.value().decode()
            records.append((k, v))
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
