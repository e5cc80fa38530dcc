//! The client matrix in Node.js (`tests/clients/README.md`): kafkajs and
//! @platformatic/kafka, pinned in `tests/clients/node/package.json`, each running the matrix
//! scenario through `tests/clients/node/matrix.js` against a broker of its own.
//! `tests/clients/node/setup.sh` installs them into `node_modules` (`.ci/run` runs it);
//! without them the test fails and names the script. Each test also checks that the
//! installed version is the pinned one. @platformatic/kafka is pinned at 1.35.0, the newest
//! release whose engines include the machine's Node.js 20 (2.x needs 22.22 or 24.6).

use std::path::{Path, PathBuf};

use crate::support::matrix::{assert_report, run_scenario};
use crate::support::TestBroker;

/// Admin calls (by Kafka API name) that both clients make.
const ADMIN: &[&str] = &[
    "Metadata",
    "CreateTopics",
    "DescribeConfigs",
    "DeleteTopics",
    "ListGroups",
    "DescribeGroups",
    "ListOffsets",
    "OffsetFetch",
];

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node")
}

/// Runs the scenario with `client` (a CLIENT of matrix.js), installed as `package`, against
/// a fresh broker and checks the report, which must name `expected` (name and version).
fn runs_the_matrix(label: &str, client: &str, package: &str, expected: &str) {
    let installed = node_dir().join("node_modules").join(package);
    assert!(
        installed.exists(),
        "{} is missing: run tests/clients/node/setup.sh (.ci/run does), which installs the Node.js clients",
        installed.display()
    );
    let broker = TestBroker::start_with(label, &["--group-initial-rebalance-delay-ms", "100"]);
    let script = node_dir().join("matrix.js").display().to_string();
    let report = run_scenario(&broker, label, Path::new("node"), &[&script, client]);
    let named = report.get("client").and_then(|c| c.as_str()).unwrap_or_default();
    assert_eq!(
        named, expected,
        "{label}: node_modules holds another version: run tests/clients/node/setup.sh"
    );
    assert_report(label, &report, ADMIN);
}

#[test]
fn kafkajs_2_2_4_runs_the_matrix() {
    runs_the_matrix("node-kafkajs", "kafkajs", "kafkajs", "kafkajs 2.2.4");
}

#[test]
fn platformatic_kafka_1_35_0_runs_the_matrix() {
    runs_the_matrix(
        "node-platformatic",
        "platformatic",
        "@platformatic/kafka",
        "@platformatic/kafka 1.35.0",
    );
}
