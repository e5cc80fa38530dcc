//! The admin APIs that change a topic once it exists, driven by the clients operators use,
//! against a real `fjord serve`:
//! - confluent-kafka's AdminClient (`tests/clients/python/admin.py`, librdkafka):
//!   IncrementalAlterConfigs (API 44; librdkafka sends v1), AlterConfigs (API 33, v2),
//!   CreatePartitions (API 37, v2) and DeleteRecords (API 21, v2). Each change is read back
//!   with DescribeConfigs, Metadata, ListOffsets, produce and fetch, and again after a
//!   restart; each refusal by its error code. Records deleted are checked in the partition
//!   directory too: the segments wholly below the new log start are gone.
//! - A `retention.ms` lowered live, which the broker's next retention checks apply.
//! - Kafka 4.4's own tools: `kafka-configs --alter` (IncrementalAlterConfigs),
//!   `kafka-topics --alter --partitions` (CreatePartitions v3) and `kafka-delete-records`
//!   (DeleteRecords v2), read back as they print it.
//! - On the wire, the cases no client sends (librdkafka refuses them before sending): the
//!   same resource twice in one IncrementalAlterConfigs, and DeleteRecords of an unknown
//!   topic or partition.
//!
//! Error codes are asserted by librdkafka's names for them (admin.py prints
//! `KafkaError.name()`), which are Kafka's except UNKNOWN_TOPIC_OR_PART.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::kafka::{describe_output, kafka_tool, kafka_tool_ok};
use crate::support::wire::{self, Conn, Decoder, Encoder};
use crate::support::{
    consume_all, create_topic, parse_acks, parse_messages, python, python_ok, segment_logs, tagged,
    value_index, wait_until, Message, TempDir, TestBroker,
};

/// Kafka's default `retention.ms` (7 days): what a topic without an override describes.
const RETENTION_MS_DEFAULT: &str = "604800000";
/// Kafka's default `max.message.bytes` (1 MiB + 12).
const MAX_MESSAGE_BYTES_DEFAULT: &str = "1048588";
/// Kafka's default `cleanup.policy`.
const CLEANUP_POLICY_DEFAULT: &str = "delete";
/// A config's source as confluent-kafka names it (`ConfigSource`): set on the topic...
const DYNAMIC: &str = "DYNAMIC_TOPIC_CONFIG";
/// ... or the built-in default.
const DEFAULT: &str = "DEFAULT_CONFIG";

/// admin.py's answer when the broker took the change.
const OK: &str = "ok";
const INVALID_CONFIG: &str = "INVALID_CONFIG";
const INVALID_PARTITIONS: &str = "INVALID_PARTITIONS";
/// librdkafka's (shortened) name for Kafka's UNKNOWN_TOPIC_OR_PARTITION, code 3.
const UNKNOWN_TOPIC: &str = "UNKNOWN_TOPIC_OR_PART";
/// A topic no test creates.
const MISSING_TOPIC: &str = "no-such-topic";

/// The topic's `max.message.bytes` once lowered: between the two message sizes below.
const LOWERED_MESSAGE_BYTES_MAX: usize = 2000;
/// A message whose batch the default limit takes and the lowered one refuses.
const BIG_MESSAGE_SIZE: usize = 10_000;
/// A message whose batch the lowered limit still takes.
const SMALL_MESSAGE_SIZE: usize = 500;
/// What a one-record batch adds to its value: the 61-byte batch header and the record's own
/// fields (a few varints, no key, no headers), well under this.
const BATCH_OVERHEAD_BYTES_MAX: usize = 100;
const _: () = assert!(SMALL_MESSAGE_SIZE + BATCH_OVERHEAD_BYTES_MAX < LOWERED_MESSAGE_BYTES_MAX);
const _: () = assert!(BIG_MESSAGE_SIZE > LOWERED_MESSAGE_BYTES_MAX);
/// Delivery timeout of the producer whose message is refused: a refusal comes at once, so
/// this only bounds a broker that neither takes nor refuses it.
const PRODUCE_TIMEOUT_MS: &str = "10000";
/// `retention.ms` raised to 14 days, to see it survive the restart beside the lowered limit.
const RAISED_RETENTION_MS: &str = "1209600000";

/// Partitions of the topic CreatePartitions grows, before and after; and the count a
/// validate-only request asks for (above both).
const PARTITIONS_CREATED: u32 = 1;
const PARTITIONS_GROWN: u32 = 3;
const PARTITIONS_VALIDATED: u32 = 5;
/// Records produced to the newest partition right after it is added.
const RECORDS_TO_NEW_PARTITION: u32 = 5;
/// Partitions of the topic that `kafka-topics --alter` grows, before and after.
const TOOL_PARTITIONS_CREATED: u32 = 2;
const TOOL_PARTITIONS_GROWN: u32 = 4;

/// Runs `admin.py COMMAND BOOTSTRAP TOPIC OPTIONS...`; returns the broker's answer (`ok`, or
/// librdkafka's name of the error code) and everything the helper printed.
fn admin(broker: &TestBroker, command: &str, topic: &str, options: &[&str]) -> (String, String) {
    let bootstrap = broker.bootstrap();
    let mut args = vec![command, bootstrap.as_str(), topic];
    args.extend_from_slice(options);
    let out = python_ok("admin.py", &args);
    let answer = {
        let oks = tagged(&out, "ok").len();
        let errors = tagged(&out, "error");
        match (oks, errors.as_slice()) {
            (1, []) => OK.to_string(),
            (0, [error]) if !error.is_empty() => error[0].to_string(),
            _ => panic!("admin.py {args:?}: not exactly one ok or error line:\n{out}"),
        }
    };
    (answer, out)
}

/// Asserts the answer of an `admin` run; `what` names the request.
fn expect(answer: (String, String), expected: &str, what: &str) {
    let (got, out) = answer;
    assert_eq!(got, expected, "{what}:\n{out}");
}

/// IncrementalAlterConfigs of `topic` with admin.py `options` (`--set k=v`, `--delete k`...).
fn incremental(broker: &TestBroker, topic: &str, options: &[&str]) -> (String, String) {
    admin(broker, "incremental", topic, options)
}

/// A topic's configs as confluent-kafka's DescribeConfigs reads them.
struct Described {
    /// name -> (value, source).
    configs: BTreeMap<String, (String, String)>,
    output: String,
}

impl Described {
    fn of(broker: &TestBroker, topic: &str) -> Described {
        let bootstrap = broker.bootstrap();
        let output = python_ok("admin.py", &["describe", &bootstrap, topic]);
        let mut configs = BTreeMap::new();
        for fields in tagged(&output, "config") {
            assert_eq!(fields.len(), 3, "bad config line {fields:?} in\n{output}");
            let described = (fields[1].to_string(), fields[2].to_string());
            let previous = configs.insert(fields[0].to_string(), described);
            assert!(previous.is_none(), "{} described twice:\n{output}", fields[0]);
        }
        assert!(!configs.is_empty(), "no configs described for {topic}:\n{output}");
        Described { configs, output }
    }

    /// Asserts `name` is described with `value`, from `source`.
    fn assert(&self, name: &str, value: &str, source: &str) {
        let got = self.configs.get(name).map(|(v, s)| (v.as_str(), s.as_str()));
        assert_eq!(got, Some((value, source)), "{name} as described:\n{}", self.output);
    }

