//! The client matrix (`tests/clients/README.md`) with Apache Kafka's own Java client,
//! `org.apache.kafka:kafka-clients`: its AdminClient, an idempotent KafkaProducer and a
//! group of KafkaConsumers, at the newest 3.9 release, at 4.4.0 and at the newest release on
//! Maven Central. One program,
//! `tests/clients/java/clients/src/Matrix.java`, runs the scenario with each version;
//! `tests/clients/java/clients/setup.sh` (which `.ci/run` calls) builds it per version with
//! Maven. Without that build the tests fail and say to run it.
//!
//! Its admin step also changes the topic it creates (configs, partitions, deleted records)
//! and fails the program when the broker's answers do not show the change.

use std::path::{Path, PathBuf};

use crate::support::matrix::{assert_report, run_scenario};
use crate::support::TestBroker;

/// The admin calls `Matrix.java` makes, each of which must have succeeded.
const ADMIN: &[&str] = &[
    "CreateTopics",
    "DescribeConfigs",
    "IncrementalAlterConfigs",
    "CreatePartitions",
    "DeleteRecords",
    "DeleteTopics",
    "ListGroups",
    "DescribeGroups",
    "ListOffsets",
    "OffsetFetch",
];

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/java/clients")
}

/// Runs the scenario with kafka-clients `version` (one that setup.sh builds) and checks the
/// report, including that the library reporting is that version.
fn runs_the_matrix(label: &str, version: &str) {
    let build = clients_dir().join("target").join(version);
    assert!(
        build.join("classpath.txt").exists() && build.join("classes/Matrix.class").exists(),
        "kafka-clients {version} is not built: run tests/clients/java/clients/setup.sh (.ci/run does)"
    );
    let broker = TestBroker::start_with(label, &["--group-initial-rebalance-delay-ms", "100"]);
    let report = run_scenario(&broker, label, &clients_dir().join("run"), &[version]);
    assert_eq!(
        report.get("client"),
        Some(&serde_json::json!(format!("kafka-clients {version}"))),
        "{label}: {report}"
    );
    assert_report(label, &report, ADMIN);
}

#[test]
fn kafka_clients_3_9_runs_the_matrix() {
    runs_the_matrix("java-3-9", "3.9.2");
}

#[test]
fn kafka_clients_4_4_runs_the_matrix() {
    runs_the_matrix("java-4-4", "4.4.0");
}

/// The newest release on Maven Central the day setup.sh ran (it may be 4.4.0 again).
#[test]
fn kafka_clients_newest_runs_the_matrix() {
    let file = clients_dir().join("target/newest-version.txt");
    let version = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!("{}: {e}: run tests/clients/java/clients/setup.sh (.ci/run does)", file.display())
    });
    let version = version.trim();
    eprintln!("kafka-clients newest: {version}");
    runs_the_matrix("java-newest", version);
}
