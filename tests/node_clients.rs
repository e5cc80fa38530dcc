//! kafkajs, the Node.js client, against a real broker. `.ci/run` installs it with npm into
//! `tests/clients/node/node_modules`; without it the test fails and says how to install it.

use std::path::{Path, PathBuf};

use crate::support::{run_with_timeout, TestBroker};

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node")
}

#[test]
fn kafkajs_produces_idempotently_and_consumes_in_a_group() {
    let modules = node_dir().join("node_modules").join("kafkajs");
    assert!(
        modules.exists(),
        "kafkajs is not installed: run `(cd tests/clients/node && npm install)` (.ci/run does)"
    );
    let broker = TestBroker::start_with("kafkajs", &["--group-initial-rebalance-delay-ms", "100"]);
    let script = node_dir().join("roundtrip.js").display().to_string();
    let args =
        vec![script, broker.bootstrap(), "kafkajs-topic".to_string(), "kafkajs-group".to_string()];
    let output = run_with_timeout(120, Path::new("node"), &args, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kafkajs failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        line, r#"{"listed":true,"count":1000,"unique":1000,"ordered":true,"committed":1000}"#,
        "kafkajs saw: {line}"
    );
}
