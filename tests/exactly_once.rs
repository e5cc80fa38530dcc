//! Exactly-once processing through real applications killed mid-stream (SIGKILL, no clean
//! shutdown) and started again: Kafka Streams 4.4 with `processing.guarantee=exactly_once_v2`
//! (Kafka's WordCountDemo, `tests/clients/java/apps`), and a consume-transform-produce loop on
//! confluent-kafka (`tests/clients/python/eos_loop.py`) that commits its consumer offsets in
//! its transactions. Each kill lands in an open transaction whose records are already in the
//! log; the restarted application fences it (or, under a new transactional id, the
//! coordinator aborts it at its timeout), and a read_committed reader then sees every input
//! accounted for exactly once while a read_uncommitted one also sees the aborted records.
//!
//! The python loop's expected output is what it prints against Apache Kafka 4.4.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::apps::JavaApp;
use crate::support::{
    create_topic, kcat_ok, line_channel, python_ok, python_path, tagged, TempDir, TestBroker,
};

/// `fjord serve` flags: a group's first rebalance does not wait for more members, and a
/// transaction open past its timeout is aborted within a second.
const SERVE_FLAGS: &[&str] =
    &["--group-initial-rebalance-delay-ms", "0", "--transaction-check-interval-ms", "1000"];
const SCRIPT: &str = "eos_loop.py";
/// How often a wait on counts or offsets asks again (each ask is a python run of about a
/// second, so this only spaces them out).
const POLL_MS: u64 = 300;

/// `tests/clients/python/eos_loop.py`, for a python started directly (not under `timeout`,
/// so a kill reaches the client itself).
fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python").join(SCRIPT)
}

// ---------------------------------------------------------------------------------------
// Kafka Streams.

const WORD_COUNT: &str = "org.apache.kafka.streams.examples.wordcount.WordCountDemo";
const INPUT: &str = "streams-plaintext-input";
const OUTPUT: &str = "streams-wordcount-output";
/// One record of input every this many ms around each kill: with commits every
/// 200 ms its transaction is open nearly all the time.
const TRICKLE_MS: u64 = 20;
/// Longest wait for a transaction with records on the output topic, in one attempt.
const AWAIT_OPEN_SECONDS: u64 = 20;
/// How long input keeps coming while the application is down.
const DOWN_MS: u64 = 1000;
/// Kills until one leaves a transaction open on the output topic (the first nearly always
/// does: it is sent the moment one is seen open; one that lands just after the commit leaves
/// nothing to abort, and is tried again).
const KILL_ATTEMPTS_MAX: u32 = 5;
/// Longest wait for the counts: a restart waits out the killed member's session (6 s), and
/// under a new transactional id the old transaction's timeout (10 s), before it counts on.
const COUNTS_SECONDS_MAX: u64 = 120;

/// `(word, count)` records of the word count's output topic, in offset order, read with
/// `isolation` up to the end it sees now (read_committed: the last stable offset).
fn count_records(b: &str, isolation: &str) -> Vec<(String, u64)> {
    let out = python_ok(SCRIPT, &["read", b, OUTPUT, isolation, "--counts"]);
    let records: Vec<(String, u64)> = tagged(&out, "count")
        .into_iter()
        .map(|f| (f[1].to_string(), f[2].parse().expect("a count")))
        .collect();
    assert_eq!(tagged(&out, "records"), vec![vec![records.len().to_string()]], "{out}");
    records
}

/// Each word's last count, read_committed.
fn committed_counts(b: &str) -> BTreeMap<String, u64> {
    count_records(b, "read_committed").into_iter().collect()
}

/// (last stable offset, high watermark) of the output topic's partition.
fn output_offsets(b: &str) -> (i64, i64) {
    let out = python_ok(SCRIPT, &["offsets", b, OUTPUT]);
    let rows = tagged(&out, "offsets");
    assert_eq!(rows.len(), 1, "{out}");
    (rows[0][1].parse().expect("LSO"), rows[0][2].parse().expect("high watermark"))
}

