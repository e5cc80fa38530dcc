//! The APIs admin tools and UIs call to look at a broker and its groups, driven by the
//! clients operators use against a real `fjord serve` (two shards, so partitions live on
//! both and the answers are gathered across them):
//! - DescribeCluster: confluent-kafka's `describe_cluster` (`admin.py`), and every
//!   `kafka-log-dirs` run (it lists the brokers with it first).
//! - DescribeLogDirs: Kafka's `kafka-log-dirs --describe` (its JSON) and kafka-python's
//!   `describe_log_dirs` (`kp_admin.py`): each partition's size is the bytes of its segment
//!   files on disk.
//! - DescribeProducers: Kafka's `kafka-transactions describe-producers` and kafka-python's
//!   `describe_producers` after an idempotent confluent-kafka producer, before and after a
//!   restart (the producer state is rebuilt from the log).
//! - OffsetDelete: kafka-python's `delete_group_offsets` (confluent-kafka's Python client
//!   has no such call), the deletion still in force after restarts; and
//!   `kafka-consumer-groups --delete-offsets`, refused for a topic an active member reads.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjord_replication::ClusterState;

use crate::support::kafka::kafka_tool_ok;
use crate::support::{
    create_topic, parse_acks, python_ok, segment_logs, tagged, Background, TempDir, TestBroker,
};

/// Two shards: partitions of one topic land on both, and requests about the cluster arrive
/// on either; a short initial rebalance delay, as the reference broker has.
const BROKER_ARGS: &[&str] = &["--shards", "2", "--group-initial-rebalance-delay-ms", "100"];
/// How long a group member may take to get its assignment, or to commit.
const MEMBER_WAIT: Duration = Duration::from_secs(60);

fn start_broker(label: &str) -> TestBroker {
    TestBroker::start_with(label, BROKER_ARGS)
}

/// Runs `kp_admin.py COMMAND BOOTSTRAP ARGS...` and returns what it printed.
fn kp_admin(broker: &TestBroker, command: &str, args: &[&str]) -> String {
    let bootstrap = broker.bootstrap();
    let mut all = vec![command, bootstrap.as_str()];
    all.extend_from_slice(args);
    python_ok("kp_admin.py", &all)
}

/// A group's committed offsets as kafka-python's `list_group_offsets` reads them:
/// (topic, partition, offset), in order.
fn committed(broker: &TestBroker, group: &str) -> Vec<(String, i32, i64)> {
    let out = kp_admin(broker, "offsets", &[group]);
    assert!(tagged(&out, "error").is_empty(), "offsets of {group}:\n{out}");
    tagged(&out, "offset")
        .into_iter()
        .map(|f| (f[0].to_string(), f[1].parse().unwrap(), f[2].parse().unwrap()))
        .collect()
}

fn offsets(list: &[(&str, i32, i64)]) -> Vec<(String, i32, i64)> {
    list.iter().map(|(t, p, o)| (t.to_string(), *p, *o)).collect()
}

/// Produces `count` records to `partition` of `topic` with confluent-kafka (`ck.py produce`
/// with the options `extra`), each acknowledged.
fn produce(broker: &TestBroker, topic: &str, partition: i32, count: u32, extra: &[&str]) {
    let (count, partition) = (count.to_string(), partition.to_string());
    let bootstrap = broker.bootstrap();
    let mut args = vec!["produce", "--count", &count, "--partition", &partition];
    args.extend_from_slice(extra);
    args.extend([bootstrap.as_str(), topic]);
    let out = python_ok("ck.py", &args);
    assert_eq!(parse_acks(&out).len().to_string(), count, "{out}");
}

