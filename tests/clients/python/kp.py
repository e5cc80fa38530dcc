"""kafka-python client for the broker integration tests.

Usage: kp.py COMMAND BOOTSTRAP TOPIC [options]; output conventions are in common.py. The
consumer has no group_id (so the tests do not depend on the group coordinator) and starts at
the earliest offset (auto_offset_reset='earliest').
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

import common  # noqa: E402


def produce(args):
    config = {
        "bootstrap_servers": args.bootstrap,
        "acks": "all" if args.acks == "all" else int(args.acks),
        "linger_ms": args.linger_ms,
        "request_timeout_ms": 15000,
        "max_block_ms": 15000,
    }
    if args.compression != "none":
        config["compression_type"] = args.compression
    if args.idempotent:
        config["enable_idempotence"] = True
    producer = KafkaProducer(**config)
    futures = []
    for i in range(args.start, args.start + args.count):
        futures.append((i, producer.send(args.topic, key=common.key(i, args.keys), value=common.value(i, args.size))))
    producer.flush(timeout=45)
    failures = 0
    for i, future in futures:
        try:
            metadata = future.get(timeout=30)
        except Exception as error:  # noqa: BLE001 - every failure is reported, then fails the run
            failures += 1
            common.emit("err", i, repr(error).replace("\t", " "))
            continue
        common.emit("ack", metadata.partition, metadata.offset, i)
    producer.close(timeout=10)
    if failures:
        common.fail("%d of %d sends failed" % (failures, len(futures)))


def consume(args):
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    deadline = time.time() + args.timeout_s
    numbers = consumer.partitions_for_topic(args.topic)
    while not numbers:
        if time.time() > deadline:
            common.fail("no partitions known for %s" % args.topic)
        time.sleep(0.1)
        numbers = consumer.partitions_for_topic(args.topic)
    partitions = [TopicPartition(args.topic, p) for p in sorted(numbers)]
    ends = consumer.end_offsets(partitions)
    # No seek: where reading starts is auto_offset_reset's job.
    seen = {tp: 0 for tp in partitions}
    while any(seen[tp] < ends[tp] for tp in partitions):
        if time.time() > deadline:
            common.fail("timed out: positions %r, end offsets %r" % (seen, ends))
        batches = consumer.poll(timeout_ms=500)
        for tp, messages in batches.items():
            for m in messages:
                common.emit_message(m.partition, m.offset, m.key, m.value, m.timestamp)
                seen[tp] = m.offset + 1
    consumer.close()
    common.emit("end", *[ends[tp] for tp in partitions])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name):
        p = sub.add_parser(name)
        p.add_argument("bootstrap")
        p.add_argument("topic")
        return p

    p = command("produce")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--keys", type=int, default=0)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--acks", default="all")
    p.add_argument("--compression", default="none")
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--linger-ms", type=int, default=5)
    p.set_defaults(run=produce)

    p = command("consume")
    p.add_argument("--timeout-s", type=int, default=45)
    p.set_defaults(run=consume)

    args = parser.parse_args()
    args.run(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
