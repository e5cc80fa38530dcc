"""confluent-kafka (librdkafka) AdminClient calls that change a topic, for tests/admin_ops.rs,
and that describe the cluster, for tests/admin_describe.rs.

Usage: admin.py COMMAND BOOTSTRAP TOPIC [options], or admin.py describe-cluster BOOTSTRAP;
see `admin.py --help`.

    incremental        IncrementalAlterConfigs (API 44): --set k=v, --delete k, --append k=v,
                       --subtract k=v, each repeatable, and --validate-only; with --broker,
                       TOPIC names a broker resource instead: a broker id (librdkafka
                       refuses "", the cluster-wide defaults' name, as a resource)
    alter              AlterConfigs (API 33, the legacy call that replaces every override of
                       the topic): --config k=v, repeatable, and --validate-only
    create-partitions  CreatePartitions (API 37) to COUNT partitions, --validate-only
    describe           DescribeConfigs (API 32) of the topic (with --broker: of the broker)
    delete-records     DeleteRecords (API 21) of PARTITION before OFFSET (-1: the high watermark)
    describe-cluster   DescribeCluster (API 60), with the cluster's authorized operations

Output (tab-separated, see common.py):

    ok                              the broker accepted the change
    error   <code-name> <message>   the broker refused it, with librdkafka's name for its error
                                    code (UNKNOWN_TOPIC_OR_PART for Kafka's
                                    UNKNOWN_TOPIC_OR_PARTITION) and the broker's message
    config  <name> <value|-> <source>   one per config the broker describes; the source is a
                                    ConfigSource name (DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG...)
    deleted <low-watermark>         DeleteRecords done: the partition's new log start
    cluster <id> <controller id|->  DescribeCluster: the cluster, then one line per broker:
    node    <id> <host> <port> <rack|->
    operations <name,...>           the cluster operations the client may perform

A broker's refusal exits 0, so the test asserts which code it got. Anything else (a local
librdkafka error such as _TIMED_OUT or _UNSUPPORTED_FEATURE, a bad argument) exits non-zero
through common.fail: a broker that does not advertise the API fails loudly, never as an
`error` line a test could mistake for the answer it expects. The one exception is
delete-records, which also emits librdkafka's own codes as `error` lines (their names start
with `_`, so none is taken for a broker's): librdkafka looks the partition's leader up first
and answers an unknown topic or partition itself (_NOENT), without sending the request.
"""

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    ResourceType,
)

import common  # noqa: E402

# How long librdkafka may take for one admin request, lookup of the controller included.
REQUEST_TIMEOUT_S = 15
# How long the broker may take to apply a CreatePartitions (its `timeout_ms`).
OPERATION_TIMEOUT_S = 10
# How long the helper waits on a future: above the request timeout, so librdkafka's own
# timeout is the one that fires and names itself.
RESULT_TIMEOUT_S = 30


def client(args):
    """The caller keeps the client in a variable until its futures are done: a client
    dropped (garbage collected) while a request is in flight fails it with _DESTROY."""
    return AdminClient({"bootstrap.servers": args.bootstrap})


