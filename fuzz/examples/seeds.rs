//! Writes the seed corpus of every target into `corpus/<target>/`: valid inputs of each
//! format, built with the same encoders the broker and its clients use, so the fuzzer starts
//! from inputs that pass the first checks. The request frames captured from real clients
//! (`corpus/request/captured-*`) are not written here; they were recorded on the wire.
//!
//! Run from `fuzz/`: `cargo run --example seeds`. It overwrites only the files it names.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use fjord::protocol::{self, SUPPORTED_APIS};
use fjord_storage::batch::build;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    let mut seeds = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
        written += 1;
    };
    requests(&mut seeds, &corpus);
    batches(&mut seeds);
    indexes(&mut seeds);
    checkpoints(&mut seeds);
    offsets_records(&mut seeds);
    group_metadata(&mut seeds);
    cluster_states(&mut seeds);
    leader_epochs(&mut seeds);
    segments(&mut seeds);
    println!("wrote {written} seeds under {}", corpus.display());
}

type Seeds<'a> = dyn FnMut(&str, &str, &[u8]) + 'a;

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

// ----- request ---------------------------------------------------------------------------

/// For each served API: its lowest and highest served version and its first flexible one,
/// unless a frame captured from a real client at that version is in the corpus already.
fn requests(seeds: &mut Seeds<'_>, corpus: &Path) {
    let captured: Vec<String> = std::fs::read_dir(corpus.join("request"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    for &(key, min, max) in SUPPORTED_APIS {
        let flexible = (min..=max).find(|v| key.request_header_version(*v) >= 2);
        let mut versions = vec![min, max];
        versions.extend(flexible);
        versions.sort_unstable();
        versions.dedup();
        for version in versions {
            let name = format!("-{key:?}-v{version}");
            let is_capture = |c: &String| {
                c.starts_with("captured-")
                    && (c.ends_with(&name) || c.contains(&format!("{name}-")))
            };
            if captured.iter().any(is_capture) {
                continue;
            }
            let payload = request(key, version);
            seeds("request", &format!("{key:?}-v{version}"), &payload);
        }
    }
}

/// A request frame payload (no size prefix) with a filled-in body.
fn request(key: ApiKey, version: i16) -> Vec<u8> {
    match key {
        ApiKey::Produce => frame(key, version, &produce()),
        ApiKey::Fetch => frame(key, version, &fetch(version)),
        ApiKey::ListOffsets => frame(key, version, &list_offsets()),
        ApiKey::Metadata => {
            let mut topic = MetadataRequestTopic::default();
            topic.name = Some(TopicName(s("orders")));
            let mut body = MetadataRequest::default();
            body.topics = Some(vec![topic]);
            frame(key, version, &body)
        }
        ApiKey::ApiVersions => {
            let mut body = ApiVersionsRequest::default();
            if version >= 3 {
                body.client_software_name = s("fjord-fuzz");
                body.client_software_version = s("1.0.0");
            }
            frame(key, version, &body)
        }
        ApiKey::CreateTopics => frame(key, version, &create_topics()),
        ApiKey::DeleteTopics => {
            let mut body = DeleteTopicsRequest::default();
            body.timeout_ms = 30_000;
            if version >= 6 {
                let mut topic = DeleteTopicState::default();
                topic.name = Some(TopicName(s("orders")));
                body.topics = vec![topic];
            } else {
                body.topic_names = vec![TopicName(s("orders"))];
            }
            frame(key, version, &body)
        }
        ApiKey::InitProducerId => {
            let mut body = InitProducerIdRequest::default();
            body.transaction_timeout_ms = 60_000;
            frame(key, version, &body)
        }
        ApiKey::DescribeConfigs => {
            let mut resource = DescribeConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = s("orders");
            let mut body = DescribeConfigsRequest::default();
            body.resources = vec![resource];
            frame(key, version, &body)
        }
        ApiKey::FindCoordinator => {
            let mut body = FindCoordinatorRequest::default();
            if version >= 4 {
                body.coordinator_keys = vec![s("group-a")];
            } else {
                body.key = s("group-a");
            }
            frame(key, version, &body)
        }
        ApiKey::JoinGroup => frame(key, version, &join_group(version)),
        ApiKey::SyncGroup => frame(key, version, &sync_group(version)),
        ApiKey::Heartbeat => {
            let mut body = HeartbeatRequest::default();
            body.group_id = GroupId(s("group-a"));
            body.generation_id = 1;
            body.member_id = s("member-1");
            frame(key, version, &body)
        }
        ApiKey::LeaveGroup => {
            let mut body = LeaveGroupRequest::default();
            body.group_id = GroupId(s("group-a"));
            if version >= 3 {
                let mut member = MemberIdentity::default();
                member.member_id = s("member-1");
                body.members = vec![member];
            } else {
                body.member_id = s("member-1");
            }
            frame(key, version, &body)
        }
        ApiKey::OffsetCommit => frame(key, version, &offset_commit()),
        ApiKey::OffsetFetch => frame(key, version, &offset_fetch(version)),
        ApiKey::ListGroups => frame(key, version, &ListGroupsRequest::default()),
        ApiKey::DescribeGroups => {
            let mut body = DescribeGroupsRequest::default();
            body.groups = vec![GroupId(s("group-a"))];
            frame(key, version, &body)
        }
        ApiKey::DeleteGroups => {
            let mut body = DeleteGroupsRequest::default();
            body.groups_names = vec![GroupId(s("group-a"))];
            frame(key, version, &body)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut partition = OffsetForLeaderPartition::default();
            partition.leader_epoch = 0;
            let mut topic = OffsetForLeaderTopic::default();
            topic.topic = TopicName(s("orders"));
            topic.partitions = vec![partition];
            let mut body = OffsetForLeaderEpochRequest::default();
            body.topics = vec![topic];
            frame(key, version, &body)
        }
        other => panic!("{other:?} is served but has no seed"),
    }
}

fn frame<T: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let framed = protocol::encode_request(key, version, 1, "fjord-fuzz", body)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    framed[4..].to_vec()
}

fn produce() -> ProduceRequest {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from(build::batch_of(3, 16, 1_700_000_000_000, 1)));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(s("orders"));
    topic.partition_data = vec![partition];
    let mut body = ProduceRequest::default();
    body.acks = -1;
    body.timeout_ms = 30_000;
    body.topic_data = vec![topic];
    body
}

