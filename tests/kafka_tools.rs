//! Apache Kafka's own command-line tools (4.4, the jars of `tests/clients/java/kafka`) against
//! a real `fjord serve`, run as an operator would run bin/kafka-*.sh: kafka-topics (create,
//! list, describe, delete), kafka-configs --describe, kafka-console-producer and
//! kafka-console-consumer with keys and a group, kafka-consumer-groups (list, describe with
//! lag, members and state of an active group, reset-offsets of an inactive one),
//! kafka-get-offsets, and the producer and consumer perf tests. Each check reads what the
//! tool prints, the way a person would. Every tool run is a JVM start (about a second), so
//! the checks are grouped into a few tests that run side by side. The last test starts the
//! Apache Kafka reference broker itself and runs a tool against it, which proves the
//! `support::kafka` harness that the differential tests use.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::kafka::{describe_output, kafka_dir, kafka_tool, kafka_tool_ok, KafkaBroker};
use crate::support::{line_channel, wait_until, TestBroker};

/// Fjord's flags for these tests: a short initial rebalance delay, as the reference broker has
/// (it runs with group.initial.rebalance.delay.ms=0), so group joins do not wait 3 s.
const BROKER_ARGS: &[&str] = &["--group-initial-rebalance-delay-ms", "100"];
/// How long a console consumer may wait for its records (`--timeout-ms`).
const CONSUMER_TIMEOUT_MS: &str = "30000";
/// How long the active group may take to become Stable (or its consumer to print its next
/// record, or to commit), and the stopped one Empty: a few JVM runs on a busy machine.
const GROUP_STATE_WAIT: Duration = Duration::from_secs(60);

fn start_broker(label: &str) -> TestBroker {
    TestBroker::start_with(label, BROKER_ARGS)
}

/// One row of `kafka-consumer-groups --describe` (the offsets view).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupOffsets {
    topic: String,
    partition: i32,
    /// `None` where the group has committed nothing (`-`).
    current: Option<i64>,
    end: i64,
    lag: Option<i64>,
}

/// The rows of `kafka-consumer-groups --describe --group GROUP`: GROUP TOPIC PARTITION
/// CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID.
fn parse_group_offsets(output: &str, group: &str) -> Vec<GroupOffsets> {
    let number = |field: &str| {
        (field != "-").then(|| {
            field.parse::<i64>().unwrap_or_else(|_| panic!("not a number: {field:?} in\n{output}"))
        })
    };
    let mut rows: Vec<GroupOffsets> = output
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 6 && fields[0] == group)
        .map(|f| GroupOffsets {
            topic: f[1].to_string(),
            partition: f[2].parse().unwrap_or_else(|_| panic!("bad partition in\n{output}")),
            current: number(f[3]),
            end: number(f[4]).unwrap_or_else(|| panic!("no log end offset in\n{output}")),
            lag: number(f[5]),
        })
        .collect();
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    rows
}

fn describe_group(bootstrap: &str, group: &str) -> Vec<GroupOffsets> {
    let out = kafka_tool_ok(
        &["kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", group],
        None,
    );
    parse_group_offsets(&out, group)
}

/// The STATE column of `kafka-consumer-groups --describe --state` for `group`; `None` while
/// the group does not exist (yet).
fn group_state(bootstrap: &str, group: &str) -> Option<String> {
    let out = kafka_tool_ok(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
            "--state",
        ],
        None,
    );
    if out.contains(&format!("Consumer group '{group}' does not exist.")) {
        return None;
    }
    // GROUP COORDINATOR (ID) ASSIGNMENT-STRATEGY STATE #MEMBERS
    let row = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&group))
        .unwrap_or_else(|| panic!("no row for {group} in\n{out}"));
    Some(row[row.len() - 2].to_string())
}

/// `topic:partition:offset` lines of kafka-get-offsets, as ((topic, partition) -> offset).
fn parse_offsets(output: &str) -> BTreeMap<(String, i32), i64> {
    output
        .lines()
        .filter_map(|line| {
            let mut f = line.rsplitn(3, ':');
            let offset = f.next()?.parse().ok()?;
            let partition = f.next()?.parse().ok()?;
            Some(((f.next()?.to_string(), partition), offset))
        })
        .collect()
}

