//! The APIs admin tools and UIs call to look at a broker and its groups, at every version
//! Fjord advertises: DescribeCluster, DescribeLogDirs, DescribeProducers, OffsetDelete and
//! DescribeTopicPartitions, valid and refused. What differs between any two brokers is cleared before comparing:
//! broker ids (`compare::NODE_IDS`), the log directory's path and its file system's bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;

use super::cases::{
    create, join_request, produce_request, produce_when_ready, s, three_records, topic_name,
    versions, TOPIC,
};
use super::session::Session;
use crate::support::wire::{record_batch, Producer, NO_PRODUCER};

/// A topic of two partitions, three records in partition 0: the log directory's cases
/// describe it, and OffsetDelete's cases commit to it beside `TOPIC`.
const DIRS: &str = "diff-dirs";
/// A topic of two partitions whose partition 0 holds one idempotent producer's batch.
const PRODUCED: &str = "diff-producers";
const MISSING: &str = "diff-no-such-topic";
/// A topic an idempotent batch is sent to twice.
const RETRIED: &str = "diff-retried";
/// A topic whose records take the broker's clock (`message.timestamp.type=LogAppendTime`).
const STAMPED: &str = "diff-append-time";
/// The one timestamp of the idempotent batch (its producer's last timestamp).
const PRODUCED_AT_MS: i64 = 1_700_000_123_000;
/// How long a broker may take to hand out its first producer id.
const PRODUCER_ID_MS_MAX: u64 = 10_000;

pub(super) fn run_all(session: &mut Session) {
    create(session, DIRS, 2);
    produce_when_ready(session, DIRS, three_records());
    produce_from_the_future(session);
    produce_with_log_append_time(session);
    retried_idempotent_batches(session);
    describe_cluster(session);
    describe_topic_partitions(session);
    describe_producers(session);
    describe_log_dirs(session);
    offset_delete(session);
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

/// A batch stamped two hours ahead of the broker's clock, past Kafka 4.4's default
/// `message.timestamp.after.max.ms` (one hour): INVALID_TIMESTAMP, nothing appended.
fn produce_from_the_future(session: &mut Session) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    let batch = record_batch(&[(None, b"late".as_slice())], now_ms + 7_200_000, NO_PRODUCER);
    session.exchange(
        "produce v9 two hours ahead",
        ApiKey::Produce,
        9,
        &produce_request(DIRS, 1, batch),
        |_: &mut ProduceResponse| {},
    );
}