#[test]
fn confluent_kafka_describes_the_cluster() {
    let broker = start_broker("describe-cluster");
    let out = python_ok("admin.py", &["describe-cluster", &broker.bootstrap()]);
    assert_eq!(tagged(&out, "cluster"), vec![vec!["fjord", "0"]], "{out}");
    let port = broker.addr().port().to_string();
    assert_eq!(tagged(&out, "node"), vec![vec!["0", "127.0.0.1", port.as_str(), "-"]], "{out}");
    // Kafka's answer without an authorizer: every operation on the cluster resource.
    assert_eq!(
        tagged(&out, "operations"),
        vec![vec![
            "ALTER,ALTER_CONFIGS,CLUSTER_ACTION,CREATE,DESCRIBE,DESCRIBE_CONFIGS,IDEMPOTENT_WRITE"
        ]],
        "{out}"
    );
}

/// The bytes of a partition's segment files, as they are on disk.
fn bytes_on_disk(broker: &TestBroker, topic: &str, partition: i32) -> u64 {
    let dir = broker.data_dir().join(format!("{topic}-{partition}"));
    segment_logs(&dir).iter().map(|path| std::fs::metadata(path).unwrap().len()).sum()
}

/// `kafka-log-dirs --describe` (optionally `--topic-list`) as (broker, log dir, error,
/// [(partition, size, offset lag, is future)]) per log directory.
fn kafka_log_dirs(broker: &TestBroker, topics: Option<&str>) -> Vec<LogDir> {
    let bootstrap = broker.bootstrap();
    let mut args = vec!["kafka-log-dirs", "--describe", "--bootstrap-server", bootstrap.as_str()];
    if let Some(topics) = topics {
        args.extend(["--topic-list", topics]);
    }
    let out = kafka_tool_ok(&args, None);
    let json =
        out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in\n{out}"));
    let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(parsed["version"], 1, "{json}");
    let mut dirs = Vec::new();
    for broker in parsed["brokers"].as_array().unwrap() {
        for dir in broker["logDirs"].as_array().unwrap() {
            let mut partitions: Vec<(String, u64, i64, bool)> = dir["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["partition"].as_str().unwrap().to_string(),
                        p["size"].as_u64().unwrap(),
                        p["offsetLag"].as_i64().unwrap(),
                        p["isFuture"].as_bool().unwrap(),
                    )
                })
                .collect();
            partitions.sort();
            dirs.push(LogDir {
                broker: broker["broker"].as_i64().unwrap(),
                dir: dir["logDir"].as_str().unwrap().to_string(),
                error: dir["error"].clone(),
                partitions,
            });
        }
    }
    dirs
}

#[derive(Debug)]
struct LogDir {
    broker: i64,
    dir: String,
    error: serde_json::Value,
    partitions: Vec<(String, u64, i64, bool)>,
}

#[test]
fn kafka_log_dirs_and_kafka_python_report_each_partitions_bytes_on_disk() {
    let broker = start_broker("log-dirs");
    create_topic(&broker, "dirs", 3, &[]);
    create_topic(&broker, "other", 1, &[]);
    for (partition, count) in [(0, 50), (1, 7)] {
        produce(&broker, "dirs", partition, count, &["--size", "100"]);
    }
    produce(&broker, "other", 0, 3, &[]);
    let expected: Vec<(String, u64, i64, bool)> = (0..3)
        .map(|p| (format!("dirs-{p}"), bytes_on_disk(&broker, "dirs", p), 0, false))
        .collect();
    assert!(expected[0].1 > 5_000 && expected[1].1 > 0 && expected[2].1 == 0, "{expected:?}");
    let data_dir = broker.data_dir().display().to_string();

    let only_dirs = kafka_log_dirs(&broker, Some("dirs"));
    assert_eq!(only_dirs.len(), 1, "{only_dirs:?}");
    assert_eq!((only_dirs[0].broker, &only_dirs[0].dir), (0, &data_dir), "{only_dirs:?}");
    assert!(only_dirs[0].error.is_null(), "{only_dirs:?}");
    assert_eq!(only_dirs[0].partitions, expected);
    let all = kafka_log_dirs(&broker, None);
    let names: Vec<&str> = all[0].partitions.iter().map(|p| p.0.as_str()).collect();
    for wanted in ["dirs-0", "dirs-1", "dirs-2", "other-0", "__consumer_offsets-0"] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }

    let out = kp_admin(&broker, "describe-log-dirs", &[]);
    let dirs = tagged(&out, "dir");
    assert_eq!(dirs.len(), 1, "{out}");
    assert_eq!(&dirs[0][..3], &["0", data_dir.as_str(), "0"], "{out}");
    let (total, usable): (i64, i64) = (dirs[0][3].parse().unwrap(), dirs[0][4].parse().unwrap());
    assert!(total > 0 && (0..=total).contains(&usable), "{out}");
    let sizes: Vec<(String, u64, i64, bool)> = tagged(&out, "size")
        .into_iter()
        .filter(|f| f[1] == "dirs")
        .map(|f| {
            (format!("dirs-{}", f[2]), f[3].parse().unwrap(), f[4].parse().unwrap(), f[5] == "True")
        })
        .collect();
    let mut sizes = sizes;
    sizes.sort();
    assert_eq!(sizes, expected, "{out}");
}

