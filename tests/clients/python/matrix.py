"""The matrix scenario of tests/clients/README.md with one Python client library.

Usage: matrix.py CLIENT BOOTSTRAP TOPIC GROUP, CLIENT one of

    confluent      confluent-kafka (librdkafka): AdminClient, Producer, Consumer
    kafka-python   KafkaAdminClient, KafkaProducer, KafkaConsumer (2.x and 3.x APIs)
    aiokafka       AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer

whichever version the interpreter's venv holds (tests/clients/python/setup.sh). The last
stdout line is the report; diagnostics go to stderr.

The two members of step 4 run at once: a thread each for the blocking libraries, a task
each for aiokafka. They read until the group has settled: all 300 records read, both
members own partitions, and each member's position on each partition it owns is that
partition's end (so the commits that follow cover everything). Each then commits its
positions synchronously; once both have committed, both close. A member position is the
library's own (position()), so a rebalance that moves partitions is accounted for.

A failed library call stops the program with a non-zero exit, and so do records not
acknowledged within ACK_S; a group that does not settle within GROUP_S also exits non-zero,
after the report of what it saw.
"""

import asyncio
import json
import logging
import os
import sys
import threading
import time

FIRST_RECORDS = 300
RESUMED_RECORDS = 50
KEYS = 10
PARTITIONS = 3
ADMIN_PARTITIONS = 2
# Longest step 4 may take to read everything and settle the group.
GROUP_S = 60
# Longest the fresh member of step 5 reads.
RESUME_S = 15
# Longest a producer may take to have every record of a step acknowledged.
ACK_S = 30
# How long one poll of a member waits, in seconds.
POLL_S = 0.1
# Members' heartbeat: how soon one notices a rebalance (the libraries' 3 s is slow).
HEARTBEAT_MS = 500
SESSION_MS = 10000


def log(message):
    sys.stderr.write("matrix: %s\n" % message)
    sys.stderr.flush()


class Failure(Exception):
    """Something the scenario asked for failed: the program exits non-zero."""


def record(i):
    key = "key-%d" % (i % KEYS)
    return key.encode(), ("%s:%d" % (key, i)).encode()


def index_of(key, value):
    """The `i` of a record the scenario produced; Failure for anything else."""
    try:
        text_key = key.decode()
        head, number = value.decode().rsplit(":", 1)
        i = int(number)
    except (AttributeError, UnicodeDecodeError, ValueError) as error:
        raise Failure("record not of the scenario: key %r value %r (%s)" % (key, value, error))
    if head != text_key or text_key != "key-%d" % (i % KEYS) or not 0 <= i < FIRST_RECORDS + RESUMED_RECORDS:
        raise Failure("record not of the scenario: key %r value %r" % (key, value))
    return i


class Records:
    """Records read, deduplicated by (partition, offset), shared by the members' threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_position = {}

    def add(self, partition, offset, key, value):
        i = index_of(key, value)
        with self.lock:
            known = self.by_position.setdefault((partition, offset), i)
        if known != i:
            raise Failure("partition %d offset %d read as record %d and as record %d" % (partition, offset, known, i))

    def count(self):
        with self.lock:
            return len(self.by_position)

    def snapshot(self):
        with self.lock:
            return dict(self.by_position)


def per_key_order(by_position):
    """Each key's records are in one partition, with `i` increasing with the offset."""
    partitions = {}
    for (partition, offset), i in by_position.items():
        partitions.setdefault(i % KEYS, {}).setdefault(partition, []).append((offset, i))
    ok = True
    for key, seen in sorted(partitions.items()):
        if len(seen) != 1:
            log("key-%d is in partitions %s" % (key, sorted(seen)))
            ok = False
            continue
        (partition, pairs), = seen.items()
        indexes = [i for _, i in sorted(pairs)]
        if indexes != sorted(indexes):
            log("key-%d in partition %d out of order: %s" % (key, partition, indexes))
            ok = False
    return ok


