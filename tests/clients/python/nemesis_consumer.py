"""A group consumer (confluent-kafka) for the nemesis campaign of tests/replication.rs: it
reads the topic replication_producer.py writes, as a member of a consumer group, for the
whole campaign, and records what it saw, what it committed and what the coordinator says is
committed, so the Rust side can check that committed offsets never move backwards and that
every acknowledged record was read (at least once).

Usage: nemesis_consumer.py BOOTSTRAP TOPIC GROUP --log-file FILE --stop-file FILE [options]

Every COMMIT_INTERVAL_S it commits synchronously, per partition, the offset after the last
message it consumed there (only partitions that moved); every FETCH_INTERVAL_S it asks the
coordinator for the committed offsets (OffsetFetch). One flushed line each, tab-separated, in
the order things happened (commits and fetches are synchronous, one at a time, so within a
partition the committed offsets in this file must never go down):

    seen        <partition> <offset> <key> <seq>   a message consumed (value `key:seq:...`)
    committed   <partition> <offset>               an acknowledged commit
    fetched     <partition> <offset>               the coordinator's committed offset
    commit-error <error>                           a commit refused (reported, not fatal)
    fetch-error  <error>                           an OffsetFetch that failed (reported)
    assigned    <p,p,...|->                        a rebalance gave it these partitions
    revoked     <p,p,...|->                        a rebalance took them back
    poll-error  <error>                            an error event from poll (reported)

It stops when the stop file exists (after one last commit) or --max-s passes. Exits
non-zero only for usage or setup errors: the Rust side judges the outcome from the file.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

# How long one poll waits, in seconds.
POLL_S = 0.1
# Pause between commits: a commit per message would not keep up with the producer.
COMMIT_INTERVAL_S = 0.2
# Pause between OffsetFetch requests.
FETCH_INTERVAL_S = 1.0
# How long one commit or OffsetFetch may take before it is reported as failed.
REQUEST_TIMEOUT_S = 10


def partitions_text(partitions):
    return ",".join(str(tp.partition) for tp in sorted(partitions, key=lambda tp: tp.partition)) or "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--session-ms", type=int, default=10000)
    parser.add_argument("--max-s", type=int, default=120)
    args = parser.parse_args()
    log = open(args.log_file, "a", buffering=1)

    def record(*fields):
        log.write("\t".join(str(f) for f in fields) + "\n")
        log.flush()

    # FJORD_CONSUMER_DEBUG=fetch,topic,... turns on librdkafka's debug contexts (to stderr,
    # which the campaign prints when the consumer falls behind).
    debug = {"debug": os.environ["FJORD_CONSUMER_DEBUG"]} if os.environ.get("FJORD_CONSUMER_DEBUG") else {}
    consumer = Consumer(
        {
            **debug,
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": args.session_ms,
            "heartbeat.interval.ms": max(100, args.session_ms // 10),
            "max.poll.interval.ms": max(args.session_ms, 60000),
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    # Partition -> offset after the last message consumed there, not yet committed.
    pending = {}

    def on_revoke(_consumer, partitions):
        # Revoked partitions are no longer this member's to commit; what was consumed and not
        # committed is read again (at least once).
        record("revoked", partitions_text(partitions))
        for tp in partitions:
            pending.pop(tp.partition, None)

    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, partitions: record("assigned", partitions_text(partitions)),
        on_revoke=on_revoke,
    )

    def commit():
        if not pending:
            return
        offsets = [TopicPartition(args.topic, p, o) for p, o in sorted(pending.items())]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            record("commit-error", e.args[0].name())
            return
        for tp in result:
            if tp.error is not None:
                record("commit-error", tp.error.name())
            else:
                record("committed", tp.partition, tp.offset)
                if pending.get(tp.partition) == tp.offset:
                    del pending[tp.partition]

    def fetch():
        partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        try:
            result = consumer.committed(partitions, timeout=REQUEST_TIMEOUT_S)
        except KafkaException as e:
            record("fetch-error", e.args[0].name())
            return
        for tp in result:
            if tp.error is not None:
                record("fetch-error", tp.error.name())
            elif tp.offset >= 0:
                record("fetched", tp.partition, tp.offset)

    deadline = time.time() + args.max_s
    next_commit = time.time() + COMMIT_INTERVAL_S
    next_fetch = time.time() + FETCH_INTERVAL_S
    while not os.path.exists(args.stop_file) and time.time() < deadline:
        message = consumer.poll(POLL_S)
        if message is not None and message.error():
            record("poll-error", message.error().name())
        elif message is not None:
            fields = message.value().decode().split(":")
            record("seen", message.partition(), message.offset(), fields[0], fields[1])
            pending[message.partition()] = message.offset() + 1
        now = time.time()
        if now >= next_commit:
            commit()
            next_commit = now + COMMIT_INTERVAL_S
        if now >= next_fetch:
            fetch()
            next_fetch = now + FETCH_INTERVAL_S
    commit()
    fetch()
    consumer.close()
    log.close()


if __name__ == "__main__":
    main()
