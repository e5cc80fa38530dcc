//! The requests that change a topic once it exists, at every version Fjord advertises:
//! IncrementalAlterConfigs, AlterConfigs, CreatePartitions and DeleteRecords, valid and
//! refused, each change read back with DescribeConfigs or ListOffsets; and the elections
//! and reassignments a lone broker answers (ElectLeaders, AlterPartitionReassignments,
//! ListPartitionReassignments).

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;

use super::cases::{create, produce_when_ready, s, three_records, topic_name, versions};
use std::time::{Duration, Instant};

use kafka_protocol::protocol::StrBytes;

use super::session::{Answer, Session};

/// The topic these cases change: created with one partition and three records.
const ALTERED: &str = "diff-altered";
const MISSING: &str = "diff-no-such-topic";
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
/// The configs the cases change and read back.
const CHANGED_KEYS: [&str; 2] = ["retention.ms", "segment.ms"];

pub(super) fn run_all(session: &mut Session) {
    create(session, ALTERED, 1);
    produce_when_ready(session, ALTERED, three_records());
    incremental_alter_configs(session);
    alter_configs(session);
    create_partitions(session);
    delete_records(session);
    elect_leaders(session);
    reassignments(session);
    broker_configs(session);
}

fn incremental(name: &str, configs: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
    incremental_of(RESOURCE_TOPIC, name, configs)
}

fn incremental_of(
    resource_type: i8,
    name: &str,
    configs: &[(&str, i8, Option<&str>)],
) -> AlterConfigsResource {
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = s(name);
    resource.configs = configs
        .iter()
        .map(|(key, op, value)| {
            let mut config = AlterableConfig::default();
            config.name = s(key);
            config.config_operation = *op;
            config.value = value.map(s);
            config
        })
        .collect();
    resource
}

/// How long Kafka may take to apply a config change to what its DescribeConfigs reads (its
/// broker applies the controller's records asynchronously), and how often it is asked.
const CONFIG_SETTLE_MS_MAX: u64 = 5_000;
const CONFIG_POLL_MS: u64 = 100;
/// Answers in a row that must agree before one is taken as settled: a loaded Kafka broker
/// can repeat its answer from before the change for a few polls before it applies it.
const CONFIG_STABLE_POLLS: u32 = 5;

/// DescribeConfigs (the newest version) of the configs the cases change, once two answers
/// in a row agree (Kafka shows a change a moment after it acknowledged it).
fn describe_changed(session: &mut Session, label: String) {
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = s(ALTERED);
    resource.configuration_keys = Some(CHANGED_KEYS.iter().map(|k| s(k)).collect());
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    describe_settled(session, label, request, |_| {});
}

/// DescribeConfigs (the newest version) of `request`, once two answers in a row agree,
/// observed after `normalise`.
fn describe_settled(
    session: &mut Session,
    label: String,
    request: DescribeConfigsRequest,
    normalise: impl FnOnce(&mut DescribeConfigsResponse),
) {
    let v = *versions(ApiKey::DescribeConfigs).end();
    let ask = |session: &mut Session| -> DescribeConfigsResponse {
        let mut response: DescribeConfigsResponse =
            session.call(ApiKey::DescribeConfigs, v, &request).response("describe configs");
        for result in &mut response.results {
            result.configs.sort_by_key(|c| format!("{:?}", c.name));
        }
        response
    };
    let deadline = Instant::now() + Duration::from_millis(CONFIG_SETTLE_MS_MAX);
    let mut answer = ask(session);
    let mut same = 0;
    loop {
        std::thread::sleep(Duration::from_millis(CONFIG_POLL_MS));
        let next = ask(session);
        same = if next == answer { same + 1 } else { 0 };
        if same >= CONFIG_STABLE_POLLS || Instant::now() >= deadline {
            break;
        }
        answer = next;
    }
    session.observe(label, Answer::Response(answer), normalise);
}

