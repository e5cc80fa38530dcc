//! The requests both brokers get, in order: every served API at every version Fjord
//! advertises, valid and bad. A case may set up state first (create a topic, produce); the
//! same steps run against both brokers, so their states stay alike and so should the answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::session::{Answer, Session, CLIENT_ID};
use crate::support::wire::{record_batch, Producer, BATCH_CRC_AT, NO_PRODUCER};

/// The topic most cases read: 2 partitions, 3 records in partition 0.
pub(super) const TOPIC: &str = "diff-a";
/// How long setup waits for a new topic's leader or a group coordinator (Kafka elects them
/// asynchronously).
const SETTLE_MS_MAX: u64 = 30_000;
/// The one timestamp of every produced record, so fetched batches are byte-identical.
const TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// An id no topic has, the same on both brokers (their own topics' ids differ and are masked).
const NO_SUCH_TOPIC_ID: Uuid = Uuid::from_u128(0xd1ff_0000_0000_0000_0000_0000_0000_0001);

pub(super) fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

pub(super) fn topic_name(text: &str) -> TopicName {
    TopicName(s(text))
}

pub(super) fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) =
        fjord::protocol::supported_versions(key).unwrap_or_else(|| panic!("{key:?} is not served"));
    min..=max
}

/// The version of `key` used in step `i` of a flow that walks every version of several APIs.
fn clamp(key: ApiKey, i: i16) -> i16 {
    let range = versions(key);
    i.clamp(*range.start(), *range.end())
}

/// Every case, in order.
pub(super) fn run_all(session: &mut Session) {
    let topic_id = setup(session);
    api_versions(session);
    framing(session);
    metadata(session);
    metadata_by_id(session, topic_id);
    let created_id = create_topics(session);
    delete_topics(session, created_id);
    produce(session);
    fetch(session, topic_id);
    list_offsets(session);
    offset_for_leader_epoch(session);
    init_producer_id(session);
    describe_configs(session);
    super::topic_changes::run_all(session);
    find_coordinator(session);
    super::txn_cases::run_all(session);
    groups(session);
    group_errors(session);
    commit_while_a_rebalance_is_prepared(session);
    offset_fetch_groups(session);
    super::describe_cases::run_all(session);
    odd_requests(session, topic_id);
}

/// Creates a topic with the newest CreateTopics version and returns its id (v7+; nil before).
pub(super) fn create(session: &mut Session, name: &str, partitions: i32) -> Uuid {
    create_with(session, name, partitions, &[])
}