def split_ok(owned):
    """Two members owning disjoint, non-empty partition sets that cover every partition."""
    if len(owned) != 2 or not all(owned):
        return False
    a, b = (set(o) for o in owned)
    return not (a & b) and a | b == set(range(PARTITIONS))


def ends_of(acks):
    """Each partition's end offset after the acknowledged records `acks` ({i: (p, o)})."""
    ends = {p: 0 for p in range(PARTITIONS)}
    for partition, offset in acks.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def settled(positions, ends):
    """Every member is at the end of every partition it owns (a position below 0 means
    nothing read yet, which is the end of an empty partition)."""
    for owned in positions:
        for partition, position in owned.items():
            end = ends.get(partition, 0)
            if position != end and not (end == 0 and position < 0):
                return False
    return True


def offsets_match(by_position, acks):
    """Every record read is where its acknowledgement said it was written."""
    ok = True
    for (partition, offset), i in sorted(by_position.items()):
        if acks.get(i) != (partition, offset):
            log("record %d read at %d/%d, acknowledged at %r" % (i, partition, offset, acks.get(i)))
            ok = False
    return ok


def resumed_count(read, first):
    """Step 5's report: the new records the fresh member read, when it read none of the
    first ones (0 otherwise)."""
    old = sorted(i for i in read.values() if i < first)
    new = {i for i in read.values() if i >= first}
    if old:
        log("the fresh member read %d records of the first %d (from %d)" % (len(old), first, old[0]))
        return 0
    return len(new)