/// Offsets of `topic` at `time` (-1 latest, -2 earliest), by partition.
fn get_offsets(bootstrap: &str, topic: &str, time: &str) -> Vec<i64> {
    let out = kafka_tool_ok(
        &["kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, "--time", time],
        None,
    );
    let offsets = parse_offsets(&out);
    assert!(offsets.keys().all(|(t, _)| t == topic), "{out}");
    let partitions: Vec<i32> = offsets.keys().map(|(_, p)| *p).collect();
    assert_eq!(
        partitions,
        (0..partitions.len() as i32).collect::<Vec<_>>(),
        "every partition once:\n{out}"
    );
    offsets.into_values().collect()
}

/// `key:value` lines for kafka-console-producer with parse.key: key `user-{i % 5}`, value
/// `click-{i}`, for i in `range`.
fn keyed_lines(range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("user-{}:click-{i}\n", i % 5)).collect()
}

fn produce_keyed(bootstrap: &str, topic: &str, range: std::ops::Range<u32>) {
    let input = keyed_lines(range);
    let args = [
        "kafka-console-producer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        "key.separator=:",
        "--command-property",
        "acks=all",
    ];
    kafka_tool_ok(&args, Some(input.as_bytes()));
}

/// A record as kafka-console-consumer prints it with print.partition, print.key and a tab
/// separator: `Partition:P<TAB>KEY<TAB>VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Printed {
    partition: i32,
    key: String,
    value: String,
}

fn parse_printed(output: &str) -> Vec<Printed> {
    output
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 3, "not PARTITION<TAB>KEY<TAB>VALUE: {line:?} in\n{output}");
            let partition = f[0]
                .strip_prefix("Partition:")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad partition in {line:?}"));
            Printed { partition, key: f[1].to_string(), value: f[2].to_string() }
        })
        .collect()
}

/// kafka-console-consumer with `group`, from the beginning, until `count` records (or the
/// timeout); returns what it printed.
fn consume_keyed(bootstrap: &str, topic: &str, group: &str, count: u32) -> Vec<Printed> {
    let count = count.to_string();
    let args = [
        "kafka-console-consumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--max-messages",
        &count,
        "--timeout-ms",
        CONSUMER_TIMEOUT_MS,
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "print.partition=true",
    ];
    let output = kafka_tool(&args);
    assert!(output.status.success(), "{}", describe_output(&args, &output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("Processed a total of {count} messages")),
        "{}",
        describe_output(&args, &output)
    );
    parse_printed(&String::from_utf8_lossy(&output.stdout))
}

/// Checks that `printed` is exactly the records `range` of `keyed_lines`, each key in one
/// partition (the Java producer's murmur2 partitioner), each partition's records in order.
fn assert_records(printed: &[Printed], range: std::ops::Range<u32>) {
    let expected: BTreeSet<(String, String)> =
        range.map(|i| (format!("user-{}", i % 5), format!("click-{i}"))).collect();
    let got: BTreeSet<(String, String)> =
        printed.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
    assert_eq!(got, expected, "records read back");
    assert_eq!(printed.len(), expected.len(), "no record twice: {printed:?}");
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    for p in printed {
        let first = *partition_of.entry(&p.key).or_insert(p.partition);
        assert_eq!(first, p.partition, "key {} in two partitions: {printed:?}", p.key);
    }
    let index = |p: &Printed| {
        p.value.strip_prefix("click-").and_then(|i| i.parse::<u32>().ok()).expect("click-N")
    };
    for partition in partition_of.values().collect::<BTreeSet<_>>() {
        let order: Vec<u32> =
            printed.iter().filter(|p| p.partition == *partition).map(index).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of order: {order:?}"
        );
    }
}