fn fetch(version: i16) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    if version >= 13 {
        topic.topic_id = uuid::Uuid::from_u128(0x1234);
    } else {
        topic.topic = TopicName(s("orders"));
    }
    topic.partitions = vec![partition];
    let mut body = FetchRequest::default();
    body.max_wait_ms = 500;
    body.min_bytes = 1;
    body.max_bytes = 50 << 20;
    body.topics = vec![topic];
    body
}

fn list_offsets() -> ListOffsetsRequest {
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -1;
    let mut topic = ListOffsetsTopic::default();
    topic.name = TopicName(s("orders"));
    topic.partitions = vec![partition];
    let mut body = ListOffsetsRequest::default();
    body.topics = vec![topic];
    body
}

fn create_topics() -> CreateTopicsRequest {
    let mut config = CreatableTopicConfig::default();
    config.name = s("retention.ms");
    config.value = Some(s("60000"));
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(s("orders"));
    topic.num_partitions = 3;
    topic.replication_factor = 1;
    topic.configs = vec![config];
    let mut body = CreateTopicsRequest::default();
    body.topics = vec![topic];
    body.timeout_ms = 30_000;
    body
}

fn join_group(version: i16) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = s("range");
    // ConsumerProtocolSubscription v0: one topic, no user data.
    protocol.metadata =
        Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff");
    let mut body = JoinGroupRequest::default();
    body.group_id = GroupId(s("group-a"));
    body.session_timeout_ms = 10_000;
    if version >= 1 {
        body.rebalance_timeout_ms = 30_000;
    }
    body.protocol_type = s("consumer");
    body.protocols = vec![protocol];
    body
}

fn sync_group(version: i16) -> SyncGroupRequest {
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = s("member-1");
    // ConsumerProtocolAssignment v0: partition 0 of one topic.
    assignment.assignment = Bytes::from_static(
        b"\x00\x00\x00\x00\x00\x01\x00\x06orders\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff",
    );
    let mut body = SyncGroupRequest::default();
    body.group_id = GroupId(s("group-a"));
    body.generation_id = 1;
    body.member_id = s("member-1");
    if version >= 5 {
        body.protocol_type = Some(s("consumer"));
        body.protocol_name = Some(s("range"));
    }
    body.assignments = vec![assignment];
    body
}

