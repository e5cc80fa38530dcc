"""kafka-python KafkaAdminClient calls about groups, log directories and producers, for
tests/admin_describe.rs (confluent-kafka's Python AdminClient has no call for OffsetDelete,
DescribeLogDirs or DescribeProducers; kafka-python 3 has all three).

Usage: kp_admin.py COMMAND BOOTSTRAP [arguments]; see `kp_admin.py --help`. Partitions are
written TOPIC:PARTITION, commits TOPIC:PARTITION=OFFSET.

    commit BOOTSTRAP GROUP TP=OFFSET...    OffsetCommit (API 8) as an admin (no member)
    offsets BOOTSTRAP GROUP                OffsetFetch (API 9) of every committed partition
    delete-offsets BOOTSTRAP GROUP TP...   OffsetDelete (API 47)
    describe-producers BOOTSTRAP TP...     DescribeProducers (API 61), at each leader
    describe-log-dirs BOOTSTRAP            DescribeLogDirs (API 35) of every partition
    describe-cluster BOOTSTRAP             DescribeCluster (API 60) with the fenced brokers

Output (tab-separated, see common.py):

    ok                                     the commit was taken
    offset   <topic> <partition> <offset>  a committed offset
    deleted  <topic> <partition> <error>   OffsetDelete's answer for a partition (NoError...)
    producer <topic> <partition> <id> <epoch> <last sequence> <last timestamp>
             <coordinator epoch> <transaction start offset>
    dir      <broker> <log dir> <error code> <total bytes> <usable bytes>
    size     <broker> <topic> <partition> <bytes> <offset lag> <is future>
    cluster  <cluster id> <controller id>
    broker   <id> <host> <port> <is fenced>
    error    <error name>                  the broker refused the whole request

A broker's refusal exits 0, so the test asserts which error it got; anything else exits
non-zero through common.fail.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kafka.errors as Errors  # noqa: E402
from kafka import KafkaAdminClient, TopicPartition  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

import common  # noqa: E402

# How long kafka-python waits for one request.
REQUEST_TIMEOUT_MS = 15000


def client(args):
    return KafkaAdminClient(
        bootstrap_servers=args.bootstrap,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        client_id="fjord-kp-admin",
    )


def partition(text):
    topic, sep, index = text.rpartition(":")
    if not sep or not topic:
        raise argparse.ArgumentTypeError("expected TOPIC:PARTITION, got %r" % text)
    return TopicPartition(topic, int(index))


def commit_spec(text):
    tp, sep, offset = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected TOPIC:PARTITION=OFFSET, got %r" % text)
    return partition(tp), int(offset)


def refused(run):
    """Runs `run`; a broker's refusal of the whole request becomes an `error` line."""
    try:
        return True, run()
    except Errors.BrokerResponseError as error:
        common.emit("error", type(error).__name__)
        return False, None


def commit(args):
    admin = client(args)
    offsets = {tp: OffsetAndMetadata(offset, "", None) for tp, offset in args.commits}
    results = admin.alter_group_offsets(args.group, offsets)
    failed = {tp: e.__name__ for tp, e in results.items() if e is not Errors.NoError}
    if failed:
        common.fail("commit refused: %r" % failed)
    common.emit("ok")


def offsets(args):
    admin = client(args)
    taken, found = refused(lambda: admin.list_group_offsets({args.group: None}))
    if not taken:
        return
    for tp, committed in sorted(found.get(args.group, {}).items()):
        if committed.offset >= 0:
            common.emit("offset", tp.topic, tp.partition, committed.offset)


def delete_offsets(args):
    admin = client(args)
    taken, results = refused(lambda: admin.delete_group_offsets(args.group, args.partitions))
    if not taken:
        return
    for tp, error in sorted(results.items()):
        common.emit("deleted", tp.topic, tp.partition, error.__name__)


def describe_producers(args):
    admin = client(args)
    taken, results = refused(lambda: admin.describe_producers(args.partitions))
    if not taken:
        return
    for tp, state in sorted(results.items()):
        for p in state.active_producers:
            common.emit(
                "producer", tp.topic, tp.partition, p.producer_id, p.producer_epoch,
                p.last_sequence, p.last_timestamp, p.coordinator_epoch,
                p.current_transaction_start_offset,
            )


def describe_log_dirs(args):
    admin = client(args)
    for broker in admin.describe_log_dirs():
        for log_dir in broker["log_dirs"]:
            common.emit(
                "dir", broker["broker"], log_dir["log_dir"], log_dir["error_code"],
                log_dir["total_bytes"], log_dir["usable_bytes"],
            )
            for topic in log_dir["topics"]:
                for p in topic["partitions"]:
                    common.emit(
                        "size", broker["broker"], topic["name"], p["partition_index"],
                        p["partition_size"], p["offset_lag"], p["is_future_key"],
                    )


def describe_cluster(args):
    admin = client(args)
    cluster = admin.describe_cluster()
    common.emit("cluster", cluster["cluster_id"], cluster["controller_id"])
    for broker in sorted(cluster["brokers"], key=lambda b: b["broker_id"]):
        common.emit("broker", broker["broker_id"], broker["host"], broker["port"], broker.get("is_fenced"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, run):
        p = sub.add_parser(name)
        p.add_argument("bootstrap")
        p.set_defaults(run=run)
        return p

    p = command("commit", commit)
    p.add_argument("group")
    p.add_argument("commits", nargs="+", type=commit_spec, metavar="TOPIC:PARTITION=OFFSET")
    p = command("offsets", offsets)
    p.add_argument("group")
    p = command("delete-offsets", delete_offsets)
    p.add_argument("group")
    p.add_argument("partitions", nargs="+", type=partition, metavar="TOPIC:PARTITION")
    p = command("describe-producers", describe_producers)
    p.add_argument("partitions", nargs="+", type=partition, metavar="TOPIC:PARTITION")
    command("describe-log-dirs", describe_log_dirs)
    command("describe-cluster", describe_cluster)

    args = parser.parse_args()
    args.run(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