    /// Asserts that every config but those `changed` is described as in `before`.
    fn assert_same_as(&self, before: &Described, changed: &[&str]) {
        let kept = |configs: &BTreeMap<String, (String, String)>| {
            configs
                .iter()
                .filter(|(name, _)| !changed.contains(&name.as_str()))
                .map(|(name, described)| (name.clone(), described.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            kept(&self.configs),
            kept(&before.configs),
            "configs other than {changed:?} changed\nbefore:\n{}\nafter:\n{}",
            before.output,
            self.output
        );
    }
}

#[test]
fn incremental_alter_configs_sets_deletes_appends_and_refuses_as_kafka_does() {
    let broker = TestBroker::start("admin-incremental");
    let topic = "tuned";
    create_topic(&broker, topic, 1, &[]);
    let initial = Described::of(&broker, topic);
    initial.assert("retention.ms", RETENTION_MS_DEFAULT, DEFAULT);
    initial.assert("max.message.bytes", MAX_MESSAGE_BYTES_DEFAULT, DEFAULT);
    initial.assert("cleanup.policy", CLEANUP_POLICY_DEFAULT, DEFAULT);

    // SET of two configs at once: both become the topic's own, nothing else moves.
    let set = ["--set", "retention.ms=3600000", "--set", "max.message.bytes=50000"];
    expect(incremental(&broker, topic, &set), OK, "SET retention.ms and max.message.bytes");
    let after_set = Described::of(&broker, topic);
    after_set.assert("retention.ms", "3600000", DYNAMIC);
    after_set.assert("max.message.bytes", "50000", DYNAMIC);
    after_set.assert_same_as(&initial, &["retention.ms", "max.message.bytes"]);

    // A SET of one config leaves the other override in place: that is "incremental".
    expect(incremental(&broker, topic, &["--set", "retention.ms=7200000"]), OK, "SET again");
    let after_second = Described::of(&broker, topic);
    after_second.assert("retention.ms", "7200000", DYNAMIC);
    after_second.assert_same_as(&after_set, &["retention.ms"]);

    // DELETE brings the default back; deleting a config the topic does not override is no
    // error (Kafka writes nothing for it).
    expect(incremental(&broker, topic, &["--delete", "retention.ms"]), OK, "DELETE retention.ms");
    let after_delete = Described::of(&broker, topic);
    after_delete.assert("retention.ms", RETENTION_MS_DEFAULT, DEFAULT);
    after_delete.assert_same_as(&after_second, &["retention.ms"]);
    expect(incremental(&broker, topic, &["--delete", "segment.ms"]), OK, "DELETE of no override");
    Described::of(&broker, topic).assert_same_as(&after_delete, &[]);

    // APPEND and SUBTRACT are for list configs only.
    for op in ["--append", "--subtract"] {
        let answer = incremental(&broker, topic, &[op, "retention.ms=1000"]);
        expect(answer, INVALID_CONFIG, &format!("{op} on retention.ms, not a list"));
    }
    // cleanup.policy is a list. APPEND of the value the default has makes it the topic's own
    // (Kafka appends to the default when the topic has no value); SUBTRACT of a value it
    // lacks changes nothing; APPEND of compact adds it, SUBTRACT takes it out again.
    let append = ["--append", "cleanup.policy=delete"];
    expect(incremental(&broker, topic, &append), OK, "APPEND delete to cleanup.policy");
    let appended = Described::of(&broker, topic);
    appended.assert("cleanup.policy", "delete", DYNAMIC);
    appended.assert_same_as(&after_delete, &["cleanup.policy"]);
    let subtract = ["--subtract", "cleanup.policy=compact"];
    expect(incremental(&broker, topic, &subtract), OK, "SUBTRACT compact from cleanup.policy");
    let append = ["--append", "cleanup.policy=compact"];
    expect(incremental(&broker, topic, &append), OK, "APPEND compact");
    Described::of(&broker, topic).assert("cleanup.policy", "delete,compact", DYNAMIC);
    expect(incremental(&broker, topic, &subtract), OK, "SUBTRACT compact again");
    Described::of(&broker, topic).assert_same_as(&appended, &[]);

    // Values Kafka refuses and names it does not know.
    let refused = [
        "retention.ms=abc",
        "segment.bytes=10",
        "no.such.config=1",
        "cleanup.policy=shred",
        "leader.replication.throttled.replicas=0:x",
    ];
    for config in refused {
        expect(incremental(&broker, topic, &["--set", config]), INVALID_CONFIG, config);
    }
    // One bad config refuses its whole resource: the good one beside it is not applied.
    let mixed = ["--set", "retention.ms=5000", "--set", "segment.bytes=10"];
    expect(incremental(&broker, topic, &mixed), INVALID_CONFIG, "a good and a bad SET");
    // validate_only checks as a real request does, and changes nothing.
    let validated = ["--set", "retention.ms=5000", "--validate-only"];
    expect(incremental(&broker, topic, &validated), OK, "validate_only SET");
    let validated = ["--set", "retention.ms=abc", "--validate-only"];
    expect(incremental(&broker, topic, &validated), INVALID_CONFIG, "validate_only bad SET");
    let validated = ["--delete", "cleanup.policy", "--validate-only"];
    expect(incremental(&broker, topic, &validated), OK, "validate_only DELETE");
    Described::of(&broker, topic).assert_same_as(&appended, &[]);

    // The count and jitter configs are the topic's own once set (the log's tests show what
    // they do).
    let honoured = ["--set", "flush.messages=10", "--set", "segment.jitter.ms=100"];
    expect(incremental(&broker, topic, &honoured), OK, "SET flush.messages, segment.jitter.ms");
    let tuned = Described::of(&broker, topic);
    tuned.assert("flush.messages", "10", DYNAMIC);
    tuned.assert("segment.jitter.ms", "100", DYNAMIC);
    tuned.assert_same_as(&appended, &["flush.messages", "segment.jitter.ms"]);

    let answer = incremental(&broker, MISSING_TOPIC, &["--set", "retention.ms=5000"]);
    expect(answer, UNKNOWN_TOPIC, "SET on a topic that does not exist");
}

#[test]
fn alter_configs_replaces_every_override_of_the_topic() {
    let broker = TestBroker::start("admin-alter");
    let topic = "replaced";
    create_topic(&broker, topic, 1, &["retention.ms=86400000", "max.message.bytes=50000"]);
    let created = Described::of(&broker, topic);
    created.assert("retention.ms", "86400000", DYNAMIC);
    created.assert("max.message.bytes", "50000", DYNAMIC);

    let replace = ["--config", "segment.ms=3600000", "--config", "max.message.bytes=60000"];
    expect(admin(&broker, "alter", topic, &replace), OK, "AlterConfigs of two configs");
    let replaced = Described::of(&broker, topic);
    replaced.assert("segment.ms", "3600000", DYNAMIC);
    replaced.assert("max.message.bytes", "60000", DYNAMIC);
    // Set before, not in the request: back to its default.
    replaced.assert("retention.ms", RETENTION_MS_DEFAULT, DEFAULT);
    replaced.assert_same_as(&created, &["segment.ms", "max.message.bytes", "retention.ms"]);

    // validate_only changes nothing; a refused resource keeps every override it had.
    let validated = ["--config", "retention.ms=1000", "--validate-only"];
    expect(admin(&broker, "alter", topic, &validated), OK, "validate_only AlterConfigs");
    let bad = ["--config", "retention.ms=abc"];
    expect(admin(&broker, "alter", topic, &bad), INVALID_CONFIG, "AlterConfigs retention.ms=abc");
    let shred = ["--config", "cleanup.policy=shred"];
    expect(admin(&broker, "alter", topic, &shred), INVALID_CONFIG, "AlterConfigs shred");
    Described::of(&broker, topic).assert_same_as(&replaced, &[]);

    let answer = admin(&broker, "alter", MISSING_TOPIC, &["--config", "retention.ms=1000"]);
    expect(answer, UNKNOWN_TOPIC, "AlterConfigs of a topic that does not exist");
}

/// Produces generated message `index` of `size` bytes with confluent-kafka; returns the
/// producer's output, an `ack` or an `err` line.
fn produce_one(broker: &TestBroker, topic: &str, index: u64, size: usize) -> String {
    let (bootstrap, index, size) = (broker.bootstrap(), index.to_string(), size.to_string());
    python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            "1",
            "--start",
            &index,
            "--size",
            &size,
            "--allow-errors",
            "--message-timeout-ms",
            PRODUCE_TIMEOUT_MS,
            &bootstrap,
            topic,
        ],
    )
}