/// `kafka-transactions describe-producers` of one partition: (producer id, epoch,
/// coordinator epoch, last sequence, last timestamp, transaction start offset) per row.
fn kafka_describe_producers(broker: &TestBroker, topic: &str, partition: i32) -> Vec<Vec<String>> {
    let (bootstrap, partition) = (broker.bootstrap(), partition.to_string());
    let out = kafka_tool_ok(
        &[
            "kafka-transactions",
            "--bootstrap-server",
            &bootstrap,
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            &partition,
        ],
        None,
    );
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ProducerId",
            "ProducerEpoch",
            "LatestCoordinatorEpoch",
            "LastSequence",
            "LastTimestamp",
            "CurrentTransactionStartOffset"
        ],
        "{out}"
    );
    lines.map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn an_idempotent_producer_is_described_by_kafka_transactions_and_kafka_python() {
    const RECORDS: u32 = 20;
    const STEP_MS: i64 = 1000;
    let mut broker = start_broker("describe-producers");
    create_topic(&broker, "idem", 2, &[]);
    let base = now_ms() - 60_000;
    let base_arg = base.to_string();
    let step_arg = STEP_MS.to_string();
    produce(
        &broker,
        "idem",
        0,
        RECORDS,
        &["--idempotent", "--timestamp-base", &base_arg, "--timestamp-step", &step_arg],
    );
    let last_sequence = (RECORDS - 1).to_string();
    let last_timestamp = (base + i64::from(RECORDS - 1) * STEP_MS).to_string();
    for round in ["running", "restarted"] {
        let rows = kafka_describe_producers(&broker, "idem", 0);
        assert_eq!(rows.len(), 1, "{round}: {rows:?}");
        let row = &rows[0];
        assert!(row[0].parse::<i64>().unwrap() >= 0, "{round}: {row:?}");
        assert_eq!(
            &row[1..],
            &["0", "-1", last_sequence.as_str(), last_timestamp.as_str(), "None"],
            "{round}: {row:?}"
        );
        assert!(kafka_describe_producers(&broker, "idem", 1).is_empty(), "{round}");

        let out = kp_admin(&broker, "describe-producers", &["idem:0", "idem:1"]);
        let producers = tagged(&out, "producer");
        assert_eq!(producers.len(), 1, "{round}: {out}");
        assert_eq!(producers[0][2], row[0].as_str(), "{round}: {out}");
        assert_eq!(&producers[0][..2], &["idem", "0"], "{round}: {out}");
        assert_eq!(
            &producers[0][3..],
            &["0", last_sequence.as_str(), last_timestamp.as_str(), "-1", "-1"],
            "{round}: {out}"
        );
        if round == "running" {
            // The producer state is rebuilt from the log's tail on open.
            broker.restart();
        }
    }
}