/// `create` with topic configs.
pub(super) fn create_with(
    session: &mut Session,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Uuid {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    topic.configs = configs
        .iter()
        .map(|(name, value)| {
            let mut config = create_topics_request::CreatableTopicConfig::default();
            config.name = s(name);
            config.value = Some(s(value));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    let v = *versions(ApiKey::CreateTopics).end();
    let response: CreateTopicsResponse =
        session.call(ApiKey::CreateTopics, v, &request).response("create a topic");
    assert_eq!(response.topics[0].error_code, 0, "create {name}: {response:?}");
    wait_for_leaders(session, name);
    response.topics[0].topic_id
}

fn wait_for_leaders(session: &mut Session, name: &str) {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    let mut request = MetadataRequest::default();
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(topic_name(name));
    request.topics = Some(vec![topic]);
    loop {
        let response: MetadataResponse =
            session.call(ApiKey::Metadata, 9, &request).response("metadata");
        let ready = response
            .topics
            .iter()
            .all(|t| t.error_code == 0 && t.partitions.iter().all(|p| p.leader_id.0 >= 0));
        let partitions: Vec<i32> = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect();
        if ready && leaders_answer(session, name, &partitions) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} has no leaders after {SETTLE_MS_MAX} ms: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every one of `partitions` of `name` answers a ListOffsets as its leader: Kafka's
/// Metadata can name a leader a moment before that broker's partition takes the role.
fn leaders_answer(session: &mut Session, name: &str, partitions: &[i32]) -> bool {
    let mut topic = list_offsets_request::ListOffsetsTopic::default();
    topic.name = topic_name(name);
    topic.partitions = partitions
        .iter()
        .map(|&index| {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = index;
            p.timestamp = -1;
            p
        })
        .collect();
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![topic];
    let v = *versions(ApiKey::ListOffsets).end();
    let response: ListOffsetsResponse =
        session.call(ApiKey::ListOffsets, v, &request).response("list offsets");
    response.topics.iter().all(|t| t.partitions.iter().all(|p| p.error_code == 0))
}

pub(super) fn produce_request(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    let mut data = produce_request::PartitionProduceData::default();
    data.index = partition;
    data.records = Some(Bytes::from(records));
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = topic_name(topic);
    topic_data.partition_data = vec![data];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic_data];
    request
}

pub(super) fn three_records() -> Vec<u8> {
    record_batch(
        &[(Some(b"k0"), b"v0"), (Some(b"k1"), b"v1"), (None, b"v2")],
        TIMESTAMP_MS,
        NO_PRODUCER,
    )
}

/// Produces to partition 0 once the new topic's leader takes writes: Kafka's partition can
/// answer NOT_LEADER_OR_FOLLOWER for a moment after Metadata names its leader.
pub(super) fn produce_when_ready(session: &mut Session, topic: &str, records: Vec<u8>) {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    loop {
        let response: ProduceResponse = session
            .call(ApiKey::Produce, 9, &produce_request(topic, 0, records.clone()))
            .response("produce");
        let error = response.responses[0].partition_responses[0].error_code;
        if error == 0 {
            return;
        }
        assert!(error == 6 && Instant::now() < deadline, "produce to {topic}: {response:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates `TOPIC` and returns its id.
fn setup(session: &mut Session) -> Uuid {
    let topic_id = create(session, TOPIC, 2);
    produce_when_ready(session, TOPIC, three_records());
    // Kafka creates `__consumer_offsets` on the first FindCoordinator: wait until it answers.
    let deadline = Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    let mut request = FindCoordinatorRequest::default();
    request.key = s("diff-warmup");
    loop {
        let response: FindCoordinatorResponse =
            session.call(ApiKey::FindCoordinator, 3, &request).response("find coordinator");
        if response.error_code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no group coordinator after {SETTLE_MS_MAX} ms: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    topic_id
}

/// ApiVersions at each version; the advertised table itself is compared in `mod.rs`.
fn api_versions(session: &mut Session) {
    for v in versions(ApiKey::ApiVersions) {
        let mut request = ApiVersionsRequest::default();
        if v >= 3 {
            request.client_software_name = s("fjord-differential");
            request.client_software_version = s("1.0");
        }
        session.exchange(
            format!("api_versions v{v}"),
            ApiKey::ApiVersions,
            v,
            &request,
            |r: &mut ApiVersionsResponse| r.api_keys.clear(),
        );
    }
    // v3 names the client software; Kafka checks the names against its pattern.
    for (label, name, version) in [
        ("empty client software name", "", "1.0"),
        ("invalid client software name", "-bad name-", "1.0"),
    ] {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = s(name);
        request.client_software_version = s(version);
        session.exchange(
            format!("api_versions v3 {label}"),
            ApiKey::ApiVersions,
            3,
            &request,
            |r: &mut ApiVersionsResponse| r.api_keys.clear(),
        );
    }
    // A version no broker knows: error UNSUPPORTED_VERSION in a v0 answer.
    let mut payload = vec![0, 18, 0, 99, 0, 0, 0x10, 0, 0, 4];
    payload.extend_from_slice(b"diff");
    payload.push(0); // header v2: no tagged fields
    let answer = match session.raw(&payload) {
        None => Answer::Closed,
        Some(bytes) => Answer::Response(
            fjord::protocol::decode_response::<ApiVersionsResponse>(
                ApiKey::ApiVersions,
                0,
                Some(0x1000),
                Bytes::from(bytes),
            )
            .expect("a v0 ApiVersions answer"),
        ),
    };
    session.observe("api_versions v99", answer, |_| {});
}

/// Frames around a body: an unknown version, an unknown API key, bytes after the body.
fn framing(session: &mut Session) {
    let header = |key: i16, version: i16| {
        let mut p = Vec::new();
        p.extend_from_slice(&key.to_be_bytes());
        p.extend_from_slice(&version.to_be_bytes());
        p.extend_from_slice(&7i32.to_be_bytes());
        p.extend_from_slice(&4i16.to_be_bytes());
        p.extend_from_slice(b"diff");
        p
    };
    let mut flexible = header(3, 99);
    flexible.push(0); // header v2: no tagged fields
    let unknown_version = session.raw(&flexible);
    session.observe(
        "framing metadata v99",
        unknown_version.map_or(Answer::Closed, |b| Answer::Response(b.len())),
        |_| {},
    );
    let unknown_key = session.raw(&header(9999, 0));
    session.observe(
        "framing api key 9999",
        unknown_key.map_or(Answer::Closed, |b| Answer::Response(b.len())),
        |_| {},
    );
    // Metadata v1 for one topic, then four bytes no schema has.
    let mut payload = header(3, 1);
    payload.extend_from_slice(&1i32.to_be_bytes());
    payload.extend_from_slice(&(TOPIC.len() as i16).to_be_bytes());
    payload.extend_from_slice(TOPIC.as_bytes());
    payload.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let answer = session.raw(&payload).map_or(Answer::Closed, |b| {
        Answer::Response(
            fjord::protocol::decode_response::<MetadataResponse>(
                ApiKey::Metadata,
                1,
                Some(7),
                Bytes::from(b),
            )
            .expect("metadata v1"),
        )
    });
    session.observe("framing metadata v1 with trailing bytes", answer, |_| {});
}

fn sort_metadata(response: &mut MetadataResponse) {
    // Fjord creates `__consumer_offsets` at start, Kafka on first use: only the suite's
    // topics are compared.
    // An entry without a name answers a topic id (v12+).
    response.topics.retain(|t| t.name.as_ref().is_none_or(|n| n.0.starts_with("diff")));
    response.topics.sort_by_key(|t| format!("{:?}", t.name));
    response.brokers.clear();
}

/// Metadata v12+ naming topics by id: a known one (the names are then ignored), an unknown one.
fn metadata_by_id(session: &mut Session, topic_id: Uuid) {
    const UNKNOWN_ID: Uuid = Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0001);
    for v in versions(ApiKey::Metadata).filter(|v| *v >= 12) {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            [topic_id, UNKNOWN_ID, topic_id, UNKNOWN_ID]
                .iter()
                .map(|id| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.topic_id = *id;
                    topic
                })
                .collect(),
        );
        request.allow_auto_topic_creation = false;
        request.include_topic_authorized_operations = true;
        session.exchange(
            format!("metadata v{v} repeated ids with operations"),
            ApiKey::Metadata,
            v,
            &request,
            sort_metadata,
        );
        for (label, id, name) in [
            ("by id", topic_id, None),
            ("unknown id", UNKNOWN_ID, None),
            ("by id and another name", topic_id, Some("diff-other")),
        ] {
            let mut topic = MetadataRequestTopic::default();
            topic.topic_id = id;
            topic.name = name.map(topic_name);
            let mut request = MetadataRequest::default();
            request.topics = Some(vec![topic]);
            request.allow_auto_topic_creation = false;
            session.exchange(
                format!("metadata v{v} {label}"),
                ApiKey::Metadata,
                v,
                &request,
                sort_metadata,
            );
        }
    }
}

fn metadata(session: &mut Session) {
    for v in versions(ApiKey::Metadata) {
        let mut request = MetadataRequest::default();
        let mut topic = MetadataRequestTopic::default();
        topic.name = Some(topic_name(TOPIC));
        request.topics = Some(vec![topic]);
        request.allow_auto_topic_creation = v < 4; // v0-3 always auto-create; no effect on an existing topic
        session.exchange(
            format!("metadata v{v} one topic"),
            ApiKey::Metadata,
            v,
            &request,
            sort_metadata,
        );
        let mut all = MetadataRequest::default();
        all.topics = if v == 0 { Some(vec![]) } else { None };
        all.allow_auto_topic_creation = v < 4;
        session.exchange(
            format!("metadata v{v} all topics"),
            ApiKey::Metadata,
            v,
            &all,
            sort_metadata,
        );
        let mut brokers_only = MetadataRequest::default();
        brokers_only.topics = Some(vec![]);
        brokers_only.allow_auto_topic_creation = v < 4;
        if v > 0 {
            session.exchange(
                format!("metadata v{v} no topics"),
                ApiKey::Metadata,
                v,
                &brokers_only,
                |r: &mut MetadataResponse| {
                    r.brokers.iter_mut().for_each(|b| b.rack = None);
                    let count = r.brokers.len();
                    r.brokers.truncate(count.min(1));
                },
            );
        }
    }
    for v in versions(ApiKey::Metadata).filter(|v| *v >= 8) {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            [TOPIC, "diff-no-such-topic"]
                .iter()
                .map(|n| {
                    let mut topic = MetadataRequestTopic::default();
                    topic.name = Some(topic_name(n));
                    topic
                })
                .collect(),
        );
        request.allow_auto_topic_creation = false;
        request.include_cluster_authorized_operations = v <= 10; // v11 dropped it
        request.include_topic_authorized_operations = true;
        session.exchange(
            format!("metadata v{v} authorized operations"),
            ApiKey::Metadata,
            v,
            &request,
            sort_metadata,
        );
    }
    for (label, name) in [
        ("unknown topic", "diff-no-such-topic"),
        ("invalid name", "diff bad name!"),
        ("name too long", &"diff-long-".repeat(26) as &str),
    ] {
        let mut request = MetadataRequest::default();
        let mut topic = MetadataRequestTopic::default();
        topic.name = Some(topic_name(name));
        request.topics = Some(vec![topic]);
        request.allow_auto_topic_creation = false;
        session.exchange(
            format!("metadata v9 {label}"),
            ApiKey::Metadata,
            9,
            &request,
            sort_metadata,
        );
    }
}

fn creatable(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = replication_factor;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    topic
}

fn sort_created(response: &mut CreateTopicsResponse) {
    response.topics.sort_by_key(|t| format!("{:?}", t.name));
    for topic in &mut response.topics {
        if let Some(configs) = topic.configs.as_mut() {
            configs.sort_by_key(|c| format!("{:?}", c.name));
        }
    }
}

/// Observes a CreateTopics answer, and from v7 whether it gave the topic an id (the ids
/// themselves differ between brokers and are masked). Returns the first topic's id.
fn observe_created(
    session: &mut Session,
    label: String,
    v: i16,
    request: &CreateTopicsRequest,
) -> Uuid {
    let answer: Answer<CreateTopicsResponse> = session.call(ApiKey::CreateTopics, v, request);
    let id = match &answer {
        Answer::Response(response) => response.topics.first().map_or(Uuid::nil(), |t| t.topic_id),
        Answer::Closed => Uuid::nil(),
    };
    if v >= 7 {
        session.observe(format!("{label}: has a topic id"), Answer::Response(!id.is_nil()), |_| {});
    }
    session.observe(label, answer, sort_created);
    id
}

/// Creates `diff-ct-v{v}` at every version and returns the id of the newest one.
fn create_topics(session: &mut Session) -> Uuid {
    let mut newest_id = Uuid::nil();
    for v in versions(ApiKey::CreateTopics) {
        let mut request = CreateTopicsRequest::default();
        request.timeout_ms = 10_000;
        request.topics =
            vec![creatable(&format!("diff-ct-v{v}"), 3, 1, &[("retention.ms", "3600000")])];
        newest_id = observe_created(session, format!("create_topics v{v}"), v, &request);
    }
    let mut bad = CreateTopicsRequest::default();
    bad.timeout_ms = 10_000;
    bad.topics = vec![
        creatable(TOPIC, 1, 1, &[]),
        creatable("diff bad name", 1, 1, &[]),
        creatable("diff-zero-partitions", 0, 1, &[]),
        creatable("diff-rf3", 1, 3, &[]),
        creatable("diff-unknown-config", 1, 1, &[("no.such.config", "1")]),
        creatable("diff-bad-config-value", 1, 1, &[("retention.ms", "soon")]),
        creatable("diff-default-partitions", -1, -1, &[]),
    ];
    session.exchange("create_topics v5 errors", ApiKey::CreateTopics, 5, &bad, sort_created);
    let newest = *versions(ApiKey::CreateTopics).end();
    for v in [5, newest] {
        let mut validate = CreateTopicsRequest::default();
        validate.timeout_ms = 10_000;
        validate.validate_only = true;
        validate.topics = vec![creatable("diff-validate-only", 2, 1, &[])];
        observe_created(session, format!("create_topics v{v} validate only"), v, &validate);
    }
    for name in [format!("diff-ct-v{newest}"), "diff-default-partitions".to_string()] {
        wait_for_leaders(session, &name);
    }
    newest_id
}

/// A DeleteTopics of `names`: `topic_names` before v6, `topics` by name from v6.
fn delete_request(v: i16, names: &[&str]) -> DeleteTopicsRequest {
    let mut request = DeleteTopicsRequest::default();
    request.timeout_ms = 10_000;
    if v >= 6 {
        request.topics = names.iter().map(|name| delete_state(Some(name), Uuid::nil())).collect();
    } else {
        request.topic_names = names.iter().map(|name| topic_name(name)).collect();
    }
    request
}

fn delete_state(name: Option<&str>, id: Uuid) -> delete_topics_request::DeleteTopicState {
    let mut state = delete_topics_request::DeleteTopicState::default();
    state.name = name.map(topic_name);
    state.topic_id = id;
    state
}

/// Kafka shuffles its DeleteTopics answers: both are sorted by what each entry names.
fn sort_deleted(response: &mut DeleteTopicsResponse) {
    response.responses.sort_by_key(|t| format!("{:?} {:?} {}", t.name, t.topic_id, t.error_code));
}

/// Deletes `diff-ct-v{v}` at every version, then the newest one (`created_id`) by its id.
fn delete_topics(session: &mut Session, created_id: Uuid) {
    for v in versions(ApiKey::DeleteTopics) {
        let request = delete_request(v, &[&format!("diff-ct-v{v}")]);
        session.exchange(
            format!("delete_topics v{v}"),
            ApiKey::DeleteTopics,
            v,
            &request,
            sort_deleted,
        );
    }
    let request = delete_request(5, &["diff-no-such-topic", "diff bad name"]);
    session.exchange("delete_topics v5 unknown", ApiKey::DeleteTopics, 5, &request, sort_deleted);
    let newest = *versions(ApiKey::DeleteTopics).end();
    if newest < 6 {
        return;
    }
    let by_id = |entries: Vec<delete_topics_request::DeleteTopicState>| {
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = 10_000;
        request.topics = entries;
        request
    };
    let cases = [
        ("by id", vec![delete_state(None, created_id)]),
        ("unknown id", vec![delete_state(None, NO_SUCH_TOPIC_ID)]),
        (
            "name and id in one entry, neither, twice",
            vec![
                delete_state(Some(TOPIC), NO_SUCH_TOPIC_ID),
                delete_state(None, Uuid::nil()),
                delete_state(Some("diff-no-such-topic"), Uuid::nil()),
                delete_state(Some("diff-no-such-topic"), Uuid::nil()),
                delete_state(None, Uuid::from_u128(NO_SUCH_TOPIC_ID.as_u128() + 1)),
                delete_state(None, Uuid::from_u128(NO_SUCH_TOPIC_ID.as_u128() + 1)),
            ],
        ),
    ];
    for (label, entries) in cases {
        session.exchange(
            format!("delete_topics v{newest} {label}"),
            ApiKey::DeleteTopics,
            newest,
            &by_id(entries),
            sort_deleted,
        );
    }
    // A topic named both by its id and by its name: Kafka refuses the name and deletes it
    // under neither; then by its name alone.
    let id = create(session, "diff-dt-both", 1);
    let both = by_id(vec![delete_state(None, id), delete_state(Some("diff-dt-both"), Uuid::nil())]);
    session.exchange(
        format!("delete_topics v{newest} by id and by name"),
        ApiKey::DeleteTopics,
        newest,
        &both,
        sort_deleted,
    );
    let request = delete_request(newest, &["diff-dt-both"]);
    session.exchange(
        format!("delete_topics v{newest} by name"),
        ApiKey::DeleteTopics,
        newest,
        &request,
        sort_deleted,
    );
}

/// Produce to a compacted topic: keyed records are taken, a batch with a keyless record is
/// refused whole with INVALID_RECORD and the record's index (Kafka's `validateKey`).
fn produce_compacted(session: &mut Session) {
    create_with(session, "diff-compacted", 1, &[("cleanup.policy", "compact")]);
    let keyed =
        || record_batch(&[(Some(b"k0"), b"v0"), (Some(b"k1"), b"v1")], TIMESTAMP_MS, NO_PRODUCER);
    produce_when_ready(session, "diff-compacted", keyed());
    for v in versions(ApiKey::Produce) {
        for (label, batch) in [("keyless", three_records()), ("keyed", keyed())] {
            session.exchange(
                format!("produce v{v} {label} records to a compacted topic"),
                ApiKey::Produce,
                v,
                &produce_request("diff-compacted", 0, batch),
                |_: &mut ProduceResponse| {},
            );
        }
    }
}

fn produce(session: &mut Session) {
    produce_compacted(session);
    create(session, "diff-p", 1);
    // The first batch also waits for the leader to take writes; the versions' batches follow.
    produce_when_ready(session, "diff-p", three_records());
    for v in versions(ApiKey::Produce) {
        let request = produce_request("diff-p", 0, three_records());
        session.exchange(
            format!("produce v{v}"),
            ApiKey::Produce,
            v,
            &request,
            |_: &mut ProduceResponse| {},
        );
    }
    let v = *versions(ApiKey::Produce).end();
    let cases: Vec<(&str, ProduceRequest)> = vec![
        ("partition out of range", produce_request("diff-p", 99, three_records())),
        ("unknown topic", produce_request("diff-no-such-topic", 0, three_records())),
        ("invalid topic name", produce_request("diff bad name", 0, three_records())),
        (
            "wrong crc",
            produce_request("diff-p", 0, {
                let mut batch = three_records();
                batch[BATCH_CRC_AT] ^= 0xff;
                batch
            }),
        ),
        (
            "oversized batch",
            produce_request(
                "diff-p",
                0,
                record_batch(&[(None, &vec![b'x'; 1_100_000])], TIMESTAMP_MS, NO_PRODUCER),
            ),
        ),
        (
            "unknown producer id",
            produce_request(
                "diff-p",
                0,
                record_batch(
                    &[(None, b"v")],
                    TIMESTAMP_MS,
                    Producer { id: 987_654, epoch: 0, base_sequence: 5 },
                ),
            ),
        ),
    ];
    for (label, request) in cases {
        session.exchange(
            format!("produce v{v} {label}"),
            ApiKey::Produce,
            v,
            &request,
            |_: &mut ProduceResponse| {},
        );
    }
}

/// A Fetch of one partition of `topic`, named by `id` from v13 (both are set; the codec
/// writes the one the version has).
fn fetch_request(topic: &str, id: Uuid, partition: i32, offset: i64) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 50;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    request.topics = vec![fetch_topic(topic, id, &[(partition, offset)])];
    request
}

/// One topic of a Fetch: (partition, fetch offset) for each partition.
fn fetch_topic(topic: &str, id: Uuid, partitions: &[(i32, i64)]) -> fetch_request::FetchTopic {
    let mut t = fetch_request::FetchTopic::default();
    t.topic = topic_name(topic);
    t.topic_id = id;
    t.partitions = partitions
        .iter()
        .map(|(partition, offset)| {
            let mut p = fetch_request::FetchPartition::default();
            p.partition = *partition;
            p.fetch_offset = *offset;
            p.partition_max_bytes = 1 << 20;
            p
        })
        .collect();
    t
}

fn fetch(session: &mut Session, topic_id: Uuid) {
    for v in versions(ApiKey::Fetch) {
        session.exchange(
            format!("fetch v{v}"),
            ApiKey::Fetch,
            v,
            &fetch_request(TOPIC, topic_id, 0, 0),
            |_: &mut FetchResponse| {},
        );
        session.exchange(
            format!("fetch v{v} offset out of range"),
            ApiKey::Fetch,
            v,
            &fetch_request(TOPIC, topic_id, 0, 1000),
            |_: &mut FetchResponse| {},
        );
        // Partitions that do not exist come after those read, in Kafka's order.
        let mut several = fetch_request(TOPIC, topic_id, 0, 0);
        several.topics = vec![
            fetch_topic(TOPIC, topic_id, &[(0, 0), (99, 0)]),
            fetch_topic("diff-no-such-topic", NO_SUCH_TOPIC_ID, &[(0, 0)]),
            fetch_topic(TOPIC, topic_id, &[(1, 0)]),
        ];
        session.exchange(
            format!("fetch v{v} several topics, some missing"),
            ApiKey::Fetch,
            v,
            &several,
            |_: &mut FetchResponse| {},
        );
    }
    let v = *versions(ApiKey::Fetch).end();
    session.exchange(
        format!("fetch v{v} partition out of range"),
        ApiKey::Fetch,
        v,
        &fetch_request(TOPIC, topic_id, 99, 0),
        |_: &mut FetchResponse| {},
    );
    session.exchange(
        format!("fetch v{v} unknown topic"),
        ApiKey::Fetch,
        v,
        &fetch_request("diff-no-such-topic", NO_SUCH_TOPIC_ID, 0, 0),
        |_: &mut FetchResponse| {},
    );
    session.exchange(
        format!("fetch v{v} empty partition"),
        ApiKey::Fetch,
        v,
        &fetch_request(TOPIC, topic_id, 1, 0),
        |_: &mut FetchResponse| {},
    );
    // v12+: the epoch of the last batch the fetcher holds, checked against this log's epochs.
    for v in versions(ApiKey::Fetch).filter(|v| *v >= 12) {
        for (label, offset, epoch) in [
            ("last fetched epoch 0", 0, 0),
            ("last fetched epoch 0 past the log end", 1000, 0),
            ("a last fetched epoch the log never had", 0, 5),
        ] {
            let mut request = fetch_request(TOPIC, topic_id, 0, offset);
            request.topics[0].partitions[0].last_fetched_epoch = epoch;
            session.exchange(
                format!("fetch v{v} {label}"),
                ApiKey::Fetch,
                v,
                &request,
                |_: &mut FetchResponse| {},
            );
        }
    }
}

fn list_offsets(session: &mut Session) {
    for v in versions(ApiKey::ListOffsets) {
        for (label, partition, timestamp) in [
            ("earliest", 0, -2),
            ("latest", 0, -1),
            ("by time", 0, TIMESTAMP_MS),
            ("after the last", 0, TIMESTAMP_MS + 1),
            ("partition out of range", 99, -1),
        ] {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = partition;
            p.timestamp = timestamp;
            let mut t = list_offsets_request::ListOffsetsTopic::default();
            t.name = topic_name(TOPIC);
            t.partitions = vec![p];
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = vec![t];
            session.exchange(
                format!("list_offsets v{v} {label}"),
                ApiKey::ListOffsets,
                v,
                &request,
                |_: &mut ListOffsetsResponse| {},
            );
        }
    }
}

fn offset_for_leader_epoch(session: &mut Session) {
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        for (label, partition, epoch) in
            [("epoch 0", 0, 0), ("future epoch", 0, 5), ("partition out of range", 99, 0)]
        {
            let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            p.partition = partition;
            p.current_leader_epoch = -1;
            p.leader_epoch = epoch;
            let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
            t.topic = topic_name(TOPIC);
            t.partitions = vec![p];
            let mut request = OffsetForLeaderEpochRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = vec![t];
            session.exchange(
                format!("offset_for_leader_epoch v{v} {label}"),
                ApiKey::OffsetForLeaderEpoch,
                v,
                &request,
                |_: &mut OffsetForLeaderEpochResponse| {},
            );
        }
    }
}

fn init_producer_id(session: &mut Session) {
    for v in versions(ApiKey::InitProducerId) {
        let mut request = InitProducerIdRequest::default();
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        session.exchange(
            format!("init_producer_id v{v}"),
            ApiKey::InitProducerId,
            v,
            &request,
            |_: &mut InitProducerIdResponse| {},
        );
    }
}

fn describe_configs(session: &mut Session) {
    for v in versions(ApiKey::DescribeConfigs) {
        for (label, resource_type, name, keys) in [
            ("topic", 2i8, TOPIC, None),
            ("topic, two keys", 2, TOPIC, Some(vec![s("retention.ms"), s("cleanup.policy")])),
            ("unknown topic", 2, "diff-no-such-topic", None),
        ] {
            let mut resource = DescribeConfigsResource::default();
            resource.resource_type = resource_type;
            resource.resource_name = s(name);
            resource.configuration_keys = keys;
            let mut request = DescribeConfigsRequest::default();
            request.resources = vec![resource];
            session.exchange(
                format!("describe_configs v{v} {label}"),
                ApiKey::DescribeConfigs,
                v,
                &request,
                |r: &mut DescribeConfigsResponse| {
                    for result in &mut r.results {
                        result.configs.sort_by_key(|c| format!("{:?}", c.name));
                    }
                },
            );
        }
    }
}

/// How long Kafka may take to make its transaction coordinator ready: its first TRANSACTION
/// FindCoordinator creates `__transaction_state` and is answered COORDINATOR_NOT_AVAILABLE
/// until then. Fjord, which has no transaction coordinator yet, answers that all along.
const TRANSACTION_COORDINATOR_MS_MAX: u64 = 10_000;

/// Asks for a transaction coordinator until one is named (Kafka, once ready) or
/// `TRANSACTION_COORDINATOR_MS_MAX` has passed (Fjord), so the cases compare settled answers.
fn wait_for_a_transaction_coordinator(session: &mut Session) {
    let mut txn = FindCoordinatorRequest::default();
    txn.key_type = 1;
    txn.key = s("diff-txn");
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(TRANSACTION_COORDINATOR_MS_MAX);
    while std::time::Instant::now() < deadline {
        let response: FindCoordinatorResponse = session
            .call(ApiKey::FindCoordinator, 1, &txn)
            .response("find a transaction coordinator");
        if response.error_code == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn find_coordinator(session: &mut Session) {
    wait_for_a_transaction_coordinator(session);
    for v in versions(ApiKey::FindCoordinator) {
        let mut request = FindCoordinatorRequest::default();
        if v >= 4 {
            request.coordinator_keys = vec![s("diff-find")];
        } else {
            request.key = s("diff-find");
        }
        session.exchange(
            format!("find_coordinator v{v}"),
            ApiKey::FindCoordinator,
            v,
            &request,
            |_: &mut FindCoordinatorResponse| {},
        );
        if v >= 1 {
            let mut txn = FindCoordinatorRequest::default();
            txn.key_type = 1;
            if v >= 4 {
                txn.coordinator_keys = vec![s("diff-txn")];
            } else {
                txn.key = s("diff-txn");
            }
            session.exchange(
                format!("find_coordinator v{v} transaction"),
                ApiKey::FindCoordinator,
                v,
                &txn,
                |_: &mut FindCoordinatorResponse| {},
            );
        }
    }
}

/// A commit of `offset` for partition 0 of `TOPIC` by `member` of `group` in `generation`.
fn commit_request(group: &str, generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
    partition.committed_offset = offset;
    let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(s(group));
    commit.generation_id_or_member_epoch = generation;
    commit.member_id = s(member);
    commit.retention_time_ms = -1;
    commit.topics = vec![topic];
    commit
}

/// A consumer subscription (ConsumerProtocolSubscription v0) to `TOPIC`.
fn subscription() -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(TOPIC.len() as i16).to_be_bytes());
    b.extend_from_slice(TOPIC.as_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    Bytes::from(b)
}

pub(super) fn join_request(group: &str, member: &str, v: i16) -> JoinGroupRequest {
    let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    protocol.metadata = subscription();
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(s(group));
    request.session_timeout_ms = 10_000;
    if v >= 1 {
        request.rebalance_timeout_ms = 10_000;
    }
    request.member_id = s(member);
    request.protocol_type = s("consumer");
    request.protocols = vec![protocol];
    request
}

/// One member's whole life in a group, walking the versions of every group API: step `i`
/// uses version `i` of each (clamped to what Fjord serves).
fn groups(session: &mut Session) {
    for i in 0..=*versions(ApiKey::JoinGroup).end() {
        let group = format!("diff-g{i}");
        let join_v = clamp(ApiKey::JoinGroup, i);
        let first: JoinGroupResponse = session
            .call(ApiKey::JoinGroup, join_v, &join_request(&group, "", join_v))
            .response("join");
        let member = first.member_id.to_string();
        session.observe(format!("join_group v{join_v}"), Answer::Response(first), |_| {});
        if join_v >= 4 {
            let again: Answer<JoinGroupResponse> =
                session.call(ApiKey::JoinGroup, join_v, &join_request(&group, &member, join_v));
            session.observe(format!("join_group v{join_v} with the member id"), again, |_| {});
        }
        let sync_v = clamp(ApiKey::SyncGroup, i);
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(&group));
        sync.generation_id = 1;
        sync.member_id = s(&member);
        if sync_v >= 5 {
            sync.protocol_type = Some(s("consumer"));
            sync.protocol_name = Some(s("range"));
        }
        let mut assignment = sync_group_request::SyncGroupRequestAssignment::default();
        assignment.member_id = s(&member);
        assignment.assignment = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        sync.assignments = vec![assignment];
        session.exchange(
            format!("sync_group v{sync_v}"),
            ApiKey::SyncGroup,
            sync_v,
            &sync,
            |_: &mut SyncGroupResponse| {},
        );
        let heartbeat_v = clamp(ApiKey::Heartbeat, i);
        let mut heartbeat = HeartbeatRequest::default();
        heartbeat.group_id = GroupId(s(&group));
        heartbeat.generation_id = 1;
        heartbeat.member_id = s(&member);
        session.exchange(
            format!("heartbeat v{heartbeat_v}"),
            ApiKey::Heartbeat,
            heartbeat_v,
            &heartbeat,
            |_: &mut HeartbeatResponse| {},
        );
        let commit_v = clamp(ApiKey::OffsetCommit, i);
        let mut commit = commit_request(&group, 1, &member, 2);
        commit.topics[0].partitions[0].committed_metadata = Some(s("m"));
        session.exchange(
            format!("offset_commit v{commit_v}"),
            ApiKey::OffsetCommit,
            commit_v,
            &commit,
            |_: &mut OffsetCommitResponse| {},
        );
        let fetch_v = clamp(ApiKey::OffsetFetch, i);
        let offsets = offset_fetch_request(fetch_v, &[&group], Some(&[0, 1]));
        session.exchange(
            format!("offset_fetch v{fetch_v}"),
            ApiKey::OffsetFetch,
            fetch_v,
            &offsets,
            |_: &mut OffsetFetchResponse| {},
        );
        let describe_v = clamp(ApiKey::DescribeGroups, i);
        let mut describe = DescribeGroupsRequest::default();
        describe.groups = vec![GroupId(s(&group))];
        session.exchange(
            format!("describe_groups v{describe_v}"),
            ApiKey::DescribeGroups,
            describe_v,
            &describe,
            |_: &mut DescribeGroupsResponse| {},
        );
        let list_v = clamp(ApiKey::ListGroups, i);
        session.exchange(
            format!("list_groups v{list_v}"),
            ApiKey::ListGroups,
            list_v,
            &ListGroupsRequest::default(),
            |r: &mut ListGroupsResponse| {
                r.groups.retain(|g| g.group_id.0.starts_with("diff-g"));
                r.groups.sort_by_key(|g| format!("{:?}", g.group_id));
            },
        );
        let leave_v = clamp(ApiKey::LeaveGroup, i);
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s(&group));
        if leave_v >= 3 {
            let mut identity = leave_group_request::MemberIdentity::default();
            identity.member_id = s(&member);
            leave.members = vec![identity];
        } else {
            leave.member_id = s(&member);
        }
        session.exchange(
            format!("leave_group v{leave_v}"),
            ApiKey::LeaveGroup,
            leave_v,
            &leave,
            |_: &mut LeaveGroupResponse| {},
        );
        let delete_v = clamp(ApiKey::DeleteGroups, i);
        let mut delete = DeleteGroupsRequest::default();
        delete.groups_names = vec![GroupId(s(&group)), GroupId(s("diff-no-such-group"))];
        session.exchange(
            format!("delete_groups v{delete_v}"),
            ApiKey::DeleteGroups,
            delete_v,
            &delete,
            |r: &mut DeleteGroupsResponse| {
                r.results.sort_by_key(|g| format!("{:?}", g.group_id));
            },
        );
    }
}