fn assert_acked(out: &str, what: &str) {
    assert!(parse_acks(out).len() == 1 && tagged(out, "err").is_empty(), "{what}:\n{out}");
}

fn assert_too_large(out: &str, what: &str) {
    let errors = tagged(out, "err");
    let refused = errors.len() == 1
        && errors[0].get(1).is_some_and(|error| error.contains("MSG_SIZE_TOO_LARGE"));
    assert!(
        refused && parse_acks(out).is_empty(),
        "{what}: expected MSG_SIZE_TOO_LARGE (Kafka's MESSAGE_TOO_LARGE, 10):\n{out}"
    );
}

#[test]
fn lowered_max_message_bytes_refuses_the_next_big_batch_and_survives_a_restart() {
    let mut broker = TestBroker::start("admin-live");
    let topic = "limited";
    create_topic(&broker, topic, 1, &[]);
    assert_acked(&produce_one(&broker, topic, 0, BIG_MESSAGE_SIZE), "big message, default limit");

    let lowered = format!("max.message.bytes={LOWERED_MESSAGE_BYTES_MAX}");
    let raised = format!("retention.ms={RAISED_RETENTION_MS}");
    let set = ["--set", lowered.as_str(), "--set", raised.as_str()];
    expect(incremental(&broker, topic, &set), OK, "SET max.message.bytes and retention.ms");
    // The next produce meets the new limit: no restart, no reopening of the topic.
    let out = produce_one(&broker, topic, 1, BIG_MESSAGE_SIZE);
    assert_too_large(&out, "the same big message after the limit was lowered");
    assert_acked(&produce_one(&broker, topic, 2, SMALL_MESSAGE_SIZE), "small message, new limit");

    broker.restart();
    let described = Described::of(&broker, topic);
    described.assert("max.message.bytes", &LOWERED_MESSAGE_BYTES_MAX.to_string(), DYNAMIC);
    described.assert("retention.ms", RAISED_RETENTION_MS, DYNAMIC);
    let out = produce_one(&broker, topic, 3, BIG_MESSAGE_SIZE);
    assert_too_large(&out, "a big message after the restart");
    // Only what was acknowledged is stored.
    let stored: Vec<(u64, usize)> = consume_all(&broker, topic, &[])
        .iter()
        .map(|m| {
            let value = m.value.as_deref().expect("generated messages have a value");
            (value_index(value), value.len())
        })
        .collect();
    assert_eq!(stored, vec![(0, BIG_MESSAGE_SIZE), (2, SMALL_MESSAGE_SIZE)], "messages stored");
}

/// (partition, low, high watermark) of every partition confluent-kafka's metadata lists for
/// `topic`, and the helper's output.
fn watermarks(broker: &TestBroker, topic: &str) -> (Vec<(i32, i64, i64)>, String) {
    let bootstrap = broker.bootstrap();
    let out = python_ok("ck.py", &["watermarks", &bootstrap, topic]);
    let rows: Vec<(i32, i64, i64)> = tagged(&out, "watermarks")
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 3, "bad watermarks line {f:?} in\n{out}");
            let number = |field: &str| -> i64 {
                field.parse().unwrap_or_else(|_| panic!("not a number: {field:?} in\n{out}"))
            };
            (number(f[0]) as i32, number(f[1]), number(f[2]))
        })
        .collect();
    (rows, out)
}

/// What `watermarks` reads of a topic of `partitions` partitions, all empty but `filled`,
/// which holds `records`.
fn expected_watermarks(partitions: u32, filled: i32, records: u32) -> Vec<(i32, i64, i64)> {
    (0..partitions as i32)
        .map(|p| (p, 0, if p == filled { i64::from(records) } else { 0 }))
        .collect()
}

#[test]
fn create_partitions_grows_a_topic_whose_new_partitions_take_records_at_once() {
    let mut broker = TestBroker::start("admin-partitions");
    let topic = "grown";
    create_topic(&broker, topic, PARTITIONS_CREATED, &[]);
    let grown = PARTITIONS_GROWN.to_string();
    let newest = PARTITIONS_GROWN as i32 - 1;

    expect(admin(&broker, "create-partitions", topic, &[&grown]), OK, "CreatePartitions 1 -> 3");
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, expected_watermarks(PARTITIONS_GROWN, newest, 0), "after growing:\n{out}");

    // The newest partition takes records and serves them back at once.
    let (bootstrap, count, partition) =
        (broker.bootstrap(), RECORDS_TO_NEW_PARTITION.to_string(), newest.to_string());
    let out = python_ok(
        "ck.py",
        &["produce", "--count", &count, "--partition", &partition, &bootstrap, topic],
    );
    let mut acked: Vec<(i32, i64)> =
        parse_acks(&out).iter().map(|a| (a.partition, a.offset)).collect();
    acked.sort();
    let expected: Vec<(i32, i64)> =
        (0..i64::from(RECORDS_TO_NEW_PARTITION)).map(|offset| (newest, offset)).collect();
    assert_eq!(acked, expected, "acknowledged in partition {newest}:\n{out}");
    let read = |broker: &TestBroker| -> Vec<(i32, i64)> {
        consume_all(broker, topic, &[]).iter().map(|m| (m.partition, m.offset)).collect()
    };
    assert_eq!(read(&broker), expected, "fetched back from partition {newest}");

    // Not an increase: refused with Kafka's code (and, for the same count, its message).
    let (answer, out) = admin(&broker, "create-partitions", topic, &[&grown]);
    assert_eq!(answer, INVALID_PARTITIONS, "CreatePartitions 3 -> 3:\n{out}");
    let message = format!("Topic already has {PARTITIONS_GROWN} partition(s).");
    assert!(out.contains(&message), "Kafka's message {message:?} in\n{out}");
    let fewer = (PARTITIONS_GROWN - 1).to_string();
    let answer = admin(&broker, "create-partitions", topic, &[&fewer]);
    expect(answer, INVALID_PARTITIONS, "CreatePartitions 3 -> 2");
    let answer = admin(&broker, "create-partitions", MISSING_TOPIC, &[&grown]);
    expect(answer, UNKNOWN_TOPIC, "CreatePartitions of a topic that does not exist");
    // validate_only checks and adds nothing.
    let validated = PARTITIONS_VALIDATED.to_string();
    let answer = admin(&broker, "create-partitions", topic, &[&validated, "--validate-only"]);
    expect(answer, OK, "validate_only CreatePartitions 3 -> 5");
    let after = expected_watermarks(PARTITIONS_GROWN, newest, RECORDS_TO_NEW_PARTITION);
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, after, "after the refusals and validate_only:\n{out}");

    broker.restart();
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, after, "after the restart:\n{out}");
    assert_eq!(read(&broker), expected, "fetched back from partition {newest} after the restart");
}

/// IncrementalAlterConfigs (API 44) v0: the version without flexible fields, which the
/// wire helper's header v1 fits.
const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
/// ConfigResource type TOPIC and AlterConfigOp SET, as numbers on the wire.
const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const ERROR_NONE: i16 = 0;
/// Kafka's INVALID_TIMESTAMP.
const ERROR_INVALID_TIMESTAMP: i16 = 32;
const ERROR_INVALID_REQUEST: i16 = 42;

/// Sends one IncrementalAlterConfigs v0 that SETs, per (topic, name, value), one config of a
/// topic resource; returns (resource name, error code) of each answer, sorted.
fn incremental_v0(
    conn: &mut Conn,
    correlation_id: i32,
    sets: &[(&str, &str, &str)],
) -> Vec<(String, i16)> {
    let mut body = Encoder::new();
    body.i32(sets.len() as i32);
    for (topic, name, value) in sets {
        body.i8(RESOURCE_TOPIC).string(topic).i32(1).string(name).i8(OP_SET).string(value);
    }
    body.i8(0); // validate_only: false
    let response = conn.call(INCREMENTAL_ALTER_CONFIGS, 0, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle_time_ms = d.i32();
    let count = d.array_len();
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        let error = d.i16();
        let _message = d.string();
        assert_eq!(d.i8(), RESOURCE_TOPIC, "resource type in the response");
        answers.push((d.string().expect("a resource name"), error));
    }
    assert_eq!(d.remaining(), 0, "trailing bytes in the IncrementalAlterConfigs v0 response");
    answers.sort();
    answers
}