#[test]
fn kafka_python_deletes_a_groups_offsets_for_good() {
    const GROUP: &str = "deleting";
    let mut broker = start_broker("offset-delete");
    create_topic(&broker, "od-a", 2, &[]);
    create_topic(&broker, "od-b", 1, &[]);
    let out = kp_admin(&broker, "commit", &[GROUP, "od-a:0=5", "od-a:1=6", "od-b:0=7"]);
    assert_eq!(tagged(&out, "ok").len(), 1, "{out}");

    let out = kp_admin(&broker, "delete-offsets", &[GROUP, "od-a:0"]);
    assert_eq!(tagged(&out, "deleted"), vec![vec!["od-a", "0", "NoError"]], "{out}");
    let left = offsets(&[("od-a", 1, 6), ("od-b", 0, 7)]);
    assert_eq!(committed(&broker, GROUP), left);
    // Refusals: an unknown partition (the others still go), an unknown group.
    let out = kp_admin(&broker, "delete-offsets", &[GROUP, "od-a:9"]);
    assert_eq!(
        tagged(&out, "deleted"),
        vec![vec!["od-a", "9", "UnknownTopicOrPartitionError"]],
        "{out}"
    );
    let out = kp_admin(&broker, "delete-offsets", &["no-such-group", "od-a:1"]);
    assert_eq!(tagged(&out, "error"), vec![vec!["GroupIdNotFoundError"]], "{out}");

    broker.restart();
    assert_eq!(committed(&broker, GROUP), left, "after a restart");
    let out = kp_admin(&broker, "delete-offsets", &[GROUP, "od-b:0"]);
    assert_eq!(tagged(&out, "deleted"), vec![vec!["od-b", "0", "NoError"]], "{out}");
    broker.restart();
    assert_eq!(committed(&broker, GROUP), offsets(&[("od-a", 1, 6)]), "after a second restart");
}

/// `kafka-consumer-groups --delete-offsets --group GROUP --topic TOPIC`: its STATUS column
/// per partition (`Successful`, or `Error: :<exception>: <message>`), and everything it
/// printed.
fn kafka_delete_offsets(
    broker: &TestBroker,
    group: &str,
    topic: &str,
) -> (Vec<(String, String)>, String) {
    let bootstrap = broker.bootstrap();
    let out = kafka_tool_ok(
        &[
            "kafka-consumer-groups",
            "--bootstrap-server",
            &bootstrap,
            "--delete-offsets",
            "--group",
            group,
            "--topic",
            topic,
        ],
        None,
    );
    let rows = out
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 3 && fields[0] == topic)
        .map(|fields| (fields[1].to_string(), fields[2..].join(" ")))
        .collect();
    (rows, out)
}

#[test]
fn kafka_consumer_groups_deletes_offsets_unless_a_member_reads_the_topic() {
    const IDLE: &str = "idle-group";
    const ACTIVE: &str = "active-group";
    let broker = start_broker("delete-offsets-tool");
    create_topic(&broker, "cg-a", 2, &[]);
    create_topic(&broker, "cg-b", 1, &[]);
    kp_admin(&broker, "commit", &[IDLE, "cg-a:0=1", "cg-a:1=2", "cg-b:0=3"]);
    let (rows, out) = kafka_delete_offsets(&broker, IDLE, "cg-a");
    let successful = |partition: &str| (partition.to_string(), "Successful".to_string());
    assert_eq!(rows, vec![successful("0"), successful("1")], "{out}");
    assert!(out.contains("Request succeeded for deleting offsets from group idle-group."), "{out}");
    assert_eq!(committed(&broker, IDLE), offsets(&[("cg-b", 0, 3)]));

    // A member of another group reads cg-b and commits what it reads.
    produce(&broker, "cg-b", 0, 3, &[]);
    let stop = TempDir::new("member-stop");
    let stop_file = stop.path().join("stop");
    let bootstrap = broker.bootstrap();
    let member = Background::spawn(
        "steady_member.py",
        &[&bootstrap, "cg-b", ACTIVE, "--stop-file", stop_file.to_str().unwrap()],
    );
    wait_for_line(&member, "committed");
    let (rows, out) = kafka_delete_offsets(&broker, ACTIVE, "cg-b");
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].1.contains("GroupSubscribedToTopicException"), "{out}");
    assert_eq!(committed(&broker, ACTIVE), offsets(&[("cg-b", 0, 3)]));
    // A topic the member does not read is not refused (the group committed none of it).
    let (rows, out) = kafka_delete_offsets(&broker, ACTIVE, "cg-a");
    assert_eq!(rows, vec![successful("0"), successful("1")], "{out}");
    assert_eq!(committed(&broker, ACTIVE), offsets(&[("cg-b", 0, 3)]));

    std::fs::write(&stop_file, b"").unwrap();
    let (status, lines, stderr) = member.finish();
    assert!(status.success(), "member: {status}\n{lines:?}\n{stderr}");
    // The group is empty now: its offsets of cg-b may go too.
    let (rows, out) = kafka_delete_offsets(&broker, ACTIVE, "cg-b");
    assert_eq!(rows, vec![successful("0")], "{out}");
    assert!(committed(&broker, ACTIVE).is_empty());
}

