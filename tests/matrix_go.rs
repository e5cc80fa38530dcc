//! The client matrix in Go (`tests/clients/README.md`): franz-go (kadm for the admin calls,
//! kgo's idempotent producer and cooperative-sticky group consumers), IBM/sarama
//! (ClusterAdmin, an idempotent SyncProducer, ConsumerGroup) and segmentio/kafka-go
//! (kafka.Client, a Writer without idempotence, which kafka-go lacks, and Readers with a
//! GroupID), each running the matrix scenario against a broker of its own. One program,
//! `tests/clients/go` (a Go module, one file per client), runs the scenario with each;
//! `tests/clients/go/setup.sh` (which `.ci/run` calls) builds it as `bin/matrix` with the
//! releases go.mod pins and as `bin/matrix-latest` with the newest release of each, so a
//! release that breaks Fjord fails here the day it appears. Without those builds the tests
//! fail and name the script; a pinned test also checks that its binary holds its version.

use std::path::{Path, PathBuf};

use crate::support::matrix::{assert_report, run_scenario};
use crate::support::TestBroker;

/// Admin calls (by Kafka API name) that the sarama and kafka-go programs make.
const ADMIN: &[&str] = &[
    "Metadata",
    "CreateTopics",
    "DescribeConfigs",
    "DeleteTopics",
    "ListGroups",
    "DescribeGroups",
    "ListOffsets",
    "OffsetFetch",
    "OffsetCommit",
    "DeleteGroups",
];
/// franz-go's kadm also asks for OffsetForLeaderEpoch (checked beside `ADMIN`).
const FRANZ_EXTRA_ADMIN: &str = "OffsetForLeaderEpoch";

/// The start of the report's `client` for the releases go.mod pins.
const FRANZ_PINNED: &str = "franz-go v1.22.3 (kadm v1.20.0)";
const SARAMA_PINNED: &str = "sarama v1.61.1 ";
const KAFKA_GO_PINNED: &str = "kafka-go v0.4.51 ";

/// The matrix program `binary` (`matrix` or `matrix-latest`); fails naming the setup script
/// when it is not built.
fn matrix_binary(binary: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/go/bin").join(binary);
    assert!(
        path.exists(),
        "{} is not built: run tests/clients/go/setup.sh (.ci/run does), which builds the Go client matrix program",
        path.display()
    );
    path
}

/// Runs the scenario with `client` (franz, sarama or kafkago) of `binary` against a fresh
/// broker and checks the report; `pinned` is how the report's `client` must start (None for
/// the newest releases, whose versions are printed).
fn runs_the_matrix(label: &str, binary: &str, client: &str, pinned: Option<&str>, admin: &[&str]) {
    let program = matrix_binary(binary);
    let broker = TestBroker::start_with(label, &["--group-initial-rebalance-delay-ms", "100"]);
    let report = run_scenario(&broker, label, &program, &[client]);
    let named = report.get("client").and_then(|c| c.as_str()).unwrap_or_default().to_string();
    eprintln!("{label}: {named}");
    if let Some(pinned) = pinned {
        assert!(
            named.starts_with(pinned),
            "{label}: {} holds {named:?}, not {pinned:?}: run tests/clients/go/setup.sh",
            program.display()
        );
    }
    assert_report(label, &report, admin);
}

#[test]
fn franz_go_runs_the_matrix() {
    runs_the_matrix(
        "go-franz",
        "matrix",
        "franz",
        Some(FRANZ_PINNED),
        &[ADMIN, &[FRANZ_EXTRA_ADMIN]].concat(),
    );
}

#[test]
fn sarama_runs_the_matrix() {
    runs_the_matrix("go-sarama", "matrix", "sarama", Some(SARAMA_PINNED), ADMIN);
}

#[test]
fn kafka_go_runs_the_matrix() {
    runs_the_matrix("go-kafkago", "matrix", "kafkago", Some(KAFKA_GO_PINNED), ADMIN);
}

#[test]
fn franz_go_latest_runs_the_matrix() {
    runs_the_matrix(
        "go-franz-latest",
        "matrix-latest",
        "franz",
        None,
        &[ADMIN, &[FRANZ_EXTRA_ADMIN]].concat(),
    );
}

#[test]
fn sarama_latest_runs_the_matrix() {
    runs_the_matrix("go-sarama-latest", "matrix-latest", "sarama", None, ADMIN);
}

#[test]
fn kafka_go_latest_runs_the_matrix() {
    runs_the_matrix("go-kafkago-latest", "matrix-latest", "kafkago", None, ADMIN);
}
