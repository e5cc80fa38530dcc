//! Fetch: whole batches from each requested partition, record bytes spliced from the
//! segment files to the socket, never decoded or copied through user space.
//!
//! Long poll: when fewer than `min_bytes` are available the request waits, woken by every
//! append, until `max_wait_ms` passes. Limits follow KIP-74: each partition gets at most its
//! `partition_max_bytes`, the response at most `max_bytes`, except that the first batch of
//! the first partition with data is always sent whole so a consumer can never get stuck.
//!
//! The response (versions 4-11, not flexible) is written by hand:
//! ```text
//! correlation_id i32 | throttle_time_ms i32 | error_code i16 (v7+) | session_id i32 (v7+)
//! [topic string | [partition i32 | error_code i16 | high_watermark i64
//!    | last_stable_offset i64 | log_start_offset i64 (v5+) | aborted_transactions [] (null, or
//!    empty for read_committed)
//!    | preferred_read_replica i32 (v11+) | records: length i32, then the spliced bytes]]
//! ```

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BufMut;
use fjord_storage::FileRegion;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::Reply;
use crate::broker::Broker;
use crate::errors::storage_error_code;
use crate::protocol::{decode_body, Request};
use crate::shards::{ByShard, FetchPart, Shards};

/// Longest long poll honoured: a client asking for more waits this long.
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;
/// Most bytes one Fetch response carries, whatever the client asks.
pub const FETCH_RESPONSE_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// Partitions one Fetch may name: bounds the work and the response header size.
pub const FETCH_PARTITIONS_MAX: usize = 20_000;

/// One piece of a Fetch response: bytes built in memory, or a file region to splice.
pub enum Piece {
    Bytes(Vec<u8>),
    Region(FileRegion),
}

/// A Fetch response ready to be written: size prefix excluded from `pieces`.
pub struct FetchResponse {
    pub pieces: Vec<Piece>,
    pub size: usize,
}

struct PartitionResult {
    index: i32,
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    regions: Vec<FileRegion>,
    bytes: u64,
}

fn put_string(out: &mut Vec<u8>, value: &str) {
    out.put_i16(value.len() as i16);
    out.put_slice(value.as_bytes());
}

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: FetchRequest = decode_body(request)?;
    let partition_count: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    if partition_count > FETCH_PARTITIONS_MAX {
        anyhow::bail!("fetch names {partition_count} partitions, more than {FETCH_PARTITIONS_MAX}");
    }
    let wait = Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    let max_bytes = if body.max_bytes <= 0 { FETCH_RESPONSE_BYTES_MAX } else { body.max_bytes.min(FETCH_RESPONSE_BYTES_MAX) } as u64;
    let min_bytes = body.min_bytes.max(0) as u64;

    let results = loop {
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (results, total, errors) = collect(broker, &body, max_bytes).await;
        let now = Instant::now();
        if total >= min_bytes || errors || now >= deadline {
            break results;
        }
        if tokio::time::timeout(deadline - now, notified).await.is_err() {
            // Timed out: answer with whatever is there now.
            let (results, _, _) = collect(broker, &body, max_bytes).await;
            break results;
        }
    };
    Ok(Reply::Fetch(encode(request, &body, results)))
}

/// One partition's part of a Fetch, resolved on the shard that owns the partition.
pub struct PartitionRead {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub regions: Vec<FileRegion>,
    /// Whether a follower's fetch moved the high watermark.
    pub hw_moved: bool,
}