/// Group operations by someone who is not a member, or on a group that does not exist.
fn group_errors(session: &mut Session) {
    let join_v = *versions(ApiKey::JoinGroup).end();
    let group = "diff-errors";
    let first: JoinGroupResponse =
        session.call(ApiKey::JoinGroup, join_v, &join_request(group, "", join_v)).response("join");
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse = session
        .call(ApiKey::JoinGroup, join_v, &join_request(group, &member, join_v))
        .response("join");
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let heartbeat_v = *versions(ApiKey::Heartbeat).end();
    for (label, group, member, generation) in [
        ("unknown member", group, "nobody", 1),
        ("wrong generation", group, member.as_str(), 7),
        ("unknown group", "diff-no-such-group", "nobody", 1),
        ("empty group id", "", "nobody", 1),
    ] {
        let mut heartbeat = HeartbeatRequest::default();
        heartbeat.group_id = GroupId(s(group));
        heartbeat.generation_id = generation;
        heartbeat.member_id = s(member);
        session.exchange(
            format!("heartbeat v{heartbeat_v} {label}"),
            ApiKey::Heartbeat,
            heartbeat_v,
            &heartbeat,
            |_: &mut HeartbeatResponse| {},
        );
        let sync_v = *versions(ApiKey::SyncGroup).end();
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(group));
        sync.generation_id = generation;
        sync.member_id = s(member);
        sync.protocol_type = Some(s("consumer"));
        sync.protocol_name = Some(s("range"));
        session.exchange(
            format!("sync_group v{sync_v} {label}"),
            ApiKey::SyncGroup,
            sync_v,
            &sync,
            |_: &mut SyncGroupResponse| {},
        );
        let commit_v = *versions(ApiKey::OffsetCommit).end();
        let commit = commit_request(group, generation, member, 1);
        session.exchange(
            format!("offset_commit v{commit_v} {label}"),
            ApiKey::OffsetCommit,
            commit_v,
            &commit,
            |_: &mut OffsetCommitResponse| {},
        );
        let leave_v = *versions(ApiKey::LeaveGroup).end();
        let mut identity = leave_group_request::MemberIdentity::default();
        identity.member_id = s(member);
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s(group));
        leave.members = vec![identity];
        session.exchange(
            format!("leave_group v{leave_v} {label}"),
            ApiKey::LeaveGroup,
            leave_v,
            &leave,
            |_: &mut LeaveGroupResponse| {},
        );
    }
    // A commit without a group generation (a standalone consumer), then a delete of a group
    // that still has a member.
    let commit_v = *versions(ApiKey::OffsetCommit).end();
    let commit = commit_request("diff-standalone", -1, "", 1);
    session.exchange(
        format!("offset_commit v{commit_v} standalone"),
        ApiKey::OffsetCommit,
        commit_v,
        &commit,
        |_: &mut OffsetCommitResponse| {},
    );
    let delete_v = *versions(ApiKey::DeleteGroups).end();
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![GroupId(s(group)), GroupId(s("diff-standalone"))];
    session.exchange(
        format!("delete_groups v{delete_v} non-empty"),
        ApiKey::DeleteGroups,
        delete_v,
        &delete,
        |r: &mut DeleteGroupsResponse| {
            r.results.sort_by_key(|g| format!("{:?}", g.group_id));
        },
    );
    let _ = CLIENT_ID;
}

