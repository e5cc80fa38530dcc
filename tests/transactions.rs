//! Transactions through real clients: a transactional producer's committed records are read
//! with read_committed and its aborted ones are not (read_uncommitted sees both), a second
//! producer with the same transactional.id fences the first, the coordinator aborts a
//! transaction left open past its timeout so the last stable offset moves on, and a
//! consume-transform-produce loop commits its consumer offsets in its transactions
//! (exactly once, one batch aborted and processed again), and Kafka's `kafka-transactions`
//! tool lists and describes an open transaction and its producer.
//!
//! Clients are librdkafka (confluent-kafka, `tests/clients/python/transactions.py`), the
//! Java client 4.4 (`tests/clients/java/apps/src/Transactions.java`, built by that
//! directory's setup.sh) and franz-go's GroupTransactSession (`matrix eos`,
//! `tests/clients/go/txn.go`, built by that directory's setup.sh), each a child process that
//! checks what it reads and prints tab-separated result lines. The expected lines, error
//! names included, are what the programs print against Apache Kafka 4.4.

use std::path::Path;

use crate::support::apps::run_app;
use crate::support::matrix::CLIENT_SECONDS_MAX;
use crate::support::{python_ok, run_with_timeout, TestBroker};

/// `fjord serve` flags for the consume-transform-produce test: its group's first rebalance
/// does not wait for more members.
const GROUP_FLAGS: &[&str] = &["--group-initial-rebalance-delay-ms", "0"];

/// Runs `transactions.py SCENARIO BOOTSTRAP PREFIX` and returns its stdout.
fn python_scenario(broker: &TestBroker, scenario: &str, prefix: &str) -> String {
    python_ok("transactions.py", &[scenario, &broker.bootstrap(), prefix])
}

/// Runs `Transactions SCENARIO BOOTSTRAP PREFIX` (the Java client) and returns its stdout;
/// panics with its output unless it exits 0.
fn java_scenario(broker: &TestBroker, scenario: &str, prefix: &str) -> String {
    let out = run_app("Transactions", &[scenario, &broker.bootstrap(), prefix]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "Transactions {scenario}: {}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs `tests/clients/go/bin/matrix eos BOOTSTRAP PREFIX` (franz-go) and returns its
/// stdout; panics with its output and the broker's log unless it exits 0, and naming the
/// setup script when the program is not built.
fn go_eos(broker: &TestBroker, prefix: &str) -> String {
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/go/bin/matrix");
    assert!(
        program.exists(),
        "{} is not built: run tests/clients/go/setup.sh (.ci/run does), which builds the Go client program",
        program.display()
    );
    let args = ["eos".to_string(), broker.bootstrap(), prefix.to_string()];
    let out = run_with_timeout(CLIENT_SECONDS_MAX, &program, &args, None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "matrix eos: {}\nstdout:\n{text}\nstderr:\n{}\nbroker:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.stderr_tail()
    );
    text
}

/// Panics unless the output's lines are exactly `expected`.
fn assert_lines(out: &str, expected: &[&str]) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, expected, "{out}");
}

