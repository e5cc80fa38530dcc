//! Request decode benchmarks: what the broker spends on a request before it touches a log.
//!
//! - `decode/produce/<shape>`: `parse_request` (frame header) plus `decode_body` of a Produce
//!   v9 request, as `handlers::produce::handle` does it. Records stay `Bytes` slices of the
//!   frame (no copy), so the cost is the walk over topics and partitions, not the record bytes.
//!   `8x1000` is the shape `fjord bench produce` sends by default (8 partitions, one batch of
//!   1000 records of 100 bytes each); `1000x1` is one small batch for each of 1000 partitions.
//! - `decode/fetch/<partitions>`: the same for a Fetch v11 request.
//! - `decode/metadata`: a Metadata v9 request naming 8 topics.
//!
//! The requests are built with `protocol::encode_request`, the encoder Fjord's own clients use.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fjord::protocol::{decode_body, encode_request, parse_request};
use fjord_storage::batch::build;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 9;

/// The payload of a request frame (what the connection hands to `parse_request`).
fn payload(frame: bytes::BytesMut) -> Bytes {
    frame.freeze().slice(4..)
}

fn produce_payload(partitions: i32, records_per_batch: usize) -> Bytes {
    let mut request = ProduceRequest::default();
    request.acks = 1;
    request.timeout_ms = 30_000;
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench"));
    for index in 0..partitions {
        let mut data = PartitionProduceData::default();
        data.index = index;
        data.records = Some(Bytes::from(build::batch_of(
            records_per_batch,
            100,
            1_700_000_000_000,
            index as u64,
        )));
        topic.partition_data.push(data);
    }
    request.topic_data.push(topic);
    payload(
        encode_request(ApiKey::Produce, PRODUCE_VERSION, 7, "bench", &request)
            .expect("encode produce"),
    )
}

fn fetch_payload(partitions: i32) -> Bytes {
    let mut request = FetchRequest::default();
    request.replica_id = (-1).into();
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str("bench"));
    for index in 0..partitions {
        let mut partition = FetchPartition::default();
        partition.partition = index;
        partition.fetch_offset = 1_000_000 + index as i64;
        partition.partition_max_bytes = 1 << 20;
        topic.partitions.push(partition);
    }
    request.topics.push(topic);
    payload(
        encode_request(ApiKey::Fetch, FETCH_VERSION, 7, "bench", &request).expect("encode fetch"),
    )
}

fn metadata_payload(topics: usize) -> Bytes {
    let mut request = MetadataRequest::default();
    request.topics = Some(
        (0..topics)
            .map(|i| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(TopicName(StrBytes::from_string(format!("topic-{i}"))));
                topic
            })
            .collect(),
    );
    payload(
        encode_request(ApiKey::Metadata, METADATA_VERSION, 7, "bench", &request)
            .expect("encode metadata"),
    )
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, partitions, records) in [("8x1000", 8, 1000), ("1000x1", 1000, 1)] {
        let frame = produce_payload(partitions, records);
        // Records per second: the record bytes are sliced, not read, so bytes/s means little.
        group.throughput(Throughput::Elements(partitions as u64 * records as u64));
        group.bench_with_input(BenchmarkId::new("produce", name), &frame, |b, frame| {
            b.iter(|| {
                let request = parse_request(frame.clone()).expect("parse");
                let body: ProduceRequest = decode_body(&request).expect("decode");
                black_box(body)
            })
        });
    }
    for partitions in [8, 1000] {
        let frame = fetch_payload(partitions);
        group.throughput(Throughput::Elements(partitions as u64));
        group.bench_with_input(BenchmarkId::new("fetch", partitions), &frame, |b, frame| {
            b.iter(|| {
                let request = parse_request(frame.clone()).expect("parse");
                let body: FetchRequest = decode_body(&request).expect("decode");
                black_box(body)
            })
        });
    }
    let frame = metadata_payload(8);
    group.throughput(Throughput::Elements(8));
    group.bench_with_input(BenchmarkId::new("metadata", 8), &frame, |b, frame| {
        b.iter(|| {
            let request = parse_request(frame.clone()).expect("parse");
            let body: MetadataRequest = decode_body(&request).expect("decode");
            black_box(body)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = decode
}
criterion_main!(benches);