/// A second member's join puts a stable group into PreparingRebalance; the first member
/// still commits under its generation (Kafka takes it: only CompletingRebalance refuses),
/// is told to rejoin by its heartbeat, and leaves, which completes the newcomer's join.
fn commit_while_a_rebalance_is_prepared(session: &mut Session) {
    const GROUP: &str = "diff-prepared";
    /// How often the first member checks whether the newcomer's join (which blocks until
    /// the rebalance completes) has reached the coordinator.
    const JOIN_LANDS_MS: u64 = 100;
    let v = *versions(ApiKey::JoinGroup).end();
    let first: JoinGroupResponse =
        session.call(ApiKey::JoinGroup, v, &join_request(GROUP, "", v)).response("join");
    let member = first.member_id.to_string();
    let joined: JoinGroupResponse =
        session.call(ApiKey::JoinGroup, v, &join_request(GROUP, &member, v)).response("join");
    assert_eq!((joined.error_code, joined.generation_id), (0, 1), "{joined:?}");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s(GROUP));
    sync.generation_id = 1;
    sync.member_id = s(&member);
    sync.protocol_type = Some(s("consumer"));
    sync.protocol_name = Some(s("range"));
    let synced: SyncGroupResponse = session.call(ApiKey::SyncGroup, 5, &sync).response("sync");
    assert_eq!(synced.error_code, 0, "{synced:?}");
    let addr = session.addr();
    let newcomer = std::thread::spawn(move || {
        let mut other = Session::new(addr);
        let first: JoinGroupResponse =
            other.call(ApiKey::JoinGroup, v, &join_request(GROUP, "", v)).response("join");
        let id = first.member_id.to_string();
        other.call::<_, JoinGroupResponse>(ApiKey::JoinGroup, v, &join_request(GROUP, &id, v))
    });
    // The newcomer's join has landed once the member's heartbeat is told to rejoin
    // (REBALANCE_IN_PROGRESS); a loaded machine may take a while to get it there.
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = GroupId(s(GROUP));
    heartbeat.generation_id = 1;
    heartbeat.member_id = s(&member);
    let deadline = Instant::now() + Duration::from_millis(SETTLE_MS_MAX);
    let told: HeartbeatResponse = loop {
        std::thread::sleep(Duration::from_millis(JOIN_LANDS_MS));
        let answer: HeartbeatResponse =
            session.call(ApiKey::Heartbeat, 4, &heartbeat).response("heartbeat");
        if answer.error_code != 0 || Instant::now() >= deadline {
            break answer;
        }
    };
    session.observe("heartbeat v4 while a rebalance is prepared", Answer::Response(told), |_| {});
    let commit_v = *versions(ApiKey::OffsetCommit).end();
    let commit = commit_request(GROUP, 1, &member, 3);
    session.exchange(
        format!("offset_commit v{commit_v} while a rebalance is prepared"),
        ApiKey::OffsetCommit,
        commit_v,
        &commit,
        |_: &mut OffsetCommitResponse| {},
    );
    let mut identity = leave_group_request::MemberIdentity::default();
    identity.member_id = s(&member);
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s(GROUP));
    leave.members = vec![identity];
    session.exchange(
        "leave_group v5 while a rebalance is prepared",
        ApiKey::LeaveGroup,
        5,
        &leave,
        |_: &mut LeaveGroupResponse| {},
    );
    let completed = newcomer.join().expect("the newcomer's join");
    session.observe("join_group of the newcomer after the leave", completed, |_| {});
    let mut wanted = offset_fetch_request::OffsetFetchRequestTopic::default();
    wanted.name = topic_name(TOPIC);
    wanted.partition_indexes = vec![0];
    let mut offsets = OffsetFetchRequest::default();
    offsets.group_id = GroupId(s(GROUP));
    offsets.topics = Some(vec![wanted]);
    session.exchange(
        "offset_fetch v7 after the commit while a rebalance was prepared",
        ApiKey::OffsetFetch,
        7,
        &offsets,
        |_: &mut OffsetFetchResponse| {},
    );
}