class Report:
    def __init__(self, client):
        self.fields = {
            "client": client,
            "listed": False,
            "described": 0,
            "admin": [],
            "produced": 0,
            "consumed": 0,
            "per_key_order": False,
            "split": False,
            "resumed": 0,
        }

    def admin(self, api):
        log("admin call %s done" % api)
        self.fields["admin"].append(api)

    def __setitem__(self, name, value):
        self.fields[name] = value

    def __getitem__(self, name):
        return self.fields[name]

    def print(self):
        sys.stdout.write(json.dumps(self.fields) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# Step 4 with blocking libraries: one thread per member.


class Member(threading.Thread):
    """One group member polling in its own thread. Subclasses give the library calls:
    `poll()` -> [(partition, offset, key, value)], `positions()` -> {partition: position}
    of what it owns, `commit(positions)`, `close()`."""

    def __init__(self, name, records, stop, barrier):
        super().__init__(name=name, daemon=True)
        self.records = records
        self.stop = stop
        self.barrier = barrier
        self.lock = threading.Lock()
        self.owned = {}
        self.final = None
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                for partition, offset, key, value in self.poll():
                    self.records.add(partition, offset, key, value)
                owned = self.positions()
                with self.lock:
                    self.owned = owned
            final = self.positions()
            self.commit(final)
            self.final = final
            self.barrier.wait(timeout=30)
            self.close()
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            self.error = error
            self.stop.set()
            self.barrier.abort()

    def current(self):
        with self.lock:
            return dict(self.owned)


def run_group(members, records, stop, ends):
    """Starts `members`, waits until the group has settled (or GROUP_S passed, a failure),
    lets them commit and close, and returns their final positions."""
    for member in members:
        member.start()
    deadline = time.time() + GROUP_S
    timed_out = False
    while not stop.is_set():
        positions = [m.current() for m in members]
        if records.count() >= FIRST_RECORDS and split_ok(positions) and settled(positions, ends):
            break
        if time.time() > deadline:
            log("group did not settle in %d s: %d records, positions %r, ends %r" % (GROUP_S, records.count(), positions, ends))
            timed_out = True
            break
        time.sleep(0.05)
    stop.set()
    for member in members:
        member.join(60)
    for member in members:
        if member.error is not None:
            raise Failure("member %s: %r" % (member.name, member.error))
        if member.is_alive():
            raise Failure("member %s did not finish" % member.name)
    return [m.final for m in members], timed_out


def finish(report, records, acks, finals, read, first):
    by_position = records.snapshot()
    report["consumed"] = len(by_position)
    report["split"] = split_ok(finals)
    all_read = dict(by_position)
    all_read.update(read)
    report["per_key_order"] = per_key_order(all_read)
    report["offsets_match"] = offsets_match(all_read, acks)
    report["resumed"] = resumed_count(read, first)
    report["owned"] = [sorted(f) for f in finals]


# ---------------------------------------------------------------------------------------
# confluent-kafka


def run_confluent(bootstrap, topic, group):
    import importlib.metadata

    import confluent_kafka
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    # version() is a tuple before 2.14, a string after: the package's metadata is the same in all.
    library = "confluent-kafka %s (librdkafka %s)" % (importlib.metadata.version("confluent-kafka"), confluent_kafka.libversion()[0])
    report = Report(library)

    def on_error(error):
        log("client error: %s" % error)

    common = {"bootstrap.servers": bootstrap, "error_cb": on_error}
    admin = AdminClient(dict(common))

    def result(futures, what):
        done = {}
        for name, future in futures.items():
            try:
                done[name] = future.result(timeout=20)
            except KafkaException as error:
                raise Failure("%s(%s) failed: %s" % (what, name, error))
        return done

    # 1. All topics, then TOPIC alone.
    metadata = admin.list_topics(timeout=15)
    listed = metadata.topics.get(topic)
    report["listed"] = listed is not None and listed.error is None and len(listed.partitions) == PARTITIONS
    log("all-topics listing: %s" % {name: len(t.partitions) for name, t in metadata.topics.items()})
    report.admin("Metadata")
    if hasattr(admin, "describe_topics"):
        from confluent_kafka import TopicCollection

        (description,) = result(admin.describe_topics(TopicCollection([topic]), request_timeout=15), "describe_topics").values()
        report["described"] = len(description.partitions)
    else:
        alone = admin.list_topics(topic=topic, timeout=15).topics.get(topic)
        if alone is None or alone.error is not None:
            raise Failure("list_topics(%s): %r" % (topic, alone and alone.error))
        report["described"] = len(alone.partitions)

    # 2. Admin calls.
    extra = topic + ".admin"
    result(admin.create_topics([NewTopic(extra, num_partitions=ADMIN_PARTITIONS, replication_factor=1)], request_timeout=15), "create_topics")
    report.admin("CreateTopics")
    (configs,) = result(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, extra)], request_timeout=15), "describe_configs").values()
    if not configs:
        raise Failure("describe_configs(%s) returned no configs" % extra)
    log("%s has %d configs, cleanup.policy=%s" % (extra, len(configs), configs.get("cleanup.policy") and configs["cleanup.policy"].value))
    report.admin("DescribeConfigs")
    result(admin.delete_topics([extra], request_timeout=15), "delete_topics")
    report.admin("DeleteTopics")
    if hasattr(admin, "list_consumer_groups"):
        groups = admin.list_consumer_groups(request_timeout=15).result(timeout=20)
        if groups.errors:
            raise Failure("list_consumer_groups errors: %s" % groups.errors)
        report.admin("ListGroups")
    if hasattr(admin, "describe_consumer_groups"):
        (described,) = result(admin.describe_consumer_groups([group], request_timeout=15), "describe_consumer_groups").values()
        log("group %s before step 4: %s" % (group, described.state))
        report.admin("DescribeGroups")
    if hasattr(admin, "list_offsets"):
        from confluent_kafka.admin import OffsetSpec

        wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
        offsets = result(admin.list_offsets(wanted, request_timeout=15), "list_offsets")
        log("end offsets before step 3: %s" % sorted((tp.partition, o.offset) for tp, o in offsets.items()))
        report.admin("ListOffsets")
    if hasattr(admin, "list_consumer_group_offsets"):
        from confluent_kafka import ConsumerGroupTopicPartitions

        result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=15), "list_consumer_group_offsets")
        report.admin("OffsetFetch")

    # 3. 300 keyed records, idempotent, acks=all.
    producer = Producer(dict(common, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
    acks = {}
    failures = []

    def produce(first, count):
        def delivered(i):
            def report_delivery(error, message):
                if error is not None:
                    failures.append((i, error))
                else:
                    acks[i] = (message.partition(), message.offset())

            return report_delivery

        for i in range(first, first + count):
            key, value = record(i)
            producer.produce(topic, key=key, value=value, on_delivery=delivered(i))
            producer.poll(0)
        left = producer.flush(ACK_S)
        if left or failures:
            raise Failure("%d records unacknowledged after %d s, failures %s" % (left, ACK_S, failures[:5]))

    produce(0, FIRST_RECORDS)
    report["produced"] = len(acks)
    ends = ends_of(acks)
    log("step 3: end offsets %s" % ends)

    # 4. A group of two.
    def consumer():
        return Consumer(
            dict(
                common,
                **{
                    "group.id": group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "heartbeat.interval.ms": HEARTBEAT_MS,
                    "session.timeout.ms": SESSION_MS,
                },
            )
        )

    class CkMember(Member):
        def __init__(self, *args):
            super().__init__(*args)
            self.c = consumer()
            self.c.subscribe([topic])

        def poll(self):
            message = self.c.poll(POLL_S)
            if message is None:
                return []
            if message.error():
                raise Failure("consumer error: %s" % message.error())
            return [(message.partition(), message.offset(), message.key(), message.value())]

        def positions(self):
            assignment = self.c.assignment()
            if not assignment:
                return {}
            return {tp.partition: tp.offset for tp in self.c.position(assignment)}

        def commit(self, positions):
            offsets = [TopicPartition(topic, p, o) for p, o in sorted(positions.items()) if o >= 0]
            if not offsets:
                return
            for tp in self.c.commit(offsets=offsets, asynchronous=False):
                if tp.error is not None:
                    raise Failure("commit of partition %d failed: %s" % (tp.partition, tp.error))
            log("%s committed %s" % (self.name, [(tp.partition, tp.offset) for tp in offsets]))

        def close(self):
            self.c.close()

    records = Records()
    stop = threading.Event()
    barrier = threading.Barrier(2)
    finals, timed_out = run_group([CkMember("member-%d" % n, records, stop, barrier) for n in (1, 2)], records, stop, ends)

    # 5. 50 more, then a fresh member.
    produce(FIRST_RECORDS, RESUMED_RECORDS)
    fresh = consumer()
    fresh.subscribe([topic])
    read = {}
    deadline = time.time() + RESUME_S
    while len(read) < RESUMED_RECORDS and time.time() < deadline:
        message = fresh.poll(POLL_S)
        if message is None:
            continue
        if message.error():
            raise Failure("fresh member: consumer error: %s" % message.error())
        read[(message.partition(), message.offset())] = index_of(message.key(), message.value())
    fresh.close()
    finish(report, records, acks, finals, read, FIRST_RECORDS)
    return report, timed_out


# ---------------------------------------------------------------------------------------
# kafka-python


def run_kafka_python(bootstrap, topic, group):
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    version = kafka.__version__
    major = int(version.split(".")[0])
    report = Report("kafka-python %s" % version)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)

    def check_errors(what, response):
        """kafka-python 2.x hands back raw responses: their error codes are ours to check."""
        for name in ("topic_errors", "topic_error_codes"):
            for entry in getattr(response, name, None) or []:
                topic_name, code = entry[0], entry[1]
                if code != 0:
                    raise Failure("%s: %s error code %d (%r)" % (what, topic_name, code, entry))

    # 1. All topics, then TOPIC alone.
    names = admin.list_topics()
    # A topic's name is under "topic" in 2.x, under "name" in 3.x.
    everything = {t.get("topic", t.get("name")): t for t in admin.describe_topics()}
    log("all-topics listing: %s" % {name: len(t["partitions"]) for name, t in everything.items()})
    listed = everything.get(topic)
    report["listed"] = topic in names and listed is not None and listed["error_code"] == 0 and len(listed["partitions"]) == PARTITIONS
    report.admin("Metadata")
    alone = [t for t in admin.describe_topics([topic]) if t.get("topic", t.get("name")) == topic]
    if len(alone) != 1 or alone[0]["error_code"] != 0:
        raise Failure("describe_topics([%s]): %r" % (topic, alone))
    report["described"] = len(alone[0]["partitions"])

    # 2. Admin calls.
    extra = topic + ".admin"
    if major >= 3:
        admin.create_topics({extra: {"num_partitions": ADMIN_PARTITIONS, "replication_factor": 1}}, timeout_ms=15000)
    else:
        check_errors("create_topics", admin.create_topics([NewTopic(extra, ADMIN_PARTITIONS, 1)], timeout_ms=15000))
    report.admin("CreateTopics")
    if major >= 3:
        # 3.x returns only the modified configs unless asked for all.
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, extra)], config_filter="all")
        found = {str(k).lower(): v for k, v in configs.items()}.get("topic", {}).get(extra)
        if not found:
            raise Failure("describe_configs(%s): %r" % (extra, configs))
        log("%s has %d configs" % (extra, len(found)))
    else:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, extra)])
        resources = [r for response in configs for r in response.resources]
        if len(resources) != 1 or resources[0][0] != 0 or not resources[0][4]:
            raise Failure("describe_configs(%s): %r" % (extra, resources))
        log("%s has %d configs" % (extra, len(resources[0][4])))
    report.admin("DescribeConfigs")
    if major >= 3:
        admin.delete_topics([extra], timeout_ms=15000)
    else:
        check_errors("delete_topics", admin.delete_topics([extra], timeout_ms=15000))
    report.admin("DeleteTopics")
    if major >= 3:
        admin.list_groups()
        report.admin("ListGroups")
        described = admin.describe_groups([group])
        log("group %s before step 4: %r" % (group, described))
        report.admin("DescribeGroups")
        from kafka import OffsetSpec

        offsets = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST for p in range(PARTITIONS)})
        log("end offsets before step 3: %s" % sorted((tp.partition, o.offset) for tp, o in offsets.items()))
        report.admin("ListOffsets")
        admin.list_group_offsets({group: None})
        report.admin("OffsetFetch")
    else:
        admin.list_consumer_groups()
        report.admin("ListGroups")
        described = admin.describe_consumer_groups([group])
        log("group %s before step 4: %r" % (group, described))
        report.admin("DescribeGroups")
        admin.list_consumer_group_offsets(group)
        report.admin("OffsetFetch")
    admin.close()

    # 3. 300 keyed records, idempotent where the version has it, acks=all.
    config = {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5}
    if "enable_idempotence" in KafkaProducer.DEFAULT_CONFIG:
        config["enable_idempotence"] = True
    producer = KafkaProducer(**config)
    acks = {}

    def produce(first, count):
        futures = []
        for i in range(first, first + count):
            key, value = record(i)
            futures.append((i, producer.send(topic, key=key, value=value)))
        producer.flush(timeout=ACK_S)
        for i, future in futures:
            try:
                metadata = future.get(timeout=ACK_S)
            except Exception as error:  # noqa: BLE001 - any failed send fails the step
                raise Failure("record %d not acknowledged: %r" % (i, error))
            acks[i] = (metadata.partition, metadata.offset)

    produce(0, FIRST_RECORDS)
    report["produced"] = len(acks)
    ends = ends_of(acks)
    log("step 3: end offsets %s" % ends)

    # 4. A group of two.
    def consumer():
        c = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_MS,
        )
        c.subscribe([topic])
        return c

    class KpMember(Member):
        def __init__(self, *args):
            super().__init__(*args)
            self.c = consumer()

        def poll(self):
            batches = self.c.poll(timeout_ms=int(POLL_S * 1000))
            return [(m.partition, m.offset, m.key, m.value) for messages in batches.values() for m in messages]

        def positions(self):
            return {tp.partition: self.c.position(tp) for tp in self.c.assignment()}

        def commit(self, positions):
            # commit() without offsets commits the consumed position of every partition owned.
            self.c.commit()
            log("%s committed %s" % (self.name, sorted(positions.items())))

        def close(self):
            self.c.close()

    records = Records()
    stop = threading.Event()
    barrier = threading.Barrier(2)
    finals, timed_out = run_group([KpMember("member-%d" % n, records, stop, barrier) for n in (1, 2)], records, stop, ends)

    # 5. 50 more, then a fresh member.
    produce(FIRST_RECORDS, RESUMED_RECORDS)
    fresh = consumer()
    read = {}
    deadline = time.time() + RESUME_S
    while len(read) < RESUMED_RECORDS and time.time() < deadline:
        for messages in fresh.poll(timeout_ms=int(POLL_S * 1000)).values():
            for m in messages:
                read[(m.partition, m.offset)] = index_of(m.key, m.value)
    fresh.close()
    producer.close(timeout=10)
    finish(report, records, acks, finals, read, FIRST_RECORDS)
    return report, timed_out