fn offset_commit() -> OffsetCommitRequest {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.committed_offset = 42;
    partition.committed_metadata = Some(s(""));
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(s("orders"));
    topic.partitions = vec![partition];
    let mut body = OffsetCommitRequest::default();
    body.group_id = GroupId(s("group-a"));
    body.generation_id_or_member_epoch = 1;
    body.member_id = s("member-1");
    body.topics = vec![topic];
    body
}

fn offset_fetch(version: i16) -> OffsetFetchRequest {
    let mut body = OffsetFetchRequest::default();
    if version >= 8 {
        let mut topic = OffsetFetchRequestTopics::default();
        topic.name = TopicName(s("orders"));
        topic.partition_indexes = vec![0, 1, 2];
        let mut group = OffsetFetchRequestGroup::default();
        group.group_id = GroupId(s("group-a"));
        group.topics = Some(vec![topic]);
        body.groups = vec![group];
    } else {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = TopicName(s("orders"));
        topic.partition_indexes = vec![0, 1, 2];
        body.group_id = GroupId(s("group-a"));
        body.topics = Some(vec![topic]);
    }
    body
}

// ----- batch -------------------------------------------------------------------------------

fn batches(seeds: &mut Seeds<'_>) {
    let plain = build::batch(
        &[
            build::Record { key: Some(b"k1"), value: Some(b"hello"), timestamp_delta: 0 },
            build::Record { key: None, value: Some(b"world"), timestamp_delta: 5 },
            build::Record { key: Some(b"k3"), value: None, timestamp_delta: 9 },
        ],
        1_700_000_000_000,
    );
    seeds("batch", "uncompressed-3-records", &plain);
    seeds("batch", "uncompressed-1-record", &build::batch_of(1, 8, 0, 7));
    let mut idempotent = build::batch_of(5, 32, 1_700_000_000_000, 2);
    build::set_producer(&mut idempotent, 1_000, 0, 42);
    seeds("batch", "idempotent-5-records", &idempotent);
    let mut two = plain.clone();
    let mut second = build::batch_of(2, 4, 1_700_000_000_100, 3);
    fjord_storage::batch::stamp(&mut second, 3, 0);
    two.extend_from_slice(&second);
    seeds("batch", "two-batches", &two);
    for (name, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
        ("none-encoder", Compression::None),
    ] {
        seeds(
            "batch",
            &format!("{name}-4-records"),
            &encoded(compression, TimestampType::Creation),
        );
    }
    seeds("batch", "log-append-time", &encoded(Compression::None, TimestampType::LogAppend));
}

/// A batch from kafka-protocol's encoder, as Rust clients build them: headers included.
fn encoded(compression: Compression, timestamp_type: TimestampType) -> Vec<u8> {
    let records: Vec<Record> = (0..4)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("key-{i}:{i} value value value"))),
            headers: IndexMap::from([(s("trace"), Some(Bytes::from_static(b"abc")))]),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions { version: 2, compression },
    )
    .expect("encode batch");
    out.to_vec()
}

// ----- index, time_index -------------------------------------------------------------------

fn indexes(seeds: &mut Seeds<'_>) {
    // index: base offset i64 BE | log size u64 BE | entries (relative offset u32, position u32).
    for (name, base, log_size, entries) in [
        ("empty", 0i64, 0u64, vec![]),
        ("three-entries", 0, 20_000, vec![(10u32, 4_100u32), (25, 8_300), (40, 12_500)]),
        ("high-base", 1i64 << 40, 10_000, vec![(3, 4_096), (9, 9_000)]),
    ] {
        let mut out = Vec::new();
        out.put_i64(base);
        out.put_u64(log_size);
        for (relative, position) in entries {
            out.put_u32(relative);
            out.put_u32(position);
        }
        seeds("index", name, &out);
    }
    // time_index: base offset i64 BE | entries (max timestamp i64, relative offset u32).
    for (name, base, entries) in [
        ("empty", 0i64, vec![]),
        ("three-entries", 0, vec![(1_000i64, 0u32), (2_000, 10), (3_000, 20)]),
        ("high-base", 1i64 << 40, vec![(1_700_000_000_000, 5), (1_700_000_000_500, 5)]),
    ] {
        let mut out = Vec::new();
        out.put_i64(base);
        for (timestamp, relative) in entries {
            out.put_i64(timestamp);
            out.put_u32(relative);
        }
        seeds("time_index", name, &out);
    }
}

// ----- checkpoint --------------------------------------------------------------------------

