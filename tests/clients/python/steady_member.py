"""A consumer-group member (confluent-kafka) for tests/replication.rs's coordinator failover
test: it subscribes, reports every rebalance through its callbacks, consumes slowly and
commits synchronously after every message, until the stop file exists (then close(), which
leaves the group) or --max-s passes.

Usage: steady_member.py BOOTSTRAP TOPIC GROUP --stop-file F [--delay-s S] [--session-ms MS]

Output (tab-separated, see common.py for `msg`):

    pid            <pid>                 first line
    assigned       <p,p,...|->           on_assign: a rebalance gave this member these partitions
    revoked        <p,p,...|->           on_revoke: a rebalance took them back
    msg ...                              every message consumed
    committed      <partition> <offset>  an acknowledged commit
    commit-retry   <error>               a commit failed while the coordinator moves; retried
    commit-failed  <error>               a commit refused for good (UNKNOWN_MEMBER_ID,
                                         ILLEGAL_GENERATION, ...): the member lost its place
    poll-error     <error>               an error event from poll (reported, not fatal)
    stopping                             the stop file exists: close() (which revokes) next
    closed                               close() returned

Every failure other than these exits non-zero with the reason on stderr.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

# How long one poll waits, in seconds.
POLL_S = 0.1
# Errors of a coordinator that died or is being replaced: the commit is retried.
COORDINATOR_MOVING = {
    "_TRANSPORT",
    "_TIMED_OUT",
    "_WAIT_COORD",
    "_ALL_BROKERS_DOWN",
    "NOT_COORDINATOR",
    "NOT_COORDINATOR_FOR_GROUP",
    "COORDINATOR_NOT_AVAILABLE",
    "GROUP_COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "GROUP_LOAD_IN_PROGRESS",
    "REQUEST_TIMED_OUT",
}
# Retries of one commit (each after COMMIT_RETRY_S).
COMMIT_RETRIES_MAX = 100
COMMIT_RETRY_S = 0.2


def emit(*fields):
    common.emit(*fields)
    sys.stdout.flush()


def partitions_text(partitions):
    return ",".join(str(tp.partition) for tp in sorted(partitions, key=lambda tp: tp.partition)) or "-"


def commit(consumer, TopicPartition, KafkaException, topic, partition, offset):
    """Commits `offset` for `partition` synchronously; True once acknowledged."""
    for _ in range(COMMIT_RETRIES_MAX):
        error = None
        try:
            result = consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
            error = next((tp.error for tp in result if tp.error is not None), None)
        except KafkaException as e:
            error = e.args[0]
        if error is None:
            emit("committed", partition, offset)
            return True
        if error.name() in COORDINATOR_MOVING or error.retriable():
            emit("commit-retry", error.name())
            time.sleep(COMMIT_RETRY_S)
            continue
        emit("commit-failed", error.name())
        return False
    common.fail("commit of %d:%d still failing after %d retries" % (partition, offset, COMMIT_RETRIES_MAX))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--delay-s", type=float, default=0.1, help="pause after each message")
    parser.add_argument("--session-ms", type=int, default=10000)
    parser.add_argument("--max-s", type=int, default=90, help="deadline of the whole run")
    args = parser.parse_args()
    emit("pid", os.getpid())
    deadline = time.time() + args.max_s

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
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
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, partitions: emit("assigned", partitions_text(partitions)),
        on_revoke=lambda _c, partitions: emit("revoked", partitions_text(partitions)),
    )
    while not os.path.exists(args.stop_file):
        if time.time() > deadline:
            common.fail("still running after %ds (no stop file %s)" % (args.max_s, args.stop_file))
        message = consumer.poll(POLL_S)
        if message is None:
            continue
        if message.error():
            emit("poll-error", message.error().name())
            continue
        common.emit_message(message.partition(), message.offset(), message.key(), message.value(), message.timestamp()[1])
        sys.stdout.flush()
        commit(consumer, TopicPartition, KafkaException, args.topic, message.partition(), message.offset() + 1)
        time.sleep(args.delay_s)
    emit("stopping")
    consumer.close()
    emit("closed")


if __name__ == "__main__":
    main()