# ---------------------------------------------------------------------------------------
# aiokafka


def run_aiokafka(bootstrap, topic, group):
    return asyncio.run(aiokafka_scenario(bootstrap, topic, group))


async def aiokafka_scenario(bootstrap, topic, group):
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    report = Report("aiokafka %s" % aiokafka.__version__)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()

    def check_errors(what, response):
        for name in ("topic_errors", "topic_error_codes"):
            for entry in getattr(response, name, None) or []:
                topic_name, code = entry[0], entry[1]
                if code != 0:
                    raise Failure("%s: %s error code %d (%r)" % (what, topic_name, code, entry))

    # 1. All topics, then TOPIC alone.
    names = await admin.list_topics()
    everything = {t["topic"]: t for t in await admin.describe_topics()}
    log("all-topics listing: %s" % {name: len(t["partitions"]) for name, t in everything.items()})
    listed = everything.get(topic)
    report["listed"] = topic in names and listed is not None and listed["error_code"] == 0 and len(listed["partitions"]) == PARTITIONS
    report.admin("Metadata")
    alone = [t for t in await admin.describe_topics([topic]) if t["topic"] == topic]
    if len(alone) != 1 or alone[0]["error_code"] != 0:
        raise Failure("describe_topics([%s]): %r" % (topic, alone))
    report["described"] = len(alone[0]["partitions"])

    # 2. Admin calls.
    extra = topic + ".admin"
    check_errors("create_topics", await admin.create_topics([NewTopic(extra, ADMIN_PARTITIONS, 1)], timeout_ms=15000))
    report.admin("CreateTopics")
    configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, extra)])
    resources = [r for response in configs for r in response.resources]
    if len(resources) != 1 or resources[0][0] != 0 or not resources[0][4]:
        raise Failure("describe_configs(%s): %r" % (extra, resources))
    log("%s has %d configs" % (extra, len(resources[0][4])))
    report.admin("DescribeConfigs")
    check_errors("delete_topics", await admin.delete_topics([extra], timeout_ms=15000))
    report.admin("DeleteTopics")
    await admin.list_consumer_groups()
    report.admin("ListGroups")
    described = await admin.describe_consumer_groups([group])
    log("group %s before step 4: %r" % (group, described))
    report.admin("DescribeGroups")
    await admin.list_consumer_group_offsets(group)
    report.admin("OffsetFetch")
    await admin.close()

    # 3. 300 keyed records, idempotent, acks=all.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    acks = {}

    async def produce(first, count):
        pending = []
        for i in range(first, first + count):
            key, value = record(i)
            pending.append((i, await producer.send(topic, key=key, value=value)))
        for i, future in pending:
            try:
                metadata = await asyncio.wait_for(future, ACK_S)
            except Exception as error:  # noqa: BLE001 - any failed send fails the step
                raise Failure("record %d not acknowledged: %r" % (i, error))
            acks[i] = (metadata.partition, metadata.offset)

    await produce(0, FIRST_RECORDS)
    report["produced"] = len(acks)
    ends = ends_of(acks)
    log("step 3: end offsets %s" % ends)

    # 4. A group of two, one task each.
    def consumer():
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_MS,
        )

    records = Records()
    stop = asyncio.Event()
    owned = [{}, {}]
    finals = [None, None]
    committed = [asyncio.Event(), asyncio.Event()]

    async def member(n):
        c = consumer()
        await c.start()
        try:
            while not stop.is_set():
                batches = await c.getmany(timeout_ms=int(POLL_S * 1000))
                for messages in batches.values():
                    for m in messages:
                        records.add(m.partition, m.offset, m.key, m.value)
                owned[n] = {tp.partition: await c.position(tp) for tp in c.assignment()}
            final = {tp.partition: await c.position(tp) for tp in c.assignment()}
            # commit() without offsets commits the consumed position of every partition owned.
            await c.commit()
            log("member-%d committed %s" % (n + 1, sorted(final.items())))
            finals[n] = final
            committed[n].set()
            await asyncio.wait_for(committed[1 - n].wait(), 30)
        finally:
            stop.set()
            await c.stop()

    async def watch():
        deadline = time.time() + GROUP_S
        while not stop.is_set():
            if records.count() >= FIRST_RECORDS and split_ok(owned) and settled(owned, ends):
                return False
            if time.time() > deadline:
                log("group did not settle in %d s: %d records, positions %r, ends %r" % (GROUP_S, records.count(), owned, ends))
                return True
            await asyncio.sleep(0.05)
        return False

    async def watch_then_stop():
        try:
            return await watch()
        finally:
            stop.set()

    timed_out, _, _ = await asyncio.gather(watch_then_stop(), member(0), member(1))

    # 5. 50 more, then a fresh member.
    await produce(FIRST_RECORDS, RESUMED_RECORDS)
    await producer.stop()
    fresh = consumer()
    await fresh.start()
    read = {}
    deadline = time.time() + RESUME_S
    try:
        while len(read) < RESUMED_RECORDS and time.time() < deadline:
            for messages in (await fresh.getmany(timeout_ms=int(POLL_S * 1000))).values():
                for m in messages:
                    read[(m.partition, m.offset)] = index_of(m.key, m.value)
    finally:
        await fresh.stop()
    finish(report, records, acks, finals, read, FIRST_RECORDS)
    return report, timed_out


CLIENTS = {"confluent": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in CLIENTS:
        sys.stderr.write("usage: matrix.py %s BOOTSTRAP TOPIC GROUP\n" % "|".join(CLIENTS))
        sys.exit(2)
    client, bootstrap, topic, group = sys.argv[1:]
    logging.basicConfig(level=logging.DEBUG if os.environ.get("MATRIX_DEBUG") else logging.WARNING, stream=sys.stderr)
    started = time.time()
    try:
        report, timed_out = CLIENTS[client](bootstrap, topic, group)
    except Failure as error:
        log("failed after %.1f s: %s" % (time.time() - started, error))
        sys.exit(1)
    log("done in %.1f s" % (time.time() - started))
    report.print()
    if timed_out:
        sys.exit(1)


if __name__ == "__main__":
    main()