#[test]
fn kafka_topics_and_kafka_configs_manage_topics() {
    let broker = start_broker("kafka-topics");
    let b = broker.bootstrap();
    let b = b.as_str();

    let out = kafka_tool_ok(
        &[
            "kafka-topics",
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
        None,
    );
    assert!(out.contains("Created topic orders."), "{out}");
    let out = kafka_tool_ok(
        &[
            "kafka-topics",
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            "audit",
            "--partitions",
            "1",
            "--config",
            "retention.ms=86400000",
        ],
        None,
    );
    assert!(out.contains("Created topic audit."), "{out}");
    // Creating it again fails with the error code TOPIC_ALREADY_EXISTS, as with Kafka.
    let again = kafka_tool(&[
        "kafka-topics",
        "--bootstrap-server",
        b,
        "--create",
        "--topic",
        "orders",
        "--partitions",
        "3",
    ]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success()
            && said.contains("org.apache.kafka.common.errors.TopicExistsException"),
        "{}",
        describe_output(&["kafka-topics", "--create", "orders"], &again)
    );

    let listed = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--list", "--exclude-internal"],
        None,
    );
    let listed: BTreeSet<&str> = listed.lines().collect();
    assert_eq!(
        listed,
        BTreeSet::from(["audit", "orders"]),
        "kafka-topics --list --exclude-internal"
    );

    let described = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--describe", "--topic", "orders"],
        None,
    );
    // With Metadata v10+ the tool learns the topic's id and prints it, as it does for Kafka.
    assert!(
        described.contains("Topic: orders\tTopicId: ")
            && described.contains("\tPartitionCount: 3\tReplicationFactor: 1"),
        "{described}"
    );
    for partition in 0..3 {
        assert!(
            described.contains(&format!(
                "Topic: orders\tPartition: {partition}\tLeader: 0\tReplicas: 0\tIsr: 0"
            )),
            "partition {partition}:\n{described}"
        );
    }
    // The topic's own config is in the describe, and in kafka-configs.
    let described = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--describe", "--topic", "audit"],
        None,
    );
    assert!(
        described.contains("PartitionCount: 1") && described.contains("retention.ms=86400000"),
        "{described}"
    );
    let configs = kafka_tool_ok(
        &[
            "kafka-configs",
            "--bootstrap-server",
            b,
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            "audit",
        ],
        None,
    );
    assert!(
        configs.contains("Dynamic configs for topic audit are:")
            && configs.contains("retention.ms=86400000"),
        "{configs}"
    );
    let all = kafka_tool_ok(
        &[
            "kafka-configs",
            "--bootstrap-server",
            b,
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            "orders",
            "--all",
        ],
        None,
    );
    for config in ["cleanup.policy=delete", "retention.ms=604800000", "segment.bytes="] {
        assert!(all.contains(config), "{config} in\n{all}");
    }
    let brokers = kafka_tool_ok(
        &[
            "kafka-configs",
            "--bootstrap-server",
            b,
            "--describe",
            "--entity-type",
            "brokers",
            "--entity-name",
            "0",
            "--all",
        ],
        None,
    );
    assert!(
        brokers.contains("All configs for broker 0 are:") && brokers.contains("broker.id=0"),
        "{brokers}"
    );
    assert!(brokers.contains(&format!("listeners=PLAINTEXT://{b}")), "{brokers}");

    let out = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--delete", "--topic", "audit"],
        None,
    );
    assert!(!out.contains("Error"), "{out}");
    // Deletion is done when the request returns: the next listing has only `orders`.
    let listed = kafka_tool_ok(
        &["kafka-topics", "--bootstrap-server", b, "--list", "--exclude-internal"],
        None,
    );
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["orders"], "after deleting audit");
    let gone =
        kafka_tool(&["kafka-topics", "--bootstrap-server", b, "--describe", "--topic", "audit"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&gone.stdout),
        String::from_utf8_lossy(&gone.stderr)
    );
    assert!(
        !gone.status.success() && said.contains("Topic 'audit' does not exist"),
        "{}",
        describe_output(&["--describe", "audit"], &gone)
    );
}

