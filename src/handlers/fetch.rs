//! Fetch: whole batches from each requested partition, record bytes spliced from the
//! segment files to the socket, never decoded or copied through user space.
//!
//! Long poll: when fewer than `min_bytes` are available the request waits, woken by every
//! append, until `max_wait_ms` passes. Limits follow KIP-74: each partition gets at most its
//! `partition_max_bytes`, the response at most `max_bytes`, except that the first batch of
//! the first partition with data is always sent whole so a consumer can never get stuck.
//!
//! The response is written by hand so the record bytes can be spliced (`encode`). Integers
//! are big-endian. Versions 4-11 write lengths as fixed-width integers; the flexible
//! versions (12+) as unsigned varints of N + 1 (0 is null), with a tagged-field section
//! (its count, a varint) after every struct, and a response header v1 (the correlation id,
//! then an empty tagged-field section):
//! ```text
//! correlation_id i32 | [tagged fields (v12+)] | throttle_time_ms i32 | error_code i16 (v7+)
//!  | session_id i32 (v7+)
//!  | [topic string (v4-12), topic_id uuid (v13+)
//!     | [partition i32 | error_code i16 | high_watermark i64 | last_stable_offset i64
//!        | log_start_offset i64 (v5+) | aborted_transactions [] (null, or empty for
//!        read_committed) | preferred_read_replica i32 (v11+) | records: length, then the
//!        spliced bytes | tagged fields (v12+: 0 diverging_epoch, 1 current_leader (v16+),
//!        when set)]
//!     | tagged fields (v12+)]
//!  | tagged fields (v12+: 0 node_endpoints (v16+), when any)
//! ```
//!
//! From v12 a partition may carry the epoch of the last batch the fetcher holds
//! (`last_fetched_epoch`): when this leader's log diverges from there, the answer is where
//! that epoch ends here (`diverging_epoch`) and no records, as Kafka's
//! `Partition.readRecords` answers. From v13 topics are named by id (KIP-516); v13 is
//! served once Metadata v10+ gives clients the ids. v14 adds nothing Fjord sees (tiered
//! storage's error code), v15 moves the fetching replica's id into `replica_state`
//! (KIP-903), v16 names the leader of a partition refused with NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH and its address (KIP-951), v17 and v18 add request fields only a
//! KRaft follower sends (a log directory id, its high watermark), ignored as Kafka's broker
//! ignores them outside KRaft's own log.

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BufMut;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::reply::{FetchResponse, HandlerError, Piece, Reply};
use super::{brokers, epochs};
use crate::broker::outcome::{EpochEnd, PartitionRead};
use crate::broker::shards::{ByShard, FetchPart, Shards};
use crate::broker::{throttle, Broker};
use crate::handlers::errors::{code, storage_error_code};
use crate::partition::replica::FetchPosition;
use crate::protocol::{decode_body, Request};

/// Longest long poll honoured: a client asking for more waits this long.
pub(crate) const FETCH_WAIT_MS_MAX: i32 = 30_000;
/// The isolation level of a read_committed fetch (and ListOffsets).
pub(crate) const READ_COMMITTED: i8 = 1;
/// Most bytes one Fetch response carries, whatever the client asks.
pub(crate) const FETCH_RESPONSE_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// Partitions one Fetch may name: bounds the work and the response header size.
pub(crate) const FETCH_PARTITIONS_MAX: usize = 20_000;

/// The first flexible version: compact lengths, tagged fields, response header v1.
const FLEXIBLE_FROM_VERSION: i16 = 12;
/// The first version that names topics by id instead of by name (KIP-516).
const TOPIC_IDS_FROM_VERSION: i16 = 13;
/// The first version whose body leaves `replica_id` -1 and names the fetching replica in
/// `replica_state` (KIP-903).
const REPLICA_STATE_FROM_VERSION: i16 = 15;
/// The first version that tells a client refused with NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH where the leader is (KIP-951).
const CURRENT_LEADER_FROM_VERSION: i16 = 16;
/// The tag of a partition's `diverging_epoch` (FetchResponse.json).
const DIVERGING_EPOCH_TAG: u32 = 0;
/// The tag of a partition's `current_leader` (FetchResponse.json).
const CURRENT_LEADER_TAG: u32 = 1;
/// The tag of the response's `node_endpoints` (FetchResponse.json).
const NODE_ENDPOINTS_TAG: u32 = 0;
/// Bytes of a `LeaderIdAndEpoch` struct in a tagged field: leader i32, epoch i32 and its
/// own empty tagged-field section.
const LEADER_ID_AND_EPOCH_BYTES: u32 = 4 + 4 + 1;
/// Bytes of an `EpochEndOffset` struct in a tagged field: epoch i32, end_offset i64 and
/// its own empty tagged-field section.
const EPOCH_END_OFFSET_BYTES: u32 = 4 + 8 + 1;

struct PartitionResult {
    index: i32,
    error: Option<ResponseError>,
    high_watermark: i64,
    last_stable_offset: i64,
    /// A read_committed read's aborted transactions: (producer id, first offset).
    aborted: Option<Vec<(i64, i64)>>,
    log_start_offset: i64,
    /// The record bytes: file regions to splice (bytes in memory only in tests).
    records: Vec<Piece>,
    bytes: u64,
    /// Where the fetcher's last fetched epoch ends on this leader, when its log diverges:
    /// (epoch, end offset).
    diverging_epoch: Option<(i32, i64)>,
    /// Where the leader is, for a partition refused because this broker is not it (v16+):
    /// (leader id, leader epoch), -1 for what is unknown.
    current_leader: Option<(i32, i32)>,
}

impl PartitionResult {
    fn refused(index: i32, error: ResponseError) -> PartitionResult {
        PartitionResult {
            index,
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            aborted: None,
            log_start_offset: -1,
            records: Vec::new(),
            bytes: 0,
            diverging_epoch: None,
            current_leader: None,
        }
    }
}

/// The id of the replica fetching: -1 for a consumer. From v15 it is in `replica_state`.
fn replica_id(version: i16, body: &FetchRequest) -> i32 {
    if version >= REPLICA_STATE_FROM_VERSION {
        body.replica_state.replica_id.0
    } else {
        body.replica_id.0
    }
}

