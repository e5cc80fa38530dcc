//! Transactions through real clients: a transactional producer's committed records are read
//! with read_committed and its aborted ones are not (read_uncommitted sees both), a second
//! producer with the same transactional.id fences the first, the coordinator aborts a
//! transaction left open past its timeout so the last stable offset moves on, and a
//! consume-transform-produce loop commits its consumer offsets in its transactions
//! (exactly once, one batch aborted and processed again).
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
    assert_lines(&out, &["committed\t75", "uncommitted\t125"]);
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