/// Waits until `member` prints a line tagged `tag`.
fn wait_for_line(member: &Background, tag: &str) {
    let deadline = Instant::now() + MEMBER_WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(line) = member.next_line(Duration::from_millis(200)) {
            if line.split('\t').next() == Some(tag) {
                return;
            }
            seen.push(line);
        }
    }
    panic!("no {tag} line within {MEMBER_WAIT:?}: {seen:?}");
}

// ---------------------------------------------------------------------------------------
// A cluster: OffsetDelete across a coordinator failover, and what each replica describes.

/// Brokers of the cluster; each partition is on all of them.
const CLUSTER_BROKERS: i32 = 3;
/// Partitions of `__consumer_offsets` in a cluster (`fjord serve`'s default).
const OFFSETS_PARTITIONS: i32 = 8;
/// How long the cluster may take to settle (the offsets topic, full in-sync sets), or to
/// elect a new leader and coordinator after a broker is killed.
const CLUSTER_SETTLE: Duration = Duration::from_secs(45);
/// How long one `fjord` command may take.
const FJORD_SECONDS_MAX: u64 = 60;

/// A cluster of `CLUSTER_BROKERS` brokers started by `fjord cluster up`, stopped (and its
/// directory removed) on drop.
struct SmallCluster {
    dir: TempDir,
    bootstrap: String,
}

fn fjord_ok(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = crate::support::run_with_timeout(
        FJORD_SECONDS_MAX,
        Path::new(env!("CARGO_BIN_EXE_fjord")),
        &args,
        None,
    );
    assert!(output.status.success(), "{}", crate::support::kafka::describe_output(&[], &output));
    String::from_utf8(output.stdout).expect("UTF-8")
}

impl SmallCluster {
    fn up(label: &str) -> SmallCluster {
        let dir = TempDir::new(label);
        let path = dir.path().display().to_string();
        let brokers = CLUSTER_BROKERS.to_string();
        let out = fjord_ok(&[
            "cluster",
            "up",
            "--dir",
            &path,
            "--brokers",
            &brokers,
            "--",
            "--shards",
            "2",
        ]);
        let bootstrap = out.trim().lines().last().expect("the bootstrap list").to_string();
        let cluster = SmallCluster { dir, bootstrap };
        cluster.wait_state("the offsets topic, every replica in sync", |s| {
            s.topics
                .get("__consumer_offsets")
                .is_some_and(|t| t.partitions.len() == OFFSETS_PARTITIONS as usize)
                && all_in_sync(s)
        });
        cluster
    }

