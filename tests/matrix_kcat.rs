//! kcat, the command-line client on librdkafka, through the matrix scenario of
//! `tests/clients/README.md`: Debian's kcat 1.7.1 on librdkafka 2.0.2 (installed by
//! `.ci/run`), driven by `tests/clients/kcat/matrix.py`. kcat has no admin API, so the
//! scenario's admin step is empty; its two group members are two `kcat -G` processes.

use std::path::Path;

use crate::support::matrix::{assert_report, run_scenario};
use crate::support::{python_path, TestBroker};

#[test]
fn kcat_runs_the_matrix() {
    let broker =
        TestBroker::start_with("kcat-matrix", &["--group-initial-rebalance-delay-ms", "100"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/kcat/matrix.py")
        .display()
        .to_string();
    let report = run_scenario(&broker, "kcat", &python_path(), &[&script]);
    assert!(report["client"].as_str().is_some_and(|c| c.starts_with("kcat ")), "{report}");
    assert_report("kcat", &report, &[]);
}