/// Resolves one partition this shard owns: checks, follower progress, and the file regions
/// of whole batches from `offset`, at most `limit` bytes (at least one batch).
pub async fn read_partition(broker: &Broker, topic: &str, index: i32, offset: i64, limit: u64, replica: i32, current_leader_epoch: i32) -> PartitionRead {
    let mut result = PartitionRead { error: 0, high_watermark: -1, log_start_offset: -1, regions: Vec::new(), hw_moved: false };
    let Some(partition) = broker.partition(topic, index) else {
        result.error = if broker.partition_exists(topic, index) { ResponseError::NotLeaderOrFollower } else { ResponseError::UnknownTopicOrPartition }.code();
        return result;
    };
    if !partition.replica.is_leader() {
        result.error = ResponseError::NotLeaderOrFollower.code();
        return result;
    }
    let epoch = partition.replica.leader_epoch();
    if current_leader_epoch >= 0 && current_leader_epoch != epoch {
        result.error = if current_leader_epoch < epoch { ResponseError::FencedLeaderEpoch } else { ResponseError::UnknownLeaderEpoch }.code();
        return result;
    }
    if replica >= 0 {
        // A follower's fetch offset says what it holds: progress, high watermark and in-sync
        // set move with it.
        let before = partition.high_watermark();
        let wanted_isr = partition.on_follower_fetch(replica, offset, crate::broker::now_ms(), broker.config.replica_lag_time_max_ms as i64);
        result.hw_moved = partition.high_watermark() > before;
        if let (Some(isr), Some(cluster)) = (wanted_isr, broker.cluster.as_ref()) {
            cluster.request_isr_change(&partition, isr);
        }
    }
    result.high_watermark = partition.high_watermark();
    result.log_start_offset = partition.log_start_offset();
    // Followers read to the log end; consumers only below the high watermark.
    let end = if replica >= 0 { partition.log_end_offset() } else { result.high_watermark };
    if offset >= end && offset <= partition.log_end_offset() && offset >= result.log_start_offset {
        return result;
    }
    match partition.read_below(offset, limit.max(1), end).await {
        Ok(read) => result.regions = read.regions,
        Err(error) => {
            debug!(topic, partition = index, offset, %error, "fetch error");
            result.error = storage_error_code(&error).code();
        }
    }
    result
}

/// What is left of `max_bytes` for one partition after `total` bytes of earlier ones.
pub fn budget_limit(partition_max_bytes: u64, max_bytes: u64, total: u64) -> u64 {
    partition_max_bytes.min(max_bytes.saturating_sub(total))
}

/// Whether a partition's `bytes` go into a response that holds `total` bytes so far. Only
/// the first partition with data may exceed the limits (KIP-74).
pub fn fits(bytes: u64, limit: u64, total: u64) -> bool {
    bytes > 0 && !(bytes > limit && total > 0)
}

/// Reads a partition this shard owns within `limit` (from `budget_limit`); with no budget
/// left only its offsets, which clients track even when no records come.
#[allow(clippy::too_many_arguments)]
pub async fn read_budgeted(broker: &Broker, topic: &str, index: i32, offset: i64, limit: u64, total: u64, replica: i32, epoch: i32) -> PartitionRead {
    if limit == 0 && total > 0 {
        let mut read = PartitionRead { error: 0, high_watermark: -1, log_start_offset: -1, regions: Vec::new(), hw_moved: false };
        if let Some(partition) = broker.partition(topic, index) {
            read.high_watermark = partition.high_watermark();
            read.log_start_offset = partition.log_start_offset();
        }
        return read;
    }
    read_partition(broker, topic, index, offset, limit, replica, epoch).await
}

