"""Idempotent, keyed, sequenced producer (confluent-kafka) for tests/replication.rs.

Usage: replication_producer.py BOOTSTRAP TOPIC --acks-file FILE --stop-file FILE [options]

Sends until --stop-file exists (or --max-s passes), cycling over --keys keys. Message n of
key `k<j>` has key `k<j>` and value `k<j>:<n>:` padded with dots to --size bytes, so every
key's values carry a sequence number 0, 1, 2, ... in send order. With enable.idempotence and
acks=all, librdkafka keeps each key's messages in order and retries through leader changes.

Every delivery report is appended to --acks-file the moment it arrives (one flushed line
each, so the file is a faithful record even if this process is killed):

    ack  <partition> <offset> <key> <seq>     acknowledged by the broker
    err  <key> <seq> <error>                  failed (never acknowledged)

At the end, stdout gets one `summary <sent> <acked> <failed> <fatal> <system-errors>` line,
where fatal is `-` or the fatal error librdkafka raised and system-errors counts the spurious
SystemErrors confluent-kafka raised from poll() (see `poll` below). Exits non-zero only for usage or setup errors: the
Rust side judges the outcome from the files.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from confluent_kafka import Producer  # noqa: E402

import common  # noqa: E402

# Pause between sends: bounds the rate (about 1000 messages a second at most), so a test
# of ~20 s leaves some ten thousand messages to check, not millions.
SEND_PAUSE_S = 0.001
# Messages librdkafka may hold unacknowledged before this script waits for reports.
QUEUE_MESSAGES_MAX = 20000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--acks-file", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--keys", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--max-s", type=int, default=60, help="stop sending after this long even without the stop file")
    parser.add_argument("--message-timeout-ms", type=int, default=60000)
    parser.add_argument("--flush-timeout-s", type=int, default=70)
    args = parser.parse_args()

    acks = open(args.acks_file, "a", buffering=1)
    state = {"acked": 0, "failed": 0, "fatal": None, "system_errors": 0}

    def on_error(error):
        sys.stderr.write("%.3f client error: %s (fatal=%s)\n" % (time.time(), error, error.fatal()))
        sys.stderr.flush()
        if error.fatal():
            state["fatal"] = str(error).replace("\t", " ").replace(" ", "_")

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": args.message_timeout_ms,
            "retry.backoff.ms": 100,
            "queue.buffering.max.messages": QUEUE_MESSAGES_MAX,
            "topic.metadata.refresh.interval.ms": 1000,
            "error_cb": on_error,
        }
    )

    def report(key, seq):
        def on_delivery(error, message):
            if error is not None:
                state["failed"] += 1
                acks.write("err\t%s\t%d\t%s\n" % (key, seq, str(error).replace("\t", " ")))
            else:
                state["acked"] += 1
                acks.write("ack\t%d\t%d\t%s\t%d\n" % (message.partition(), message.offset(), key, seq))
            acks.flush()

        return on_delivery

    def poll(timeout):
        # confluent-kafka 2.16.1 now and then raises `SystemError: _PyErr_SetObject:
        # exception <class 'str'> is not a BaseException subclass` from poll() while brokers
        # are being killed, though none of these callbacks raised (seen in about 1 run in 20
        # of the failover test under CPU load). It is the client's own state that is off,
        # not the messages': poll again, and count it in the summary.
        try:
            producer.poll(timeout)
        except SystemError as error:
            state["system_errors"] += 1
            sys.stderr.write("%.3f poll raised SystemError: %s\n" % (time.time(), error))

    seqs = [0] * args.keys
    sent = 0
    deadline = time.time() + args.max_s
    while not os.path.exists(args.stop_file) and time.time() < deadline and state["fatal"] is None:
        j = sent % args.keys
        key = "k%d" % j
        seq = seqs[j]
        head = "%s:%d:" % (key, seq)
        value = (head + "." * max(0, args.size - len(head))).encode()
        while True:
            try:
                producer.produce(args.topic, key=key.encode(), value=value, on_delivery=report(key, seq))
                break
            except BufferError:
                poll(0.1)
        seqs[j] += 1
        sent += 1
        poll(0)
        time.sleep(SEND_PAUSE_S)
    flush_deadline = time.time() + args.flush_timeout_s
    while len(producer) > 0 and time.time() < flush_deadline:
        poll(0.1)
    remaining = len(producer)
    if remaining:
        sys.stderr.write("%d messages still undelivered after %ds\n" % (remaining, args.flush_timeout_s))
    acks.close()
    common.emit("summary", sent, state["acked"], state["failed"], state["fatal"] or "-", state["system_errors"])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