#[test]
fn incremental_alter_configs_refuses_a_resource_named_twice_and_applies_the_others() {
    let broker = TestBroker::start("admin-twice");
    for topic in ["twice", "once"] {
        create_topic(&broker, topic, 1, &[]);
    }
    let mut conn = Conn::connect(broker.addr());
    let sets = [
        ("twice", "retention.ms", "1000"),
        ("twice", "retention.ms", "2000"),
        ("once", "retention.ms", "3000"),
    ];
    let answers = incremental_v0(&mut conn, 1, &sets);
    // Kafka answers each resource of the request: both copies INVALID_REQUEST ("Each
    // resource must appear at most once."), the other one applied.
    assert_eq!(
        answers,
        vec![
            ("once".to_string(), ERROR_NONE),
            ("twice".to_string(), ERROR_INVALID_REQUEST),
            ("twice".to_string(), ERROR_INVALID_REQUEST),
        ],
        "answers to {sets:?}"
    );
    Described::of(&broker, "twice").assert("retention.ms", RETENTION_MS_DEFAULT, DEFAULT);
    Described::of(&broker, "once").assert("retention.ms", "3000", DYNAMIC);
}

/// The arguments of `kafka-configs --alter` of `topic` with `change` (`--add-config k=v,...`
/// or `--delete-config k`).
fn kafka_configs_alter<'a>(bootstrap: &'a str, topic: &'a str, change: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "kafka-configs",
        "--bootstrap-server",
        bootstrap,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        topic,
    ];
    args.extend_from_slice(change);
    args
}