/// `transactions.py held-open BOOTSTRAP PREFIX` (confluent-kafka) holding its first
/// transaction open: 10 delivered records on each of the 3 partitions of PREFIX-t, from
/// transactional id PREFIX-tx.
pub(crate) struct HeldOpen {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl HeldOpen {
    /// Starts the script and waits until its transaction is open; panics with its stderr
    /// if it is not.
    pub(crate) fn start(bootstrap: &str, prefix: &str) -> HeldOpen {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(crate::support::python_path())
            .arg(crate::support::script_path("transactions.py"))
            .args(["held-open", bootstrap, prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start transactions.py");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the script's first line");
        if line.trim_end() != "open\t1" {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait for transactions.py");
            panic!(
                "the transaction was not opened: {line:?}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        HeldOpen { child, stdout }
    }

    /// Tells it to commit; panics (with `context`, e.g. a broker's log) unless it then
    /// commits a second transaction and reads both back: 45 records read_committed.
    pub(crate) fn commit(mut self, context: &str) {
        use std::io::{Read, Write};
        self.child
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"commit\n")
            .expect("tell it to commit");
        let output = self.child.wait_with_output().expect("wait for transactions.py");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("read the rest");
        assert!(
            output.status.success() && rest.lines().any(|l| l == "committed\t45"),
            "transactions.py held-open: {}\nstdout: {rest}\nstderr: {}\n{context}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn confluent_kafka_reads_committed_transactions_and_not_aborted_ones() {
    // 5 partitions: 15 committed records each, 10 more aborted.
    let broker = TestBroker::start("txn-commit-abort-python");
    let out = python_scenario(&broker, "commit-abort", "py-ca");
    assert_lines(&out, &["committed\t75", "uncommitted\t125"]);
}

#[test]
fn the_java_client_reads_committed_transactions_and_not_aborted_ones() {
    let broker = TestBroker::start("txn-commit-abort-java");
    let out = java_scenario(&broker, "commit-abort", "java-ca");
    // The Java 4.4 client runs transactions v2 (KIP-890 part 2) as Fjord finalizes
    // `transaction.version` 2: each of its three transactions' ends bumped the epoch.
    assert_lines(&out, &["epoch\t3", "committed\t75", "uncommitted\t125"]);
}

#[test]
fn with_transaction_version_0_the_java_client_runs_transactions_v1() {
    let broker = TestBroker::start_with("txn-v1-java", &["--transaction-version", "0"]);
    let out = java_scenario(&broker, "commit-abort", "java-v1");
    assert_lines(&out, &["epoch\t0", "committed\t75", "uncommitted\t125"]);
}

#[test]
fn a_new_confluent_kafka_producer_fences_the_old_one_with_its_transactional_id() {
    // librdkafka's old producer is refused its next record (an old epoch), which it takes
    // as fatal: `_FENCED`, as against Kafka.
    let broker = TestBroker::start("txn-fenced-python");
    let out = python_scenario(&broker, "fenced", "py-fenced");
    assert_lines(&out, &["fenced\t_FENCED", "p2\tcommitted"]);
}

#[test]
fn a_new_java_producer_fences_the_old_one_with_its_transactional_id() {
    // The old producer goes straight to EndTxn, which Kafka refuses with PRODUCER_FENCED.
    let broker = TestBroker::start("txn-fenced-java");
    let out = java_scenario(&broker, "fenced", "java-fenced");
    assert_lines(&out, &["fenced\tProducerFencedException", "p2\tcommitted"]);
}

#[test]
fn the_coordinator_aborts_a_transaction_open_past_its_timeout() {
    // Open for 10 s with a timeout of 3 s: aborted, its epoch bumped, so records committed
    // after it are readable and its producer's late commit is fenced.
    let broker = TestBroker::start("txn-timeout-python");
    let out = python_scenario(&broker, "timeout", "py-timeout");
    assert_lines(&out, &["after-timeout\t3", "stale\t_FENCED"]);
}

#[test]
fn a_consume_transform_produce_loop_commits_its_offsets_in_its_transactions() {
    let broker = TestBroker::start_with("txn-send-offsets-python", GROUP_FLAGS);
    let out = python_scenario(&broker, "send-offsets", "py-eos");
    assert_lines(&out, &["out\t100", "committed\t100"]);
}

#[test]
fn franz_go_group_transact_session_writes_every_record_once() {
    // 500 records through franz-go's GroupTransactSession in batches of up to 50, each
    // ended with End(TryCommit) except the third, ended with End(TryAbort) and read again.
    let broker = TestBroker::start_with("txn-session-go", GROUP_FLAGS);
    let out = go_eos(&broker, "go-eos");
    assert_lines(&out, &["out\t500", "committed\t500", "aborted-seen\ttrue"]);
}

/// Kafka's own `kafka-transactions` tool sees an open transaction as Kafka shows it: `list`
/// names the id as Ongoing, `describe` its partitions, `describe-producers` the first offset
/// of the producer's open transaction in a partition (what `find-hanging` reads); once
/// committed, the transaction is CompleteCommit and no producer has one open.
#[test]
fn kafka_transactions_lists_and_describes_an_open_transaction() {
    use crate::support::kafka::kafka_tool_ok;

    let broker = TestBroker::start("txn-tool");
    let b = broker.bootstrap();
    let held = HeldOpen::start(&b, "tool");

    let listed = kafka_tool_ok(&["kafka-transactions", "--bootstrap-server", &b, "list"], None);
    assert!(
        listed.lines().any(|l| l.contains("tool-tx") && l.contains("Ongoing")),
        "list:\n{listed}"
    );
    let described = kafka_tool_ok(
        &[
            "kafka-transactions",
            "--bootstrap-server",
            &b,
            "describe",
            "--transactional-id",
            "tool-tx",
        ],
        None,
    );
    assert!(
        described.contains("Ongoing") && described.contains("tool-t-0"),
        "describe:\n{described}"
    );
    let producers = |partition: &str| {
        kafka_tool_ok(
            &[
                "kafka-transactions",
                "--bootstrap-server",
                &b,
                "describe-producers",
                "--topic",
                "tool-t",
                "--partition",
                partition,
            ],
            None,
        )
    };
    // One producer, its open transaction starting at offset 0 (the columns end with
    // CoordinatorEpoch and CurrentTransactionStartOffset).
    let open = producers("0");
    let row = open.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(row.last(), Some(&"0"), "describe-producers while open:\n{open}");

    held.commit("");
    let described = kafka_tool_ok(
        &[
            "kafka-transactions",
            "--bootstrap-server",
            &b,
            "describe",
            "--transactional-id",
            "tool-tx",
        ],
        None,
    );
    assert!(described.contains("CompleteCommit"), "describe after the commit:\n{described}");
    let closed = producers("0");
    let row = closed.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(row.last(), Some(&"None"), "describe-producers after the commit:\n{closed}");
}

/// `transactional.id.expiration.ms`: an id without a transaction for that long goes (a
/// tombstone in `__transaction_state`), so `kafka-transactions` no longer lists it and
/// describing it is TRANSACTIONAL_ID_NOT_FOUND, also after a restart, which replays the
/// tombstone.
#[test]
fn a_transactional_id_unused_past_its_expiration_is_forgotten() {
    use std::time::Duration;

    use crate::support::kafka::{kafka_tool, kafka_tool_ok};
    use crate::support::wait_until;

    let mut broker = TestBroker::start_with(
        "txn-expiry",
        &["--transactional-id-expiration-ms", "2000", "--transaction-check-interval-ms", "200"],
    );
    let out = python_scenario(&broker, "commit-abort", "expiring");
    assert!(out.lines().any(|l| l == "committed\t75"), "{out}");
    let listed =
        |b: &str| kafka_tool_ok(&["kafka-transactions", "--bootstrap-server", b, "list"], None);
    let b = broker.bootstrap();
    wait_until("the transactional id to expire", Duration::from_secs(30), || {
        (!listed(&b).contains("expiring-tx")).then_some(())
    });
    let describe = |b: &str| {
        let out = kafka_tool(&[
            "kafka-transactions",
            "--bootstrap-server",
            b,
            "describe",
            "--transactional-id",
            "expiring-tx",
        ]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let described = describe(&b);
    assert!(described.contains("could not be found"), "describe after expiry:\n{described}");
    assert!(broker.stderr().contains("transactional id expired"), "no expiry was logged");
    broker.restart();
    let b = broker.bootstrap();
    let described = describe(&b);
    assert!(described.contains("could not be found"), "describe after a restart:\n{described}");
    assert!(!listed(&b).contains("expiring-tx"), "listed again after a restart");
}

/// (last stable offset, high watermark) of each partition of `topic`
/// (`eos_loop.py offsets`: ListOffsets latest, read_committed and read_uncommitted).
fn stable_and_high(broker: &TestBroker, topic: &str) -> Vec<(i64, i64)> {
    let out = python_ok("eos_loop.py", &["offsets", &broker.bootstrap(), topic]);
    crate::support::tagged(&out, "offsets")
        .into_iter()
        .map(|f| (f[1].parse().expect("LSO"), f[2].parse().expect("high watermark")))
        .collect()
}

#[test]
fn an_open_transaction_survives_a_broker_crash_and_commits_after_the_restart() {
    // confluent-kafka opens a transaction of 10 delivered records on each of 3 partitions;
    // the broker is killed with SIGKILL and started again on its port. The partitions find
    // the transaction open again (from `transactions-start`: the last stable offset stays
    // at its first record) and the coordinator finds it Ongoing in `__transaction_state`,
    // so the producer, still running, commits it and one more: 45 records read_committed.
    let mut broker = TestBroker::start("txn-broker-crash");
    let held = HeldOpen::start(&broker.bootstrap(), "crash");
    let open = stable_and_high(&broker, "crash-t");
    assert_eq!(open, vec![(0, 10); 3], "the open transaction holds each partition's LSO at 0");
    broker.kill9();
    broker.restart_on_same_port();
    assert_eq!(
        stable_and_high(&broker, "crash-t"),
        open,
        "after the crash, the partitions know the transaction is open\n{}",
        broker.stderr_tail()
    );
    held.commit(&format!("broker:\n{}", broker.stderr_tail()));
    // Two transactions of 10 and 5 records, each with its commit marker: all stable.
    assert_eq!(stable_and_high(&broker, "crash-t"), vec![(17, 17); 3]);
}
