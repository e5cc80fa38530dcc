//! The APIs admin tools and UIs call to look at a broker and its groups, driven by the
//! clients operators use against a real `fjord serve` (two shards, so partitions live on
//! both and the answers are gathered across them):
//! - DescribeCluster: confluent-kafka's `describe_cluster` (`admin.py`).

use crate::support::{python_ok, tagged, TestBroker};

/// Two shards: partitions of one topic land on both, and requests about the cluster arrive
/// on either; a short initial rebalance delay, as the reference broker has.
const BROKER_ARGS: &[&str] = &["--shards", "2", "--group-initial-rebalance-delay-ms", "100"];

fn start_broker(label: &str) -> TestBroker {
    TestBroker::start_with(label, BROKER_ARGS)
}

#[test]
fn confluent_kafka_describes_the_cluster() {
    let broker = start_broker("describe-cluster");
    let out = python_ok("admin.py", &["describe-cluster", &broker.bootstrap()]);
    assert_eq!(tagged(&out, "cluster"), vec![vec!["fjord", "0"]], "{out}");
    let port = broker.addr().port().to_string();
    assert_eq!(tagged(&out, "node"), vec![vec!["0", "127.0.0.1", port.as_str(), "-"]], "{out}");
    // Kafka's answer without an authorizer: every operation on the cluster resource.
    assert_eq!(
        tagged(&out, "operations"),
        vec![vec![
            "ALTER,ALTER_CONFIGS,CLUSTER_ACTION,CREATE,DESCRIBE,DESCRIBE_CONFIGS,IDEMPOTENT_WRITE"
        ]],
        "{out}"
    );
}