fn incremental_alter_configs(session: &mut Session) {
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let cases: Vec<(&str, Vec<AlterConfigsResource>, bool)> = vec![
            (
                "set two",
                vec![incremental(
                    ALTERED,
                    &[("retention.ms", SET, Some("1234000")), ("segment.ms", SET, Some("600000"))],
                )],
                false,
            ),
            (
                "append to a number",
                vec![incremental(ALTERED, &[("retention.ms", APPEND, Some("5"))])],
                false,
            ),
            (
                "not a number",
                vec![incremental(ALTERED, &[("retention.ms", SET, Some("soon"))])],
                false,
            ),
            ("set null", vec![incremental(ALTERED, &[("retention.ms", SET, None)])], false),
            (
                "a key twice",
                vec![incremental(
                    ALTERED,
                    &[("retention.ms", SET, Some("1")), ("retention.ms", DELETE, None)],
                )],
                false,
            ),
            (
                "unknown topic",
                vec![incremental(MISSING, &[("retention.ms", SET, Some("1"))])],
                false,
            ),
            (
                "a resource twice",
                vec![
                    incremental(ALTERED, &[("retention.ms", SET, Some("1"))]),
                    incremental(ALTERED, &[("segment.ms", SET, Some("1"))]),
                ],
                false,
            ),
            (
                "validate only",
                vec![incremental(ALTERED, &[("retention.ms", SET, Some("1"))])],
                true,
            ),
            (
                "compact appended to cleanup.policy",
                vec![incremental(ALTERED, &[("cleanup.policy", APPEND, Some("compact"))])],
                false,
            ),
            (
                "every policy subtracted from cleanup.policy",
                vec![incremental(ALTERED, &[("cleanup.policy", SUBTRACT, Some("delete,compact"))])],
                false,
            ),
            (
                "configs Kafka keeps without acting on them here",
                vec![incremental(
                    ALTERED,
                    &[
                        ("delete.retention.ms", SET, Some("1000")),
                        ("min.compaction.lag.ms", SET, Some("10")),
                        ("file.delete.delay.ms", SET, Some("0")),
                        ("local.retention.ms", SET, Some("5000")),
                        ("message.timestamp.after.max.ms", SET, Some("86400000")),
                        ("flush.ms", SET, Some("1000")),
                        ("compression.zstd.level", SET, Some("-7")),
                    ],
                )],
                false,
            ),
        ];
        // Values Kafka's validators refuse, one request each.
        for (name, value) in [
            ("compression.gzip.level", "12"),
            ("cleanup.policy", "foo"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("remote.storage.enable", "true"),
            ("no.such.config", "1"),
            ("max.compaction.lag.ms", "5"),
            ("leader.replication.throttled.replicas", "0:x"),
            ("errors.deadletterqueue.group.enable", "maybe"),
        ] {
            let mut request = IncrementalAlterConfigsRequest::default();
            request.resources = vec![incremental(ALTERED, &[(name, SET, Some(value))])];
            request.validate_only = true;
            session.exchange(
                format!("incremental_alter_configs v{v} {name}={value}"),
                ApiKey::IncrementalAlterConfigs,
                v,
                &request,
                |_: &mut IncrementalAlterConfigsResponse| {},
            );
        }
        for (label, resources, validate_only) in cases {
            let mut request = IncrementalAlterConfigsRequest::default();
            request.resources = resources;
            request.validate_only = validate_only;
            session.exchange(
                format!("incremental_alter_configs v{v} {label}"),
                ApiKey::IncrementalAlterConfigs,
                v,
                &request,
                |_: &mut IncrementalAlterConfigsResponse| {},
            );
        }
        describe_changed(session, format!("describe after incremental_alter_configs v{v}"));
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![incremental(ALTERED, &[("segment.ms", DELETE, None)])];
        session.exchange(
            format!("incremental_alter_configs v{v} delete"),
            ApiKey::IncrementalAlterConfigs,
            v,
            &request,
            |_: &mut IncrementalAlterConfigsResponse| {},
        );
        describe_changed(session, format!("describe after the delete of v{v}"));
    }
}

fn alter_configs(session: &mut Session) {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resource = |name: &str, configs: &[(&str, &str)]| {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = s(name);
        resource.configs = configs
            .iter()
            .map(|(key, value)| {
                let mut config = AlterableConfig::default();
                config.name = s(key);
                config.value = Some(s(value));
                config
            })
            .collect();
        resource
    };
    for v in versions(ApiKey::AlterConfigs) {
        for (label, resources) in [
            ("replace", vec![resource(ALTERED, &[("segment.ms", "700000")])]),
            ("not a number", vec![resource(ALTERED, &[("segment.ms", "soon")])]),
            ("unknown topic", vec![resource(MISSING, &[("segment.ms", "700000")])]),
        ] {
            let mut request = AlterConfigsRequest::default();
            request.resources = resources;
            session.exchange(
                format!("alter_configs v{v} {label}"),
                ApiKey::AlterConfigs,
                v,
                &request,
                |_: &mut AlterConfigsResponse| {},
            );
        }
        // retention.ms, set by the incremental cases, is back to its default.
        describe_changed(session, format!("describe after alter_configs v{v}"));
    }
}

