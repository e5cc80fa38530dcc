//! Consumer groups against a real broker: membership and partition assignment, committed
//! offsets (resume, isolation between groups, durability across a clean and a kill -9
//! restart), the `fjord group` and `fjord consume --group` commands, and the coordinator's
//! answers to requests no well-behaved client sends.
//!
//! Clients are librdkafka (confluent-kafka) and kafka-python, driven by
//! `tests/clients/python/groups_client.py`; each group scenario runs with both, since they implement
//! the group protocol independently. Members run as separate processes so a test can close
//! one cleanly or SIGKILL it. Every broker is started with a low minimum session timeout and
//! no initial rebalance delay so rebalances take a fraction of a second, and every wait polls
//! against a deadline. Topic and group names are unique per test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::wire::{Conn, Decoder, Encoder};
use crate::support::{
    self, create_topic, parse_acks, parse_messages, python_ok, python_path, run_with_timeout,
    tagged, Ack, Message, TempDir, TestBroker,
};

/// `fjord serve` flags for fast groups: clients may ask for a session as short as 1 s, and a
/// new group's first rebalance does not wait for more members.
const SERVE_FLAGS: &[&str] =
    &["--group-min-session-timeout-ms", "1000", "--group-initial-rebalance-delay-ms", "0"];
/// Session timeout the python members ask for.
const SESSION_MS: u64 = 2000;
/// Longest wait for an assignment to settle: a few rebalances plus a session timeout.
const REBALANCE_MS_MAX: u64 = 30_000;
/// Deadline a python member gives itself (it is also killed when the test drops it).
const MEMBER_SECONDS_MAX: u64 = 90;
/// Longest a single `fjord` CLI run may take.
const CLI_SECONDS_MAX: u64 = 60;
const SCRIPT: &str = "groups_client.py";
const ALL_FOUR: [i32; 4] = [0, 1, 2, 3];

#[derive(Debug, Clone, Copy)]
enum Lib {
    /// confluent-kafka (librdkafka)
    Ck,
    /// kafka-python
    Kp,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Ck => "ck",
            Lib::Kp => "kp",
        }
    }
}

fn start_broker(label: &str) -> TestBroker {
    TestBroker::start_with(label, SERVE_FLAGS)
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python").join(SCRIPT)
}

/// Produces `count` keyed messages with confluent-kafka and returns their acks.
fn produce(broker: &TestBroker, topic: &str, count: u64) -> Vec<Ack> {
    let bootstrap = broker.bootstrap();
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            &count.to_string(),
            "--keys",
            &count.to_string(),
            &bootstrap,
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count, "acks of produce to {topic}:\n{out}");
    acks
}