def pair(text):
    """`name=value` (the value may contain `=`)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected name=value, got %r" % text)
    return name, value


def field(text):
    return str(text).replace("\t", " ").replace("\n", " ")


def wait(future, local_errors=False):
    """Waits for one future of an admin call: (True, its result), or (False, None) after
    emitting a broker's refusal (and with `local_errors` librdkafka's own) as an `error`
    line."""
    try:
        return True, future.result(timeout=RESULT_TIMEOUT_S)
    except KafkaException as exception:
        error = exception.args[0]
        if error.code() < 0 and not local_errors:
            # librdkafka's own codes are negative (_TIMED_OUT, _UNSUPPORTED_FEATURE, ...).
            common.fail("local error, not a broker answer: %s" % error)
        common.emit("error", error.name(), field(error.str()))
        return False, None


def report(future):
    """`ok` when the broker accepted the change (else the `error` line of `wait`)."""
    accepted, _ = wait(future)
    if accepted:
        common.emit("ok")


def only_future(futures):
    if len(futures) != 1:
        common.fail("expected one future, got %r" % futures)
    return next(iter(futures.values()))


def incremental(args):
    entries = []
    for name, value in args.set:
        entries.append(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
    for name in args.delete:
        entries.append(ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE))
    for name, value in args.append:
        entries.append(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.APPEND))
    for name, value in args.subtract:
        entries.append(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SUBTRACT))
    if not entries:
        common.fail("incremental: nothing to change (give --set, --delete, --append or --subtract)")
    resource = ConfigResource(resource_type(args), args.topic, incremental_configs=entries)
    admin = client(args)
    futures = admin.incremental_alter_configs(
        [resource], validate_only=args.validate_only, request_timeout=REQUEST_TIMEOUT_S
    )
    report(only_future(futures))


def alter(args):
    resource = ConfigResource(ResourceType.TOPIC, args.topic, set_config=dict(args.config))
    admin = client(args)
    # alter_configs is deprecated in the client in favour of incremental_alter_configs, but
    # AlterConfigs is the API under test: silence the warning, not the call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        futures = admin.alter_configs(
            [resource], validate_only=args.validate_only, request_timeout=REQUEST_TIMEOUT_S
        )
    report(only_future(futures))


def create_partitions(args):
    admin = client(args)
    futures = admin.create_partitions(
        [NewPartitions(args.topic, args.count)],
        validate_only=args.validate_only,
        operation_timeout=OPERATION_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
    )
    report(only_future(futures))


def resource_type(args):
    return ResourceType.BROKER if args.broker else ResourceType.TOPIC


def describe(args):
    resource = ConfigResource(resource_type(args), args.topic)
    admin = client(args)
    future = only_future(admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S))
    described, configs = wait(future)
    if not described:
        return
    for name in sorted(configs):
        entry = configs[name]
        value = "-" if entry.value is None else field(entry.value)
        common.emit("config", name, value, ConfigSource(entry.source).name)


def delete_records(args):
    admin = client(args)
    wanted = TopicPartition(args.topic, args.partition, args.offset)
    futures = admin.delete_records(
        [wanted], operation_timeout=OPERATION_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S
    )
    deleted, result = wait(only_future(futures), local_errors=True)
    if deleted:
        common.emit("deleted", result.low_watermark)


def describe_cluster(args):
    admin = client(args)
    future = admin.describe_cluster(
        include_authorized_operations=True, request_timeout=REQUEST_TIMEOUT_S
    )
    described, cluster = wait(future)
    if not described:
        return
    controller = "-" if cluster.controller is None else cluster.controller.id
    common.emit("cluster", cluster.cluster_id, controller)
    for node in cluster.nodes:
        common.emit("node", node.id, node.host, node.port, node.rack or "-")
    operations = sorted(op.name for op in cluster.authorized_operations or [])
    common.emit("operations", ",".join(operations) or "-")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, run):
        p = sub.add_parser(name)
        p.add_argument("bootstrap")
        p.add_argument("topic")
        p.set_defaults(run=run)
        return p

    p = command("incremental", incremental)
    p.add_argument("--set", action="append", default=[], type=pair, metavar="NAME=VALUE")
    p.add_argument("--delete", action="append", default=[], metavar="NAME")
    p.add_argument("--append", action="append", default=[], type=pair, metavar="NAME=VALUE")
    p.add_argument("--subtract", action="append", default=[], type=pair, metavar="NAME=VALUE")
    p.add_argument("--validate-only", action="store_true")
    p.add_argument("--broker", action="store_true", help="TOPIC is a broker resource's name")

    p = command("alter", alter)
    p.add_argument("--config", action="append", default=[], type=pair, metavar="NAME=VALUE")
    p.add_argument("--validate-only", action="store_true")

    p = command("create-partitions", create_partitions)
    p.add_argument("count", type=int, help="the topic's new total partition count")
    p.add_argument("--validate-only", action="store_true")

    p = command("describe", describe)
    p.add_argument("--broker", action="store_true", help="TOPIC is a broker resource's name")

    p = command("delete-records", delete_records)
    p.add_argument("partition", type=int)
    p.add_argument("offset", type=int, help="delete the records before it; -1: the high watermark")

    p = sub.add_parser("describe-cluster")
    p.add_argument("bootstrap")
    p.set_defaults(run=describe_cluster)

    args = parser.parse_args()
    args.run(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