#[test]
fn console_producer_and_consumer_with_keys_and_consumer_groups() {
    let broker = start_broker("kafka-console");
    let b = broker.bootstrap();
    let b = b.as_str();
    let (topic, group) = ("clicks", "readers");
    kafka_tool_ok(
        &[
            "kafka-topics",
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            topic,
            "--partitions",
            "3",
        ],
        None,
    );

    produce_keyed(b, topic, 0..30);
    let ends = get_offsets(b, topic, "-1");
    assert_eq!(ends.len(), 3, "{ends:?}");
    assert_eq!(ends.iter().sum::<i64>(), 30, "end offsets after 30 records: {ends:?}");
    assert_eq!(get_offsets(b, topic, "-2"), vec![0, 0, 0], "earliest offsets");

    let printed = consume_keyed(b, topic, group, 30);
    assert_records(&printed, 0..30);
    let per_partition: Vec<i64> =
        (0..3).map(|p| printed.iter().filter(|r| r.partition == p).count() as i64).collect();
    assert_eq!(per_partition, ends, "records per partition match the end offsets");

    let groups = kafka_tool_ok(&["kafka-consumer-groups", "--bootstrap-server", b, "--list"], None);
    assert!(groups.lines().any(|l| l.trim() == group), "{group} in --list:\n{groups}");
    // The consumer committed everything it read when it closed: no lag.
    let rows = describe_group(b, group);
    let expected: Vec<GroupOffsets> = (0..3)
        .map(|p| GroupOffsets {
            topic: topic.to_string(),
            partition: p,
            current: Some(ends[p as usize]),
            end: ends[p as usize],
            lag: Some(0),
        })
        .collect();
    assert_eq!(rows, expected, "--describe after reading everything");

    // Ten more records: the lag is exactly them.
    produce_keyed(b, topic, 30..40);
    let ends = get_offsets(b, topic, "-1");
    let rows = describe_group(b, group);
    assert_eq!(
        rows.iter().map(|r| r.end).collect::<Vec<_>>(),
        ends,
        "log end offsets in --describe: {rows:?}"
    );
    assert_eq!(
        rows.iter().map(|r| r.lag.expect("lag")).sum::<i64>(),
        10,
        "lag after 10 more records: {rows:?}"
    );
    for row in &rows {
        assert_eq!(row.lag, Some(row.end - row.current.expect("committed")), "{row:?}");
    }

    // Back to the earliest offsets while no member runs; the group then reads all 40 again.
    let reset = kafka_tool_ok(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            b,
            "--group",
            group,
            "--topic",
            topic,
            "--reset-offsets",
            "--to-earliest",
            "--execute",
        ],
        None,
    );
    let new_offsets: BTreeSet<(String, String)> = reset
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 4 && f[0] == group)
        .map(|f| (f[2].to_string(), f[3].to_string()))
        .collect();
    assert_eq!(
        new_offsets,
        (0..3).map(|p| (p.to_string(), "0".to_string())).collect(),
        "NEW-OFFSET of --reset-offsets:\n{reset}"
    );
    let rows = describe_group(b, group);
    assert!(
        rows.iter().all(|r| r.current == Some(0) && r.lag == Some(r.end)),
        "after the reset: {rows:?}"
    );
    assert_records(&consume_keyed(b, topic, group, 40), 0..40);
    assert!(describe_group(b, group).iter().all(|r| r.lag == Some(0)), "read everything again");
}

/// A console consumer that runs until it is stopped, in the background.
struct RunningConsumer {
    child: std::process::Child,
}