/// The configs `kafka-configs --describe` lists for `topic` (its overrides, one
/// `  name=value sensitive=false synonyms={...}` line each under a header), and the output.
fn kafka_configs_describe(bootstrap: &str, topic: &str) -> (BTreeMap<String, String>, String) {
    let out = kafka_tool_ok(
        &[
            "kafka-configs",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            topic,
        ],
        None,
    );
    let header = format!("Dynamic configs for topic {topic} are:");
    assert!(out.lines().any(|l| l == header), "{header:?} in\n{out}");
    let configs: BTreeMap<String, String> = out
        .lines()
        .filter(|line| *line != header)
        .filter_map(|line| line.split_whitespace().next()?.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    (configs, out)
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// stdout and stderr of a tool run, together: Kafka's tools print a refusal on either.
fn said(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn kafka_configs_adds_and_deletes_topic_configs() {
    let broker = TestBroker::start("admin-kafka-configs");
    let b = broker.bootstrap();
    let b = b.as_str();
    let topic = "configured";
    create_topic(&broker, topic, 1, &[]);
    let completed = format!("Completed updating config for topic {topic}.");
    let (retention_ms, max_message_bytes) = ("123456", "50000");

    let added = format!("retention.ms={retention_ms},max.message.bytes={max_message_bytes}");
    let out = kafka_tool_ok(&kafka_configs_alter(b, topic, &["--add-config", &added]), None);
    assert!(out.contains(&completed), "kafka-configs --add-config {added}:\n{out}");
    let (configs, out) = kafka_configs_describe(b, topic);
    let expected =
        string_map(&[("max.message.bytes", max_message_bytes), ("retention.ms", retention_ms)]);
    assert_eq!(configs, expected, "kafka-configs --describe after --add-config:\n{out}");

    let out =
        kafka_tool_ok(&kafka_configs_alter(b, topic, &["--delete-config", "retention.ms"]), None);
    assert!(out.contains(&completed), "kafka-configs --delete-config retention.ms:\n{out}");
    let (configs, out) = kafka_configs_describe(b, topic);
    let expected = string_map(&[("max.message.bytes", max_message_bytes)]);
    assert_eq!(configs, expected, "kafka-configs --describe after --delete-config:\n{out}");

    // A value Kafka refuses: the tool fails with the exception INVALID_CONFIG maps to.
    let args = kafka_configs_alter(b, topic, &["--add-config", "cleanup.policy=shred"]);
    let refused = kafka_tool(&args);
    assert!(
        !refused.status.success() && said(&refused).contains("InvalidConfigurationException"),
        "{}",
        describe_output(&args, &refused)
    );
    let described = Described::of(&broker, topic);
    described.assert("cleanup.policy", CLEANUP_POLICY_DEFAULT, DEFAULT);
    described.assert("retention.ms", RETENTION_MS_DEFAULT, DEFAULT);
    described.assert("max.message.bytes", max_message_bytes, DYNAMIC);
}

/// The arguments of `kafka-topics --alter` of `topic` to `partitions` partitions.
fn kafka_topics_alter<'a>(bootstrap: &'a str, topic: &'a str, partitions: &'a str) -> [&'a str; 8] {
    [
        "kafka-topics",
        "--bootstrap-server",
        bootstrap,
        "--alter",
        "--topic",
        topic,
        "--partitions",
        partitions,
    ]
}

#[test]
fn kafka_topics_alter_adds_partitions() {
    let broker = TestBroker::start("admin-kafka-topics");
    let b = broker.bootstrap();
    let b = b.as_str();
    let topic = "widened";
    create_topic(&broker, topic, TOOL_PARTITIONS_CREATED, &[]);

    let grown = TOOL_PARTITIONS_GROWN.to_string();
    let out = kafka_tool_ok(&kafka_topics_alter(b, topic, &grown), None);
    assert!(!out.contains("Error"), "kafka-topics --alter --partitions {grown}:\n{out}");
    let described = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--describe", "--topic", topic],
        None,
    );
    assert!(
        described.contains(&format!("Topic: {topic}\tTopicId: "))
            && described.contains(&format!("\tPartitionCount: {TOOL_PARTITIONS_GROWN}\t")),
        "{described}"
    );
    for partition in 0..TOOL_PARTITIONS_GROWN {
        assert!(
            described.contains(&format!(
                "Topic: {topic}\tPartition: {partition}\tLeader: 0\tReplicas: 0\tIsr: 0"
            )),
            "partition {partition}:\n{described}"
        );
    }

    // Fewer partitions than it has: the tool fails with the exception of INVALID_PARTITIONS.
    let fewer = (TOOL_PARTITIONS_GROWN - 1).to_string();
    let args = kafka_topics_alter(b, topic, &fewer);
    let refused = kafka_tool(&args);
    assert!(
        !refused.status.success() && said(&refused).contains("InvalidPartitionsException"),
        "{}",
        describe_output(&args, &refused)
    );
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(
        rows,
        expected_watermarks(TOOL_PARTITIONS_GROWN, 0, 0),
        "partitions after the refused decrease:\n{out}"
    );
}

/// `segment.bytes` of the topics whose records are deleted: Kafka's minimum (1 MiB), so a
/// few MiB of records make several segments.
const SMALL_SEGMENT_BYTES: &str = "segment.bytes=1048576";
/// Value size of the records produced to fill segments, and how many go to each partition:
/// about 4 MB, four segments or so.
const FILLER_SIZE: usize = 1000;
const FILLER_RECORDS: i64 = 4000;
/// Segments a filled partition must have for the deletions to mean something: whole ones
/// below the log start, the one holding it, and the active one.
const FILLED_SEGMENTS_MIN: usize = 3;
/// The offset partition 0's records are deleted before: past the first two segments or so.
const DELETE_BEFORE: i64 = 2500;
const _: () = assert!(DELETE_BEFORE < FILLER_RECORDS);
/// An offset below the log start once it is `DELETE_BEFORE`.
const BELOW_LOG_START: i64 = 100;
/// DeleteRecords' offset for "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;
/// librdkafka's own code for a partition whose leader its metadata lookup does not find: it
/// answers an unknown topic or partition itself, without sending the DeleteRecords.
const NO_LEADER: &str = "_NOENT";
const OFFSET_OUT_OF_RANGE: &str = "OFFSET_OUT_OF_RANGE";

/// Produces `count` generated records of `size` bytes to `partition` of `topic`; returns
/// offset -> message index of each, asserting the offsets are `0..count` (an empty
/// partition, nothing lost).
fn produce_to(
    broker: &TestBroker,
    topic: &str,
    partition: i32,
    count: i64,
    size: usize,
) -> BTreeMap<i64, u64> {
    let (bootstrap, partition_arg) = (broker.bootstrap(), partition.to_string());
    let (count_arg, size_arg) = (count.to_string(), size.to_string());
    let args = [
        "produce",
        "--count",
        count_arg.as_str(),
        "--size",
        size_arg.as_str(),
        "--partition",
        partition_arg.as_str(),
        bootstrap.as_str(),
        topic,
    ];
    let out = python_ok("ck.py", &args);
    let acked: BTreeMap<i64, u64> = parse_acks(&out)
        .iter()
        .map(|a| {
            assert_eq!(a.partition, partition, "ack in another partition:\n{out}");
            (a.offset, a.index)
        })
        .collect();
    let offsets: Vec<i64> = acked.keys().copied().collect();
    assert_eq!(offsets, (0..count).collect::<Vec<_>>(), "offsets acknowledged:\n{out}");
    acked
}

/// The base offsets of a partition's segment files (`<base offset>.log`), in order.
fn segment_bases(broker: &TestBroker, topic: &str, partition: i32) -> Vec<i64> {
    let dir = broker.data_dir().join(format!("{topic}-{partition}"));
    segment_logs(&dir)
        .iter()
        .map(|log| {
            let stem = log.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            stem.parse().unwrap_or_else(|_| panic!("not a segment name: {}", log.display()))
        })
        .collect()
}

/// Runs `admin.py delete-records` of `partition` before `offset`: the new low watermark, or
/// librdkafka's name of the error; and everything the helper printed.
fn delete_records(
    broker: &TestBroker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (Result<i64, String>, String) {
    let (bootstrap, partition, offset) =
        (broker.bootstrap(), partition.to_string(), offset.to_string());
    let out = python_ok("admin.py", &["delete-records", &bootstrap, topic, &partition, &offset]);
    let (deleted, errors) = (tagged(&out, "deleted"), tagged(&out, "error"));
    let answer = match (deleted.as_slice(), errors.as_slice()) {
        ([low], []) if low.len() == 1 => {
            Ok(low[0].parse().unwrap_or_else(|_| panic!("not a low watermark: {low:?} in\n{out}")))
        }
        ([], [error]) if !error.is_empty() => Err(error[0].to_string()),
        _ => panic!("delete-records {partition} {offset}: not one deleted or error line:\n{out}"),
    };
    (answer, out)
}

/// Asserts the answer of a `delete_records` run; `what` names the request.
fn expect_deleted(answer: (Result<i64, String>, String), expected: Result<i64, &str>, what: &str) {
    let (got, out) = answer;
    assert_eq!(got.as_ref().copied().map_err(String::as_str), expected, "{what}:\n{out}");
}

/// The (offset, message index) of each record consumed from `partition`, in order.
fn consumed(messages: &[Message], partition: i32) -> Vec<(i64, u64)> {
    messages
        .iter()
        .filter(|m| m.partition == partition)
        .map(|m| {
            (m.offset, value_index(m.value.as_deref().expect("generated messages have a value")))
        })
        .collect()
}

/// What `consumed` reads of a partition whose records `acked` were produced, from offset
/// `from` on: each record once, in order.
fn acked_from(acked: &BTreeMap<i64, u64>, from: i64) -> Vec<(i64, u64)> {
    acked.range(from..).map(|(offset, index)| (*offset, *index)).collect()
}

const ERROR_UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The low watermark of a refused partition (Kafka's `INVALID_LOW_WATERMARK`).
const INVALID_LOW_WATERMARK: i64 = -1;

#[test]
fn delete_records_moves_the_log_start_and_deletes_the_segments_below_it() {
    let mut broker = TestBroker::start("admin-delete-records");
    let topic = "trimmed";
    create_topic(&broker, topic, 2, &[SMALL_SEGMENT_BYTES]);
    let acked: Vec<BTreeMap<i64, u64>> =
        (0..2).map(|p| produce_to(&broker, topic, p, FILLER_RECORDS, FILLER_SIZE)).collect();
    let bases: Vec<Vec<i64>> = (0..2).map(|p| segment_bases(&broker, topic, p)).collect();
    for (partition, bases) in bases.iter().enumerate() {
        assert!(bases.len() >= FILLED_SEGMENTS_MIN, "segments of partition {partition}: {bases:?}");
    }
    // Partition 0 keeps the segment holding DELETE_BEFORE and those after it.
    let holding = *bases[0].iter().rfind(|base| **base <= DELETE_BEFORE).expect("a first segment");
    let kept: Vec<i64> = bases[0].iter().copied().filter(|base| *base >= holding).collect();
    assert!(kept.len() < bases[0].len(), "no segment wholly below {DELETE_BEFORE}: {bases:?}");

    let answer = delete_records(&broker, topic, 0, DELETE_BEFORE);
    expect_deleted(answer, Ok(DELETE_BEFORE), "DeleteRecords of partition 0");
    let answer = delete_records(&broker, topic, 1, HIGH_WATERMARK);
    expect_deleted(
        answer,
        Ok(FILLER_RECORDS),
        "DeleteRecords of partition 1 to its high watermark",
    );
    let trimmed = vec![(0, DELETE_BEFORE, FILLER_RECORDS), (1, FILLER_RECORDS, FILLER_RECORDS)];
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, trimmed, "watermarks after DeleteRecords:\n{out}");
    // Only the active segment is left of partition 1: an empty log that starts at its end.
    let active_1 = *bases[1].last().expect("an active segment");
    let expected_segments = vec![kept.clone(), vec![active_1]];
    let segments = |broker: &TestBroker| -> Vec<Vec<i64>> {
        (0..2).map(|p| segment_bases(broker, topic, p)).collect()
    };
    assert_eq!(segments(&broker), expected_segments, "segment files left, were {bases:?}");

    // Below the log start: nothing to do, the answer is the log start (as Kafka answers).
    let answer = delete_records(&broker, topic, 0, BELOW_LOG_START);
    expect_deleted(answer, Ok(DELETE_BEFORE), "DeleteRecords below the log start");
    let answer = delete_records(&broker, topic, 0, FILLER_RECORDS + 1);
    expect_deleted(answer, Err(OFFSET_OUT_OF_RANGE), "DeleteRecords above the high watermark");
    let answer = delete_records(&broker, MISSING_TOPIC, 0, 1);
    expect_deleted(answer, Err(NO_LEADER), "DeleteRecords of a topic that does not exist");
    let answer = delete_records(&broker, topic, 2, 1);
    expect_deleted(answer, Err(NO_LEADER), "DeleteRecords of a partition that does not exist");
    // What the broker itself answers them (DeleteRecords v0), which neither client lets it
    // do: Kafka's tool retries the metadata lookup until its 60 s timeout.
    let mut conn = Conn::connect(broker.addr());
    let refused = (ERROR_UNKNOWN_TOPIC_OR_PARTITION, INVALID_LOW_WATERMARK);
    assert_eq!(wire::delete_records(&mut conn, 1, MISSING_TOPIC, 0, 1), refused, "unknown topic");
    assert_eq!(wire::delete_records(&mut conn, 2, topic, 2, 1), refused, "unknown partition");
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, trimmed, "watermarks after the refusals:\n{out}");

    // From the beginning, partition 0 reads from DELETE_BEFORE on, every record once.
    let expected_records = acked_from(&acked[0], DELETE_BEFORE);
    let messages = consume_all(&broker, topic, &[]);
    assert_eq!(consumed(&messages, 0), expected_records, "partition 0 from the beginning");
    assert_eq!(consumed(&messages, 1), vec![], "partition 1 from the beginning");
    // A fetch below the log start is refused with OFFSET_OUT_OF_RANGE (librdkafka logs it,
    // then resets to the earliest offset, as auto.offset.reset asks).
    let bootstrap = broker.bootstrap();
    let output = python("ck.py", &["consume", "--offset", "0", &bootstrap, topic]);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "consume from offset 0:\n{stdout}\n{stderr}");
    let reset = format!("{topic} [0]: offset reset (at offset 0");
    assert!(
        stderr.lines().any(|l| l.contains(&reset) && l.contains("Offset out of range")),
        "no {reset:?} for Offset out of range in librdkafka's log:\n{stderr}"
    );
    let messages = parse_messages(&stdout);
    assert_eq!(consumed(&messages, 0), expected_records, "partition 0 from offset 0");

    broker.restart();
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, trimmed, "watermarks after the restart:\n{out}");
    assert_eq!(segments(&broker), expected_segments, "segment files after the restart");
    let messages = consume_all(&broker, topic, &[]);
    assert_eq!(consumed(&messages, 0), expected_records, "partition 0 after the restart");
}