fn checkpoints(seeds: &mut Seeds<'_>) {
    // The storage checkpoint: "FJCP" | version u16 | flags u16 | recovery offset i64 |
    // log start offset i64 | CRC-32C u32 of the 24 bytes before it.
    for (name, flags, recovery, start) in
        [("clean", 1u16, 42i64, 7i64), ("unclean", 0, 1 << 40, 0), ("empty-log", 1, 0, 0)]
    {
        let mut out = Vec::new();
        out.put_slice(b"FJCP");
        out.put_u16(1);
        out.put_u16(flags);
        out.put_i64(recovery);
        out.put_i64(start);
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        seeds("checkpoint", &format!("storage-{name}"), &out);
    }
    // The broker's high watermark: 20 digits and a newline.
    seeds("checkpoint", "high-watermark", format!("{:020}\n", 1742).as_bytes());
    seeds("checkpoint", "high-watermark-old-format", b"1742\nmore\n");
}

// ----- offsets_record ----------------------------------------------------------------------

fn offsets_records(seeds: &mut Seeds<'_>) {
    let key = offsets_key("group-a", "orders", 7);
    let value = offsets_value(42, 3, Some("m"), 1_700_000_000_000);
    let plain = offsets_value(1, -1, None, 0);
    let batch = build::batch(
        &[
            build::Record { key: Some(&key), value: Some(&value), timestamp_delta: 0 },
            build::Record { key: Some(&key), value: Some(&plain), timestamp_delta: 1 },
            // A tombstone: the offset was deleted.
            build::Record { key: Some(&key), value: None, timestamp_delta: 2 },
        ],
        1_700_000_000_000,
    );
    seeds("offsets_record", "batch-commit-commit-tombstone", &batch);
    seeds("offsets_record", "key", &key);
    seeds("offsets_record", "value", &value);
    seeds("offsets_record", "value-no-metadata", &plain);
}

/// Key v1: group, topic (u16-length strings), partition i32.
fn offsets_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u16(1);
    for text in [group, topic] {
        out.put_u16(text.len() as u16);
        out.put_slice(text.as_bytes());
    }
    out.put_i32(partition);
    out
}

/// Value v1: offset i64, leader epoch i32, commit time i64, metadata (i32-length, -1 null).
fn offsets_value(offset: i64, epoch: i32, metadata: Option<&str>, time_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u16(1);
    out.put_i64(offset);
    out.put_i32(epoch);
    out.put_i64(time_ms);
    match metadata {
        Some(m) => {
            out.put_i32(m.len() as i32);
            out.put_slice(m.as_bytes());
        }
        None => out.put_i32(-1),
    }
    out
}

// ----- group_metadata ----------------------------------------------------------------------

/// A group metadata key, each value version 0-4 of a two-member group (one static), an empty
/// group's value, and a batch of a value and a tombstone.
fn group_metadata(seeds: &mut Seeds<'_>) {
    let mut key = Vec::new();
    key.put_u16(2);
    group_string(&mut key, Some("group-a"), false);
    seeds("group_metadata", "key", &key);
    for version in 0..=4 {
        let value = group_value(version, true);
        seeds("group_metadata", &format!("value-v{version}"), &value);
    }
    seeds("group_metadata", "value-empty-v3", &group_value(3, false));
    let value = group_value(3, true);
    let batch = build::batch(
        &[
            build::Record { key: Some(&key), value: Some(&value), timestamp_delta: 0 },
            build::Record { key: Some(&key), value: None, timestamp_delta: 1 },
        ],
        1_700_000_000_000,
    );
    seeds("group_metadata", "batch-value-tombstone", &batch);
}

/// Kafka's `GroupMetadataValue` at `version`: strings i16-length (v4: unsigned varint of
/// length + 1), bytes and arrays i32 (v4: varint), tagged fields after each struct in v4.
fn group_value(version: u16, with_members: bool) -> Vec<u8> {
    let flexible = version >= 4;
    let mut out = Vec::new();
    out.put_u16(version);
    group_string(&mut out, Some("consumer"), flexible);
    out.put_i32(if with_members { 7 } else { 8 });
    let (protocol, leader) = if with_members { (Some("range"), Some("m-1")) } else { (None, None) };
    group_string(&mut out, protocol, flexible);
    group_string(&mut out, leader, flexible);
    if version >= 2 {
        out.put_i64(1_700_000_000_000);
    }
    let members: &[(&str, Option<&str>)] =
        if with_members { &[("m-1", None), ("m-2", Some("instance-2"))] } else { &[] };
    group_length(&mut out, members.len(), flexible);
    for (id, instance) in members {
        group_string(&mut out, Some(id), flexible);
        if version >= 3 {
            group_string(&mut out, *instance, flexible);
        }
        group_string(&mut out, Some("client"), flexible);
        group_string(&mut out, Some("/127.0.0.1"), flexible);
        if version >= 1 {
            out.put_i32(300_000);
        }
        out.put_i32(45_000);
        for bytes in [&b"\x00\x01\x00\x00\x00\x01\x00\x06orders"[..], &b"\x00\x01"[..]] {
            group_length(&mut out, bytes.len(), flexible);
            out.put_slice(bytes);
        }
        if flexible {
            out.put_u8(0);
        }
    }
    if flexible {
        out.put_u8(0);
    }
    out
}