impl RunningConsumer {
    fn start(
        bootstrap: &str,
        topic: &str,
        group: &str,
    ) -> (RunningConsumer, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(kafka_dir().join("kafka-tool"))
            .args([
                "kafka-console-consumer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--group",
                group,
                "--from-beginning",
            ])
            // Commits every half second, so the test sees its lag drain soon.
            .args(["--command-property", "auto.commit.interval.ms=500"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kafka-console-consumer");
        let lines = line_channel(child.stdout.take().expect("piped stdout"));
        (RunningConsumer { child }, lines)
    }

    /// SIGTERM: the consumer's shutdown hook closes it, which leaves the group.
    fn stop(mut self) {
        // kafka-tool execs the JVM in place, so the child is the consumer itself.
        crate::support::send_signal(&self.child, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn consumer_groups_describe_an_active_member_get_offsets_and_perf_tests() {
    let broker = start_broker("kafka-perf");
    let b = broker.bootstrap();
    let b = b.as_str();
    let topic = "perf";
    kafka_tool_ok(
        &[
            "kafka-topics",
            "--bootstrap-server",
            b,
            "--create",
            "--topic",
            topic,
            "--partitions",
            "3",
        ],
        None,
    );

    // kafka-producer-perf-test: 20000 records of 100 bytes with acks=all, as an idempotent
    // producer (the Java producer's default).
    let out = kafka_tool_ok(
        &[
            "kafka-producer-perf-test",
            "--topic",
            topic,
            "--num-records",
            "20000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--bootstrap-server",
            b,
            "--command-property",
            "acks=all",
        ],
        None,
    );
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.starts_with("20000 records sent,") && summary.contains("records/sec"), "{out}");
    let ends = get_offsets(b, topic, "-1");
    assert_eq!(
        ends.iter().sum::<i64>(),
        20000,
        "end offsets after the producer perf test: {ends:?}"
    );
    assert!(ends.iter().all(|&e| e > 0), "records spread over all partitions: {ends:?}");

    // kafka-consumer-perf-test reads all of them (its CSV line: ..., data.consumed.in.nMsg, ...).
    let out = kafka_tool_ok(
        &[
            "kafka-consumer-perf-test",
            "--bootstrap-server",
            b,
            "--topic",
            topic,
            "--num-records",
            "20000",
            "--timeout",
            CONSUMER_TIMEOUT_MS,
            "--group",
            "perf-readers",
        ],
        None,
    );
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split(", ").collect();
    let row: Vec<&str> =
        lines.next().unwrap_or_else(|| panic!("no result line in\n{out}")).split(", ").collect();
    let column = header
        .iter()
        .position(|h| *h == "data.consumed.in.nMsg")
        .unwrap_or_else(|| panic!("no nMsg column in\n{out}"));
    assert_eq!(row[column], "20000", "records consumed by the perf test:\n{out}");
    let rows = describe_group(b, "perf-readers");
    assert_eq!(
        rows.iter().map(|r| r.current.expect("committed")).collect::<Vec<_>>(),
        ends,
        "perf-readers committed the ends: {rows:?}"
    );

    // A member that keeps running: --members and --state show it, its lag drains to 0.
    let group = "live";
    let (consumer, lines) = RunningConsumer::start(b, topic, group);
    wait_until("the running consumer's group to become Stable", GROUP_STATE_WAIT, || {
        (group_state(b, group)? == "Stable").then_some(())
    });
    let members = kafka_tool_ok(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            b,
            "--describe",
            "--group",
            group,
            "--members",
            "--verbose",
        ],
        None,
    );
    // GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH
    // TARGET-ASSIGNMENT (the epochs and the target are `-` in the classic protocol).
    let member: Vec<&str> = members
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&group))
        .unwrap_or_else(|| panic!("no member of {group} in\n{members}"));
    assert_eq!(member.len(), 9, "{members}");
    assert!(
        member[1].starts_with("console-consumer-") && member[2] == "/127.0.0.1",
        "the member and its host:\n{members}"
    );
    assert_eq!(
        (member[4], member[6]),
        ("3", "perf:0,1,2"),
        "one member owning the 3 partitions:\n{members}"
    );
    let mut read = 0;
    while read < 20000 {
        lines
            .recv_timeout(GROUP_STATE_WAIT)
            .unwrap_or_else(|_| panic!("the running consumer stalled after {read} records"));
        read += 1;
    }
    wait_until("the running consumer to commit everything", GROUP_STATE_WAIT, || {
        describe_group(b, group)
            .iter()
            .all(|r| r.lag == Some(0) && r.current.is_some())
            .then_some(())
    });
    let rows = describe_group(b, group);
    let out = kafka_tool_ok(
        &["kafka-consumer-groups", "--bootstrap-server", b, "--describe", "--group", group],
        None,
    );
    assert!(
        out.lines().filter(|l| l.starts_with(group)).all(|l| l.contains("console-consumer-")),
        "offsets rows name the owning member:\n{out}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    consumer.stop();
    wait_until("the stopped consumer's group to become Empty", GROUP_STATE_WAIT, || {
        (group_state(b, group)? == "Empty").then_some(())
    });
}

#[test]
fn reference_broker_starts_and_serves_kafka_topics() {
    let started = std::time::Instant::now();
    let kafka = KafkaBroker::start("reference");
    let startup = started.elapsed();
    let b = kafka.bootstrap();
    assert_eq!(kafka.addr().ip().to_string(), "127.0.0.1");
    let out = kafka_tool_ok(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &b,
            "--create",
            "--topic",
            "reference",
            "--partitions",
            "2",
        ],
        None,
    );
    assert!(out.contains("Created topic reference."), "{out}\n{}", kafka.output_tail());
    let listed = kafka_tool_ok(&["kafka-topics", "--bootstrap-server", &b, "--list"], None);
    assert!(listed.lines().any(|l| l == "reference"), "{listed}");
    eprintln!("Kafka reference broker at {b} started in {startup:?}");
}