/// Batches stamped long ago and two hours ahead, to a topic with LogAppendTime: both taken
/// (the producer's timestamps are not checked), the answer carrying the append time (its
/// value differs between the brokers' clocks: only whether there is one is compared).
fn produce_with_log_append_time(session: &mut Session) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    create(session, STAMPED, 1);
    let mut config = AlterableConfig::default();
    config.name = s("message.timestamp.type");
    config.config_operation = 0;
    config.value = Some(s("LogAppendTime"));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = s(STAMPED);
    resource.configs = vec![config];
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let response: IncrementalAlterConfigsResponse =
        session.call(ApiKey::IncrementalAlterConfigs, 1, &request).response("set LogAppendTime");
    assert_eq!(response.responses[0].error_code, 0, "{response:?}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    // Kafka applies the config a moment after acknowledging it: ask until the answer says
    // the batch was stamped.
    let deadline = Instant::now() + Duration::from_millis(PRODUCER_ID_MS_MAX);
    while Instant::now() < deadline {
        let batch = record_batch(&[(None, b"probe".as_slice())], now_ms, NO_PRODUCER);
        let response: ProduceResponse = session
            .call(ApiKey::Produce, 9, &produce_request(STAMPED, 0, batch))
            .response("probe LogAppendTime");
        if response.responses[0].partition_responses[0].log_append_time_ms > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (label, timestamp) in
        [("long ago", 1_000_000_000_000), ("two hours ahead", now_ms + 7_200_000)]
    {
        for v in [3, 9, *versions(ApiKey::Produce).end()] {
            let batch = record_batch(&[(None, b"stamped".as_slice())], timestamp, NO_PRODUCER);
            session.exchange(
                format!("produce v{v} to a LogAppendTime topic, {label}"),
                ApiKey::Produce,
                v,
                &produce_request(STAMPED, 0, batch),
                |r: &mut ProduceResponse| {
                    for answer in r.responses.iter_mut().flat_map(|t| &mut t.partition_responses) {
                        if answer.log_append_time_ms > 0 {
                            answer.log_append_time_ms = 1;
                        }
                        // Offsets depend on how many probes the config took to apply.
                        answer.base_offset = answer.base_offset.min(0);
                    }
                },
            );
        }
    }
}

/// An idempotent batch sent twice, to a CreateTime and to a LogAppendTime topic: Kafka
/// answers the retry with the first append's offsets and, as `log_append_time_ms`, the
/// batch's largest timestamp as appended (the producer's under CreateTime).
fn retried_idempotent_batches(session: &mut Session) {
    create(session, RETRIED, 1);
    let producer = new_producer(session);
    for (label, topic) in [("CreateTime", RETRIED), ("LogAppendTime", STAMPED)] {
        let batch = record_batch(&[(None, b"once".as_slice())], PRODUCED_AT_MS, producer);
        for attempt in ["first", "retried"] {
            session.exchange(
                format!("idempotent produce v9 to a {label} topic, {attempt}"),
                ApiKey::Produce,
                9,
                &produce_request(topic, 0, batch.clone()),
                |r: &mut ProduceResponse| {
                    for answer in r.responses.iter_mut().flat_map(|t| &mut t.partition_responses) {
                        if answer.log_append_time_ms > PRODUCED_AT_MS {
                            answer.log_append_time_ms = 1;
                        }
                        // Offsets on the stamped topic depend on the probes before.
                        answer.base_offset = answer.base_offset.min(0);
                    }
                },
            );
        }
    }
}

/// A DescribeTopicPartitions of `topics` (none: every topic), at most `limit` partitions,
/// from `cursor` (topic, partition).
fn topic_partitions_request(
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsRequest {
    let mut request = DescribeTopicPartitionsRequest::default();
    request.topics = topics
        .iter()
        .map(|name| {
            let mut topic = describe_topic_partitions_request::TopicRequest::default();
            topic.name = topic_name(name);
            topic
        })
        .collect();
    request.response_partition_limit = limit;
    request.cursor = cursor.map(|(topic, partition)| {
        let mut cursor = describe_topic_partitions_request::Cursor::default();
        cursor.topic_name = topic_name(topic);
        cursor.partition_index = partition;
        cursor
    });
    request
}

/// The Java AdminClient's `describeTopics` (Kafka 3.8+): named topics (found, missing, a
/// name no topic can have, one named twice), paged by a partition limit and a cursor, every
/// topic from a cursor, and the cursors Kafka refuses.
fn describe_topic_partitions(session: &mut Session) {
    for (label, topics, limit, cursor) in [
        ("named", &[DIRS, TOPIC, MISSING, "bad name!", DIRS][..], 2000, None),
        ("limit 1", &[TOPIC, DIRS][..], 1, None),
        ("limit 3", &[TOPIC, DIRS][..], 3, None),
        ("limit 0", &[DIRS][..], 0, None),
        ("from a cursor", &[TOPIC, DIRS][..], 2000, Some((DIRS, 1))),
        ("cursor past the partitions", &[DIRS, TOPIC][..], 2000, Some((DIRS, 9))),
        ("every topic from diff-", &[][..], 2000, Some(("diff-", 0))),
        ("cursor not named", &[DIRS][..], 2000, Some((TOPIC, 0))),
        ("negative cursor partition", &[DIRS][..], 2000, Some((DIRS, -1))),
    ] {
        for v in versions(ApiKey::DescribeTopicPartitions) {
            session.exchange(
                format!("describe_topic_partitions v{v} {label}"),
                ApiKey::DescribeTopicPartitions,
                v,
                &topic_partitions_request(topics, limit, cursor),
                |_: &mut DescribeTopicPartitionsResponse| {},
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

/// A new idempotent producer of this broker's, at epoch 0 and sequence 0.
fn new_producer(session: &mut Session) -> Producer {
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
    Producer { id: id.producer_id.0, epoch: id.producer_epoch, base_sequence: 0 }
}

/// Produces one idempotent batch (a producer id of the broker's own, epoch 0, sequences
/// 0-2) to partition 0 of `PRODUCED`.
fn produce_idempotent(session: &mut Session) {
    let producer = new_producer(session);
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

/// An OffsetCommit (the newest version) of `offset` for each of `partitions` by `member` of
/// `group` in `generation` (-1 and no member: a standalone consumer's commit).
fn commit(
    session: &mut Session,
    group: &str,
    generation: i32,
    member: &str,
    partitions: &[(&str, i32)],
    offset: i64,
) {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(s(group));
    request.generation_id_or_member_epoch = generation;
    request.member_id = s(member);
    request.retention_time_ms = -1;
    for (name, index) in partitions {
        let mut partition = OffsetCommitRequestPartition::default();
        partition.partition_index = *index;
        partition.committed_offset = offset;
        match request.topics.iter_mut().find(|t| t.name.0.as_str() == *name) {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = OffsetCommitRequestTopic::default();
                topic.name = topic_name(name);
                topic.partitions = vec![partition];
                request.topics.push(topic);
            }
        }
    }
    let v = *versions(ApiKey::OffsetCommit).end();
    let response: OffsetCommitResponse =
        session.call(ApiKey::OffsetCommit, v, &request).response("offset commit");
    let codes: Vec<i16> =
        response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
    assert!(codes.iter().all(|c| *c == 0), "commit to {group}: {response:?}");
}

fn delete_request(group: &str, topics: &[(&str, &[i32])]) -> OffsetDeleteRequest {
    let mut request = OffsetDeleteRequest::default();
    request.group_id = GroupId(s(group));
    request.topics = topics
        .iter()
        .map(|(name, partitions)| {
            let mut topic = OffsetDeleteRequestTopic::default();
            topic.name = topic_name(name);
            topic.partitions = partitions
                .iter()
                .map(|index| {
                    let mut partition = OffsetDeleteRequestPartition::default();
                    partition.partition_index = *index;
                    partition
                })
                .collect();
            topic
        })
        .collect();
    request
}

fn delete(session: &mut Session, label: &str, group: &str, topics: &[(&str, &[i32])]) {
    for v in versions(ApiKey::OffsetDelete) {
        session.exchange(
            format!("offset_delete v{v} {label}"),
            ApiKey::OffsetDelete,
            v,
            &delete_request(group, topics),
            |_: &mut OffsetDeleteResponse| {},
        );
    }
}

/// Every offset `group` has committed (OffsetFetch v7, all topics), partitions in order.
fn committed(session: &mut Session, label: &str, group: &str) {
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(s(group));
    request.topics = None;
    session.exchange(label, ApiKey::OffsetFetch, 7, &request, |r: &mut OffsetFetchResponse| {
        for topic in &mut r.topics {
            topic.partitions.sort_by_key(|p| p.partition_index);
        }
    });
}

/// A member in `group` (JoinGroup twice, the newest version; `protocol_type`): its id and
/// generation. With `sync`, the group is then Stable (SyncGroup of an empty assignment).
fn join(session: &mut Session, group: &str, protocol_type: &str, sync: bool) -> (String, i32) {
    let v = *versions(ApiKey::JoinGroup).end();
    let mut request = join_request(group, "", v);
    request.protocol_type = s(protocol_type);
    let first: JoinGroupResponse = session.call(ApiKey::JoinGroup, v, &request).response("join");
    request.member_id = first.member_id.clone();
    let joined: JoinGroupResponse = session.call(ApiKey::JoinGroup, v, &request).response("join");
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let member = joined.member_id.to_string();
    if sync {
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(group));
        sync.generation_id = joined.generation_id;
        sync.member_id = s(&member);
        sync.protocol_type = Some(s(protocol_type));
        sync.protocol_name = Some(s("range"));
        let mut assignment = sync_group_request::SyncGroupRequestAssignment::default();
        assignment.member_id = s(&member);
        assignment.assignment = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        sync.assignments = vec![assignment];
        let synced: SyncGroupResponse = session.call(ApiKey::SyncGroup, 5, &sync).response("sync");
        assert_eq!(synced.error_code, 0, "{synced:?}");
    }
    (member, joined.generation_id)
}

fn leave(session: &mut Session, group: &str, member: &str) {
    let mut identity = leave_group_request::MemberIdentity::default();
    identity.member_id = s(member);
    let mut request = LeaveGroupRequest::default();
    request.group_id = GroupId(s(group));
    request.members = vec![identity];
    let left: LeaveGroupResponse = session.call(ApiKey::LeaveGroup, 5, &request).response("leave");
    assert_eq!(left.error_code, 0, "{left:?}");
}

fn offset_delete(session: &mut Session) {
    const GROUP: &str = "diff-od";
    const UNKNOWN_GROUP: &str = "diff-od-no-such-group";
    delete(session, "unknown group", UNKNOWN_GROUP, &[(TOPIC, &[0])]);
    delete(session, "unknown group and topic", UNKNOWN_GROUP, &[(MISSING, &[0])]);
    delete(session, "empty group id", "", &[(TOPIC, &[0])]);
    commit(session, GROUP, -1, "", &[(TOPIC, 0), (TOPIC, 1), (DIRS, 0), (DIRS, 1)], 1);
    delete(session, "unknown topic and partition", GROUP, &[(MISSING, &[0]), (TOPIC, &[0, 99])]);
    delete(session, "no offset committed", GROUP, &[(PRODUCED, &[0])]);
    committed(session, "offset_fetch after offset_delete", GROUP);
    delete(session, "the rest", GROUP, &[(TOPIC, &[1]), (DIRS, &[1, 0])]);
    committed(session, "offset_fetch after offset_delete of the rest", GROUP);
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s(GROUP))];
    session.exchange(
        "describe_groups after offset_delete",
        ApiKey::DescribeGroups,
        5,
        &describe,
        |_: &mut DescribeGroupsResponse| {},
    );

    // A consumer group with a member subscribed to `TOPIC` (`join_request`'s subscription).
    const ACTIVE: &str = "diff-od-active";
    let (member, generation) = join(session, ACTIVE, "consumer", true);
    commit(session, ACTIVE, generation, &member, &[(TOPIC, 0), (DIRS, 0)], 2);
    delete(session, "a consumer group's topics", ACTIVE, &[(TOPIC, &[0]), (DIRS, &[0])]);
    committed(session, "offset_fetch of an active group after offset_delete", ACTIVE);
    leave(session, ACTIVE, &member);
    delete(session, "a consumer group's topics once it is empty", ACTIVE, &[(TOPIC, &[0])]);

    // A group of another protocol type with a member: nothing may go.
    const CONNECT: &str = "diff-od-connect";
    let (member, _) = join(session, CONNECT, "connect", false);
    delete(session, "a connect group with a member", CONNECT, &[(TOPIC, &[0])]);
    leave(session, CONNECT, &member);
}