fn group_string(out: &mut Vec<u8>, text: Option<&str>, flexible: bool) {
    match (text, flexible) {
        (None, false) => out.put_i16(-1),
        (None, true) => out.put_u8(0),
        (Some(t), false) => {
            out.put_i16(t.len() as i16);
            out.put_slice(t.as_bytes());
        }
        (Some(t), true) => {
            out.put_u8(t.len() as u8 + 1);
            out.put_slice(t.as_bytes());
        }
    }
}

/// An array's count or a bytes field's length (short in these seeds: one varint byte).
fn group_length(out: &mut Vec<u8>, length: usize, flexible: bool) {
    if flexible {
        out.put_u8(length as u8 + 1);
    } else {
        out.put_i32(length as i32);
    }
}

// ----- cluster_state -----------------------------------------------------------------------

fn cluster_states(seeds: &mut Seeds<'_>) {
    let empty = "version = 1\ncontroller = -1\n";
    let one_topic = "version = 7\ncontroller = 1\n\n[topics.orders]\n\
        id = \"0123456789abcdef0123456789abcdef\"\n\n[topics.orders.config]\n\
        \"retention.ms\" = \"60000\"\n\n[[topics.orders.partitions]]\nreplicas = [1, 2, 3]\n\
        leader = 1\nleader-epoch = 4\nisr = [1, 2]\n\n[[topics.orders.partitions]]\n\
        replicas = [2, 3, 1]\nleader = -1\nleader-epoch = 2\nisr = []\n";
    for (name, body) in [("empty", empty), ("one-topic-two-partitions", one_topic)] {
        let crc = crc32c::crc32c(body.as_bytes());
        seeds("cluster_state", name, format!("{body}# crc32c {crc:08x}\n").as_bytes());
    }
}

// ----- leader_epochs -----------------------------------------------------------------------

fn leader_epochs(seeds: &mut Seeds<'_>) {
    seeds("leader_epochs", "empty", b"0\n0\n");
    seeds("leader_epochs", "three-epochs", b"0\n3\n0 0\n3 1742\n5 250000\n");
    seeds("leader_epochs", "count-short", b"0\n2\n0 0\n");
}

// ----- segment -----------------------------------------------------------------------------

/// A partition directory's segment: flags (bit 0 clean shutdown, bit 1 base offset 2^40),
/// `.index` and `.timeindex` lengths (u16 BE), then the three files.
fn segments(seeds: &mut Seeds<'_>) {
    for (name, flags) in
        [("unclean-4-batches", 0u8), ("clean-4-batches-indexed", 1), ("clean-high-base", 3)]
    {
        let base: i64 = if flags & 2 != 0 { 1 << 40 } else { 0 };
        let (mut log, mut index, mut time_index) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = base;
        for i in 0..4u64 {
            let mut batch =
                build::batch_of(i as usize + 1, 24, 1_700_000_000_000 + 10 * i as i64, i);
            fjord_storage::batch::stamp(&mut batch, next, 0);
            let count = i as i64 + 1;
            if !log.is_empty() {
                index.put_u32((next - base) as u32);
                index.put_u32(log.len() as u32);
            }
            let max_timestamp = 1_700_000_000_000 + 10 * i as i64 + i as i64;
            time_index.put_i64(max_timestamp);
            time_index.put_u32((next - base) as u32);
            log.extend_from_slice(&batch);
            next += count;
        }
        let mut out = vec![flags];
        out.put_u16(index.len() as u16);
        out.put_u16(time_index.len() as u16);
        out.extend_from_slice(&index);
        out.extend_from_slice(&time_index);
        out.extend_from_slice(&log);
        seeds("segment", name, &out);
    }
}
