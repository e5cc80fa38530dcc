"""Commits and group deletion through confluent-kafka (librdkafka), for the
`__consumer_offsets` compaction test in tests/compaction.rs.

Usage:
    offsets_log.py commit BOOTSTRAP GROUP TOPIC FIRST LAST
        commits offsets FIRST..=LAST of TOPIC partition 0 for GROUP, one synchronous commit
        each (a standalone group: no subscription, generation -1, as Kafka's tools commit)
    offsets_log.py delete BOOTSTRAP GROUP
        deletes GROUP (DeleteGroups), which leaves tombstones in `__consumer_offsets`

Prints `committed <LAST>` or `deleted <GROUP>`; exits non-zero with the reason otherwise.
"""

import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from common import emit, fail


def commit(bootstrap, group, topic, first, last):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        for offset in range(first, last + 1):
            answer = consumer.commit(offsets=[TopicPartition(topic, 0, offset)],
                                     asynchronous=False)
            if answer[0].error is not None:
                fail("commit of %d: %s" % (offset, answer[0].error))
    finally:
        consumer.close()
    emit("committed", last)


def delete(bootstrap, group):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        future.result(30)
    emit("deleted", group)


def main():
    mode = sys.argv[1]
    if mode == "commit":
        commit(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "delete":
        delete(sys.argv[2], sys.argv[3])
    else:
        fail("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