fn grow(name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsTopic {
    let mut topic = CreatePartitionsTopic::default();
    topic.name = topic_name(name);
    topic.count = count;
    topic.assignments = assignments.map(|list| {
        list.into_iter()
            .map(|ids| {
                let mut assignment = CreatePartitionsAssignment::default();
                assignment.broker_ids = ids.into_iter().map(BrokerId).collect();
                assignment
            })
            .collect()
    });
    topic
}

fn create_partitions(session: &mut Session) {
    // Each version grows the topic by one more partition.
    let mut count = 1;
    for v in versions(ApiKey::CreatePartitions) {
        count += 1;
        let cases: Vec<(&str, Vec<CreatePartitionsTopic>, bool)> = vec![
            ("grow", vec![grow(ALTERED, count, None)], false),
            ("the same count", vec![grow(ALTERED, count, None)], false),
            ("fewer", vec![grow(ALTERED, count - 1, None)], false),
            ("unknown topic", vec![grow(MISSING, 3, None)], false),
            (
                "a topic twice",
                vec![grow(ALTERED, count + 1, None), grow(ALTERED, count + 2, None)],
                false,
            ),
            ("too few assignments", vec![grow(ALTERED, count + 2, Some(vec![vec![0]]))], false),
            ("validate only", vec![grow(ALTERED, count + 5, None)], true),
        ];
        for (label, topics, validate_only) in cases {
            let mut request = CreatePartitionsRequest::default();
            request.topics = topics;
            request.timeout_ms = 10_000;
            request.validate_only = validate_only;
            session.exchange(
                format!("create_partitions v{v} {label}"),
                ApiKey::CreatePartitions,
                v,
                &request,
                |_: &mut CreatePartitionsResponse| {},
            );
        }
    }
}

fn list_earliest(session: &mut Session, label: String) {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = -2;
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name(ALTERED);
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![topic];
    session.exchange(label, ApiKey::ListOffsets, 1, &request, |_: &mut ListOffsetsResponse| {});
}

fn delete_records(session: &mut Session) {
    let request = |name: &str, partitions: &[(i32, i64)]| {
        let mut topic = DeleteRecordsTopic::default();
        topic.name = topic_name(name);
        topic.partitions = partitions
            .iter()
            .map(|(index, offset)| {
                let mut partition = DeleteRecordsPartition::default();
                partition.partition_index = *index;
                partition.offset = *offset;
                partition
            })
            .collect();
        let mut request = DeleteRecordsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        request
    };
    // Each version moves the start by one record; the last deletes up to the high watermark.
    let last = *versions(ApiKey::DeleteRecords).end();
    for v in versions(ApiKey::DeleteRecords) {
        let before = if v == last { -1 } else { i64::from(v) + 1 };
        for (label, request) in [
            ("move the start", request(ALTERED, &[(0, before)])),
            ("past the high watermark", request(ALTERED, &[(0, 100)])),
            ("unknown partition", request(ALTERED, &[(99, 0)])),
            ("unknown topic", request(MISSING, &[(0, 0)])),
        ] {
            session.exchange(
                format!("delete_records v{v} {label}"),
                ApiKey::DeleteRecords,
                v,
                &request,
                |r: &mut DeleteRecordsResponse| {
                    for topic in &mut r.topics {
                        topic.partitions.sort_by_key(|p| p.partition_index);
                    }
                },
            );
        }
        list_earliest(session, format!("earliest after delete_records v{v}"));
    }
}

/// The broker's own id, from Metadata (Kafka's reference node and Fjord's differ).
fn own_broker_id(session: &mut Session) -> i32 {
    let response: MetadataResponse =
        session.call(ApiKey::Metadata, 9, &MetadataRequest::default()).response("metadata");
    response.brokers.first().map(|b| b.node_id.0).expect("a broker in Metadata")
}

fn elect_leaders(session: &mut Session) {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let named = |topics: &[(&str, &[i32])]| {
        Some(
            topics
                .iter()
                .map(|(name, partitions)| {
                    let mut topic = TopicPartitions::default();
                    topic.topic = topic_name(name);
                    topic.partitions = partitions.to_vec();
                    topic
                })
                .collect(),
        )
    };
    for v in versions(ApiKey::ElectLeaders) {
        let kinds: &[(&str, i8)] =
            if v == 0 { &[("preferred", 0)] } else { &[("preferred", 0), ("unclean", 1)] };
        for (kind, election_type) in kinds {
            for (label, topic_partitions) in [
                ("a partition", named(&[(ALTERED, &[0])])),
                ("unknown partition and topic", named(&[(ALTERED, &[99]), (MISSING, &[0])])),
            ] {
                let mut request = ElectLeadersRequest::default();
                request.election_type = *election_type;
                request.topic_partitions = topic_partitions;
                request.timeout_ms = 10_000;
                session.exchange(
                    format!("elect_leaders v{v} {kind} {label}"),
                    ApiKey::ElectLeaders,
                    v,
                    &request,
                    |_: &mut ElectLeadersResponse| {},
                );
            }
        }
    }
}

fn reassignments(session: &mut Session) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    let me = own_broker_id(session);
    let request = |name: &str, target: Option<Vec<i32>>| {
        let mut partition = ReassignablePartition::default();
        partition.partition_index = 0;
        partition.replicas = target.map(|ids| ids.into_iter().map(BrokerId).collect());
        let mut topic = ReassignableTopic::default();
        topic.name = topic_name(name);
        topic.partitions = vec![partition];
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.topics = vec![topic];
        request.timeout_ms = 10_000;
        request
    };
    for v in versions(ApiKey::AlterPartitionReassignments) {
        for (label, request) in [
            ("onto itself", request(ALTERED, Some(vec![me]))),
            ("to an unknown broker", request(ALTERED, Some(vec![me + 100]))),
            ("a broker twice", request(ALTERED, Some(vec![me, me]))),
            ("no replicas", request(ALTERED, Some(vec![]))),
            ("cancel with none in progress", request(ALTERED, None)),
            ("unknown topic", request(MISSING, Some(vec![me]))),
        ] {
            session.exchange(
                format!("alter_partition_reassignments v{v} {label}"),
                ApiKey::AlterPartitionReassignments,
                v,
                &request,
                |_: &mut AlterPartitionReassignmentsResponse| {},
            );
        }
    }
    for v in versions(ApiKey::ListPartitionReassignments) {
        let mut request = ListPartitionReassignmentsRequest::default();
        request.timeout_ms = 10_000;
        session.exchange(
            format!("list_partition_reassignments v{v} all"),
            ApiKey::ListPartitionReassignments,
            v,
            &request,
            |_: &mut ListPartitionReassignmentsResponse| {},
        );
    }
}