/// An OffsetFetch of `groups`' commits for `partitions` of `TOPIC` (all when `None`): one
/// group in `group_id` before v8, each in `groups` from v8.
fn offset_fetch_request(v: i16, groups: &[&str], partitions: Option<&[i32]>) -> OffsetFetchRequest {
    let mut request = OffsetFetchRequest::default();
    if v >= 8 {
        request.groups = groups
            .iter()
            .map(|group| {
                let mut wanted = offset_fetch_request::OffsetFetchRequestGroup::default();
                wanted.group_id = GroupId(s(group));
                wanted.topics = partitions.map(|indexes| {
                    let mut topic = offset_fetch_request::OffsetFetchRequestTopics::default();
                    topic.name = topic_name(TOPIC);
                    topic.partition_indexes = indexes.to_vec();
                    vec![topic]
                });
                wanted
            })
            .collect();
    } else {
        assert_eq!(groups.len(), 1, "OffsetFetch v{v} names one group");
        request.group_id = GroupId(s(groups[0]));
        request.topics = partitions.map(|indexes| {
            let mut topic = offset_fetch_request::OffsetFetchRequestTopic::default();
            topic.name = topic_name(TOPIC);
            topic.partition_indexes = indexes.to_vec();
            vec![topic]
        });
    }
    request
}