/// Records produced to each partition of the topic `kafka-delete-records` trims, and the
/// offset its partition 0 is trimmed to.
const TOOL_RECORDS: i64 = 100;
const TOOL_DELETE_BEFORE: i64 = 40;
/// What `kafka-delete-records` prints of a partition above whose high watermark it was asked
/// to delete (after `error: `).
const TOOL_OUT_OF_RANGE: &str = "org.apache.kafka.common.errors.OffsetOutOfRangeException: \
     The requested offset is not within the range of offsets maintained by the server.";

/// What `kafka-delete-records` prints of each partition, in no fixed order, after
/// `Records delete operation completed:`: `partition: TOPIC-P<TAB>low_watermark: N`, or
/// `partition: TOPIC-P<TAB>error: EXCEPTION: MESSAGE` (and it exits 0 either way); as
/// "TOPIC-P" -> what follows the tab.
fn parse_delete_records(output: &str) -> BTreeMap<String, String> {
    let completed = "Records delete operation completed:";
    assert!(output.lines().any(|l| l == completed), "{completed:?} in\n{output}");
    output
        .lines()
        .filter_map(|line| line.strip_prefix("partition: ")?.split_once('\t'))
        .map(|(partition, answer)| (partition.to_string(), answer.to_string()))
        .collect()
}

/// Offsets of every partition of `topic` that `kafka-get-offsets --time TIME` prints
/// (`TOPIC:PARTITION:OFFSET` lines; -1 latest, -2 earliest), in partition order.
fn kafka_get_offsets(bootstrap: &str, topic: &str, time: &str) -> (Vec<i64>, String) {
    let out = kafka_tool_ok(
        &["kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, "--time", time],
        None,
    );
    let prefix = format!("{topic}:");
    let offsets: BTreeMap<i32, i64> = out
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix)?.split_once(':'))
        .map(|(partition, offset)| {
            let parsed = (partition.parse(), offset.parse());
            let (Ok(partition), Ok(offset)) = parsed else {
                panic!("bad line {partition}:{offset} in\n{out}");
            };
            (partition, offset)
        })
        .collect();
    let partitions: Vec<i32> = offsets.keys().copied().collect();
    assert_eq!(partitions, (0..partitions.len() as i32).collect::<Vec<_>>(), "{out}");
    (offsets.into_values().collect(), out)
}