    /// The newest cluster state (versions are written by rename: a read is never torn; one
    /// removed between the listing and the read is listed again).
    fn state(&self) -> ClusterState {
        loop {
            let versions = self.dir.path().join("cluster-state");
            let newest = std::fs::read_dir(&versions)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.len() == 25 && name.ends_with(".toml"))
                .max();
            let Some(newest) = newest else { return ClusterState::default() };
            if let Ok(text) = std::fs::read_to_string(versions.join(newest)) {
                return toml::from_str(&text).expect("the state parses");
            }
        }
    }

    fn wait_state(&self, what: &str, mut ok: impl FnMut(&ClusterState) -> bool) -> ClusterState {
        let deadline = Instant::now() + CLUSTER_SETTLE;
        loop {
            let state = self.state();
            if ok(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "no {what} within {CLUSTER_SETTLE:?}: {state:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn partition(&self, topic: &str, index: i32) -> fjord_replication::PartitionState {
        self.state().topics[topic].partitions[index as usize].clone()
    }

    fn kill9(&self, id: i32) {
        let pid_file = self.dir.path().join(format!("broker-{id}.pid"));
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        fjord_storage::io::send_signal(pid, libc::SIGKILL)
            .unwrap_or_else(|e| panic!("SIGKILL broker {id} (pid {pid}): {e}"));
        let proc = format!("/proc/{pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&proc).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmallCluster {
    fn drop(&mut self) {
        let path = self.dir.path().display().to_string();
        let args: Vec<String> = ["cluster", "down", "--dir", &path].map(String::from).to_vec();
        let _ = crate::support::run_with_timeout(
            FJORD_SECONDS_MAX,
            Path::new(env!("CARGO_BIN_EXE_fjord")),
            &args,
            None,
        );
        if std::thread::panicking() {
            for id in 0..CLUSTER_BROKERS {
                let log = self.dir.path().join(format!("broker-{id}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- broker-{id}.log (tail) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn all_in_sync(state: &ClusterState) -> bool {
    state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .all(|p| p.leader >= 0 && p.isr.len() == CLUSTER_BROKERS as usize)
}

/// Java's `String.hashCode`, as Kafka places a group in `__consumer_offsets`.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Retries `probe` until it gives a value or `CLUSTER_SETTLE` passes.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CLUSTER_SETTLE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "no {what} within {CLUSTER_SETTLE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn in_a_cluster_deleted_offsets_survive_coordinator_failover_and_every_replica_describes_itself() {
    const RECORDS: u32 = 12;
    let cluster = SmallCluster::up("describe-cluster");
    let bootstrap = cluster.bootstrap.clone();
    fjord_ok(&["topic", "create", "rep", "-b", &bootstrap, "-p", "2", "-r", "3"]);
    cluster.wait_state("rep in sync", |s| s.topics.contains_key("rep") && all_in_sync(s));
    let base = (now_ms() - 60_000).to_string();
    let (count, bootstrap_arg) = (RECORDS.to_string(), bootstrap.clone());
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            &count,
            "--partition",
            "0",
            "--idempotent",
            "--timestamp-base",
            &base,
            &bootstrap_arg,
            "rep",
        ],
    );
    assert_eq!(parse_acks(&out).len(), RECORDS as usize, "{out}");

    // Every replica of rep-0 tells the producer it copied, the followers too.
    let leader = cluster.partition("rep", 0).leader;
    for broker in 0..CLUSTER_BROKERS {
        let broker_id = broker.to_string();
        let row = eventually(&format!("broker {broker}'s producer state"), || {
            let out = kafka_tool_ok(
                &[
                    "kafka-transactions",
                    "--bootstrap-server",
                    &bootstrap,
                    "describe-producers",
                    "--topic",
                    "rep",
                    "--partition",
                    "0",
                    "--broker-id",
                    &broker_id,
                ],
                None,
            );
            let rows: Vec<Vec<String>> = out
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .filter(|f: &Vec<String>| f.len() == 6)
                .collect();
            rows.into_iter().find(|r| r[3] == (RECORDS - 1).to_string())
        });
        assert_eq!(&row[1..3], &["0", "-1"], "broker {broker} (leader {leader}): {row:?}");
    }

    // Each broker's log directory holds both partitions, the same bytes on each replica.
    let sizes = eventually("the same partition sizes on every replica", || {
        let out = kafka_tool_ok(
            &[
                "kafka-log-dirs",
                "--describe",
                "--bootstrap-server",
                &bootstrap,
                "--topic-list",
                "rep",
            ],
            None,
        );
        let json = out.lines().find(|l| l.starts_with('{'))?;
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut per_broker = Vec::new();
        for broker in parsed["brokers"].as_array()? {
            let mut partitions: Vec<(String, u64, i64)> = broker["logDirs"][0]["partitions"]
                .as_array()?
                .iter()
                .map(|p| {
                    (
                        p["partition"].as_str().unwrap().to_string(),
                        p["size"].as_u64().unwrap(),
                        p["offsetLag"].as_i64().unwrap(),
                    )
                })
                .collect();
            partitions.sort();
            per_broker.push(partitions);
        }
        let same = per_broker.len() == CLUSTER_BROKERS as usize
            && per_broker.windows(2).all(|w| w[0] == w[1])
            && per_broker[0].len() == 2
            && per_broker[0][0].1 > 0;
        same.then(|| per_broker[0].clone())
    });
    assert_eq!(sizes.iter().map(|p| p.2).collect::<Vec<_>>(), vec![0, 0], "{sizes:?}");

    // A group's offsets, one deleted; its coordinator is then killed.
    let group = (0..100).map(|n| format!("fo-{n}")).find(|g| java_string_hash(g) >= 0).unwrap();
    let offsets_partition = java_string_hash(&group) % OFFSETS_PARTITIONS;
    let out = python_ok("kp_admin.py", &["commit", &bootstrap, &group, "rep:0=5", "rep:1=6"]);
    assert_eq!(tagged(&out, "ok").len(), 1, "{out}");
    let out = python_ok("kp_admin.py", &["delete-offsets", &bootstrap, &group, "rep:0"]);
    assert_eq!(tagged(&out, "deleted"), vec![vec!["rep", "0", "NoError"]], "{out}");
    let coordinator = cluster.partition("__consumer_offsets", offsets_partition).leader;
    cluster.kill9(coordinator);
    cluster.wait_state("a new coordinator", |s| {
        let leader = s.topics["__consumer_offsets"].partitions[offsets_partition as usize].leader;
        leader >= 0 && leader != coordinator
    });
    let left = eventually("the group's offsets from the new coordinator", || {
        let out = python_ok("kp_admin.py", &["offsets", &bootstrap, &group]);
        tagged(&out, "error")
            .is_empty()
            .then(|| tagged(&out, "offset").iter().map(|f| f.join(":")).collect::<Vec<_>>())
    });
    assert_eq!(left, vec!["rep:1:6"], "after the failover of coordinator {coordinator}");

    // DescribeCluster: the killed broker is fenced (kafka-python asks for fenced brokers),
    // and gone from the brokers listed without them (confluent-kafka).
    let out = eventually("the killed broker fenced", || {
        let out = python_ok("kp_admin.py", &["describe-cluster", &bootstrap]);
        let fenced: Vec<String> = tagged(&out, "broker")
            .iter()
            .filter(|f| f[3] == "True")
            .map(|f| f[0].to_string())
            .collect();
        (fenced == vec![coordinator.to_string()]).then_some(out)
    });
    assert_eq!(tagged(&out, "broker").len(), CLUSTER_BROKERS as usize, "{out}");
    let out = python_ok("admin.py", &["describe-cluster", &bootstrap]);
    let nodes: Vec<String> = tagged(&out, "node").iter().map(|f| f[0].to_string()).collect();
    assert_eq!(nodes.len(), CLUSTER_BROKERS as usize - 1, "{out}");
    assert!(!nodes.contains(&coordinator.to_string()), "{out}");
}