/// OffsetFetch v8+: several groups in one request (one with commits, one unknown), each
/// answered on its own; v9's member id and epoch, which a classic group does not check.
fn offset_fetch_groups(session: &mut Session) {
    let groups = ["diff-prepared", "diff-no-such-group"];
    for v in versions(ApiKey::OffsetFetch).filter(|v| *v >= 8) {
        let some = offset_fetch_request(v, &groups, Some(&[0, 1]));
        session.exchange(
            format!("offset_fetch v{v} two groups"),
            ApiKey::OffsetFetch,
            v,
            &some,
            |_: &mut OffsetFetchResponse| {},
        );
        let all = offset_fetch_request(v, &groups, None);
        session.exchange(
            format!("offset_fetch v{v} two groups, all topics"),
            ApiKey::OffsetFetch,
            v,
            &all,
            |_: &mut OffsetFetchResponse| {},
        );
        if v >= 9 {
            let mut member = offset_fetch_request(v, &groups, Some(&[0]));
            for group in &mut member.groups {
                group.member_id = Some(s("diff-not-a-member"));
                group.member_epoch = 3;
            }
            session.exchange(
                format!("offset_fetch v{v} member id and epoch"),
                ApiKey::OffsetFetch,
                v,
                &member,
                |_: &mut OffsetFetchResponse| {},
            );
        }
    }
}

