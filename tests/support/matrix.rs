//! The client matrix scenario of `tests/clients/README.md`: run one client program against
//! a broker and check its report, the same way for every language.

use std::path::Path;

use super::{create_topic, run_with_timeout, TestBroker};

/// Longest one client program may run: start-up (a JVM, a venv), two group joins and the
/// fresh member's wait of 15 s.
pub(crate) const CLIENT_SECONDS_MAX: u64 = 180;
/// Partitions of the matrix topic (the scenario checks the listing against it).
pub(crate) const MATRIX_PARTITIONS: u32 = 3;
/// Records of step 3 and of step 5 of the scenario.
pub(crate) const FIRST_RECORDS: u64 = 300;
pub(crate) const RESUMED_RECORDS: u64 = 50;

/// Creates the scenario's topic on `broker`, runs `program args... BOOTSTRAP TOPIC GROUP`,
/// and returns its report (the last stdout line, parsed). Panics with everything the
/// program printed when it fails or prints no report.
pub(crate) fn run_scenario(
    broker: &TestBroker,
    label: &str,
    program: &Path,
    args: &[&str],
) -> serde_json::Value {
    let topic = format!("matrix-{label}");
    let group = format!("matrix-{label}-group");
    create_topic(broker, &topic, MATRIX_PARTITIONS, &[]);
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([broker.bootstrap(), topic, group]);
    let output = run_with_timeout(CLIENT_SECONDS_MAX, program, &all, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{label}: {} {all:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker:\n{}",
        program.display(),
        output.status,
        broker.stderr_tail()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{label}: no JSON report ({e}) in:\n{stdout}\nstderr:\n{stderr}")
    })
}

/// Checks a report against the scenario: every field as a passing run has it, and at least
/// the admin calls in `admin` (a client that does more passes too).
pub(crate) fn assert_report(label: &str, report: &serde_json::Value, admin: &[&str]) {
    let field = |name: &str| {
        report.get(name).unwrap_or_else(|| panic!("{label}: report lacks `{name}`: {report}"))
    };
    assert_eq!(
        field("listed"),
        &serde_json::json!(true),
        "{label}: topic missing from the all-topics listing: {report}"
    );
    assert_eq!(field("described"), &serde_json::json!(MATRIX_PARTITIONS), "{label}: {report}");
    assert_eq!(field("produced"), &serde_json::json!(FIRST_RECORDS), "{label}: {report}");
    assert_eq!(field("consumed"), &serde_json::json!(FIRST_RECORDS), "{label}: {report}");
    assert_eq!(field("per_key_order"), &serde_json::json!(true), "{label}: {report}");
    assert_eq!(
        field("split"),
        &serde_json::json!(true),
        "{label}: the group did not split the partitions: {report}"
    );
    assert_eq!(
        field("resumed"),
        &serde_json::json!(RESUMED_RECORDS),
        "{label}: did not resume from its commits: {report}"
    );
    let done: Vec<&str> = field("admin")
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for call in admin {
        assert!(done.contains(call), "{label}: admin call {call} missing from {done:?}: {report}");
    }
}
