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
use super::wire::Wire;
use crate::cli::error::{error_name, CliError};

/// Fetch request version used (v4+: record batches v2; v11 is Kafka 2.3+).
const FETCH_VERSION: i16 = 11;

#[allow(clippy::too_many_arguments)]
pub(super) fn consume_worker(
    load: &LoadArgs,
    mut positions: BTreeMap<i32, i64>,
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    target: u64,
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
    while stats.records() < target {
        let mut topic = FetchTopic::default();
        topic.topic = TopicName(load.topic.clone().into());
        for (p, offset) in &positions {
            let mut fp = FetchPartition::default();
            fp.partition = *p;
            fp.fetch_offset = *offset;
            fp.partition_max_bytes = 8 * 1024 * 1024;
            fp.log_start_offset = -1;
            topic.partitions.push(fp);
        }
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = 100;
        request.min_bytes = 1;
        request.max_bytes = 64 * 1024 * 1024;
        request.session_epoch = -1;
        request.topics = vec![topic];
        let sent_at = Instant::now();
        wire.send(ApiKey::Fetch, FETCH_VERSION, &request)?;
        let response: FetchResponse = wire.receive(ApiKey::Fetch, FETCH_VERSION)?;
        let mut got = 0u64;
        let mut at_end = true;
        for t in &response.responses {
            for data in &t.partitions {
                if data.error_code != 0 {
                    return Err(CliError::failure(format!(
                        "fetch partition {}: {}",
                        data.partition_index,
                        error_name(data.error_code)
                    )));
                }
                let Some(position) = positions.get_mut(&data.partition_index) else { continue };
                let Some(records) = &data.records else { continue };
                let mut buf: &[u8] = records;
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
                at_end &= *position >= data.high_watermark;
            }
        }
        if !e2e && got > 0 {
            stats.record_latency(sent_at.elapsed().as_micros() as u64, 1);
        }
        if got > 0 {
            stats.complete(got, got * load.record_bytes as u64);
        }
        // Stop at the end of the data even short of the target, once nothing more comes.
        if got == 0 && at_end && producers_done.load(Ordering::Relaxed) {
            idle_rounds += 1;
            if idle_rounds >= 20 {
                break;
            }
        } else {
            idle_rounds = 0;
        }
    }
    Ok(())
}