#[test]
fn kafka_delete_records_moves_the_log_start_as_it_prints() {
    let broker = TestBroker::start("admin-kafka-delete-records");
    let b = broker.bootstrap();
    let b = b.as_str();
    let topic = "cut";
    create_topic(&broker, topic, 3, &[]);
    for partition in 0..3 {
        produce_to(&broker, topic, partition, TOOL_RECORDS, 0);
    }

    // One run for three partitions: before an offset, to the high watermark (-1), and past
    // the high watermark.
    let dir = TempDir::new("delete-records-json");
    let json = dir.path().join("offsets.json");
    let wanted = [(0, TOOL_DELETE_BEFORE), (1, HIGH_WATERMARK), (2, TOOL_RECORDS + 1)];
    let partitions: Vec<String> = wanted
        .iter()
        .map(|(p, offset)| format!(r#"{{"topic":"{topic}","partition":{p},"offset":{offset}}}"#))
        .collect();
    let text = format!(r#"{{"partitions":[{}],"version":1}}"#, partitions.join(","));
    std::fs::write(&json, &text).expect("write the offsets json");
    let json = json.to_str().expect("a UTF-8 path");
    let args = ["kafka-delete-records", "--bootstrap-server", b, "--offset-json-file", json];
    let out = kafka_tool_ok(&args, None);
    let expected: BTreeMap<String, String> = [
        (0, format!("low_watermark: {TOOL_DELETE_BEFORE}")),
        (1, format!("low_watermark: {TOOL_RECORDS}")),
        (2, format!("error: {TOOL_OUT_OF_RANGE}")),
    ]
    .into_iter()
    .map(|(p, answer)| (format!("{topic}-{p}"), answer))
    .collect();
    assert_eq!(parse_delete_records(&out), expected, "kafka-delete-records of {text}:\n{out}");

    let (earliest, out) = kafka_get_offsets(b, topic, "-2");
    assert_eq!(earliest, vec![TOOL_DELETE_BEFORE, TOOL_RECORDS, 0], "earliest:\n{out}");
    let (latest, out) = kafka_get_offsets(b, topic, "-1");
    assert_eq!(latest, vec![TOOL_RECORDS; 3], "latest:\n{out}");
}

/// How often the retention test's broker applies retention (`--retention-check-interval-ms`).
const RETENTION_CHECK_INTERVAL_MS: u64 = 200;
/// Retention checks the broker is given to show it deletes nothing under the default
/// retention (7 days).
const RETENTION_CHECKS_IDLE: u64 = 5;
/// `retention.ms` once lowered: the records are older than this a second after their produce.
const LOWERED_RETENTION_MS: u64 = 1000;
/// How long the lowered retention may take to delete them: its own second and a few checks,
/// with room for a busy machine.
const RETENTION_WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_lowered_retention_deletes_old_segments_without_a_restart() {
    let interval = RETENTION_CHECK_INTERVAL_MS.to_string();
    let broker =
        TestBroker::start_with("admin-retention", &["--retention-check-interval-ms", &interval]);
    let topic = "aged";
    create_topic(&broker, topic, 1, &[SMALL_SEGMENT_BYTES]);
    let acked = produce_to(&broker, topic, 0, FILLER_RECORDS, FILLER_SIZE);
    let bases = segment_bases(&broker, topic, 0);
    assert!(bases.len() >= FILLED_SEGMENTS_MIN, "segments: {bases:?}");
    let active = *bases.last().expect("an active segment");

    // Under the default retention, a few checks delete nothing.
    std::thread::sleep(Duration::from_millis(RETENTION_CHECKS_IDLE * RETENTION_CHECK_INTERVAL_MS));
    assert_eq!(segment_bases(&broker, topic, 0), bases, "segments under the default retention");
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(
        rows,
        vec![(0, 0, FILLER_RECORDS)],
        "watermarks under the default retention:\n{out}"
    );

    let lowered = format!("retention.ms={LOWERED_RETENTION_MS}");
    expect(incremental(&broker, topic, &["--set", &lowered]), OK, "SET retention.ms");
    // Every closed segment goes; the active one stays (Fjord never deletes it, see
    // storage/src/log/retention.rs), and the log starts where it does.
    let left = wait_until("the closed segments deleted", RETENTION_WAIT, || {
        let left = segment_bases(&broker, topic, 0);
        (left.len() == 1).then_some(left)
    });
    assert_eq!(left, vec![active], "segment left, were {bases:?}");
    let (rows, out) = watermarks(&broker, topic);
    assert_eq!(rows, vec![(0, active, FILLER_RECORDS)], "watermarks after retention:\n{out}");
    let messages = consume_all(&broker, topic, &[]);
    assert_eq!(consumed(&messages, 0), acked_from(&acked, active), "records after retention");
}

/// A config's source as confluent-kafka names it: this broker's dynamic value...
const DYNAMIC_BROKER: &str = "DYNAMIC_BROKER_CONFIG";
/// ... or the cluster-wide dynamic default.
const DYNAMIC_DEFAULT: &str = "DYNAMIC_DEFAULT_BROKER_CONFIG";
/// The broker-wide `message.max.bytes` once set per broker: above the big message.
const BROKER_MESSAGE_BYTES_MAX: usize = 20_000;
const _: () = assert!(BIG_MESSAGE_SIZE + BATCH_OVERHEAD_BYTES_MAX < BROKER_MESSAGE_BYTES_MAX);

/// `kafka-configs --alter --entity-type brokers` of `entity` (`--entity-default` or
/// `--entity-name ID`) with `change`; returns the tool's run.
fn kafka_configs_alter_brokers<'a>(
    bootstrap: &'a str,
    entity: &[&'a str],
    change: &[&'a str],
) -> (Vec<&'a str>, std::process::Output) {
    let mut args = vec!["kafka-configs", "--bootstrap-server", bootstrap, "--alter"];
    args.extend_from_slice(&["--entity-type", "brokers"]);
    args.extend_from_slice(entity);
    args.extend_from_slice(change);
    let output = kafka_tool(&args);
    (args, output)
}

/// The line `kafka-configs --describe --entity-type brokers` prints for `name` under
/// `entity`, whole (`  name=value sensitive=false synonyms={...}`).
fn kafka_configs_broker_line(bootstrap: &str, entity: &[&str], name: &str) -> (String, String) {
    let mut args = vec!["kafka-configs", "--bootstrap-server", bootstrap, "--describe"];
    args.extend_from_slice(&["--entity-type", "brokers"]);
    args.extend_from_slice(entity);
    let out = kafka_tool_ok(&args, None);
    let prefix = format!("  {name}=");
    let line = out.lines().find(|l| l.starts_with(&prefix)).unwrap_or_default().to_string();
    (line, out)
}

#[test]
fn kafka_configs_sets_broker_defaults_per_broker_and_cluster_wide_live_and_durably() {
    let mut broker = TestBroker::start("admin-broker-configs");
    let (plain, own) = ("plain", "own");
    create_topic(&broker, plain, 1, &[]);
    let own_limit = format!("max.message.bytes={MAX_MESSAGE_BYTES_DEFAULT}");
    create_topic(&broker, own, 1, &[&own_limit]);
    let default = ["--entity-default"];
    let broker_0 = ["--entity-name", "0"];
    let alter = |broker: &TestBroker, entity: &[&str], change: &[&str], expected: &str| {
        let bootstrap = broker.bootstrap();
        let (args, output) = kafka_configs_alter_brokers(&bootstrap, entity, change);
        assert!(
            output.status.success() && said(&output).contains(expected),
            "{}",
            describe_output(&args, &output)
        );
    };

    // A cluster-wide default applies at once to every topic without its own value.
    let lowered = format!("message.max.bytes={LOWERED_MESSAGE_BYTES_MAX}");
    let cluster_done = "Completed updating default config for brokers in the cluster.";
    alter(&broker, &default, &["--add-config", &lowered], cluster_done);
    assert_too_large(&produce_one(&broker, plain, 0, BIG_MESSAGE_SIZE), "cluster-wide limit");
    assert_acked(&produce_one(&broker, own, 1, BIG_MESSAGE_SIZE), "the topic's own limit");
    let limit = LOWERED_MESSAGE_BYTES_MAX.to_string();
    Described::of(&broker, plain).assert("max.message.bytes", &limit, DYNAMIC_DEFAULT);
    Described::of(&broker, own).assert("max.message.bytes", MAX_MESSAGE_BYTES_DEFAULT, DYNAMIC);

    // This broker's own value wins over the cluster-wide one.
    let raised = format!("message.max.bytes={BROKER_MESSAGE_BYTES_MAX}");
    alter(
        &broker,
        &broker_0,
        &["--add-config", &raised],
        "Completed updating config for broker 0.",
    );
    assert_acked(&produce_one(&broker, plain, 2, BIG_MESSAGE_SIZE), "per-broker limit");
    let (line, out) =
        kafka_configs_broker_line(&broker.bootstrap(), &broker_0, "message.max.bytes");
    let expected = format!(
        "  message.max.bytes={BROKER_MESSAGE_BYTES_MAX} sensitive=false \
         synonyms={{DYNAMIC_BROKER_CONFIG:message.max.bytes={BROKER_MESSAGE_BYTES_MAX}, \
         DYNAMIC_DEFAULT_BROKER_CONFIG:message.max.bytes={LOWERED_MESSAGE_BYTES_MAX}, \
         DEFAULT_CONFIG:message.max.bytes={MAX_MESSAGE_BYTES_DEFAULT}}}"
    );
    assert_eq!(line, expected, "broker 0's message.max.bytes, with Kafka's synonyms:\n{out}");

    // Both survive a restart; deleting the broker's value leaves the cluster-wide one.
    broker.restart();
    let raised_limit = BROKER_MESSAGE_BYTES_MAX.to_string();
    Described::of(&broker, plain).assert("max.message.bytes", &raised_limit, DYNAMIC_BROKER);
    assert_acked(&produce_one(&broker, plain, 3, BIG_MESSAGE_SIZE), "after the restart");
    let deleted = ["--delete-config", "message.max.bytes"];
    alter(&broker, &broker_0, &deleted, "Completed updating config for broker 0.");
    assert_too_large(&produce_one(&broker, plain, 4, BIG_MESSAGE_SIZE), "cluster-wide again");
    let (line, out) = kafka_configs_broker_line(&broker.bootstrap(), &default, "message.max.bytes");
    assert_eq!(
        line,
        format!(
            "  message.max.bytes={LOWERED_MESSAGE_BYTES_MAX} sensitive=false \
             synonyms={{DYNAMIC_DEFAULT_BROKER_CONFIG:message.max.bytes={LOWERED_MESSAGE_BYTES_MAX}}}"
        ),
        "the cluster-wide defaults:\n{out}"
    );

    // Refusals, in Kafka's words: a config that cannot change while brokers run, a bad value.
    for (change, message) in [
        ("num.partitions=3", "Cannot update these configs dynamically: [num.partitions]"),
        ("log.retention.ms=abc", "Invalid value abc for configuration log.retention.ms"),
    ] {
        let bootstrap = broker.bootstrap();
        let (args, output) =
            kafka_configs_alter_brokers(&bootstrap, &default, &["--add-config", change]);
        let said = said(&output);
        assert!(
            !output.status.success()
                && said.contains("InvalidRequestException")
                && said.contains(message),
            "{}",
            describe_output(&args, &output)
        );
    }
    Described::of(&broker, plain).assert("max.message.bytes", &limit, DYNAMIC_DEFAULT);

    // confluent-kafka's AdminClient changes and describes a broker's own configs too.
    let bootstrap = broker.bootstrap();
    let confluent = |options: &[&str]| {
        let mut args = vec!["incremental", bootstrap.as_str(), "0", "--broker"];
        args.extend_from_slice(options);
        let output = python_ok("admin.py", &args);
        let answer = output.lines().next().unwrap_or_default().to_string();
        (answer, output)
    };
    let retention = "log.retention.ms";
    let validated = confluent(&["--set", "log.retention.ms=7200000", "--validate-only"]);
    assert_eq!(validated.0, "ok", "validate_only SET on broker 0:\n{}", validated.1);
    let refused = confluent(&["--set", "log.retention.ms=abc"]);
    assert!(refused.0.starts_with("error\tINVALID_REQUEST\tInvalid value abc"), "{}", refused.1);
    let broker_described = || {
        let output = python_ok("admin.py", &["describe", &bootstrap, "0", "--broker"]);
        let prefix = format!("config\t{retention}\t");
        output.lines().find(|l| l.starts_with(&prefix)).unwrap_or_default().to_string()
    };
    let static_line = format!("config\t{retention}\t{RETENTION_MS_DEFAULT}\tDEFAULT_CONFIG");
    assert_eq!(broker_described(), static_line, "validate_only and a bad value change nothing");
    let set = confluent(&["--set", "log.retention.ms=7200000"]);
    assert_eq!(set.0, "ok", "SET on broker 0:\n{}", set.1);
    let dynamic_line = format!("config\t{retention}\t7200000\t{DYNAMIC_BROKER}");
    assert_eq!(broker_described(), dynamic_line);
    Described::of(&broker, plain).assert("retention.ms", "7200000", DYNAMIC_BROKER);

    let stored: Vec<u64> = consume_all(&broker, plain, &[])
        .iter()
        .map(|m| value_index(m.value.as_deref().expect("generated messages have a value")))
        .collect();
    assert_eq!(stored, vec![2, 3], "only the acknowledged messages are stored");
}

/// The producer's timestamp of the records the LogAppendTime test writes: long ago.
const PRODUCER_TIMESTAMP_MS: i64 = 1_500_000_000_000;

/// Produces one record with `PRODUCER_TIMESTAMP_MS` (Produce v9, acks=1) through Fjord's
/// codecs; returns the partition's error code and `log_append_time_ms`.
fn produce_stamped(conn: &mut Conn, correlation_id: i32, topic: &str, value: &[u8]) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    let records = wire::record_batch(&[(None, value)], PRODUCER_TIMESTAMP_MS, wire::NO_PRODUCER);
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(bytes::Bytes::from(records));
    let mut data = TopicProduceData::default();
    data.name = TopicName(topic.to_string().into());
    data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![data];
    let response: ProduceResponse =
        wire::codec_call(conn, ApiKey::Produce, 9, correlation_id, &request);
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.log_append_time_ms)
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("a clock after 1970").as_millis()).expect("ms fit in i64")
}

/// `message.timestamp.type=LogAppendTime`, set while the topic serves: the records produced
/// after it carry the broker's clock (the answer says which time) and are read as
/// LogAppendTime by Kafka's console consumer; those before keep the producer's CreateTime;
/// and the producer's timestamp window no longer applies, as in Kafka.
#[test]
fn log_append_time_set_live_stamps_the_next_records_with_the_brokers_clock() {
    let broker = TestBroker::start("admin-append-time");
    let b = broker.bootstrap();
    let topic = "stamped";
    create_topic(&broker, topic, 1, &[]);
    let mut conn = Conn::connect(broker.addr());
    // Kafka 4.4 refuses a CreateTime record this old (message.timestamp.before.max.ms is
    // unbounded, but set here to show LogAppendTime ignores it).
    let window = ["--add-config", "message.timestamp.before.max.ms=86400000"];
    kafka_tool_ok(&kafka_configs_alter(&b, topic, &window), None);
    assert_eq!(produce_stamped(&mut conn, 1, topic, b"refused"), (ERROR_INVALID_TIMESTAMP, -1));
    let delete = ["--delete-config", "message.timestamp.before.max.ms"];
    kafka_tool_ok(&kafka_configs_alter(&b, topic, &delete), None);
    assert_eq!(produce_stamped(&mut conn, 2, topic, b"created"), (ERROR_NONE, -1));

    let set = [
        "--add-config",
        "message.timestamp.type=LogAppendTime,message.timestamp.before.max.ms=86400000",
    ];
    kafka_tool_ok(&kafka_configs_alter(&b, topic, &set), None);
    let before = now_ms();
    let (error, stamped) = produce_stamped(&mut conn, 3, topic, b"appended");
    let after = now_ms();
    assert_eq!(error, ERROR_NONE, "an old record on a LogAppendTime topic is taken");
    assert!(
        (before..=after).contains(&stamped),
        "log_append_time_ms {stamped} in {before}..={after}"
    );

    let out = kafka_tool_ok(
        &[
            "kafka-console-consumer",
            "--bootstrap-server",
            &b,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "30000",
            "--formatter-property",
            "print.timestamp=true",
        ],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("CreateTime:{PRODUCER_TIMESTAMP_MS}\tcreated").as_str(),
            format!("LogAppendTime:{stamped}\tappended").as_str(),
        ],
        "kafka-console-consumer --formatter-property print.timestamp=true"
    );
    Described::of(&broker, topic).assert("message.timestamp.type", "LogAppendTime", DYNAMIC);
}

