//! The consume side of a load run: one worker per share of the partitions fetches from the
//! leader of its first partition, from the start offsets fixed before any producer ran,
//! until the run's target is met or, once the producers are done, no more data comes. For
//! e2e it reads each batch's send-time stamp.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};

use super::args::LoadArgs;
use super::batch::{first_value_stamp, now_micros};
use super::stats::Stats;
use super::stop::Stop;
use super::wire::Wire;
use crate::cli::error::{error_name, CliError};

/// Fetch request version used (v4+: record batches v2; v11 is Kafka 2.3+).
const FETCH_VERSION: i16 = 11;
/// Bytes asked for per partition per fetch.
const FETCH_PARTITION_BYTES_MAX: i32 = 8 * 1024 * 1024;
/// Bytes asked for per fetch.
const FETCH_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// How long the broker may hold a fetch that finds no data, ms.
const FETCH_WAIT_MS_MAX: i32 = 100;
/// Empty fetches at the end of the data, once the producers are done, before a consumer
/// stops short of its target.
const IDLE_ROUNDS_MAX: u32 = 20;

/// Fetches `positions`' partitions from their leader until the run is `stop`ped (by the
/// records of all consumers together, or the time) or, once the producers are done, the end
/// of the data stays put.
#[allow(clippy::too_many_arguments)]
pub(super) fn consume_worker(
    load: &LoadArgs,
    mut positions: BTreeMap<i32, i64>,
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    stop: Stop,
    e2e: bool,
    stats: &Stats,
    producers_done: &AtomicBool,
) -> Result<(), CliError> {
    let Some(&first) = positions.keys().next() else {
        return Ok(());
    };
    let leader = leaders[&first];
    let address = addresses
        .get(&leader)
        .ok_or_else(|| CliError::failure(format!("no address for broker {leader}")))?;
    let mut wire = Wire::connect(address)?;
    let mut idle_rounds = 0u32;
    while !stop.reached(stats.records(), Instant::now()) {
        let request = fetch_request(&load.topic, &positions);
        let sent_at = Instant::now();
        wire.send(ApiKey::Fetch, FETCH_VERSION, &request)?;
        let response: FetchResponse = wire.receive(ApiKey::Fetch, FETCH_VERSION)?;
        let (got, at_end) = take_response(&response, &mut positions, e2e, stats)?;
        if !e2e && got > 0 {
            stats.record_latency(sent_at.elapsed().as_micros() as u64, 1);
        }
        if got > 0 {
            stats.complete(got, got * load.record_bytes as u64);
        }
        // Stop at the end of the data even short of the target, once nothing more comes.
        if got == 0 && at_end && producers_done.load(Ordering::Relaxed) {
            idle_rounds += 1;
            if idle_rounds >= IDLE_ROUNDS_MAX {
                break;
            }
        } else {
            idle_rounds = 0;
        }
    }
    Ok(())
}

/// One Fetch of `topic`'s partitions, each from its position.
fn fetch_request(topic_name: &str, positions: &BTreeMap<i32, i64>) -> FetchRequest {
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(topic_name.to_string().into());
    for (p, offset) in positions {
        let mut fp = FetchPartition::default();
        fp.partition = *p;
        fp.fetch_offset = *offset;
        fp.partition_max_bytes = FETCH_PARTITION_BYTES_MAX;
        fp.log_start_offset = -1;
        topic.partitions.push(fp);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = FETCH_WAIT_MS_MAX;
    request.min_bytes = 1;
    request.max_bytes = FETCH_BYTES_MAX;
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

/// Takes a Fetch response: moves each partition's position past its records and returns
/// (records new to this consumer, whether every partition answered is at its end).
fn take_response(
    response: &FetchResponse,
    positions: &mut BTreeMap<i32, i64>,
    e2e: bool,
    stats: &Stats,
) -> Result<(u64, bool), CliError> {
    let mut got = 0u64;
    let mut at_end = true;
    for data in response.responses.iter().flat_map(|t| &t.partitions) {
        if data.error_code != 0 {
            return Err(CliError::failure(format!(
                "fetch partition {}: {}",
                data.partition_index,
                error_name(data.error_code)
            )));
        }
        let Some(position) = positions.get_mut(&data.partition_index) else { continue };
        let Some(records) = &data.records else { continue };
        got += take_batches(records, position, e2e, stats);
        at_end &= *position >= data.high_watermark;
    }
    Ok((got, at_end))
}

/// Walks the whole batches of `records`, moving `position` past each; returns the records
/// at or past the position it started from. In e2e each batch's stamp gives the latency of
/// its records.
fn take_batches(records: &[u8], position: &mut i64, e2e: bool, stats: &Stats) -> u64 {
    let mut got = 0u64;
    let mut buf = records;
    while let Some(header) = fjord_storage::batch::BatchHeader::view(buf) {
        let size = header.size() as usize;
        if size > buf.len() {
            break;
        }
        let count = header.records_count.get().max(0) as u64;
        let skip = (*position - header.base_offset.get()).clamp(0, count as i64) as u64;
        let fresh = count - skip;
        if e2e && fresh > 0 {
            if let Some(sent) = first_value_stamp(&buf[..size]) {
                stats.record_latency(now_micros().saturating_sub(sent), fresh);
            }
        }
        got += fresh;
        *position = header.last_offset() + 1;
        buf = &buf[size..];
    }
    got
}