/// Broker configs Fjord changes while running, set on the broker itself (named by its id)
/// and cluster-wide (the resource named ""), validated only and for real, read back with
/// their synonyms, then removed; and the refusals: a config that cannot change while the
/// broker runs, bad values, APPEND to a number, a broker named by something not a number.
fn broker_configs(session: &mut Session) {
    let me = own_broker_id(session).to_string();
    let own = |resource_name: &mut StrBytes| {
        if resource_name.as_str() == me {
            *resource_name = s("<this broker>");
        }
    };
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        // (label, resource name, configs, validate only)
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, i8, Option<&'a str>)>, bool);
        let cases: Vec<Case> = vec![
            ("cluster-wide, validate only", "", vec![("log.retention.ms", SET, Some("1"))], true),
            ("cluster-wide, static", "", vec![("num.partitions", SET, Some("3"))], false),
            ("cluster-wide, not a number", "", vec![("log.retention.ms", SET, Some("x"))], false),
            (
                "cluster-wide, below minimum",
                "",
                vec![("min.insync.replicas", SET, Some("0"))],
                false,
            ),
            (
                "own, append to a number",
                me.as_str(),
                vec![("log.retention.ms", APPEND, Some("5"))],
                false,
            ),
            ("not a broker id", "abc", vec![("log.retention.ms", SET, Some("1"))], false),
            ("own, set", me.as_str(), vec![("message.max.bytes", SET, Some("2000000"))], false),
            ("cluster-wide, set", "", vec![("log.retention.ms", SET, Some("7200000"))], false),
            (
                "own, throttle rate",
                me.as_str(),
                vec![("leader.replication.throttled.rate", SET, Some("1000000"))],
                false,
            ),
            (
                "cluster-wide, negative throttle rate",
                "",
                vec![("follower.replication.throttled.rate", SET, Some("-1"))],
                false,
            ),
        ];
        for (label, name, configs, validate_only) in cases {
            let mut request = IncrementalAlterConfigsRequest::default();
            request.resources = vec![incremental_of(RESOURCE_BROKER, name, &configs)];
            request.validate_only = validate_only;
            session.exchange(
                format!("incremental_alter_configs v{v} broker {label}"),
                ApiKey::IncrementalAlterConfigs,
                v,
                &request,
                |r: &mut IncrementalAlterConfigsResponse| {
                    r.responses.iter_mut().for_each(|r| own(&mut r.resource_name))
                },
            );
        }
        for (label, name) in [("own", me.as_str()), ("cluster-wide", "")] {
            let mut resource = DescribeConfigsResource::default();
            resource.resource_type = RESOURCE_BROKER;
            resource.resource_name = s(name);
            resource.configuration_keys = Some(vec![
                s("message.max.bytes"),
                s("log.retention.ms"),
                s("leader.replication.throttled.rate"),
                s("follower.replication.throttled.rate"),
            ]);
            let mut request = DescribeConfigsRequest::default();
            request.resources = vec![resource];
            request.include_synonyms = true;
            describe_settled(
                session,
                format!("describe after incremental_alter_configs v{v} broker, {label}"),
                request,
                |r| r.results.iter_mut().for_each(|r| own(&mut r.resource_name)),
            );
        }
        for name in [me.as_str(), ""] {
            let deleted = [
                ("message.max.bytes", DELETE, None),
                ("log.retention.ms", DELETE, None),
                ("leader.replication.throttled.rate", DELETE, None),
            ];
            let mut request = IncrementalAlterConfigsRequest::default();
            request.resources = vec![incremental_of(RESOURCE_BROKER, name, &deleted)];
            let _: IncrementalAlterConfigsResponse = session
                .call(ApiKey::IncrementalAlterConfigs, v, &request)
                .response("delete the broker configs the cases set");
        }
    }
    legacy_broker_configs(session, &me);
}