pub(crate) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: FetchRequest = decode_body(request)?;
    let partition_count: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    super::reply::at_most("partitions", partition_count, FETCH_PARTITIONS_MAX)?;
    let wait = Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    let max_bytes = if body.max_bytes <= 0 {
        FETCH_RESPONSE_BYTES_MAX
    } else {
        body.max_bytes.min(FETCH_RESPONSE_BYTES_MAX)
    } as u64;
    let min_bytes = body.min_bytes.max(0) as u64;
    // Names are resolved once, as Kafka resolves ids when the request arrives; a topic
    // deleted while the request waits is then unknown by name.
    let names = topic_names(broker, request.version, &body);
    let replica = replica_id(request.version, &body);

    let results = loop {
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (results, total, answer_now) = collect(broker, &body, &names, max_bytes, replica).await;
        let now = Instant::now();
        if total >= min_bytes || answer_now || now >= deadline {
            break results;
        }
        if tokio::time::timeout(deadline - now, notified).await.is_err() {
            // Timed out: answer with whatever is there now.
            let (results, _, _) = collect(broker, &body, &names, max_bytes, replica).await;
            break results;
        }
    };
    let mut topics = in_kafka_order(&body, results);
    let endpoints = if request.version >= CURRENT_LEADER_FROM_VERSION {
        current_leaders(broker, &names, &mut topics)
    } else {
        Vec::new()
    };
    let correlation_id = request.header.correlation_id;
    Ok(Reply::Fetch(encode(request.version, correlation_id, &body, topics, &endpoints)))
}

/// A broker a v16+ answer names as a refused partition's leader: (id, host, port).
type NodeEndpoint = (i32, String, i32);

/// Fills each refused partition's `current_leader` as Kafka does (`getCurrentLeader`), for
/// NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH, from this broker's view of the cluster;
/// returns the live leaders named, each once, in id order.
fn current_leaders(
    broker: &Broker,
    names: &[Option<Cow<'_, str>>],
    topics: &mut [(usize, Vec<PartitionResult>)],
) -> Vec<NodeEndpoint> {
    let live = brokers::live_brokers(broker);
    let mut named = std::collections::BTreeMap::new();
    for (t, partitions) in topics.iter_mut() {
        let Some(name) = &names[*t] else { continue };
        for result in partitions.iter_mut() {
            if !matches!(
                result.error,
                Some(ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch)
            ) {
                continue;
            }
            let (leader, epoch) = brokers::leader_of(broker, name, result.index);
            result.current_leader = Some((leader, epoch));
            if let Some(node) = live.iter().find(|b| b.id == leader) {
                named.insert(node.id, (node.id, node.host.clone(), node.port));
            }
        }
    }
    named.into_values().collect()
}

/// The answer's topics (the index of each in the request, and its partitions) in Kafka's
/// order (`KafkaApis.handleFetchRequest`): the partitions it read, in request order, then
/// those it put aside, in the order it found them: first the topic ids it cannot name (as
/// it walks the request), then the partitions it does not have (as it walks the rest).
/// Consecutive partitions of one topic share its entry (`FetchResponse.toMessage`), so a
/// topic may appear twice.
fn in_kafka_order(
    body: &FetchRequest,
    results: Vec<Vec<PartitionResult>>,
) -> Vec<(usize, Vec<PartitionResult>)> {
    let pass = |error: Option<ResponseError>| match error {
        Some(ResponseError::UnknownTopicId) => 1,
        Some(ResponseError::UnknownTopicOrPartition) => 2,
        _ => 0,
    };
    let mut flat: Vec<(u8, usize, PartitionResult)> = results
        .into_iter()
        .enumerate()
        .flat_map(|(t, partitions)| partitions.into_iter().map(move |p| (pass(p.error), t, p)))
        .collect();
    // Stable: request order within each pass.
    flat.sort_by_key(|(pass, _, _)| *pass);
    let same = |a: usize, b: usize| {
        body.topics[a].topic == body.topics[b].topic
            && body.topics[a].topic_id == body.topics[b].topic_id
    };
    let mut topics: Vec<(usize, Vec<PartitionResult>)> = Vec::with_capacity(body.topics.len());
    for (_, t, result) in flat {
        match topics.last_mut() {
            Some((last, partitions)) if same(*last, t) => partitions.push(result),
            _ => topics.push((t, vec![result])),
        }
    }
    topics
}

/// The name of each requested topic: as the request names it before v13; from v13 looked
/// up by its id, `None` for an id no topic has (answered UNKNOWN_TOPIC_ID, as Kafka does).
fn topic_names<'a>(
    broker: &Broker,
    version: i16,
    body: &'a FetchRequest,
) -> Vec<Option<Cow<'a, str>>> {
    if version < TOPIC_IDS_FROM_VERSION {
        return body.topics.iter().map(|t| Some(Cow::Borrowed(t.topic.0.as_str()))).collect();
    }
    let by_id: HashMap<[u8; 16], Rc<str>> =
        broker.topics().into_iter().map(|t| (t.id, Rc::clone(&t.name))).collect();
    body.topics
        .iter()
        .map(|t| by_id.get(t.topic_id.as_bytes()).map(|name| Cow::Owned(name.to_string())))
        .collect()
}