/// Runs one `groups_client.py` command to completion and returns its stdout.
fn client(
    command: &str,
    lib: Lib,
    broker: &TestBroker,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> String {
    let bootstrap = broker.bootstrap();
    let mut args = vec![command, lib.name(), bootstrap.as_str(), topic, group];
    args.extend_from_slice(extra);
    python_ok(SCRIPT, &args)
}

/// `consume` with `--commit-after count`: the messages read and the offsets committed.
fn consume_and_commit(
    lib: Lib,
    broker: &TestBroker,
    topic: &str,
    group: &str,
    count: usize,
) -> (Vec<Message>, BTreeMap<i32, i64>) {
    let out = client(
        "consume",
        lib,
        broker,
        topic,
        group,
        &["--commit-after", &count.to_string(), "--session-ms", "6000"],
    );
    let messages = parse_messages(&out);
    assert_eq!(messages.len(), count, "{lib:?} consumed with --commit-after {count}:\n{out}");
    let committed = tagged(&out, "committed")
        .iter()
        .map(|f| (f[0].parse().expect("partition"), f[1].parse().expect("offset")))
        .collect();
    (messages, committed)
}

/// `consume` to the end offsets, from the committed offsets.
fn consume_rest(lib: Lib, broker: &TestBroker, topic: &str, group: &str) -> Vec<Message> {
    parse_messages(&client("consume", lib, broker, topic, group, &["--session-ms", "6000"]))
}

fn positions(messages: &[Message]) -> Vec<(i32, i64)> {
    messages.iter().map(|m| (m.partition, m.offset)).collect()
}

/// Asserts each message is the one acknowledged at its position (value `v{i}-`).
fn assert_values_match(messages: &[Message], acks: &[Ack]) {
    let by_position: BTreeMap<(i32, i64), u64> =
        acks.iter().map(|a| ((a.partition, a.offset), a.index)).collect();
    for m in messages {
        let index = by_position.get(&(m.partition, m.offset)).unwrap_or_else(|| {
            panic!("consumed {}:{} which was never acknowledged", m.partition, m.offset)
        });
        assert_eq!(
            m.value.as_deref(),
            Some(support::value(*index, 0).as_slice()),
            "value at {}:{}",
            m.partition,
            m.offset
        );
    }
}

/// Asserts `parts` (each a run of one consumer) together hold every acknowledged message
/// exactly once.
fn assert_exactly_once(parts: &[&[Message]], acks: &[Ack]) {
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (run, messages) in parts.iter().enumerate() {
        assert_values_match(messages, acks);
        for position in positions(messages) {
            if let Some(earlier) = seen.insert(position, run) {
                panic!(
                    "{}:{} delivered twice: in run {earlier} and run {run}",
                    position.0, position.1
                );
            }
        }
    }
    let expected: BTreeSet<(i32, i64)> = acks.iter().map(|a| (a.partition, a.offset)).collect();
    let got: BTreeSet<(i32, i64)> = seen.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never delivered, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(got.len(), expected.len(), "delivered messages that were never acknowledged");
}

/// Asserts a run started every partition it read exactly at `from` (0 where nothing is
/// committed) and never went below it.
fn assert_resumed_at(messages: &[Message], from: &BTreeMap<i32, i64>) {
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for m in messages {
        first.entry(m.partition).or_insert(m.offset);
        let floor = from.get(&m.partition).copied().unwrap_or(0);
        assert!(
            m.offset >= floor,
            "partition {} re-delivered offset {} below the committed {floor}",
            m.partition,
            m.offset
        );
    }
    for (partition, offset) in first {
        assert_eq!(
            offset,
            from.get(&partition).copied().unwrap_or(0),
            "partition {partition} resumed at {offset}, committed {:?}",
            from.get(&partition)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Long-running group members.

/// A `groups_client.py member` process: it joins, reports every assignment change, and
/// closes (leaving the group) once its stop file exists.
struct Member {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stop_file: PathBuf,
    stderr_path: PathBuf,
    /// The last assignment it reported (`None` before the first report).
    assignment: Option<BTreeSet<i32>>,
    closed: bool,
    /// Every line it printed, for failure messages.
    log: Vec<String>,
    _dir: TempDir,
}

impl Member {
    fn spawn(name: &str, lib: Lib, broker: &TestBroker, topic: &str, group: &str) -> Member {
        let dir = TempDir::new("member");
        let stop_file = dir.path().join("stop");
        let stderr_path = dir.path().join("stderr");
        // python directly, not under `timeout`: SIGKILL must reach the client itself.
        let mut child = Command::new(python_path())
            .arg(script_path())
            .args(["member", lib.name(), &broker.bootstrap(), topic, group])
            .args([
                "--session-ms",
                &SESSION_MS.to_string(),
                "--max-s",
                &MEMBER_SECONDS_MAX.to_string(),
            ])
            .arg("--stop-file")
            .arg(&stop_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn python member");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = support::line_channel(stdout);
        Member {
            name: name.to_string(),
            child,
            lines,
            stop_file,
            stderr_path,
            assignment: None,
            closed: false,
            log: Vec::new(),
            _dir: dir,
        }
    }

    /// Takes in everything printed so far.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["assigned", "-"] => self.assignment = Some(BTreeSet::new()),
                ["assigned", list] => {
                    self.assignment =
                        Some(list.split(',').map(|p| p.parse().expect("partition")).collect())
                }
                ["closed"] => self.closed = true,
                _ => {}
            }
            self.log.push(line);
        }
    }

    fn has(&self, partitions: &[i32]) -> bool {
        self.assignment.as_ref().is_some_and(|a| a.iter().copied().eq(partitions.iter().copied()))
    }

    /// Asks it to close() and leave.
    fn stop(&self) {
        std::fs::write(&self.stop_file, b"").expect("create stop file");
    }

    /// SIGKILL: it never sends LeaveGroup.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL member");
        self.child.wait().expect("reap member");
    }

    fn report(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: Vec<&str> =
            stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "member {}: last assignment {:?}, closed {}\n  stdout: {:?}\n  stderr tail:\n{}",
            self.name,
            self.assignment,
            self.closed,
            self.log,
            tail.join("\n")
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the members' output until `done` holds, or panics after `timeout_ms` with what each
/// member reported and the broker's stderr.
fn wait_until(
    broker: &TestBroker,
    members: &mut [&mut Member],
    timeout_ms: u64,
    what: &str,
    done: impl Fn(&[&mut Member]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        for m in members.iter_mut() {
            m.drain();
        }
        if done(members) {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_millis(timeout_ms) {
            let reports: Vec<String> = members.iter().map(|m| m.report()).collect();
            panic!(
                "waited {timeout_ms} ms for {what}\n{}\n{}",
                reports.join("\n"),
                broker.stderr_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both members hold partitions, none shared, together all four.
fn split_evenly(a: &Member, b: &Member) -> bool {
    let (Some(x), Some(y)) = (&a.assignment, &b.assignment) else { return false };
    !x.is_empty() && !y.is_empty() && x.is_disjoint(y) && x.union(y).copied().eq(ALL_FOUR)
}

// ---------------------------------------------------------------------------------------
// The fjord CLI.

fn fjord(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_timeout(CLI_SECONDS_MAX, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, None)
}

fn fjord_ok(args: &[&str]) -> String {
    let output = fjord(args);
    assert!(
        output.status.success(),
        "fjord {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("fjord output is UTF-8")
}

/// One partition row of `fjord group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LagRow {
    committed: Option<i64>,
    end: i64,
    lag: Option<i64>,
    member: Option<String>,
}

#[derive(Debug)]
struct Described {
    state: String,
    members: usize,
    /// (topic, partition) -> row
    rows: BTreeMap<(String, i32), LagRow>,
    text: String,
}

fn dash_or<T: std::str::FromStr>(field: &str) -> Option<T> {
    if field == "-" {
        None
    } else {
        Some(field.parse().unwrap_or_else(|_| panic!("bad field {field:?}")))
    }
}

/// `describe` once the group is Stable with `members` members, or as it is after
/// `REBALANCE_MS_MAX`. Clients may rejoin on their own after they reported an assignment
/// (kafka-python does when its metadata snapshot changes), and the group passes through
/// PreparingRebalance again; the broker's view is checked once that has settled.
fn describe_settled(broker: &TestBroker, group: &str, members: usize) -> Described {
    let start = Instant::now();
    loop {
        let described = describe(broker, group);
        if (described.state.as_str(), described.members) == ("Stable", members)
            || start.elapsed() > Duration::from_millis(REBALANCE_MS_MAX)
        {
            return described;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs and parses `fjord group describe GROUP`: the `group G: STATE (N members, ...)` line,
/// then after the header one row per partition: topic, partition, committed, end, lag, member.
fn describe(broker: &TestBroker, group: &str) -> Described {
    let bootstrap = broker.bootstrap();
    let text = fjord_ok(&["group", "describe", group, "-b", &bootstrap]);
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix(&format!("group {group}: "))
        .unwrap_or_else(|| panic!("first line {first:?}\n{text}"));
    let (state, rest) = rest.split_once(" (").unwrap_or_else(|| panic!("first line {first:?}"));
    let members = rest
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("member count in {first:?}"));
    let mut rows = BTreeMap::new();
    let mut after_header = false;
    for line in text.lines() {
        if line.starts_with("topic ") {
            after_header = true;
            continue;
        }
        if !after_header {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 6, "describe row {line:?}\n{text}");
        let row = LagRow {
            committed: dash_or(f[2]),
            end: f[3].parse().expect("end offset"),
            lag: dash_or(f[4]),
            member: dash_or(f[5]),
        };
        rows.insert((f[0].to_string(), f[1].parse().expect("partition")), row);
    }
    assert!(after_header, "no header in describe output:\n{text}");
    Described { state: state.to_string(), members, rows, text }
}

/// `fjord consume --group ... -e --print-offsets` lines as ((partition, offset), value).
fn cli_consume(
    broker: &TestBroker,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Vec<((i32, i64), String)> {
    let bootstrap = broker.bootstrap();
    let mut args =
        vec!["consume", "-t", topic, "-b", &bootstrap, "--group", group, "-e", "--print-offsets"];
    args.extend_from_slice(extra);
    let out = fjord_ok(&args);
    out.lines()
        .map(|line| {
            let (position, value) =
                line.split_once('\t').unwrap_or_else(|| panic!("consume line {line:?}"));
            let (p, o) =
                position.split_once(':').unwrap_or_else(|| panic!("consume line {line:?}"));
            ((p.parse().expect("partition"), o.parse().expect("offset")), value.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1 + 2: two members split four partitions; when one closes the other gets all four.

fn split_then_close(lib: Lib) {
    let label = format!("split-close-{}", lib.name());
    let broker = start_broker(&label);
    let (topic, group) = (format!("{label}-t"), format!("{label}-g"));
    create_topic(&broker, &topic, 4, &[]);
    let mut a = Member::spawn("a", lib, &broker, &topic, &group);
    let mut b = Member::spawn("b", lib, &broker, &topic, &group);
    wait_until(
        &broker,
        &mut [&mut a, &mut b],
        REBALANCE_MS_MAX,
        "an even split of 4 partitions",
        |m| split_evenly(m[0], m[1]),
    );

    // The broker's view agrees: two members, each partition owned by exactly one of them.
    let described = describe_settled(&broker, &group, 2);
    assert_eq!((described.state.as_str(), described.members), ("Stable", 2), "{}", described.text);
    let owners: BTreeSet<&str> =
        described.rows.values().filter_map(|r| r.member.as_deref()).collect();
    let owned: Vec<i32> = described.rows.keys().map(|(_, p)| *p).collect();
    assert_eq!(owned, ALL_FOUR, "partitions in describe:\n{}", described.text);
    assert!(
        described.rows.values().all(|r| r.member.is_some()),
        "an unowned partition:\n{}",
        described.text
    );
    assert_eq!(owners.len(), 2, "owners in describe:\n{}", described.text);

    a.stop();
    wait_until(
        &broker,
        &mut [&mut a, &mut b],
        REBALANCE_MS_MAX,
        "a to close and b to own all 4",
        |m| m[0].closed && m[1].has(&ALL_FOUR),
    );
    let described = describe_settled(&broker, &group, 1);
    assert_eq!((described.state.as_str(), described.members), ("Stable", 1), "{}", described.text);
    b.stop();
    wait_until(&broker, &mut [&mut b], REBALANCE_MS_MAX, "b to close", |m| m[0].closed);
    assert_eq!(describe(&broker, &group).state, "Empty");
}

#[test]
fn ck_two_members_split_four_partitions_and_one_takes_all_after_close() {
    split_then_close(Lib::Ck);
}

#[test]
fn kp_two_members_split_four_partitions_and_one_takes_all_after_close() {
    split_then_close(Lib::Kp);
}

// ---------------------------------------------------------------------------------------
// 3: a member killed without leaving is removed after its session timeout.

fn split_then_kill(lib: Lib) {
    let label = format!("split-kill-{}", lib.name());
    let broker = start_broker(&label);
    let (topic, group) = (format!("{label}-t"), format!("{label}-g"));
    create_topic(&broker, &topic, 4, &[]);
    let mut a = Member::spawn("a", lib, &broker, &topic, &group);
    let mut b = Member::spawn("b", lib, &broker, &topic, &group);
    wait_until(
        &broker,
        &mut [&mut a, &mut b],
        REBALANCE_MS_MAX,
        "an even split of 4 partitions",
        |m| split_evenly(m[0], m[1]),
    );

    a.kill9();
    let took = wait_until(
        &broker,
        &mut [&mut b],
        REBALANCE_MS_MAX,
        "b to own all 4 after a was killed",
        |m| m[0].has(&ALL_FOUR),
    );
    // Nothing told the broker that a is gone: only its session expiring can (a heartbeats
    // every SESSION_MS/6, so the session ends at least 5/6 of it after the kill).
    assert!(
        took >= Duration::from_millis(SESSION_MS * 5 / 6 - 100),
        "b took over after {took:?}, before a's {SESSION_MS} ms session could expire"
    );
    let stderr = broker.stderr();
    assert!(
        stderr.contains("member's session timed out"),
        "no session expiry logged:\n{}",
        broker.stderr_tail()
    );
    let described = describe_settled(&broker, &group, 1);
    assert_eq!((described.state.as_str(), described.members), ("Stable", 1), "{}", described.text);
}

#[test]
fn ck_killed_member_loses_its_partitions_after_the_session_timeout() {
    split_then_kill(Lib::Ck);
}

#[test]
fn kp_killed_member_loses_its_partitions_after_the_session_timeout() {
    split_then_kill(Lib::Kp);
}

// ---------------------------------------------------------------------------------------
// 4: commit, close, and a new consumer resumes after the commit.

fn commit_then_resume(lib: Lib) {
    let label = format!("resume-{}", lib.name());
    let broker = start_broker(&label);
    let (topic, group) = (format!("{label}-t"), format!("{label}-g"));
    create_topic(&broker, &topic, 4, &[]);
    let acks = produce(&broker, &topic, 60);
    let (first, committed) = consume_and_commit(lib, &broker, &topic, &group, 23);
    // What was committed is the offset after each partition's last consumed message.
    let mut expected_commits: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &first {
        expected_commits.insert(m.partition, m.offset + 1);
    }
    assert_eq!(committed, expected_commits, "commits reported by the client");
    assert_resumed_at(&first, &BTreeMap::new());

    let rest = consume_rest(lib, &broker, &topic, &group);
    assert_eq!(rest.len(), 60 - 23, "the second consumer read {} messages", rest.len());
    assert_resumed_at(&rest, &committed);
    assert_exactly_once(&[&first, &rest], &acks);
}

#[test]
fn ck_new_consumer_resumes_after_the_committed_offset() {
    commit_then_resume(Lib::Ck);
}

#[test]
fn kp_new_consumer_resumes_after_the_committed_offset() {
    commit_then_resume(Lib::Kp);
}

// ---------------------------------------------------------------------------------------
// 5: two groups each receive every message; one group's commits do not move the other.

fn two_groups(lib: Lib) {
    let label = format!("two-groups-{}", lib.name());
    let broker = start_broker(&label);
    let topic = format!("{label}-t");
    let (x, y) = (format!("{label}-x"), format!("{label}-y"));
    create_topic(&broker, &topic, 3, &[]);
    let acks = produce(&broker, &topic, 30);
    let (x_first, x_committed) = consume_and_commit(lib, &broker, &topic, &x, 10);
    let y_all = consume_rest(lib, &broker, &topic, &y);
    assert_resumed_at(&y_all, &BTreeMap::new());
    assert_exactly_once(&[&y_all], &acks);
    let x_rest = consume_rest(lib, &broker, &topic, &x);
    assert_resumed_at(&x_rest, &x_committed);
    assert_exactly_once(&[&x_first, &x_rest], &acks);
}

#[test]
fn ck_two_groups_each_receive_every_message() {
    two_groups(Lib::Ck);
}

#[test]
fn kp_two_groups_each_receive_every_message() {
    two_groups(Lib::Kp);
}

// ---------------------------------------------------------------------------------------
// 6: committed offsets survive a clean restart and a kill -9.

fn commits_survive_restarts(lib: Lib) {
    let label = format!("restart-{}", lib.name());
    let mut broker = start_broker(&label);
    let (topic, group) = (format!("{label}-t"), format!("{label}-g"));
    create_topic(&broker, &topic, 2, &[]);
    let acks = produce(&broker, &topic, 40);

    let (first, committed_1) = consume_and_commit(lib, &broker, &topic, &group, 10);
    broker.restart(); // SIGTERM, exit 0, start again on the same data dir
    let (second, committed_2) = consume_and_commit(lib, &broker, &topic, &group, 12);
    assert_resumed_at(&second, &committed_1);

    broker.kill9();
    broker.restart();
    let rest = consume_rest(lib, &broker, &topic, &group);
    let mut committed = committed_1.clone();
    committed.extend(committed_2);
    assert_resumed_at(&rest, &committed);
    assert_eq!(rest.len(), 40 - 10 - 12, "messages read after the kill -9");
    assert_exactly_once(&[&first, &second, &rest], &acks);
}

#[test]
fn ck_commits_survive_a_clean_restart_and_a_kill9() {
    commits_survive_restarts(Lib::Ck);
}

#[test]
fn kp_commits_survive_a_clean_restart_and_a_kill9() {
    commits_survive_restarts(Lib::Kp);
}

// ---------------------------------------------------------------------------------------
// 7: `fjord group describe|list|reset-offsets`.

#[test]
fn cli_group_describe_shows_lag_list_lists_and_reset_waits_for_an_empty_group() {
    let broker = start_broker("cli-group");
    let bootstrap = broker.bootstrap();
    let (topic, lagging, caught_up) = ("cli-group-t", "cli-group-lagging", "cli-group-caught-up");
    create_topic(&broker, topic, 2, &[]);
    for (partition, count, start) in [(0, 20, 0), (1, 10, 20)] {
        let out = python_ok(
            "ck.py",
            &[
                "produce",
                "--count",
                &count.to_string(),
                "--start",
                &start.to_string(),
                "--partition",
                &partition.to_string(),
                &bootstrap,
                topic,
            ],
        );
        assert_eq!(parse_acks(&out).len(), count, "{out}");
    }
    client("commit", Lib::Ck, &broker, topic, lagging, &["0:7"]);
    client("commit", Lib::Kp, &broker, topic, caught_up, &["1:10"]);

    let d = describe(&broker, lagging);
    assert_eq!((d.state.as_str(), d.members), ("Empty", 0), "{}", d.text);
    let expected: BTreeMap<(String, i32), LagRow> = [(
        (topic.to_string(), 0),
        LagRow { committed: Some(7), end: 20, lag: Some(13), member: None },
    )]
    .into();
    assert_eq!(d.rows, expected, "describe {lagging}:\n{}", d.text);
    let d = describe(&broker, caught_up);
    let expected: BTreeMap<(String, i32), LagRow> = [(
        (topic.to_string(), 1),
        LagRow { committed: Some(10), end: 10, lag: Some(0), member: None },
    )]
    .into();
    assert_eq!(d.rows, expected, "describe {caught_up}:\n{}", d.text);

    let listed = fjord_ok(&["group", "list", "-b", &bootstrap]);
    let names: BTreeSet<&str> = listed.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(names, BTreeSet::from([caught_up, lagging]), "group list:\n{listed}");

    // A member joins: describe shows it owning both partitions; reset is refused.
    let mut member = Member::spawn("m", Lib::Ck, &broker, topic, lagging);
    wait_until(
        &broker,
        &mut [&mut member],
        REBALANCE_MS_MAX,
        "the member to own both partitions",
        |m| m[0].has(&[0, 1]),
    );
    let d = describe_settled(&broker, lagging, 1);
    assert_eq!((d.state.as_str(), d.members), ("Stable", 1), "{}", d.text);
    let owner = d.rows[&(topic.to_string(), 0)].member.clone().expect("partition 0 has an owner");
    let expected: BTreeMap<(String, i32), LagRow> = [
        (
            (topic.to_string(), 0),
            LagRow { committed: Some(7), end: 20, lag: Some(13), member: Some(owner.clone()) },
        ),
        (
            (topic.to_string(), 1),
            LagRow { committed: None, end: 10, lag: None, member: Some(owner) },
        ),
    ]
    .into();
    assert_eq!(d.rows, expected, "describe with a member:\n{}", d.text);
    let listed = fjord_ok(&["group", "list", "-b", &bootstrap]);
    assert!(listed.lines().any(|l| l == format!("{lagging}\tStable")), "group list:\n{listed}");

    let refused =
        fjord(&["group", "reset-offsets", lagging, "-t", topic, "--to-earliest", "-b", &bootstrap]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "reset-offsets succeeded with an active member: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(stderr.contains("active member"), "reset-offsets refusal: {stderr}");
    assert_eq!(
        describe(&broker, lagging).rows[&(topic.to_string(), 0)].committed,
        Some(7),
        "a refused reset moved the offset"
    );

    member.stop();
    wait_until(&broker, &mut [&mut member], REBALANCE_MS_MAX, "the member to close", |m| {
        m[0].closed
    });
    let out = fjord_ok(&[
        "group",
        "reset-offsets",
        lagging,
        "-t",
        topic,
        "--to-earliest",
        "-b",
        &bootstrap,
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [format!("{topic}-0 -> 0"), format!("{topic}-1 -> 0")],
        "reset output"
    );
    let d = describe(&broker, lagging);
    assert_eq!((d.state.as_str(), d.members), ("Empty", 0), "{}", d.text);
    let expected: BTreeMap<(String, i32), LagRow> = [
        (
            (topic.to_string(), 0),
            LagRow { committed: Some(0), end: 20, lag: Some(20), member: None },
        ),
        (
            (topic.to_string(), 1),
            LagRow { committed: Some(0), end: 10, lag: Some(10), member: None },
        ),
    ]
    .into();
    assert_eq!(d.rows, expected, "describe after the reset:\n{}", d.text);
}

// ---------------------------------------------------------------------------------------
// 8: `fjord consume --group`.

#[test]
fn cli_consume_with_a_group_reads_each_message_once_and_resumes_after_a_reset() {
    let broker = start_broker("cli-consume");
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("cli-consume-t", "cli-consume-g");
    create_topic(&broker, topic, 4, &[]);
    let acks = produce(&broker, topic, 40);
    let all: BTreeMap<(i32, i64), String> = acks
        .iter()
        .map(|a| {
            ((a.partition, a.offset), String::from_utf8(support::value(a.index, 0)).expect("UTF-8"))
        })
        .collect();
    let check = |lines: &[((i32, i64), String)], what: &str| -> BTreeSet<(i32, i64)> {
        let mut seen = BTreeSet::new();
        for (position, value) in lines {
            assert_eq!(all.get(position), Some(value), "{what}: {position:?} printed {value:?}");
            assert!(seen.insert(*position), "{what}: {position:?} printed twice");
        }
        seen
    };

    let first = check(&cli_consume(&broker, topic, group, &["-c", "15"]), "first run (-c 15)");
    assert_eq!(first.len(), 15, "first run");
    let second = check(&cli_consume(&broker, topic, group, &[]), "second run");
    assert!(
        first.is_disjoint(&second),
        "the second run re-printed {:?}",
        first.intersection(&second).collect::<Vec<_>>()
    );
    let union: BTreeSet<(i32, i64)> = first.union(&second).copied().collect();
    assert_eq!(union, all.keys().copied().collect(), "two runs together");
    let third = cli_consume(&broker, topic, group, &[]);
    assert!(
        third.is_empty(),
        "a third run printed {} records: {:?}",
        third.len(),
        &third[..third.len().min(5)]
    );

    fjord_ok(&["group", "reset-offsets", group, "-t", topic, "--to-earliest", "-b", &bootstrap]);
    let again = check(&cli_consume(&broker, topic, group, &[]), "after --to-earliest");
    assert_eq!(again, all.keys().copied().collect(), "after reset --to-earliest");

    fjord_ok(&["group", "reset-offsets", group, "-t", topic, "--to-offset", "2", "-b", &bootstrap]);
    let from_two = check(&cli_consume(&broker, topic, group, &[]), "after --to-offset 2");
    let expected: BTreeSet<(i32, i64)> = all.keys().filter(|(_, o)| *o >= 2).copied().collect();
    assert_eq!(from_two, expected, "after reset --to-offset 2");

    fjord_ok(&["group", "reset-offsets", group, "-t", topic, "--to-latest", "-b", &bootstrap]);
    let none = cli_consume(&broker, topic, group, &[]);
    assert!(none.is_empty(), "after --to-latest printed {:?}", &none[..none.len().min(5)]);
}

// ---------------------------------------------------------------------------------------
// Bad input: raw requests with unknown members, stale generations, unknown partitions and
// oversized metadata. Non-flexible versions, built by hand (see support::wire).

mod raw {
    use super::*;

    pub(super) const OFFSET_COMMIT: i16 = 8;
    pub(super) const OFFSET_FETCH: i16 = 9;
    pub(super) const JOIN_GROUP: i16 = 11;
    pub(super) const HEARTBEAT: i16 = 12;
    pub(super) const LEAVE_GROUP: i16 = 13;
    pub(super) const SYNC_GROUP: i16 = 14;

    pub(super) const NONE: i16 = 0;
    pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(super) const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub(super) const ILLEGAL_GENERATION: i16 = 22;
    pub(super) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(super) const REBALANCE_IN_PROGRESS: i16 = 27;

    pub(super) fn bytes(d: &mut Decoder) -> Option<Vec<u8>> {
        let n = d.i32();
        if n < 0 {
            return None;
        }
        let n = n as usize;
        assert!(d.remaining() >= n, "bytes field of {n} past the end");
        let out = d.bytes[d.at..d.at + n].to_vec();
        d.at += n;
        Some(out)
    }

    /// ConsumerProtocolSubscription v0 for one topic.
    pub(super) fn subscription(topic: &str) -> Vec<u8> {
        let mut e = Encoder::new();
        e.i16(0).i32(1).string(topic).i32(-1);
        e.0
    }

    /// ConsumerProtocolAssignment v0 for one topic.
    pub(super) fn assignment(topic: &str, partitions: &[i32]) -> Vec<u8> {
        let mut e = Encoder::new();
        e.i16(0).i32(1).string(topic).i32(partitions.len() as i32);
        for p in partitions {
            e.i32(*p);
        }
        e.i32(-1);
        e.0
    }

    #[derive(Debug)]
    pub(super) struct Joined {
        pub error: i16,
        pub generation: i32,
        pub leader: String,
        pub member_id: String,
        pub members: Vec<String>,
    }

    /// JoinGroup v1 (no member id required first).
    pub(super) fn join(conn: &mut Conn, group: &str, member_id: &str, topic: &str) -> Joined {
        let mut e = Encoder::new();
        e.string(group).i32(30_000).i32(30_000).string(member_id).string("consumer");
        e.i32(1).string("range").bytes(&subscription(topic));
        let response = conn.call(JOIN_GROUP, 1, 1, &e.0);
        let mut d = Decoder::new(&response);
        let error = d.i16();
        let generation = d.i32();
        let _protocol = d.string();
        let leader = d.string().unwrap_or_default();
        let member_id = d.string().unwrap_or_default();
        let members = (0..d.array_len())
            .map(|_| {
                let id = d.string().unwrap_or_default();
                let _metadata = bytes(&mut d);
                id
            })
            .collect();
        Joined { error, generation, leader, member_id, members }
    }

    /// SyncGroup v0: (error, this member's assignment).
    pub(super) fn sync(
        conn: &mut Conn,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: &[(&str, Vec<u8>)],
    ) -> (i16, Vec<u8>) {
        let mut e = Encoder::new();
        e.string(group).i32(generation).string(member_id).i32(assignments.len() as i32);
        for (id, a) in assignments {
            e.string(id).bytes(a);
        }
        let response = conn.call(SYNC_GROUP, 0, 2, &e.0);
        let mut d = Decoder::new(&response);
        let error = d.i16();
        (error, bytes(&mut d).unwrap_or_default())
    }

    /// Heartbeat v0.
    pub(super) fn heartbeat(conn: &mut Conn, group: &str, generation: i32, member_id: &str) -> i16 {
        let mut e = Encoder::new();
        e.string(group).i32(generation).string(member_id);
        let response = conn.call(HEARTBEAT, 0, 3, &e.0);
        Decoder::new(&response).i16()
    }

    /// LeaveGroup v0.
    pub(super) fn leave(conn: &mut Conn, group: &str, member_id: &str) -> i16 {
        let mut e = Encoder::new();
        e.string(group).string(member_id);
        let response = conn.call(LEAVE_GROUP, 0, 4, &e.0);
        Decoder::new(&response).i16()
    }

    /// OffsetCommit v2 of (topic, partition, offset, metadata); returns the error per
    /// (topic, partition) in response order.
    pub(super) fn commit(
        conn: &mut Conn,
        group: &str,
        generation: i32,
        member_id: &str,
        entries: &[(&str, i32, i64, &str)],
    ) -> Vec<((String, i32), i16)> {
        let mut e = Encoder::new();
        e.string(group).i32(generation).string(member_id).i64(-1);
        e.i32(entries.len() as i32);
        for (topic, partition, offset, metadata) in entries {
            e.string(topic).i32(1).i32(*partition).i64(*offset).string(metadata);
        }
        let response = conn.call(OFFSET_COMMIT, 2, 5, &e.0);
        let mut d = Decoder::new(&response);
        let mut out = Vec::new();
        for _ in 0..d.array_len() {
            let topic = d.string().unwrap_or_default();
            for _ in 0..d.array_len() {
                let partition = d.i32();
                out.push(((topic.clone(), partition), d.i16()));
            }
        }
        out
    }

    /// OffsetFetch v1: (partition, committed offset, metadata, error) per partition asked.
    pub(super) fn fetch(
        conn: &mut Conn,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Vec<(i32, i64, Option<String>, i16)> {
        let mut e = Encoder::new();
        e.string(group).i32(1).string(topic).i32(partitions.len() as i32);
        for p in partitions {
            e.i32(*p);
        }
        let response = conn.call(OFFSET_FETCH, 1, 6, &e.0);
        let mut d = Decoder::new(&response);
        let mut out = Vec::new();
        for _ in 0..d.array_len() {
            let _topic = d.string();
            for _ in 0..d.array_len() {
                let partition = d.i32();
                let offset = d.i64();
                let metadata = d.string();
                out.push((partition, offset, metadata, d.i16()));
            }
        }
        out
    }
}

#[test]
fn unknown_members_stale_generations_bad_partitions_and_big_metadata_are_refused() {
    use raw::*;
    let broker = start_broker("groups-bad-input");
    let (topic, group) = ("groups-bad-t", "groups-bad-g");
    create_topic(&broker, topic, 2, &[]);
    let acks = produce(&broker, topic, 20);
    let mut conn = Conn::connect(broker.addr());

    // A group that does not exist knows no member.
    assert_eq!(
        heartbeat(&mut conn, "groups-bad-nobody", 1, "ghost"),
        UNKNOWN_MEMBER_ID,
        "heartbeat to a group that does not exist"
    );

    // Member 1 forms generation g1 alone.
    let j1 = join(&mut conn, group, "", topic);
    assert_eq!(j1.error, NONE, "first join: {j1:?}");
    assert_eq!(j1.leader, j1.member_id, "a lone member leads: {j1:?}");
    let m1 = j1.member_id.clone();
    let g1 = j1.generation;
    let (error, mine) =
        sync(&mut conn, group, g1, &m1, &[(m1.as_str(), assignment(topic, &[0, 1]))]);
    assert_eq!((error, mine), (NONE, assignment(topic, &[0, 1])), "leader's sync");
    assert_eq!(heartbeat(&mut conn, group, g1, &m1), NONE, "heartbeat of a stable member");

    // Unknown member ids.
    assert_eq!(
        heartbeat(&mut conn, group, g1, "ghost"),
        UNKNOWN_MEMBER_ID,
        "heartbeat from an unknown member"
    );
    let answer = commit(&mut conn, group, g1, "ghost", &[(topic, 0, 3, "")]);
    assert_eq!(
        answer,
        [((topic.to_string(), 0), UNKNOWN_MEMBER_ID)],
        "commit from an unknown member"
    );
    let answer = commit(&mut conn, group, -1, "", &[(topic, 0, 3, "")]);
    assert_eq!(
        answer,
        [((topic.to_string(), 0), UNKNOWN_MEMBER_ID)],
        "a simple (memberless) commit to a group with members"
    );
    // Generations that are not the current one.
    assert_eq!(
        heartbeat(&mut conn, group, g1 + 1, &m1),
        ILLEGAL_GENERATION,
        "heartbeat from a future generation"
    );
    let answer = commit(&mut conn, group, g1 + 5, &m1, &[(topic, 0, 3, "")]);
    assert_eq!(
        answer,
        [((topic.to_string(), 0), ILLEGAL_GENERATION)],
        "commit with a future generation"
    );

    // Member 2 joins: the rebalance is announced to member 1 through its heartbeat, member 1
    // rejoins, and generation g2 starts. Member 2's join is held until then, so it runs on
    // its own connection in a thread.
    let addr = broker.addr();
    let (group_2, topic_2) = (group.to_string(), topic.to_string());
    let second = std::thread::spawn(move || {
        let mut conn = Conn::connect(addr);
        let joined = join(&mut conn, &group_2, "", &topic_2);
        assert_eq!(joined.error, NONE, "second member's join: {joined:?}");
        let (error, mine) = sync(&mut conn, &group_2, joined.generation, &joined.member_id, &[]);
        (conn, joined, error, mine)
    });
    let deadline = Instant::now() + Duration::from_millis(REBALANCE_MS_MAX);
    loop {
        match heartbeat(&mut conn, group, g1, &m1) {
            NONE => assert!(
                Instant::now() < deadline,
                "no rebalance announced within {REBALANCE_MS_MAX} ms"
            ),
            REBALANCE_IN_PROGRESS => break,
            other => panic!("heartbeat while member 2 joins: error {other}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let j2 = join(&mut conn, group, &m1, topic);
    assert_eq!(j2.error, NONE, "rejoin: {j2:?}");
    assert_eq!(j2.leader, m1, "the old leader stays leader: {j2:?}");
    assert_eq!(j2.members.len(), 2, "the leader sees both members: {j2:?}");
    let g2 = j2.generation;
    assert!(g2 > g1, "generation after a rebalance: {g2} (was {g1})");
    let m2 = j2.members.iter().find(|id| **id != m1).expect("member 2 in the join answer").clone();
    let (error, mine) = sync(
        &mut conn,
        group,
        g2,
        &m1,
        &[(m1.as_str(), assignment(topic, &[0])), (m2.as_str(), assignment(topic, &[1]))],
    );
    assert_eq!((error, mine), (NONE, assignment(topic, &[0])), "leader's sync in g2");
    let (mut conn_2, joined_2, error, theirs) = second.join().expect("second member thread");
    assert_eq!(
        (joined_2.member_id.as_str(), joined_2.generation),
        (m2.as_str(), g2),
        "member 2's join"
    );
    assert_eq!((error, theirs), (NONE, assignment(topic, &[1])), "member 2's sync");

    // The generation before the rebalance is stale now.
    assert_eq!(
        heartbeat(&mut conn, group, g1, &m1),
        ILLEGAL_GENERATION,
        "heartbeat with the stale generation"
    );
    let answer = commit(&mut conn, group, g1, &m1, &[(topic, 0, 3, "")]);
    assert_eq!(
        answer,
        [((topic.to_string(), 0), ILLEGAL_GENERATION)],
        "commit with the stale generation"
    );
    let answer = commit(&mut conn_2, group, g2, &m1[..m1.len() - 1], &[(topic, 1, 3, "")]);
    assert_eq!(
        answer,
        [((topic.to_string(), 1), UNKNOWN_MEMBER_ID)],
        "commit from a truncated member id"
    );

    // Partitions that do not exist, next to one that does: only they are refused.
    let answer = commit(
        &mut conn,
        group,
        g2,
        &m1,
        &[(topic, 0, 4, "ok"), (topic, 99, 1, ""), ("groups-bad-no-such-topic", 0, 1, "")],
    );
    let expected = [
        ((topic.to_string(), 0), NONE),
        ((topic.to_string(), 99), UNKNOWN_TOPIC_OR_PARTITION),
        (("groups-bad-no-such-topic".to_string(), 0), UNKNOWN_TOPIC_OR_PARTITION),
    ];
    assert_eq!(answer, expected, "commit to unknown partitions");
    // Metadata: 4096 bytes is the limit, one more is refused and changes nothing.
    let limit = "m".repeat(4096);
    let over = "m".repeat(4097);
    assert_eq!(
        commit(&mut conn, group, g2, &m1, &[(topic, 0, 5, &limit)]),
        [((topic.to_string(), 0), NONE)],
        "commit with 4096 bytes of metadata"
    );
    assert_eq!(
        commit(&mut conn, group, g2, &m1, &[(topic, 0, 6, &over)]),
        [((topic.to_string(), 0), OFFSET_METADATA_TOO_LARGE)],
        "commit with 4097 bytes of metadata"
    );
    let fetched = fetch(&mut conn, group, topic, &[0, 1]);
    assert_eq!(
        fetched,
        [(0, 5, Some(limit.clone()), NONE), (1, -1, Some(String::new()), NONE)],
        "offsets after the refused commits"
    );

    // The group is still usable: both members heartbeat in g2 and leave cleanly.
    assert_eq!(heartbeat(&mut conn, group, g2, &m1), NONE, "member 1 after the bad requests");
    assert_eq!(heartbeat(&mut conn_2, group, g2, &m2), NONE, "member 2 after the bad requests");
    assert_eq!(leave(&mut conn_2, group, &m2), NONE, "member 2 leaves");
    assert_eq!(leave(&mut conn, group, &m1), NONE, "member 1 leaves");
    assert_eq!(leave(&mut conn, group, &m1), UNKNOWN_MEMBER_ID, "leaving twice");
    assert_eq!(heartbeat(&mut conn, group, g2, &m1), UNKNOWN_MEMBER_ID, "heartbeat after leaving");

    // And a real consumer in the same group resumes where the accepted commit left off.
    let rest = consume_rest(Lib::Ck, &broker, topic, group);
    assert_resumed_at(&rest, &BTreeMap::from([(0, 5)]));
    let partition_0 = acks.iter().filter(|a| a.partition == 0).count() as i64;
    let partition_1 = acks.iter().filter(|a| a.partition == 1).count() as i64;
    assert_eq!(
        rest.len() as i64,
        (partition_0 - 5).max(0) + partition_1,
        "messages after the commit at 0:5"
    );
    assert_values_match(&rest, &acks);
}

/// Kafka answers a commit that arrives between JoinGroup and SyncGroup (the group is
/// CompletingRebalance, the member has its new generation but not yet its partitions) with
/// REBALANCE_IN_PROGRESS, so the client commits again once it knows what it owns.
#[test]
fn commit_between_join_and_sync_gets_rebalance_in_progress() {
    use raw::*;
    let broker = start_broker("groups-commit-before-sync");
    let (topic, group) = ("groups-before-sync-t", "groups-before-sync-g");
    create_topic(&broker, topic, 1, &[]);
    let mut conn = Conn::connect(broker.addr());
    let joined = join(&mut conn, group, "", topic);
    assert_eq!(joined.error, NONE, "join: {joined:?}");
    let (g, m) = (joined.generation, joined.member_id.clone());
    let early = commit(&mut conn, group, g, &m, &[(topic, 0, 1, "")]);
    let (error, _) = sync(&mut conn, group, g, &m, &[(m.as_str(), assignment(topic, &[0]))]);
    assert_eq!(error, NONE, "sync");
    assert_eq!(
        commit(&mut conn, group, g, &m, &[(topic, 0, 2, "")]),
        [((topic.to_string(), 0), NONE)],
        "commit once stable"
    );
    assert_eq!(
        early,
        [((topic.to_string(), 0), REBALANCE_IN_PROGRESS)],
        "commit before SyncGroup (CompletingRebalance)"
    );
}

// ---------------------------------------------------------------------------------------
// Assignors are the clients' business: cooperative-sticky and round-robin work unchanged.

#[test]
fn cooperative_sticky_and_roundrobin_assignors_split_and_take_over() {
    for strategy in ["cooperative-sticky", "roundrobin"] {
        let broker = start_broker(&format!("assignor-{strategy}"));
        let topic = format!("assignor-{strategy}-t");
        create_topic(&broker, &topic, 4, &[]);
        let output = crate::support::python_ok(
            "groups_assignors.py",
            &[&broker.bootstrap(), &topic, &format!("{strategy}-g"), strategy],
        );
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{strategy}: {output}");
        let split: std::collections::BTreeMap<String, Vec<i32>> = parse_assignments(lines[0]);
        let (a, b) = (&split["a"], &split["b"]);
        assert!(
            !a.is_empty() && !b.is_empty(),
            "{strategy}: both members get partitions: {output}"
        );
        let mut all: Vec<i32> = a.iter().chain(b).copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3], "{strategy}: a disjoint split of all four: {output}");
        let after: std::collections::BTreeMap<String, Vec<i32>> = parse_assignments(lines[1]);
        assert_eq!(
            after["a"],
            vec![0, 1, 2, 3],
            "{strategy}: the remaining member takes all: {output}"
        );
    }
}

/// Parses `{"a": [0, 1], "b": [2, 3]}` (a tiny JSON subset, no serde in tests).
fn parse_assignments(line: &str) -> std::collections::BTreeMap<String, Vec<i32>> {
    let mut out = std::collections::BTreeMap::new();
    for part in line.trim_matches(|c| c == '{' || c == '}').split("], ") {
        let (name, list) = part.split_once(": ").unwrap_or_else(|| panic!("cannot parse {line}"));
        let name = name.trim().trim_matches('"').to_string();
        let list = list.trim().trim_start_matches('[').trim_end_matches(']');
        let values = if list.is_empty() || list == "null" {
            Vec::new()
        } else {
            list.split(", ").map(|v| v.trim().parse().expect("a partition")).collect()
        };
        out.insert(name, values);
    }
    out
}