/// Waits until `probe` answers `Some`, asking every `POLL_MS`; panics naming `what` after
/// `seconds` (a `JavaApp` prints its log's tail as the panic drops it).
fn poll<T>(what: &str, seconds: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Waits until the committed counts are exactly `expected`.
fn wait_for_counts(b: &str, expected: &BTreeMap<String, u64>) {
    let mut last = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(COUNTS_SECONDS_MAX);
    while Instant::now() < deadline {
        last = committed_counts(b);
        if last == *expected {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!("after {COUNTS_SECONDS_MAX} s, committed counts {last:?}, expected {expected:?}");
}

/// Adds `lines` copies of `line` to the expected counts (the demo lower-cases and splits on
/// non-word characters).
fn count_words(expected: &mut BTreeMap<String, u64>, line: &str, lines: u64) {
    for word in line.split_whitespace() {
        *expected.entry(word.to_string()).or_default() += lines;
    }
}

/// `eos_loop.py trickle`: `line` written to the input topic every `TRICKLE_MS`, one record
/// at a time, until its stdin is closed.
struct Trickle {
    child: Option<Child>,
}

impl Trickle {
    fn start(b: &str, line: &str) -> Trickle {
        let child = Command::new(python_path())
            .arg(script_path())
            .args(["trickle", b, INPUT, line, "--interval-ms", &TRICKLE_MS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the python trickle");
        Trickle { child: Some(child) }
    }

    /// Stops it; returns how many records it wrote, all delivered.
    fn stop(mut self) -> u64 {
        let mut child = self.child.take().expect("a running trickle");
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait for the trickle");
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "trickle: {}\n{text}\n{stderr}", out.status);
        let produced = tagged(&text, "produced");
        assert_eq!(produced.len(), 1, "trickle: {text}\n{stderr}");
        produced[0][0].parse().expect("a record count")
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// While `line` trickles in, kills the application with SIGKILL once it has counted some of
/// it and a transaction holds records on the output topic, until a kill leaves that
/// transaction open (records above the last stable offset); a kill that does not is followed
/// by a restart. Input goes on for `DOWN_MS` after each kill; `expected` counts every line.
/// The application is left dead.
fn kill_in_a_transaction(
    b: &str,
    app: &mut JavaApp,
    restart: &dyn Fn() -> JavaApp,
    line: &str,
    expected: &mut BTreeMap<String, u64>,
) {
    for attempt in 1..=KILL_ATTEMPTS_MAX {
        let before = expected["hello"];
        let trickle = Trickle::start(b, line);
        poll("the application to count the new input", 60, || {
            (committed_counts(b).get("hello").copied().unwrap_or(0) >= before + 20).then_some(())
        });
        // Killed the moment a transaction holds records on the output topic.
        let mut watcher = Command::new(python_path())
            .arg(script_path())
            .args(["await-open", b, OUTPUT, "--timeout-s", &AWAIT_OPEN_SECONDS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn await-open");
        let lines = line_channel(watcher.stdout.take().expect("piped stdout"));
        let seen = lines.recv_timeout(Duration::from_secs(AWAIT_OPEN_SECONDS + 30));
        app.kill();
        let status = watcher.wait().expect("wait for await-open");
        assert!(status.success() && seen.is_ok(), "await-open: {status}, {seen:?}");
        let (stable, high) = output_offsets(b);
        std::thread::sleep(Duration::from_millis(DOWN_MS));
        count_words(expected, line, trickle.stop());
        let counted = committed_counts(b)["hello"];
        assert!(
            counted > before && counted < expected["hello"],
            "not killed mid-stream: hello counted {counted} times, {before} before the input \
             and {} after it",
            expected["hello"]
        );
        if stable < high {
            return;
        }
        eprintln!("kill {attempt} left no transaction open (LSO {stable} = HW {high}): again");
        *app = restart();
        wait_for_counts(b, expected);
    }
    panic!("none of {KILL_ATTEMPTS_MAX} kills left a transaction open on {OUTPUT}");
}

#[test]
fn kafka_streams_exactly_once_v2_counts_every_word_once_across_a_restart() {
    let broker = TestBroker::start_with("eos-streams", SERVE_FLAGS);
    let b = broker.bootstrap();
    create_topic(&broker, INPUT, 1, &[]);
    create_topic(&broker, OUTPUT, 1, &[]);
    let dir = TempDir::new("eos-streams");
    let state = dir.path().join("state");
    let props = dir.path().join("streams.properties");
    // Commits (and so transactions) every 200 ms; a short session lets a restarted instance
    // take over from the killed one without waiting 45 s.
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={b}\n\
             state.dir={}\n\
             processing.guarantee=exactly_once_v2\n\
             commit.interval.ms=200\n\
             session.timeout.ms=6000\n",
            state.display()
        ),
    )
    .expect("write the streams config");
    let props_path = props.display().to_string();
    let start = || JavaApp::spawn(dir.path(), "wordcount", "INFO", WORD_COUNT, &[&props_path]);
    let mut app = start();
    let mut expected = BTreeMap::new();
    let first = "hello fjord\n";
    let out = kcat_ok(&["-P", "-b", &b, "-t", INPUT], Some(first.repeat(100).as_bytes()));
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    count_words(&mut expected, first, 100);
    wait_for_counts(&b, &expected);

    // Killed in a transaction and started again on its state directory: the same
    // transactional id, so its InitProducerId fences the dead producer and aborts its
    // transaction; the state stores, never checkpointed under EOS, are restored from their
    // changelogs (read_committed).
    kill_in_a_transaction(&b, &mut app, &start, "hello kafka streams", &mut expected);
    app = start();
    wait_for_counts(&b, &expected);

    // Killed again, its state directory gone: a new process id, so a new transactional id;
    // the dead transaction holds the output's last stable offset until the coordinator
    // aborts it at its timeout (Streams' 10 s).
    kill_in_a_transaction(&b, &mut app, &start, "hello again", &mut expected);
    std::fs::remove_dir_all(&state).expect("remove the local state");
    app = start();
    wait_for_counts(&b, &expected);

    // With the cache off (the demo's statestore.cache.max.bytes=0) every input word emits
    // its new count: read_committed, each word's counts are 1, 2, ... its total, each once.
    let committed = count_records(&b, "read_committed");
    let mut sequences: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (word, count) in &committed {
        sequences.entry(word.clone()).or_default().push(*count);
    }
    for (word, total) in &expected {
        let want: Vec<u64> = (1..=*total).collect();
        let got = sequences.get(word).cloned().unwrap_or_default();
        if got != want {
            let mut seen = BTreeMap::new();
            for count in &got {
                *seen.entry(*count).or_insert(0) += 1;
            }
            let twice: Vec<u64> = seen.iter().filter(|(_, n)| **n > 1).map(|(c, _)| *c).collect();
            panic!(
                "{word}: {} committed counts, expected 1..={total}; counts written more than \
                 once: {:?}; last {:?}",
                got.len(),
                &twice[..twice.len().min(10)],
                got.last()
            );
        }
    }
    assert_eq!(sequences.len(), expected.len(), "words counted: {:?}", sequences.keys());
    // read_uncommitted also sees the aborted transactions' counts, written again after each
    // restart: more records, the same last count per word.
    let uncommitted = count_records(&b, "read_uncommitted");
    assert!(
        uncommitted.len() > committed.len(),
        "no aborted records: {} read_uncommitted, {} read_committed",
        uncommitted.len(),
        committed.len()
    );
    let last: BTreeMap<String, u64> = uncommitted.into_iter().collect();
    assert_eq!(last, expected, "read_uncommitted, each word's last count");
    let log = app.log();
    assert!(log.contains("processing.guarantee = exactly_once_v2"), "no exactly_once_v2 config");
    let producers = log.matches("Instantiated a transactional producer").count();
    assert!(producers >= 3, "{producers} transactional producers logged, expected one a start");
}

// ---------------------------------------------------------------------------------------
// A consume-transform-produce loop on confluent-kafka.

/// Records produced to the loop's source topic.
pub(crate) const INPUTS: u64 = 2000;
/// Committed inputs after which each run of the loop is killed (then a run to the end).
const KILL_AFTER: [u64; 2] = [500, 1200];
/// How long the loop holds each transaction open after its records are delivered: the kill
/// lands there.
const PAUSE_MS: &str = "200";
/// Longest a run of the loop may take: it waits out its killed predecessor's session (6 s)
/// before it is assigned the source, then commits 50 records per transaction.
const LOOP_SECONDS_MAX: u64 = 120;

/// A running `eos_loop.py ctp-loop`: python directly, not under `timeout`, so SIGKILL
/// reaches the client itself.
pub(crate) struct Loop {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    /// Every line it printed, for failure messages.
    log: Vec<String>,
    _dir: TempDir,
}

impl Loop {
    pub(crate) fn spawn(b: &str, prefix: &str) -> Loop {
        let dir = TempDir::new("eos-loop");
        let stderr_path = dir.path().join("stderr");
        let (source, sink, group, txid) = (
            format!("{prefix}-a"),
            format!("{prefix}-b"),
            format!("{prefix}-g"),
            format!("{prefix}-tx"),
        );
        let mut child = Command::new(python_path())
            .arg(script_path())
            .args(["ctp-loop", b, &source, &sink, &group, &txid, "--pause-ms", PAUSE_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn the python loop");
        let lines = line_channel(child.stdout.take().expect("piped stdout"));
        Loop { child, lines, stderr_path, log: Vec::new(), _dir: dir }
    }

    /// Its next line, or a panic with what it printed after `LOOP_SECONDS_MAX` or at its end.
    fn next_line(&mut self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.log.push(line.clone());
                line
            }
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "the loop printed nothing more ({e:?}, exit status {status:?}):\n{}\n\
                     stderr:\n{}",
                    self.log.join("\n"),
                    std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
        }
    }

    /// Waits until it opens a transaction (its records written, not committed) once it has
    /// committed `after` inputs; returns the inputs committed then.
    pub(crate) fn open_after(&mut self, after: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(LOOP_SECONDS_MAX);
        let mut committed = None;
        loop {
            let line = self.next_line(deadline);
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["committed", n] => committed = Some(n.parse::<u64>().expect("a count")),
                ["open", _] if committed.is_some_and(|n| n >= after) => break,
                ["done", _] => panic!("the loop ended too soon:\n{}", self.log.join("\n")),
                _ => {}
            }
        }
        committed.expect("a commit before")
    }

    /// Kills it with SIGKILL in the first transaction it opens once it has committed
    /// `after` inputs; returns the inputs committed then.
    fn kill_in_a_transaction(mut self, after: u64) -> u64 {
        let committed = self.open_after(after);
        self.child.kill().expect("SIGKILL the loop");
        self.child.wait().expect("wait for the loop");
        committed
    }

    /// Its lines that tell of an aborted transaction.
    pub(crate) fn aborts(&self) -> Vec<&String> {
        self.log.iter().filter(|l| l.starts_with("aborted")).collect()
    }

    /// Waits for its end: it must exit 0 after `done <INPUTS>`.
    pub(crate) fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(LOOP_SECONDS_MAX);
        while self.next_line(deadline) != format!("done\t{INPUTS}") {}
        let status = self.child.wait().expect("wait for the loop");
        assert!(status.success(), "the loop exited with {status}:\n{}", self.log.join("\n"));
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (last stable offset, high watermark) of every partition of `topic`.
fn offsets_of(b: &str, topic: &str) -> Vec<(i64, i64)> {
    let out = python_ok(SCRIPT, &["offsets", b, topic]);
    tagged(&out, "offsets")
        .into_iter()
        .map(|f| (f[1].parse().expect("LSO"), f[2].parse().expect("high watermark")))
        .collect()
}

/// The values of `topic`, every partition, read with `isolation`.
fn sink_values(b: &str, topic: &str, isolation: &str) -> Vec<String> {
    let out = python_ok(SCRIPT, &["read", b, topic, isolation]);
    let values: Vec<String> = tagged(&out, "value").into_iter().map(|f| f[1].to_string()).collect();
    assert_eq!(tagged(&out, "records"), vec![vec![values.len().to_string()]], "{out}");
    values
}

/// Writes the loop's source topic (`PREFIX-a`, `INPUTS` records) and creates its sink
/// (`PREFIX-b`), each with `replication_factor` replicas.
pub(crate) fn setup_loop(b: &str, prefix: &str, replication_factor: &str) {
    let (source, sink, inputs) = (format!("{prefix}-a"), format!("{prefix}-b"), INPUTS.to_string());
    let out = python_ok(
        SCRIPT,
        &["setup", b, &source, &sink, &inputs, "--replication-factor", replication_factor],
    );
    assert_eq!(tagged(&out, "produced"), vec![vec![inputs]], "{out}");
}

/// Panics unless `sink` holds, read_committed, every input once (`V0` to `V1999`).
pub(crate) fn assert_every_input_once(b: &str, sink: &str) {
    let committed = sink_values(b, sink, "read_committed");
    let mut seen = BTreeMap::new();
    for value in &committed {
        *seen.entry(value.as_str()).or_insert(0u32) += 1;
    }
    let twice: Vec<&str> = seen.iter().filter(|(_, n)| **n > 1).map(|(v, _)| *v).collect();
    let missing: Vec<String> =
        (0..INPUTS).map(|i| format!("V{i}")).filter(|v| !seen.contains_key(v.as_str())).collect();
    assert!(
        committed.len() as u64 == INPUTS && twice.is_empty() && missing.is_empty(),
        "read_committed: {} records; more than once: {:?}; missing: {:?}",
        committed.len(),
        &twice[..twice.len().min(10)],
        &missing[..missing.len().min(10)]
    );
}

/// Runs the loop over `INPUTS` records, killed twice in a transaction, against the broker
/// at `b`, and checks its output.
fn loop_killed_twice_writes_every_record_once(b: &str, prefix: &str) {
    let sink = format!("{prefix}-b");
    setup_loop(b, prefix, "1");
    let mut previous = 0;
    for after in KILL_AFTER {
        let committed = Loop::spawn(b, prefix).kill_in_a_transaction(after);
        assert!(
            committed >= after && committed > previous && committed < INPUTS,
            "killed with {committed} inputs committed (asked for {after}, {previous} before)"
        );
        previous = committed;
        // Its transaction's records are in the log, above the last stable offset.
        let offsets = offsets_of(b, &sink);
        assert!(offsets.iter().any(|(lso, hw)| lso < hw), "no open transaction: {offsets:?}");
    }
    // Started again with the same transactional id, it fences the killed one (aborting its
    // transaction) and goes on from the group's committed offsets.
    Loop::spawn(b, prefix).finish();

    assert_every_input_once(b, &sink);
    // read_uncommitted also sees both killed transactions' records (each up to 50), written
    // again by the next run.
    let uncommitted = sink_values(b, &sink, "read_uncommitted");
    assert!(
        uncommitted.len() as u64 > INPUTS && uncommitted.len() as u64 <= INPUTS + 100,
        "read_uncommitted: {} records",
        uncommitted.len()
    );
}

#[test]
fn a_consume_transform_produce_loop_killed_mid_stream_writes_every_record_once() {
    let broker = TestBroker::start_with("eos-ctp", SERVE_FLAGS);
    loop_killed_twice_writes_every_record_once(&broker.bootstrap(), "eos-ctp");
}