/// Resolves one partition this shard owns: checks, follower progress, and the file regions
/// of whole batches from `position.offset`, at most `limit` bytes (at least one batch).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
    position: FetchPosition,
    limit: u64,
    replica: i32,
    current_leader_epoch: i32,
    isolation: i8,
) -> PartitionRead {
    let offset = position.offset;
    let Some(partition) = broker.partition(topic, index) else {
        return PartitionRead::refused(if broker.partition_exists(topic, index) {
            ResponseError::NotLeaderOrFollower
        } else {
            ResponseError::UnknownTopicOrPartition
        });
    };
    if !partition.replica.is_leader() {
        return PartitionRead::refused(ResponseError::NotLeaderOrFollower);
    }
    let epoch = partition.replica.leader_epoch();
    if current_leader_epoch >= 0 && current_leader_epoch != epoch {
        return PartitionRead::refused(if current_leader_epoch < epoch {
            ResponseError::FencedLeaderEpoch
        } else {
            ResponseError::UnknownLeaderEpoch
        });
    }
    let mut result = PartitionRead::empty();
    if replica >= 0 {
        // A follower's fetch offset says what it holds: progress, high watermark and in-sync
        // set move with it (and its log start, the low watermark of DeleteRecords).
        let before = partition.high_watermark();
        let wanted_isr = partition.on_follower_fetch(
            replica,
            position,
            crate::clock::now_ms(),
            broker.config.replica_lag_time_max_ms as i64,
        );
        result.hw_moved = partition.high_watermark() > before;
        if let (Some(isr), Some(cluster)) = (wanted_isr, broker.cluster.as_ref()) {
            cluster.request_isr_change(&partition, isr);
        }
    }
    result.high_watermark = partition.high_watermark();
    result.last_stable_offset = partition.last_stable_offset();
    result.log_start_offset = partition.log_start_offset();
    // Followers read to the log end; consumers only below the high watermark, and
    // read_committed ones below the last stable offset.
    let committed = replica < 0 && isolation == READ_COMMITTED;
    let end = if replica >= 0 {
        partition.log_end_offset()
    } else if committed {
        result.last_stable_offset
    } else {
        result.high_watermark
    };
    if committed {
        result.aborted = Some(Vec::new());
    }
    if offset >= end && offset <= partition.log_end_offset() && offset >= result.log_start_offset {
        return result;
    }
    // A throttled replica (`broker::throttle`) gets no records while the leader's bucket is
    // empty, only the offsets; what it gets is taken from the bucket.
    let throttle = (replica >= 0)
        .then(|| {
            broker.throttle_of(
                &partition,
                replica,
                throttle::LEADER_REPLICAS,
                throttle::LEADER_RATE,
            )
        })
        .flatten();
    let quota = &broker.shards.replication_quotas.leader;
    let limit = match throttle.map(|rate| quota.available(rate)) {
        Some(0) => return result,
        Some(available) => limit.min(available),
        None => limit,
    };
    let read = if committed {
        partition.read_committed(offset, limit.max(1), end).await.map(|(read, aborted)| {
            result.aborted =
                Some(aborted.iter().map(|a| (a.producer_id, a.first_offset)).collect());
            read
        })
    } else {
        partition.read_below(offset, limit.max(1), end).await
    };
    match read {
        Ok(read) => {
            if let Some(rate) = throttle {
                quota.record(rate, read.regions.iter().map(|r| r.len).sum());
            }
            result.regions = read.regions;
        }
        Err(error) => {
            debug!(topic, partition = index, offset, %error, "fetch error");
            result.error = Some(storage_error_code(&error));
        }
    }
    result
}

/// Where a requested partition is read from, and the fetcher's own log start.
fn position_of(wanted: &FetchPartition) -> FetchPosition {
    FetchPosition { offset: wanted.fetch_offset, log_start: wanted.log_start_offset }
}

/// What is left of `max_bytes` for one partition after `total` bytes of earlier ones.
pub(crate) fn budget_limit(partition_max_bytes: u64, max_bytes: u64, total: u64) -> u64 {
    partition_max_bytes.min(max_bytes.saturating_sub(total))
}

/// Whether a partition's `bytes` go into a response that holds `total` bytes so far. Only
/// the first partition with data may exceed the limits (KIP-74).
pub(crate) fn fits(bytes: u64, limit: u64, total: u64) -> bool {
    bytes > 0 && !(bytes > limit && total > 0)
}

/// Reads a partition this shard owns within `limit` (from `budget_limit`); with no budget
/// left only its offsets, which clients track even when no records come.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_budgeted(
    broker: &Broker,
    topic: &str,
    index: i32,
    position: FetchPosition,
    limit: u64,
    total: u64,
    replica: i32,
    epoch: i32,
    isolation: i8,
) -> PartitionRead {
    if limit == 0 && total > 0 {
        let mut read = PartitionRead::empty();
        if let Some(partition) = broker.partition(topic, index) {
            read.high_watermark = partition.high_watermark();
            read.last_stable_offset = partition.last_stable_offset();
            if replica < 0 && isolation == READ_COMMITTED {
                read.aborted = Some(Vec::new());
            }
            read.log_start_offset = partition.log_start_offset();
        }
        return read;
    }
    read_partition(broker, topic, index, position, limit, replica, epoch, isolation).await
}

/// What a partition's `last_fetched_epoch` says before its records are read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum EpochCheck {
    /// No epoch given, or the fetcher's log agrees with this leader's: read as usual.
    Read,
    /// The partition answers this error and nothing else.
    Refuse(ResponseError),
    /// The fetcher's log diverges from this leader's: its epoch ends here at `end_offset`.
    Diverged { epoch: i32, end_offset: i64 },
}

/// Kafka's `Partition.readRecords`, given where `last_fetched_epoch` ends on this leader
/// (`epochs::epoch_end`).
fn epoch_check(last_fetched_epoch: i32, fetch_offset: i64, end: EpochEnd) -> EpochCheck {
    let EpochEnd { error, epoch, end_offset } = end;
    match error {
        // The read names this one as Kafka does: NOT_LEADER_OR_FOLLOWER for a partition
        // another broker hosts, UNKNOWN_TOPIC_OR_PARTITION for one that does not exist.
        Some(ResponseError::UnknownTopicOrPartition) => EpochCheck::Read,
        Some(error) => EpochCheck::Refuse(error),
        // An epoch newer than this log's latest, or older than any it holds: Kafka cannot
        // say where the fetcher's log stands, and answers OFFSET_OUT_OF_RANGE.
        None if epoch < 0 || end_offset < 0 => EpochCheck::Refuse(ResponseError::OffsetOutOfRange),
        None if epoch < last_fetched_epoch || end_offset < fetch_offset => {
            EpochCheck::Diverged { epoch, end_offset }
        }
        None => EpochCheck::Read,
    }
}

/// The `EpochCheck` of every requested partition. Only partitions with a last fetched
/// epoch (v12+; -1 otherwise) of a known topic are looked up, on the shard that owns each.
async fn epoch_checks(
    broker: &Broker,
    body: &FetchRequest,
    names: &[Option<Cow<'_, str>>],
) -> Vec<Vec<EpochCheck>> {
    let mut checks = Vec::with_capacity(body.topics.len());
    for (topic, name) in body.topics.iter().zip(names) {
        let mut topic_checks = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let check = match name {
                Some(name) if wanted.last_fetched_epoch >= 0 => {
                    let (index, current, last) =
                        (wanted.partition, wanted.current_leader_epoch, wanted.last_fetched_epoch);
                    let end = match broker.shards.owner_of(name, index) {
                        Some(shard) => {
                            broker
                                .shards
                                .epoch_end(shard, name.to_string(), index, current, last)
                                .await
                        }
                        None => epochs::epoch_end(broker, name, index, current, last),
                    };
                    epoch_check(last, wanted.fetch_offset, end)
                }
                _ => EpochCheck::Read,
            };
            topic_checks.push(check);
        }
        checks.push(topic_checks);
    }
    checks
}