/// Records each recompression case produces, and their value size (compressible text).
const RECOMPRESSED_RECORDS: u64 = 200;
const RECOMPRESSED_VALUE_BYTES: &str = "300";

/// The codec (attribute bits 0-2) of every batch stored in `topic`-0's segment files.
fn stored_codecs(broker: &TestBroker, topic: &str) -> Vec<u8> {
    let dir = broker.data_dir().join(format!("{topic}-0"));
    let mut codecs = Vec::new();
    for log in segment_logs(&dir) {
        let bytes = std::fs::read(&log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
        let mut at = 0;
        // Batches end where the file's zero-filled tail (if any) begins.
        while at + 61 <= bytes.len() {
            let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            if length <= 0 {
                break;
            }
            let attributes = i16::from_be_bytes(bytes[at + 21..at + 23].try_into().unwrap());
            codecs.push((attributes & 0x07) as u8);
            at += 12 + length as usize;
        }
    }
    codecs
}

/// `compression.type` naming a codec: what producers send in another codec (or none) is
/// stored recompressed with the topic's codec, what they send in it is kept, and both
/// librdkafka (confluent-kafka) and the Java consumer (kafka-console-consumer) read every
/// record back; `producer` keeps the producer's codec.
#[test]
fn compression_type_recompresses_producer_batches_and_every_client_reads_them() {
    let broker = TestBroker::start("admin-recompress");
    let b = broker.bootstrap();
    let count = RECOMPRESSED_RECORDS.to_string();
    for (topic_codec, producer_codec, stored) in [
        ("zstd", "none", 4),
        ("lz4", "gzip", 3),
        ("gzip", "snappy", 1),
        ("snappy", "lz4", 2),
        ("uncompressed", "zstd", 0),
        ("zstd", "zstd", 4),
        ("producer", "gzip", 1),
    ] {
        let topic = format!("packed-{topic_codec}-from-{producer_codec}");
        create_topic(&broker, &topic, 1, &[&format!("compression.type={topic_codec}")]);
        let args = [
            "produce",
            "--count",
            &count,
            "--size",
            RECOMPRESSED_VALUE_BYTES,
            "--compression",
            producer_codec,
            &b,
            &topic,
        ];
        let out = python_ok("ck.py", &args);
        assert_eq!(parse_acks(&out).len() as u64, RECOMPRESSED_RECORDS, "{topic}:\n{out}");
        let codecs = stored_codecs(&broker, &topic);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == stored),
            "{topic}: stored codecs {codecs:?}, expected {stored} for every batch"
        );
        let read: Vec<u64> = consume_all(&broker, &topic, &[])
            .iter()
            .map(|m| value_index(m.value.as_deref().expect("generated messages have a value")))
            .collect();
        assert_eq!(read, (0..RECOMPRESSED_RECORDS).collect::<Vec<_>>(), "{topic}, librdkafka");
        let java = kafka_tool_ok(
            &[
                "kafka-console-consumer",
                "--bootstrap-server",
                &b,
                "--topic",
                &topic,
                "--from-beginning",
                "--max-messages",
                &count,
                "--timeout-ms",
                "30000",
            ],
            None,
        );
        let read: Vec<u64> = java.lines().map(|line| value_index(line.as_bytes())).collect();
        assert_eq!(read, (0..RECOMPRESSED_RECORDS).collect::<Vec<_>>(), "{topic}, Java");
    }
}
