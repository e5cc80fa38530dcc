"""confluent-kafka (librdkafka) client for the broker integration tests.

Usage: ck.py COMMAND BOOTSTRAP TOPIC [options]; see `ck.py --help`. Output conventions are
in common.py. Consumers never join a group, so these tests do not depend on the group
coordinator: they `assign()` explicit partitions at explicit offsets and commit nothing.
librdkafka insists on a group.id in the config, so a dummy one is set with auto commit off.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import common  # noqa: E402


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    configs = dict(pair.split("=", 1) for pair in args.config)
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1, config=configs)],
        operation_timeout=10,
        request_timeout=15,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=20)
        except KafkaException as error:
            common.fail("create_topics(%s) failed: %s" % (name, error))
    metadata = admin.list_topics(topic=args.topic, timeout=10)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        common.fail("topic %s missing from metadata after creation: %r" % (args.topic, topic and topic.error))
    common.emit("created", args.topic, len(topic.partitions))


def produce(args):
    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": args.linger_ms,
        "message.timeout.ms": args.message_timeout_ms,
        "compression.type": args.compression,
    }
    if args.idempotent:
        config["enable.idempotence"] = True
    if args.batch_size:
        config["batch.size"] = args.batch_size
    if args.message_max_bytes:
        config["message.max.bytes"] = args.message_max_bytes
    if args.debug:
        config["debug"] = args.debug
    producer = Producer(config)
    failures = []

    def report(index):
        def on_delivery(error, message):
            if error is not None:
                failures.append(index)
                common.emit("err", index, str(error).replace("\t", " "))
            else:
                common.emit("ack", message.partition(), message.offset(), index)
            sys.stdout.flush()

        return on_delivery

    for i in range(args.start, args.start + args.count):
        kwargs = {"key": common.key(i, args.keys), "value": common.value(i, args.size), "on_delivery": report(i)}
        if args.partition is not None:
            kwargs["partition"] = args.partition
        if args.timestamp_base is not None:
            kwargs["timestamp"] = args.timestamp_base + i * args.timestamp_step
        while True:
            try:
                producer.produce(args.topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if args.pause_ms:
            producer.flush(30)
            time.sleep(args.pause_ms / 1000.0)
    remaining = producer.flush(args.flush_timeout_s)
    if remaining:
        common.fail("%d messages still undelivered after %ds" % (remaining, args.flush_timeout_s))
    if failures and not args.allow_errors:
        common.fail("%d deliveries failed (first: message %d)" % (len(failures), failures[0]))


def consumer(args, extra=None):
    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": "fjord-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    config.update(extra or {})
    return Consumer(config)


def partition_count(c, topic):
    metadata = c.list_topics(topic=topic, timeout=10)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        common.fail("topic %s not in metadata: %r" % (topic, described and described.error))
    return len(described.partitions)


def consume(args):
    extra = {}
    if args.fetch_max_bytes:
        extra["fetch.max.bytes"] = args.fetch_max_bytes
        extra["max.partition.fetch.bytes"] = args.fetch_max_bytes
        extra["receive.message.max.bytes"] = args.fetch_max_bytes + 1024 * 1024
    c = consumer(args, extra)
    count = partition_count(c, args.topic)
    # Read each partition up to the high watermark seen at the start: every message once,
    # so duplicates show up as extra lines. Reading starts at the log start (records below
    # it deleted) if that is later than the offset asked for.
    lows, ends = {}, {}
    for p in range(count):
        lows[p], ends[p] = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
    start = OFFSET_BEGINNING if args.offset is None else args.offset
    c.assign([TopicPartition(args.topic, p, start) for p in range(count)])
    positions = {p: max(0 if args.offset is None else args.offset, lows[p]) for p in range(count)}
    deadline = time.time() + args.timeout_s
    while any(positions[p] < ends[p] for p in range(count)):
        if time.time() > deadline:
            common.fail("timed out: positions %r, high watermarks %r" % (positions, ends))
        message = c.poll(0.5)
        if message is None:
            continue
        if message.error():
            common.fail("consumer error: %s" % message.error())
        ts_type, ts = message.timestamp()
        common.emit_message(message.partition(), message.offset(), message.key(), message.value(), ts)
        positions[message.partition()] = message.offset() + 1
    c.close()
    common.emit("end", *[ends[p] for p in range(count)])


def watermarks(args):
    c = consumer(args)
    count = partition_count(c, args.topic)
    for p in range(count):
        low, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10, cached=False)
        common.emit("watermarks", p, low, high)
    c.close()


def offsets_for_times(args):
    c = consumer(args)
    wanted = [TopicPartition(args.topic, args.partition, ts) for ts in args.timestamps]
    # One lookup per timestamp: librdkafka merges duplicate partitions in one request.
    for tp in wanted:
        (found,) = c.offsets_for_times([tp], timeout=10)
        if found.error is not None:
            common.fail("offsets_for_times(%d) failed: %s" % (tp.offset, found.error))
        common.emit("time", tp.offset, found.offset)
    c.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name):
        p = sub.add_parser(name)
        p.add_argument("bootstrap")
        p.add_argument("topic")
        return p

    p = command("create-topic")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--config", action="append", default=[], help="name=value")
    p.set_defaults(run=create_topic)

    p = command("produce")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--keys", type=int, default=0)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--partition", type=int)
    p.add_argument("--acks", default="all")
    p.add_argument("--compression", default="none")
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--linger-ms", type=int, default=5)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--message-max-bytes", type=int)
    p.add_argument("--message-timeout-ms", type=int, default=30000)
    p.add_argument("--flush-timeout-s", type=int, default=45)
    p.add_argument("--timestamp-base", type=int)
    p.add_argument("--timestamp-step", type=int, default=1000)
    p.add_argument("--pause-ms", type=int, default=0, help="flush and sleep after each message")
    p.add_argument("--allow-errors", action="store_true")
    p.add_argument("--debug", help="librdkafka debug contexts, logged to stderr")
    p.set_defaults(run=produce)

    p = command("consume")
    p.add_argument("--offset", type=int)
    p.add_argument("--fetch-max-bytes", type=int)
    p.add_argument("--timeout-s", type=int, default=45)
    p.set_defaults(run=consume)

    p = command("watermarks")
    p.set_defaults(run=watermarks)

    p = command("offsets-for-times")
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("timestamps", type=int, nargs="+")
    p.set_defaults(run=offsets_for_times)

    args = parser.parse_args()
    args.run(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