/// A partition's byte limit: none for a diverged one, which is read for its offsets only.
fn partition_limit(partition_max_bytes: i32, check: EpochCheck) -> u64 {
    match check {
        EpochCheck::Diverged { .. } => 0,
        _ => partition_max_bytes.max(0) as u64,
    }
}

/// A diverged partition's answer, from a read made for its offsets: no records, and where
/// the fetcher's epoch ends here; but OFFSET_OUT_OF_RANGE for a fetch offset below the log
/// start, which Kafka checks first.
fn diverge(result: &mut PartitionResult, fetch_offset: i64, epoch: i32, end_offset: i64) {
    // The read's own OFFSET_OUT_OF_RANGE (a fetch offset past the log end) is what the
    // divergence explains; any other error stands.
    if !matches!(result.error, None | Some(ResponseError::OffsetOutOfRange)) {
        return;
    }
    if fetch_offset < result.log_start_offset {
        result.error = Some(ResponseError::OffsetOutOfRange);
        return;
    }
    result.error = None;
    result.records.clear();
    result.bytes = 0;
    result.diverging_epoch = Some((epoch, end_offset));
}

/// Whether a partition's error is that it does not exist, which Kafka answers without
/// reading (`KafkaApis.handleFetchRequest` puts it aside as "erroneous").
fn unknown(error: Option<ResponseError>) -> bool {
    matches!(error, Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId))
}