/// AlterConfigs on this broker: it replaces the broker's dynamic configs, a static one is
/// refused, and an empty set removes them all.
fn legacy_broker_configs(session: &mut Session, me: &str) {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resource = |configs: &[(&str, &str)]| {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = RESOURCE_BROKER;
        resource.resource_name = s(me);
        resource.configs = configs
            .iter()
            .map(|(key, value)| {
                let mut config = AlterableConfig::default();
                config.name = s(key);
                config.value = Some(s(value));
                config
            })
            .collect();
        resource
    };
    let own = |resource_name: &mut StrBytes| {
        if resource_name.as_str() == me {
            *resource_name = s("<this broker>");
        }
    };
    for v in versions(ApiKey::AlterConfigs) {
        for (label, configs) in [
            ("static", vec![("num.partitions", "2")]),
            ("replace", vec![("log.segment.bytes", "2097152"), ("message.max.bytes", "2000000")]),
            ("replace again", vec![("log.segment.bytes", "4194304")]),
        ] {
            let mut request = AlterConfigsRequest::default();
            request.resources = vec![resource(&configs)];
            session.exchange(
                format!("alter_configs v{v} broker {label}"),
                ApiKey::AlterConfigs,
                v,
                &request,
                |r: &mut AlterConfigsResponse| {
                    r.responses.iter_mut().for_each(|r| own(&mut r.resource_name))
                },
            );
        }
        let mut described = DescribeConfigsResource::default();
        described.resource_type = RESOURCE_BROKER;
        described.resource_name = s(me);
        described.configuration_keys = Some(vec![s("message.max.bytes"), s("log.segment.bytes")]);
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![described];
        describe_settled(
            session,
            format!("describe after alter_configs v{v} broker"),
            request,
            |r| r.results.iter_mut().for_each(|r| own(&mut r.resource_name)),
        );
        let mut request = AlterConfigsRequest::default();
        request.resources = vec![resource(&[])];
        let _: AlterConfigsResponse = session
            .call(ApiKey::AlterConfigs, v, &request)
            .response("remove the broker configs the cases set");
    }
}
