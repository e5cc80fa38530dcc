//! The client matrix in Python (`tests/clients/README.md`): confluent-kafka (librdkafka) at
//! pinned releases from 2.3 on and at the newest, kafka-python (2.x and 3.x) and aiokafka,
//! each running the matrix scenario through `tests/clients/python/matrix.py` against a
//! broker of its own. Each interpreter is a venv that `tests/clients/python/setup.sh`
//! creates (`.ci/run` runs it): `.venvs/<client>-<version>` for the pins, `.venv` for the
//! pins the older tests share, and `.venvs/<client>-latest`, upgraded on every setup, so a
//! release that breaks Fjord fails here the day it appears. A missing venv fails the test
//! and names the script; a pinned test also checks that the venv holds its version.

use std::path::{Path, PathBuf};

use crate::support::matrix::{assert_report, run_scenario};
use crate::support::TestBroker;

/// Admin calls (by Kafka API name) that confluent-kafka makes from 2.3 on.
const CONFLUENT_ADMIN: &[&str] = &[
    "Metadata",
    "CreateTopics",
    "DescribeConfigs",
    "DeleteTopics",
    "ListGroups",
    "DescribeGroups",
    "ListOffsets",
    "OffsetFetch",
];
/// kafka-python 3.x; 2.x has no admin ListOffsets.
const KAFKA_PYTHON_ADMIN: &[&str] = CONFLUENT_ADMIN;
const KAFKA_PYTHON_2_ADMIN: &[&str] = &[
    "Metadata",
    "CreateTopics",
    "DescribeConfigs",
    "DeleteTopics",
    "ListGroups",
    "DescribeGroups",
    "OffsetFetch",
];
/// aiokafka has no admin ListOffsets.
const AIOKAFKA_ADMIN: &[&str] = KAFKA_PYTHON_2_ADMIN;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter of `venv` (relative to the repository); fails naming the setup script
/// when it is missing.
fn venv_python(venv: &str) -> PathBuf {
    let python = repo().join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/clients/python/setup.sh (.ci/run does), which creates the client venvs",
        python.display()
    );
    python
}

/// Runs the scenario with `client` (a CLIENT of matrix.py) from `venv` against a fresh
/// broker and checks the report; `version` is the library version the report must name
/// (None for an unpinned venv, whose version is printed).
fn runs_the_matrix(label: &str, venv: &str, client: &str, version: Option<&str>, admin: &[&str]) {
    let python = venv_python(venv);
    let broker = TestBroker::start_with(label, &["--group-initial-rebalance-delay-ms", "100"]);
    let script = repo().join("tests/clients/python/matrix.py").display().to_string();
    let report = run_scenario(&broker, label, &python, &[&script, client]);
    let named = report.get("client").and_then(|c| c.as_str()).unwrap_or_default().to_string();
    eprintln!("{label}: {named}");
    if let Some(version) = version {
        let library = if client == "confluent" { "confluent-kafka" } else { client };
        assert!(
            named.starts_with(&format!("{library} {version}")),
            "{label}: {venv} holds {named:?}, not {library} {version}: run tests/clients/python/setup.sh"
        );
    }
    assert_report(label, &report, admin);
}

fn confluent_kafka(version: &str) {
    let label = format!("py-ck-{}", version.replace('.', "-"));
    runs_the_matrix(
        &label,
        &format!(".venvs/ck-{version}"),
        "confluent",
        Some(version),
        CONFLUENT_ADMIN,
    );
}

#[test]
fn confluent_kafka_2_3_0_runs_the_matrix() {
    confluent_kafka("2.3.0");
}

#[test]
fn confluent_kafka_2_6_1_runs_the_matrix() {
    confluent_kafka("2.6.1");
}

#[test]
fn confluent_kafka_2_10_1_runs_the_matrix() {
    confluent_kafka("2.10.1");
}

#[test]
fn confluent_kafka_2_14_2_runs_the_matrix() {
    confluent_kafka("2.14.2");
}

#[test]
fn confluent_kafka_2_16_1_runs_the_matrix() {
    confluent_kafka("2.16.1");
}

#[test]
fn confluent_kafka_latest_runs_the_matrix() {
    runs_the_matrix("py-ck-latest", ".venvs/ck-latest", "confluent", None, CONFLUENT_ADMIN);
}

#[test]
fn kafka_python_2_3_3_runs_the_matrix() {
    runs_the_matrix(
        "py-kp-2-3-3",
        ".venvs/kafka-python-2.3.3",
        "kafka-python",
        Some("2.3.3"),
        KAFKA_PYTHON_2_ADMIN,
    );
}

#[test]
fn kafka_python_3_0_12_runs_the_matrix() {
    runs_the_matrix("py-kp-3-0-12", ".venv", "kafka-python", Some("3.0.12"), KAFKA_PYTHON_ADMIN);
}

#[test]
fn kafka_python_latest_runs_the_matrix() {
    runs_the_matrix(
        "py-kp-latest",
        ".venvs/kafka-python-latest",
        "kafka-python",
        None,
        KAFKA_PYTHON_ADMIN,
    );
}

#[test]
fn aiokafka_0_14_0_runs_the_matrix() {
    runs_the_matrix("py-aiokafka-0-14-0", ".venv", "aiokafka", Some("0.14.0"), AIOKAFKA_ADMIN);
}

#[test]
fn aiokafka_latest_runs_the_matrix() {
    runs_the_matrix(
        "py-aiokafka-latest",
        ".venvs/aiokafka-latest",
        "aiokafka",
        None,
        AIOKAFKA_ADMIN,
    );
}