/// Resolves every requested partition to file regions. Returns (per topic results, total
/// bytes, whether any partition has an error).
///
/// The partitions of each other shard go there as one message, all sent at once, and each
/// shard reads its share in order within `max_bytes`. Then this shard walks the request in
/// order: its own partitions are read within what is left of the budget, and another
/// shard's answer is kept if it fits (otherwise that partition's records wait for the next
/// fetch; its offsets are still reported).
async fn collect(broker: &Rc<Broker>, body: &FetchRequest, max_bytes: u64) -> (Vec<Vec<PartitionResult>>, u64, bool) {
    let replica = body.replica_id.0;
    let mut reads: Vec<Vec<Option<PartitionRead>>> = body.topics.iter().map(|t| t.partitions.iter().map(|_| None).collect()).collect();
    if broker.shards.count > 1 {
        let mut remote: ByShard<(usize, usize), FetchPart> = ByShard::default();
        for (t, topic) in body.topics.iter().enumerate() {
            let name = topic.topic.0.as_str();
            for (p, wanted) in topic.partitions.iter().enumerate() {
                let Some(shard) = broker.shards.owner_of(name, wanted.partition) else { continue };
                let part = FetchPart {
                    topic: name.to_string(),
                    index: wanted.partition,
                    offset: wanted.fetch_offset,
                    partition_max_bytes: wanted.partition_max_bytes.max(0) as u64,
                    epoch: wanted.current_leader_epoch,
                };
                remote.push(shard, (t, p), part);
            }
        }
        let pending: Vec<_> = remote.into_groups().map(|(shard, positions, parts)| (positions, broker.shards.fetch(shard, parts, replica, max_bytes))).collect();
        for (positions, answer) in pending {
            let answers = Shards::fetched(answer, positions.len()).await;
            for ((t, p), read) in positions.into_iter().zip(answers) {
                reads[t][p] = Some(read);
            }
        }
    }

    let mut total = 0u64;
    let mut errors = false;
    let mut hw_moved = false;
    let mut out = Vec::with_capacity(body.topics.len());
    for (topic, topic_reads) in body.topics.iter().zip(reads) {
        let name = topic.topic.0.as_str();
        let mut results = Vec::with_capacity(topic.partitions.len());
        for (wanted, read) in topic.partitions.iter().zip(topic_reads) {
            let limit = budget_limit(wanted.partition_max_bytes.max(0) as u64, max_bytes, total);
            let read = match read {
                Some(read) => read,
                None => read_budgeted(broker, name, wanted.partition, wanted.fetch_offset, limit, total, replica, wanted.current_leader_epoch).await,
            };
            let mut result = PartitionResult { index: wanted.partition, error: read.error, high_watermark: read.high_watermark, log_start_offset: read.log_start_offset, regions: Vec::new(), bytes: 0 };
            hw_moved |= read.hw_moved;
            errors |= read.error != 0;
            let bytes: u64 = read.regions.iter().map(|r| r.len).sum();
            if fits(bytes, limit, total) {
                total += bytes;
                result.bytes = bytes;
                result.regions = read.regions;
            }
            results.push(result);
        }
        out.push(results);
    }
    if hw_moved {
        // Consumers long-polling at the old high watermark can read more now.
        broker.data_arrived.notify_waiters();
    }
    (out, total, errors)
}

fn encode(request: &Request, body: &FetchRequest, results: Vec<Vec<PartitionResult>>) -> FetchResponse {
    let version = request.version;
    let mut pieces = Vec::new();
    let mut head = Vec::with_capacity(256);
    head.put_i32(request.header.correlation_id);
    head.put_i32(0); // throttle_time_ms
    if version >= 7 {
        head.put_i16(0); // error_code
        head.put_i32(0); // session_id: no fetch sessions, every request is a full fetch
    }
    head.put_i32(results.len() as i32);
    let mut size = 0usize;
    for (topic, partitions) in body.topics.iter().zip(results) {
        put_string(&mut head, topic.topic.0.as_str());
        head.put_i32(partitions.len() as i32);
        for result in partitions {
            // A partition with an error carries no offsets, as in Kafka (-1 for each).
            let (high_watermark, log_start_offset) = if result.error != 0 { (-1, -1) } else { (result.high_watermark, result.log_start_offset) };
            head.put_i32(result.index);
            head.put_i16(result.error);
            head.put_i64(high_watermark);
            head.put_i64(high_watermark); // last_stable_offset: no transactions
            if version >= 5 {
                head.put_i64(log_start_offset);
            }
            // aborted_transactions: null for read_uncommitted, as Kafka sends it; empty (no
            // transactions) for read_committed.
            // A partition Kafka finds no log for gets an empty list, as Kafka's
            // `FetchResponse.partitionResponse` leaves it.
            let unknown = result.error == ResponseError::UnknownTopicOrPartition.code();
            head.put_i32(if body.isolation_level == 0 && !unknown { -1 } else { 0 });
            if version >= 11 {
                head.put_i32(-1); // preferred_read_replica
            }
            head.put_i32(result.bytes as i32);
            if !result.regions.is_empty() {
                size += head.len();
                pieces.push(Piece::Bytes(std::mem::take(&mut head)));
                for region in result.regions {
                    size += region.len as usize;
                    pieces.push(Piece::Region(region));
                }
            }
        }
    }
    size += head.len();
    pieces.push(Piece::Bytes(head));
    FetchResponse { pieces, size }
}
