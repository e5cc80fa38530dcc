//! The admin APIs that change a topic once it exists, driven by the clients operators use,
//! against a real `fjord serve`:
//! - confluent-kafka's AdminClient (`tests/clients/python/admin.py`, librdkafka):
//!   IncrementalAlterConfigs (API 44; librdkafka sends v1), AlterConfigs (API 33, v2) and
//!   CreatePartitions (API 37, v2). Each change is read back with DescribeConfigs, Metadata,
//!   produce and fetch, and again after a restart; each refusal by its error code.
//! - Kafka 4.4's own tools: `kafka-configs --alter` (IncrementalAlterConfigs) and
//!   `kafka-topics --alter --partitions` (CreatePartitions v3), read back as they print it.
//! - On the wire, the one case no client sends (librdkafka refuses it before sending): the
//!   same resource twice in one IncrementalAlterConfigs.
//!
//! Error codes are asserted by librdkafka's names for them (admin.py prints
//! `KafkaError.name()`), which are Kafka's except UNKNOWN_TOPIC_OR_PART.

use std::collections::BTreeMap;

use crate::support::kafka::{describe_output, kafka_tool, kafka_tool_ok};
use crate::support::wire::{Conn, Decoder, Encoder};
use crate::support::{
    consume_all, create_topic, parse_acks, python_ok, tagged, value_index, TestBroker,
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
    // lacks changes nothing; APPEND of compact is refused, as any compact is.
    let append = ["--append", "cleanup.policy=delete"];
    expect(incremental(&broker, topic, &append), OK, "APPEND delete to cleanup.policy");
    let appended = Described::of(&broker, topic);
    appended.assert("cleanup.policy", "delete", DYNAMIC);
    appended.assert_same_as(&after_delete, &["cleanup.policy"]);
    let subtract = ["--subtract", "cleanup.policy=compact"];
    expect(incremental(&broker, topic, &subtract), OK, "SUBTRACT compact from cleanup.policy");
    let append = ["--append", "cleanup.policy=compact"];
    expect(incremental(&broker, topic, &append), INVALID_CONFIG, "APPEND compact");
    Described::of(&broker, topic).assert_same_as(&appended, &[]);

    // Values Kafka refuses, names it does not know, and what Fjord does not do.
    let refused = [
        "retention.ms=abc",
        "segment.bytes=10",
        "no.such.config=1",
        "cleanup.policy=compact",
        "message.timestamp.type=LogAppendTime",
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
    let compact = ["--config", "cleanup.policy=compact"];
    expect(admin(&broker, "alter", topic, &compact), INVALID_CONFIG, "AlterConfigs compact");
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

    // A value Fjord refuses: the tool fails with the exception INVALID_CONFIG maps to.
    let args = kafka_configs_alter(b, topic, &["--add-config", "cleanup.policy=compact"]);
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