/// Requests a client may send that are unusual but legal, or wrong in one field.
fn odd_requests(session: &mut Session, topic_id: Uuid) {
    let produce_v = *versions(ApiKey::Produce).end();
    let mut acks_2 = produce_request("diff-p", 0, three_records());
    acks_2.acks = 2;
    session.exchange(
        format!("produce v{produce_v} acks 2"),
        ApiKey::Produce,
        produce_v,
        &acks_2,
        |_: &mut ProduceResponse| {},
    );
    let mut empty_records = produce_request("diff-p", 0, Vec::new());
    empty_records.topic_data[0].partition_data[0].records = Some(Bytes::new());
    session.exchange(
        format!("produce v{produce_v} empty records"),
        ApiKey::Produce,
        produce_v,
        &empty_records,
        |_: &mut ProduceResponse| {},
    );
    let mut two_batches = three_records();
    two_batches.extend(three_records());
    session.exchange(
        format!("produce v{produce_v} two batches"),
        ApiKey::Produce,
        produce_v,
        &produce_request("diff-p", 0, two_batches),
        |_: &mut ProduceResponse| {},
    );

    let fetch_v = *versions(ApiKey::Fetch).end();
    let mut committed = fetch_request(TOPIC, topic_id, 0, 0);
    committed.isolation_level = 1;
    session.exchange(
        format!("fetch v{fetch_v} read_committed"),
        ApiKey::Fetch,
        fetch_v,
        &committed,
        |_: &mut FetchResponse| {},
    );
    let mut committed_out_of_range = fetch_request(TOPIC, topic_id, 0, 1000);
    committed_out_of_range.isolation_level = 1;
    session.exchange(
        format!("fetch v{fetch_v} read_committed offset out of range"),
        ApiKey::Fetch,
        fetch_v,
        &committed_out_of_range,
        |_: &mut FetchResponse| {},
    );
    let mut no_bytes = fetch_request(TOPIC, topic_id, 0, 0);
    no_bytes.max_bytes = 0;
    no_bytes.topics[0].partitions[0].partition_max_bytes = 0;
    session.exchange(
        format!("fetch v{fetch_v} zero max bytes"),
        ApiKey::Fetch,
        fetch_v,
        &no_bytes,
        |_: &mut FetchResponse| {},
    );
    session.exchange(
        format!("fetch v{fetch_v} from the middle of a batch"),
        ApiKey::Fetch,
        fetch_v,
        &fetch_request(TOPIC, topic_id, 0, 1),
        |_: &mut FetchResponse| {},
    );

    let mut all_offsets = OffsetFetchRequest::default();
    all_offsets.group_id = GroupId(s("diff-prepared"));
    all_offsets.topics = None;
    session.exchange(
        "offset_fetch v7 all topics",
        ApiKey::OffsetFetch,
        7,
        &all_offsets,
        |_: &mut OffsetFetchResponse| {},
    );
    let mut unknown_group = OffsetFetchRequest::default();
    unknown_group.group_id = GroupId(s("diff-no-such-group"));
    unknown_group.topics = None;
    session.exchange(
        "offset_fetch v7 unknown group",
        ApiKey::OffsetFetch,
        7,
        &unknown_group,
        |_: &mut OffsetFetchResponse| {},
    );

    let mut with_operations = DescribeGroupsRequest::default();
    with_operations.groups = vec![GroupId(s("diff-prepared")), GroupId(s("diff-no-such-group"))];
    with_operations.include_authorized_operations = true;
    session.exchange(
        "describe_groups v5 authorized operations",
        ApiKey::DescribeGroups,
        5,
        &with_operations,
        |r: &mut DescribeGroupsResponse| {
            r.groups.sort_by_key(|g| format!("{:?}", g.group_id));
        },
    );
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s("diff-no-such-group")), GroupId(s(""))];
    session.exchange(
        "describe_groups v5 unknown and empty",
        ApiKey::DescribeGroups,
        5,
        &describe,
        |_: &mut DescribeGroupsResponse| {},
    );

    // A join whose protocol type does not match the group's.
    let join_v = *versions(ApiKey::JoinGroup).end();
    let mut other_type = join_request("diff-prepared", "", join_v);
    other_type.protocol_type = s("connect");
    session.exchange(
        format!("join_group v{join_v} another protocol type"),
        ApiKey::JoinGroup,
        join_v,
        &other_type,
        |_: &mut JoinGroupResponse| {},
    );
    let mut no_protocols = join_request("diff-no-protocols", "", join_v);
    no_protocols.protocols.clear();
    session.exchange(
        format!("join_group v{join_v} no protocols"),
        ApiKey::JoinGroup,
        join_v,
        &no_protocols,
        |_: &mut JoinGroupResponse| {},
    );
    let mut short_session = join_request("diff-short-session", "", join_v);
    short_session.session_timeout_ms = 1;
    session.exchange(
        format!("join_group v{join_v} session timeout 1 ms"),
        ApiKey::JoinGroup,
        join_v,
        &short_session,
        |_: &mut JoinGroupResponse| {},
    );

    let mut share = FindCoordinatorRequest::default();
    share.key_type = 2;
    share.key = s("diff-share");
    session.exchange(
        "find_coordinator v3 share key type",
        ApiKey::FindCoordinator,
        3,
        &share,
        |_: &mut FindCoordinatorResponse| {},
    );
    let mut two_to_nowhere = three_records();
    two_to_nowhere.extend(three_records());
    session.exchange(
        "produce v9 two batches to a partition out of range",
        ApiKey::Produce,
        9,
        &produce_request("diff-p", 99, two_to_nowhere),
        |_: &mut ProduceResponse| {},
    );
    let mut lookup = FindCoordinatorRequest::default();
    lookup.key_type = 7;
    lookup.key = s("diff-find");
    session.exchange(
        "find_coordinator v3 unknown key type",
        ApiKey::FindCoordinator,
        3,
        &lookup,
        |_: &mut FindCoordinatorResponse| {},
    );

    let mut transactional = InitProducerIdRequest::default();
    transactional.transactional_id = Some(TransactionalId(s("diff-txn")));
    transactional.transaction_timeout_ms = 60_000;
    transactional.producer_id = ProducerId(-1);
    transactional.producer_epoch = -1;
    session.exchange(
        "init_producer_id v4 transactional",
        ApiKey::InitProducerId,
        4,
        &transactional,
        |_: &mut InitProducerIdResponse| {},
    );
}
