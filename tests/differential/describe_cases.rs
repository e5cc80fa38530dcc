//! The APIs admin tools and UIs call to look at a broker, at every version Fjord advertises:
//! DescribeCluster, DescribeProducers and DescribeLogDirs, valid and refused. What differs
//! between any two brokers is cleared before comparing: broker ids (`compare::NODE_IDS`), the
//! log directory's path and its file system's bytes.

use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::*;

use super::cases::{
    create, produce_request, produce_when_ready, s, three_records, topic_name, versions,
};
use super::session::Session;
use crate::support::wire::{record_batch, Producer};

/// A topic of two partitions, three records in partition 0: the log directory's cases
/// describe it.
const DIRS: &str = "diff-dirs";

/// A topic of two partitions whose partition 0 holds one idempotent producer's batch.
const PRODUCED: &str = "diff-producers";

const MISSING: &str = "diff-no-such-topic";

/// The one timestamp of the idempotent batch (its producer's last timestamp).
const PRODUCED_AT_MS: i64 = 1_700_000_123_000;

/// How long a broker may take to hand out its first producer id.
const PRODUCER_ID_MS_MAX: u64 = 10_000;

pub(super) fn run_all(session: &mut Session) {
    create(session, DIRS, 2);
    produce_when_ready(session, DIRS, three_records());
    describe_cluster(session);
    describe_producers(session);
    describe_log_dirs(session);
}

fn describe_cluster(session: &mut Session) {
    for v in versions(ApiKey::DescribeCluster) {
        for (label, operations, endpoint, fenced) in [
            ("", false, 1, false),
            ("with authorized operations", true, 1, false),
            ("controllers", false, 2, false),
            ("unknown endpoint type", false, 7, false),
            ("with fenced brokers", false, 1, true),
        ] {
            if (endpoint != 1 && v < 1) || (fenced && v < 2) {
                continue;
            }
            let mut request = DescribeClusterRequest::default();
            request.include_cluster_authorized_operations = operations;
            request.endpoint_type = endpoint;
            request.include_fenced_brokers = fenced;
            session.exchange(
                format!("describe_cluster v{v} {label}").trim_end().to_string(),
                ApiKey::DescribeCluster,
                v,
                &request,
                |_: &mut DescribeClusterResponse| {},
            );
        }
    }
}

/// Produces one idempotent batch (a producer id of the broker's own, epoch 0, sequences
/// 0-2) to partition 0 of `PRODUCED`.
fn produce_idempotent(session: &mut Session) {
    let v = *versions(ApiKey::InitProducerId).end();
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.transaction_timeout_ms = 60_000;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    // Kafka answers COORDINATOR_LOAD_IN_PROGRESS until its first block of producer ids
    // arrives from its controller.
    let deadline = Instant::now() + Duration::from_millis(PRODUCER_ID_MS_MAX);
    let id = loop {
        let id: InitProducerIdResponse =
            session.call(ApiKey::InitProducerId, v, &init).response("init producer id");
        if id.error_code == 0 || Instant::now() >= deadline {
            break id;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(id.error_code, 0, "{id:?}");
    let producer = Producer { id: id.producer_id.0, epoch: id.producer_epoch, base_sequence: 0 };
    let batch = record_batch(
        &[(Some(b"k0"), b"v0"), (Some(b"k1"), b"v1"), (None, b"v2")],
        PRODUCED_AT_MS,
        producer,
    );
    let v = *versions(ApiKey::Produce).end();
    let produced: ProduceResponse = session
        .call(ApiKey::Produce, v, &produce_request(PRODUCED, 0, batch))
        .response("idempotent produce");
    let code = produced.responses[0].partition_responses[0].error_code;
    assert_eq!(code, 0, "{produced:?}");
}

fn describe_producers(session: &mut Session) {
    create(session, PRODUCED, 2);
    produce_when_ready(session, PRODUCED, three_records());
    produce_idempotent(session);
    let topic = |name: &str, partitions: &[i32]| {
        let mut topic = TopicRequest::default();
        topic.name = topic_name(name);
        topic.partition_indexes = partitions.to_vec();
        topic
    };
    for v in versions(ApiKey::DescribeProducers) {
        let cases = [
            ("partitions", vec![topic(PRODUCED, &[0, 1, 7])]),
            ("unknown topic", vec![topic(MISSING, &[0, 1])]),
            ("invalid topic name", vec![topic("diff bad name", &[0])]),
            ("empty topic name", vec![topic("", &[0])]),
            ("two topics", vec![topic(DIRS, &[0]), topic(PRODUCED, &[0])]),
        ];
        for (label, topics) in cases {
            let mut request = DescribeProducersRequest::default();
            request.topics = topics;
            session.exchange(
                format!("describe_producers v{v} {label}"),
                ApiKey::DescribeProducers,
                v,
                &request,
                |_: &mut DescribeProducersResponse| {},
            );
        }
    }
}

/// A DescribeLogDirs of `topics` (`None`: every partition).
fn log_dirs_request(topics: Option<&[(&str, &[i32])]>) -> DescribeLogDirsRequest {
    let mut request = DescribeLogDirsRequest::default();
    request.topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| {
                let mut topic = DescribableLogDirTopic::default();
                topic.topic = topic_name(name);
                topic.partitions = partitions.to_vec();
                topic
            })
            .collect()
    });
    request
}

/// Clears what differs between brokers: the directory's path and the file system's bytes
/// (whether they are known is kept), the topics of other cases (all partitions were asked
/// for), and the order of partitions (Kafka's follows its hash map of logs).
fn normalise_log_dirs(response: &mut DescribeLogDirsResponse) {
    for result in &mut response.results {
        result.log_dir = s("<log dir>");
        for bytes in [&mut result.total_bytes, &mut result.usable_bytes] {
            *bytes = (*bytes).signum();
        }
        result.topics.retain(|t| t.name.0.starts_with(DIRS));
        for topic in &mut result.topics {
            topic.partitions.sort_by_key(|p| p.partition_index);
        }
    }
}

fn describe_log_dirs(session: &mut Session) {
    for v in versions(ApiKey::DescribeLogDirs) {
        let all = log_dirs_request(None);
        let some = log_dirs_request(Some(&[(DIRS, &[1, 0, 99, 1]), (MISSING, &[0])]));
        let none = log_dirs_request(Some(&[]));
        for (label, request) in [("all", all), ("some", some), ("none", none)] {
            session.exchange(
                format!("describe_log_dirs v{v} {label}"),
                ApiKey::DescribeLogDirs,
                v,
                &request,
                normalise_log_dirs,
            );
        }
    }
}