/// Resolves every requested partition to file regions. Returns (per topic results, total
/// bytes, whether to answer without waiting).
///
/// The partitions of other shards are read there first (`read_elsewhere`). Then this shard
/// walks the request in order: its own partitions are read within what is left of the
/// budget, and another shard's answer is kept if it fits (otherwise that partition's
/// records wait for the next fetch; its offsets are still reported).
///
/// As Kafka's `ReplicaManager.fetchMessages`, it answers at once when a partition could
/// not be read (an error, or a diverged log) or when no requested partition exists; a
/// partition that does not exist does not cut the long poll of the others.
async fn collect(
    broker: &Rc<Broker>,
    body: &FetchRequest,
    names: &[Option<Cow<'_, str>>],
    max_bytes: u64,
    replica: i32,
) -> (Vec<Vec<PartitionResult>>, u64, bool) {
    let checks = epoch_checks(broker, body, names).await;
    let reads = read_elsewhere(broker, body, names, &checks, max_bytes, replica).await;
    let mut budget =
        Budget { max_bytes, total: 0, hw_moved: false, isolation: body.isolation_level };
    let mut answer_now = false;
    let mut known = 0usize;
    let mut out = Vec::with_capacity(body.topics.len());
    for (((topic, name), topic_checks), topic_reads) in
        body.topics.iter().zip(names).zip(checks).zip(reads)
    {
        let mut results = Vec::with_capacity(topic.partitions.len());
        for ((wanted, check), read) in topic.partitions.iter().zip(topic_checks).zip(topic_reads) {
            let result = match (name, check) {
                (None, _) => {
                    PartitionResult::refused(wanted.partition, ResponseError::UnknownTopicId)
                }
                (Some(_), EpochCheck::Refuse(error)) => {
                    PartitionResult::refused(wanted.partition, error)
                }
                (Some(name), check) => {
                    answer_partition(broker, replica, name, wanted, check, read, &mut budget).await
                }
            };
            if !unknown(result.error) {
                known += 1;
                answer_now |= result.error.is_some() || result.diverging_epoch.is_some();
            }
            results.push(result);
        }
        out.push(results);
    }
    if budget.hw_moved {
        // Consumers long-polling at the old high watermark can read more now.
        broker.data_arrived.notify_waiters();
    }
    (out, budget.total, answer_now || known == 0)
}

/// What one walk of the request has used of `max_bytes`, and whether a follower's fetch
/// moved a high watermark.
struct Budget {
    max_bytes: u64,
    total: u64,
    hw_moved: bool,
    /// The request's isolation level (`READ_COMMITTED` reads below the LSO).
    isolation: i8,
}

/// Sends the partitions each other shard owns there as one message, all sent at once, and
/// each shard reads its share in order within `max_bytes`. The reads, in request order:
/// `None` where this shard reads, or nothing is to be read.
async fn read_elsewhere(
    broker: &Broker,
    body: &FetchRequest,
    names: &[Option<Cow<'_, str>>],
    checks: &[Vec<EpochCheck>],
    max_bytes: u64,
    replica: i32,
) -> Vec<Vec<Option<PartitionRead>>> {
    let mut reads: Vec<Vec<Option<PartitionRead>>> =
        body.topics.iter().map(|t| t.partitions.iter().map(|_| None).collect()).collect();
    if broker.shards.count <= 1 {
        return reads;
    }
    let mut remote: ByShard<(usize, usize), FetchPart> = ByShard::default();
    for (t, (topic, name)) in body.topics.iter().zip(names).enumerate() {
        let Some(name) = name else { continue };
        for (p, wanted) in topic.partitions.iter().enumerate() {
            let check = checks[t][p];
            if matches!(check, EpochCheck::Refuse(_)) {
                continue;
            }
            let Some(shard) = broker.shards.owner_of(name, wanted.partition) else { continue };
            let part = FetchPart {
                topic: name.to_string(),
                index: wanted.partition,
                position: position_of(wanted),
                partition_max_bytes: partition_limit(wanted.partition_max_bytes, check),
                epoch: wanted.current_leader_epoch,
                isolation: body.isolation_level,
            };
            remote.push(shard, (t, p), part);
        }
    }
    let pending: Vec<_> = remote
        .into_groups()
        .map(|(shard, positions, parts)| {
            (positions, broker.shards.fetch(shard, parts, replica, max_bytes))
        })
        .collect();
    for (positions, answer) in pending {
        let answers = Shards::fetched(answer, positions.len()).await;
        for ((t, p), read) in positions.into_iter().zip(answers) {
            reads[t][p] = Some(read);
        }
    }
    reads
}

/// One partition of a known topic: read here unless another shard has (`read`), its
/// records kept if they fit what is left of the budget; a diverged one without records.
async fn answer_partition(
    broker: &Broker,
    replica: i32,
    name: &str,
    wanted: &FetchPartition,
    check: EpochCheck,
    read: Option<PartitionRead>,
    budget: &mut Budget,
) -> PartitionResult {
    let limit = budget_limit(
        partition_limit(wanted.partition_max_bytes, check),
        budget.max_bytes,
        budget.total,
    );
    let read = match read {
        Some(read) => read,
        None => {
            read_budgeted(
                broker,
                name,
                wanted.partition,
                position_of(wanted),
                limit,
                budget.total,
                replica,
                wanted.current_leader_epoch,
                budget.isolation,
            )
            .await
        }
    };
    budget.hw_moved |= read.hw_moved;
    let mut result = PartitionResult {
        index: wanted.partition,
        error: read.error,
        high_watermark: read.high_watermark,
        last_stable_offset: read.last_stable_offset,
        aborted: read.aborted,
        log_start_offset: read.log_start_offset,
        records: Vec::new(),
        bytes: 0,
        diverging_epoch: None,
        current_leader: None,
    };
    if let EpochCheck::Diverged { epoch, end_offset } = check {
        diverge(&mut result, wanted.fetch_offset, epoch, end_offset);
        return result;
    }
    let bytes: u64 = read.regions.iter().map(|r| r.len).sum();
    if fits(bytes, limit, budget.total) {
        budget.total += bytes;
        result.bytes = bytes;
        result.records = read.regions.into_iter().map(Piece::Region).collect();
    }
    result
}

/// Appends `value` as an unsigned varint: 7 bits a byte, the lowest first, the top bit set
/// on every byte but the last.
fn put_unsigned_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// How one version writes lengths: flexible versions as unsigned varints of N + 1 (0 for
/// null), with tagged-field sections; older ones as fixed-width big-endian integers.
#[derive(Clone, Copy)]
struct Wire {
    flexible: bool,
}

impl Wire {
    fn of(version: i16) -> Wire {
        Wire { flexible: version >= FLEXIBLE_FROM_VERSION }
    }

    /// A compact length: N + 1, which must fit the varint's 32 bits.
    fn compact(out: &mut Vec<u8>, len: u64) {
        let value = u32::try_from(len + 1).expect("a Fetch response length fits 32 bits");
        put_unsigned_varint(out, value);
    }

    fn array_len(self, out: &mut Vec<u8>, count: usize) {
        if self.flexible {
            Wire::compact(out, count as u64);
        } else {
            out.put_i32(i32::try_from(count).expect("FETCH_PARTITIONS_MAX bounds every array"));
        }
    }

    fn null_array(self, out: &mut Vec<u8>) {
        if self.flexible {
            put_unsigned_varint(out, 0);
        } else {
            out.put_i32(-1);
        }
    }

    fn string(self, out: &mut Vec<u8>, value: &str) {
        if self.flexible {
            Wire::compact(out, value.len() as u64);
        } else {
            out.put_i16(
                i16::try_from(value.len())
                    .expect("a topic name the request decoded fits an i16 length"),
            );
        }
        out.put_slice(value.as_bytes());
    }

    /// The length of a partition's records (never null: Kafka sends empty records).
    fn records_len(self, out: &mut Vec<u8>, bytes: u64) {
        if self.flexible {
            Wire::compact(out, bytes);
        } else {
            out.put_i32(i32::try_from(bytes).expect("a partition's records fit an i32 length"));
        }
    }

    /// A struct's tagged-field section with no fields.
    fn no_tagged_fields(self, out: &mut Vec<u8>) {
        if self.flexible {
            put_unsigned_varint(out, 0);
        }
    }

    /// A partition's tagged fields, in tag order: `diverging_epoch` and `current_leader`
    /// when set and not the default (-1, -1), as the codec leaves defaults out;
    /// `snapshot_id` is for KRaft's own log.
    fn partition_tagged_fields(
        self,
        out: &mut Vec<u8>,
        diverging_epoch: Option<(i32, i64)>,
        current_leader: Option<(i32, i32)>,
    ) {
        let current_leader = current_leader.filter(|leader| *leader != (-1, -1));
        if !self.flexible {
            assert!(
                diverging_epoch.is_none() && current_leader.is_none(),
                "a diverging epoch or current leader before v12, which cannot carry them"
            );
            return;
        }
        let count = u32::from(diverging_epoch.is_some()) + u32::from(current_leader.is_some());
        put_unsigned_varint(out, count);
        if let Some((epoch, end_offset)) = diverging_epoch {
            put_unsigned_varint(out, DIVERGING_EPOCH_TAG);
            put_unsigned_varint(out, EPOCH_END_OFFSET_BYTES);
            out.put_i32(epoch);
            out.put_i64(end_offset);
            put_unsigned_varint(out, 0);
        }
        if let Some((leader, epoch)) = current_leader {
            put_unsigned_varint(out, CURRENT_LEADER_TAG);
            put_unsigned_varint(out, LEADER_ID_AND_EPOCH_BYTES);
            out.put_i32(leader);
            out.put_i32(epoch);
            put_unsigned_varint(out, 0);
        }
    }

    /// The response's tagged fields: `node_endpoints` when there are any (v16+).
    fn response_tagged_fields(self, out: &mut Vec<u8>, endpoints: &[NodeEndpoint]) {
        if endpoints.is_empty() {
            self.no_tagged_fields(out);
            return;
        }
        let mut field = Vec::new();
        self.array_len(&mut field, endpoints.len());
        for (id, host, port) in endpoints {
            field.put_i32(*id);
            self.string(&mut field, host);
            field.put_i32(*port);
            put_unsigned_varint(&mut field, 0); // rack: null
            put_unsigned_varint(&mut field, 0); // the endpoint's tagged fields
        }
        put_unsigned_varint(out, 1);
        put_unsigned_varint(out, NODE_ENDPOINTS_TAG);
        let len = u32::try_from(field.len()).expect("a few brokers' addresses fit 32 bits");
        put_unsigned_varint(out, len);
        out.extend_from_slice(&field);
    }
}

/// Whether a partition's `aborted_transactions` is a list (empty: Fjord has no
/// transactions) rather than null, as Kafka sends it: a list for read_committed reads, null
/// for read_uncommitted ones and for reads that failed; a partition Kafka finds no log for
/// gets the empty list `FetchResponse.partitionResponse` leaves.
fn aborted_list(isolation_level: i8, error: Option<ResponseError>) -> bool {
    unknown(error) || (isolation_level != 0 && error.is_none())
}

/// Writes the response (header included, size prefix excluded): bytes in memory, with each
/// partition's record pieces between them.
fn encode(
    version: i16,
    correlation_id: i32,
    body: &FetchRequest,
    topics: Vec<(usize, Vec<PartitionResult>)>,
    endpoints: &[NodeEndpoint],
) -> FetchResponse {
    let wire = Wire::of(version);
    let mut pieces = Vec::new();
    let mut head = Vec::with_capacity(256);
    head.put_i32(correlation_id);
    wire.no_tagged_fields(&mut head); // response header v1 for flexible versions
    head.put_i32(0); // throttle_time_ms
    if version >= 7 {
        head.put_i16(0); // error_code
        head.put_i32(0); // session_id: no fetch sessions, every request is a full fetch
    }
    wire.array_len(&mut head, topics.len());
    let mut size = 0usize;
    for (t, partitions) in topics {
        let topic = &body.topics[t];
        if version >= TOPIC_IDS_FROM_VERSION {
            head.put_slice(topic.topic_id.as_bytes());
        } else {
            wire.string(&mut head, topic.topic.0.as_str());
        }
        wire.array_len(&mut head, partitions.len());
        for result in partitions {
            // A partition with an error carries no offsets, as in Kafka (-1 for each).
            let (high_watermark, last_stable_offset, log_start_offset) = if result.error.is_some() {
                (-1, -1, -1)
            } else {
                (result.high_watermark, result.last_stable_offset, result.log_start_offset)
            };
            head.put_i32(result.index);
            head.put_i16(code(result.error));
            head.put_i64(high_watermark);
            head.put_i64(last_stable_offset);
            if version >= 5 {
                head.put_i64(log_start_offset);
            }
            if !aborted_list(body.isolation_level, result.error) {
                wire.null_array(&mut head);
            } else {
                let aborted = result.aborted.as_deref().unwrap_or(&[]);
                wire.array_len(&mut head, aborted.len());
                for (producer_id, first_offset) in aborted {
                    head.put_i64(*producer_id);
                    head.put_i64(*first_offset);
                    wire.no_tagged_fields(&mut head); // the entry's
                }
            }
            if version >= 11 {
                head.put_i32(-1); // preferred_read_replica
            }
            wire.records_len(&mut head, result.bytes);
            if !result.records.is_empty() {
                size += head.len();
                pieces.push(Piece::Bytes(std::mem::take(&mut head)));
                for piece in result.records {
                    size += piece.len();
                    pieces.push(piece);
                }
            }
            wire.partition_tagged_fields(&mut head, result.diverging_epoch, result.current_leader);
        }
        wire.no_tagged_fields(&mut head); // the topic's
    }
    wire.response_tagged_fields(&mut head, endpoints);
    size += head.len();
    pieces.push(Piece::Bytes(head));
    FetchResponse { pieces, size }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    const CORRELATION_ID: i32 = 0x0102_0304;
    /// Every version Fjord's encoder writes.
    const VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;

    /// The bytes the connection writes after the size prefix: the pieces in order.
    fn written(response: FetchResponse) -> Vec<u8> {
        let mut out = Vec::with_capacity(response.size);
        for piece in response.pieces {
            match piece {
                Piece::Bytes(bytes) => out.extend_from_slice(&bytes),
                Piece::Region(_) => unreachable!("the tests' records are in memory"),
            }
        }
        assert_eq!(out.len(), response.size, "the size prefix counts every piece");
        out
    }

    /// One partition's answer: index, error, high watermark, log start, record pieces,
    /// diverging epoch.
    type Answer = (i32, i16, i64, i64, Vec<Vec<u8>>, Option<(i32, i64)>);

    /// A topic of the request and answer: its name, id, and partitions.
    struct Topic {
        name: String,
        id: uuid::Uuid,
        partitions: Vec<Answer>,
    }

    fn request(topics: &[Topic], isolation_level: i8) -> FetchRequest {
        let mut body = FetchRequest::default();
        body.isolation_level = isolation_level;
        body.topics = topics
            .iter()
            .map(|t| {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(t.name.clone()));
                topic.topic_id = t.id;
                topic.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut partition = FetchPartition::default();
                        partition.partition = p.0;
                        partition
                    })
                    .collect();
                topic
            })
            .collect();
        body
    }

    /// Fjord's hand-written answer.
    fn by_hand(version: i16, topics: &[Topic], isolation_level: i8) -> Vec<u8> {
        let results = topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(
                        |(
                            index,
                            error,
                            high_watermark,
                            log_start_offset,
                            records,
                            diverging_epoch,
                        )| PartitionResult {
                            index: *index,
                            error: ResponseError::try_from_code(*error),
                            high_watermark: *high_watermark,
                            last_stable_offset: *high_watermark,
                            aborted: None,
                            log_start_offset: *log_start_offset,
                            bytes: records.iter().map(|r| r.len() as u64).sum(),
                            records: records.iter().cloned().map(Piece::Bytes).collect(),
                            diverging_epoch: *diverging_epoch,
                            current_leader: None,
                        },
                    )
                    .collect()
            })
            .enumerate()
            .collect();
        written(encode(version, CORRELATION_ID, &request(topics, isolation_level), results, &[]))
    }

    /// The same answer from the codec's generated encoder, header included.
    fn by_codec(version: i16, topics: &[Topic], isolation_level: i8) -> Vec<u8> {
        let mut response = kafka_protocol::messages::FetchResponse::default();
        response.responses = topics
            .iter()
            .map(|t| {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = TopicName(StrBytes::from_string(t.name.clone()));
                topic.topic_id = t.id;
                topic.partitions = t
                    .partitions
                    .iter()
                    .map(
                        |(
                            index,
                            error,
                            high_watermark,
                            log_start_offset,
                            records,
                            diverging_epoch,
                        )| {
                            let mut p = PartitionData::default();
                            p.partition_index = *index;
                            p.error_code = *error;
                            let (hw, start) = if *error != 0 {
                                (-1, -1)
                            } else {
                                (*high_watermark, *log_start_offset)
                            };
                            p.high_watermark = hw;
                            p.last_stable_offset = hw;
                            p.log_start_offset = start;
                            p.aborted_transactions =
                                aborted_list(isolation_level, ResponseError::try_from_code(*error))
                                    .then(Vec::new);
                            p.preferred_read_replica = BrokerId(-1);
                            p.records = Some(Bytes::from(records.concat()));
                            if let Some((epoch, end_offset)) = diverging_epoch {
                                let mut diverging = EpochEndOffset::default();
                                diverging.epoch = *epoch;
                                diverging.end_offset = *end_offset;
                                p.diverging_epoch = diverging;
                            }
                            p
                        },
                    )
                    .collect();
                topic
            })
            .collect();
        let frame =
            crate::protocol::encode_response(ApiKey::Fetch, version, CORRELATION_ID, &response)
                .expect("the codec encodes");
        let size = i32::from_be_bytes(frame[..4].try_into().expect("a size prefix")) as usize;
        assert_eq!(size, frame.len() - 4);
        frame[4..].to_vec()
    }

    fn topics() -> Vec<Topic> {
        vec![
            Topic {
                name: "diff-a".to_string(),
                id: uuid::Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
                // Records of 300 bytes: a compact length of two varint bytes.
                partitions: vec![
                    (0, 0, 3, 0, vec![vec![7; 100], vec![8; 200]], None),
                    (1, 0, 0, 0, Vec::new(), None),
                ],
            },
            Topic {
                // 200 characters: a compact string length of two varint bytes.
                name: "t".repeat(200),
                id: uuid::Uuid::from_u128(7),
                partitions: vec![
                    (0, ResponseError::UnknownTopicOrPartition.code(), 5, 1, Vec::new(), None),
                    (3, ResponseError::OffsetOutOfRange.code(), 5, 1, Vec::new(), None),
                ],
            },
        ]
    }

    #[test]
    fn the_hand_encoder_writes_what_the_codec_writes_at_every_version() {
        for version in VERSIONS {
            for isolation_level in [0, 1] {
                let topics = topics();
                assert_eq!(
                    by_hand(version, &topics, isolation_level),
                    by_codec(version, &topics, isolation_level),
                    "v{version} isolation {isolation_level}"
                );
            }
        }
    }

    #[test]
    fn an_empty_fetch_is_encoded_as_the_codec_encodes_it() {
        for version in VERSIONS {
            assert_eq!(by_hand(version, &[], 0), by_codec(version, &[], 0), "v{version}");
        }
    }

    #[test]
    fn a_diverging_epoch_is_a_tagged_field_of_flexible_versions() {
        for version in FLEXIBLE_FROM_VERSION..=*VERSIONS.end() {
            let topics = vec![Topic {
                name: "diff-a".to_string(),
                id: uuid::Uuid::from_u128(1),
                partitions: vec![(0, 0, 3, 0, Vec::new(), Some((2, 150)))],
            }];
            let bytes = by_hand(version, &topics, 0);
            assert_eq!(bytes, by_codec(version, &topics, 0), "v{version}");
            // Tagged fields: one, tag 0, 13 bytes, epoch, end offset, its own empty section;
            // then the topic's and the response's empty sections.
            let mut tail = vec![1, 0, 13, 0, 0, 0, 2];
            tail.extend_from_slice(&150i64.to_be_bytes());
            tail.extend_from_slice(&[0, 0, 0]);
            assert!(bytes.ends_with(&tail), "v{version}: {bytes:?}");
        }
    }

    #[test]
    fn a_refused_partition_names_its_leader_and_the_leaders_address_from_v16() {
        use kafka_protocol::messages::fetch_response::{LeaderIdAndEpoch, NodeEndpoint};
        let id = uuid::Uuid::from_u128(9);
        let topics = vec![Topic { name: "moved".to_string(), id, partitions: Vec::new() }];
        let refused = |index: i32, error: ResponseError, leader: (i32, i32)| {
            let mut result = PartitionResult::refused(index, error);
            result.current_leader = Some(leader);
            result
        };
        for version in CURRENT_LEADER_FROM_VERSION..=*VERSIONS.end() {
            let mut body = request(&topics, 0);
            body.topics[0].partitions = vec![FetchPartition::default(); 3];
            let results = vec![(
                0,
                vec![
                    refused(0, ResponseError::NotLeaderOrFollower, (2, 7)),
                    refused(1, ResponseError::FencedLeaderEpoch, (3, 1)),
                    refused(2, ResponseError::NotLeaderOrFollower, (-1, -1)),
                ],
            )];
            let endpoints = vec![(2, "127.0.0.2".to_string(), 9093), (3, "h3".to_string(), 19092)];
            let hand = written(encode(version, CORRELATION_ID, &body, results, &endpoints));

            let mut response = kafka_protocol::messages::FetchResponse::default();
            let mut topic = FetchableTopicResponse::default();
            topic.topic_id = id;
            for (index, error, leader) in [
                (0, ResponseError::NotLeaderOrFollower, (2, 7)),
                (1, ResponseError::FencedLeaderEpoch, (3, 1)),
                (2, ResponseError::NotLeaderOrFollower, (-1, -1)),
            ] {
                let mut p = PartitionData::default();
                p.partition_index = index;
                p.error_code = error.code();
                p.high_watermark = -1;
                p.last_stable_offset = -1;
                p.log_start_offset = -1;
                p.aborted_transactions = None;
                p.preferred_read_replica = BrokerId(-1);
                p.records = Some(Bytes::new());
                let mut current = LeaderIdAndEpoch::default();
                current.leader_id = BrokerId(leader.0);
                current.leader_epoch = leader.1;
                p.current_leader = current;
                topic.partitions.push(p);
            }
            response.responses.push(topic);
            for (node, host, port) in &endpoints {
                let mut endpoint = NodeEndpoint::default();
                endpoint.node_id = BrokerId(*node);
                endpoint.host = StrBytes::from_string(host.clone());
                endpoint.port = *port;
                response.node_endpoints.push(endpoint);
            }
            let frame =
                crate::protocol::encode_response(ApiKey::Fetch, version, CORRELATION_ID, &response)
                    .expect("the codec encodes");
            assert_eq!(hand, frame[4..].to_vec(), "v{version}");
        }
    }

    #[test]
    fn flexible_versions_start_with_response_header_v1() {
        let bytes = by_hand(FLEXIBLE_FROM_VERSION, &[], 0);
        assert_eq!(&bytes[..5], &[1, 2, 3, 4, 0], "the correlation id, then no tagged fields");
        assert_eq!(
            &by_hand(FLEXIBLE_FROM_VERSION - 1, &[], 0)[..8],
            &[1, 2, 3, 4, 0, 0, 0, 0],
            "the correlation id, then throttle_time_ms"
        );
    }

    #[test]
    fn unsigned_varints_take_seven_bits_a_byte() {
        for (value, expected) in [
            (0u32, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (u32::MAX, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            put_unsigned_varint(&mut out, value);
            assert_eq!(out, expected, "{value}");
        }
    }

    #[test]
    fn compact_lengths_are_one_more_than_the_length() {
        let mut out = Vec::new();
        Wire::of(FLEXIBLE_FROM_VERSION).records_len(&mut out, 0);
        Wire::of(FLEXIBLE_FROM_VERSION).records_len(&mut out, 127);
        Wire::of(FLEXIBLE_FROM_VERSION).null_array(&mut out);
        Wire::of(FLEXIBLE_FROM_VERSION).array_len(&mut out, 0);
        assert_eq!(out, vec![1, 0x80, 0x01, 0, 1]);
        let mut old = Vec::new();
        Wire::of(FLEXIBLE_FROM_VERSION - 1).records_len(&mut old, 127);
        Wire::of(FLEXIBLE_FROM_VERSION - 1).null_array(&mut old);
        assert_eq!(old, vec![0, 0, 0, 127, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn a_last_fetched_epoch_is_checked_as_kafka_checks_it() {
        let ok = |epoch: i32, end_offset: i64| EpochEnd { error: None, epoch, end_offset };
        // The epoch the fetcher last read ends at the log end (3): read on.
        assert_eq!(epoch_check(0, 3, ok(0, 3)), EpochCheck::Read);
        assert_eq!(epoch_check(0, 1, ok(0, 3)), EpochCheck::Read);
        // The fetcher is past where its epoch ended here, or holds an epoch this log lacks.
        assert_eq!(
            epoch_check(0, 1000, ok(0, 3)),
            EpochCheck::Diverged { epoch: 0, end_offset: 3 }
        );
        assert_eq!(epoch_check(2, 10, ok(1, 8)), EpochCheck::Diverged { epoch: 1, end_offset: 8 });
        // An epoch this log cannot place.
        assert_eq!(
            epoch_check(5, 3, ok(-1, -1)),
            EpochCheck::Refuse(ResponseError::OffsetOutOfRange)
        );
        // The partition's own errors stand; an unknown one is left to the read.
        let fenced = ResponseError::FencedLeaderEpoch;
        assert_eq!(epoch_check(0, 3, EpochEnd::refused(fenced)), EpochCheck::Refuse(fenced));
        assert_eq!(
            epoch_check(0, 3, EpochEnd::refused(ResponseError::UnknownTopicOrPartition)),
            EpochCheck::Read
        );
    }

    #[test]
    fn a_diverged_partition_carries_no_records_and_is_out_of_range_below_the_log_start() {
        let read = |error: Option<ResponseError>| PartitionResult {
            index: 0,
            error,
            high_watermark: 9,
            last_stable_offset: 9,
            aborted: None,
            log_start_offset: 4,
            records: vec![Piece::Bytes(vec![1])],
            bytes: 1,
            diverging_epoch: None,
            current_leader: None,
        };
        let mut past_the_end = read(Some(ResponseError::OffsetOutOfRange));
        diverge(&mut past_the_end, 1000, 0, 9);
        assert_eq!(
            (
                past_the_end.error,
                past_the_end.diverging_epoch,
                past_the_end.bytes,
                past_the_end.records.len()
            ),
            (None, Some((0, 9)), 0, 0)
        );
        let mut below_start = read(None);
        diverge(&mut below_start, 2, 0, 9);
        assert_eq!(
            (below_start.error, below_start.diverging_epoch),
            (Some(ResponseError::OffsetOutOfRange), None)
        );
        let storage = Some(ResponseError::KafkaStorageError);
        let mut failed = read(storage);
        diverge(&mut failed, 5, 0, 9);
        assert_eq!((failed.error, failed.diverging_epoch), (storage, None));
    }

    #[test]
    fn partitions_that_do_not_exist_come_last_as_kafka_orders_them() {
        let named = |names: &[&str]| {
            request(
                &names
                    .iter()
                    .map(|n| Topic {
                        name: n.to_string(),
                        id: uuid::Uuid::nil(),
                        partitions: Vec::new(),
                    })
                    .collect::<Vec<_>>(),
                0,
            )
        };
        let order =
            |body: &FetchRequest, results: Vec<Vec<PartitionResult>>| -> Vec<(usize, Vec<i32>)> {
                in_kafka_order(body, results)
                    .into_iter()
                    .map(|(t, ps)| (t, ps.iter().map(|p| p.index).collect()))
                    .collect()
            };
        let missing = Some(ResponseError::UnknownTopicOrPartition);
        let not_leader = Some(ResponseError::NotLeaderOrFollower);
        let result = |index: i32, error: Option<ResponseError>| PartitionResult {
            error,
            ..PartitionResult::refused(index, ResponseError::UnknownServerError)
        };
        // What was read (errors included), in request order, then what does not exist: a
        // topic split so appears twice.
        let results = vec![
            vec![result(0, None), result(99, missing), result(1, not_leader)],
            vec![result(0, missing)],
            vec![result(0, None)],
        ];
        assert_eq!(
            order(&named(&["a", "gone", "b"]), results),
            vec![(0, vec![0, 1]), (2, vec![0]), (0, vec![99]), (1, vec![0])]
        );
        // The last topic read and the first put aside are consecutive: one entry.
        let results = vec![
            vec![result(0, None)],
            vec![result(5, missing), result(0, None), result(6, missing)],
        ];
        assert_eq!(order(&named(&["a", "b"]), results), vec![(0, vec![0]), (1, vec![0, 5, 6])]);
        // Topic ids no topic has come before the partitions a known topic lacks.
        let no_topic = Some(ResponseError::UnknownTopicId);
        let results = vec![
            vec![result(0, None), result(99, missing)],
            vec![result(0, no_topic)],
            vec![result(1, None)],
        ];
        assert_eq!(
            order(&named(&["a", "gone", "a"]), results),
            vec![(0, vec![0, 1]), (1, vec![0]), (0, vec![99])]
        );
    }
}
