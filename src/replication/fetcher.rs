//! Follower side of replication: one task per leader this broker follows, fetching with
//! its replica id, appending the leader's batches verbatim, and first cutting any
//! divergent tail (OffsetForLeaderEpoch) after each change of leadership.
//!
//! A follower acknowledges records implicitly: its next fetch offset tells the leader what
//! it holds, and the leader's high watermark (and acks=all) moves with it. With
//! `fsync-acks-all` (the default) the follower fdatasyncs before it fetches again, so an
//! acknowledged record is on the disks of the whole in-sync set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fjord_storage::io::{Stream, READ_CHUNK_BYTES};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use kafka_protocol::ResponseError;
use tracing::{debug, info, warn};

use crate::broker::{throttle, Broker};
use crate::partition::Partition;

/// Fetch version followers use: v11, before `last_fetched_epoch` (v12), since followers cut
/// their divergent tails with OffsetForLeaderEpoch first.
const FETCH_VERSION: i16 = 11;
const EPOCH_VERSION: i16 = 3;
/// How long a follower's fetch may wait on the leader for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch.
const FETCH_PARTITION_BYTES: i32 = 4 * 1024 * 1024;
/// Bytes per fetch.
const FETCH_BYTES: i32 = 32 * 1024 * 1024;
/// Largest response a follower accepts.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// How often the set of leaders to follow is re-examined.
const SUPERVISE_MS: u64 = 100;
/// Pause after a failed connection or request.
const RETRY_MS: u64 = 200;

/// Starts and stops fetcher tasks as the leaders this broker follows change.
pub async fn run(broker: Rc<Broker>) {
    let running: Rc<std::cell::RefCell<BTreeSet<i32>>> = Rc::default();
    loop {
        tokio::time::sleep(Duration::from_millis(SUPERVISE_MS)).await;
        for leader in leaders_followed(&broker).keys() {
            if running.borrow_mut().insert(*leader) {
                let (broker, running, leader) = (Rc::clone(&broker), Rc::clone(&running), *leader);
                fjord_storage::io::spawn(async move {
                    follow(&broker, leader).await;
                    running.borrow_mut().remove(&leader);
                });
            }
        }
    }
}

/// Leader id -> the local partitions that follow it.
fn leaders_followed(broker: &Broker) -> BTreeMap<i32, Vec<Rc<Partition>>> {
    let mut out: BTreeMap<i32, Vec<Rc<Partition>>> = BTreeMap::new();
    for topic in broker.topics() {
        for partition in topic.local_partitions() {
            let role = partition.replica.role();
            if role.leader >= 0 && role.leader != broker.config.broker_id {
                out.entry(role.leader).or_default().push(Rc::clone(partition));
            }
        }
    }
    out
}

/// Why a round with a leader failed; the fetcher reconnects and tries again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetcherError {
    #[error("connection to the leader: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] crate::protocol::CodecError),
    #[error("the leader sent a response of {size} bytes (at most {RESPONSE_BYTES_MAX})")]
    ResponseSize { size: i32 },
    #[error("the leader closed the connection")]
    Closed,
    #[error("the local replica: {0}")]
    Storage(#[from] fjord_storage::StorageError),
}

/// A connection to another broker: one request at a time, answered in order (the
/// fetcher's, and the transaction coordinator's WriteTxnMarkers).
pub(crate) struct Connection {
    stream: Stream,
    buf: BytesMut,
    correlation_id: i32,
}

impl Connection {
    pub(crate) async fn connect(address: SocketAddr) -> std::io::Result<Connection> {
        let stream = Stream::connect(address).await?;
        let _ = stream.set_nodelay(true);
        Ok(Connection { stream, buf: BytesMut::with_capacity(READ_CHUNK_BYTES), correlation_id: 0 })
    }

    pub(crate) async fn call<Req: Encodable + HeaderVersion, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
        client_id: &str,
    ) -> Result<Resp, FetcherError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame =
            crate::protocol::encode_request(key, version, self.correlation_id, client_id, request)?;
        let (result, _) = self.stream.write_all(frame.freeze()).await;
        result?;
        // Read one response frame.
        loop {
            if self.buf.len() >= 4 {
                let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if size < 4 || size as usize > RESPONSE_BYTES_MAX {
                    return Err(FetcherError::ResponseSize { size });
                }
                let total = 4 + size as usize;
                if self.buf.len() >= total {
                    let mut payload = self.buf.split_to(total).freeze();
                    payload.advance(4);
                    return Ok(crate::protocol::decode_response(
                        key,
                        version,
                        Some(self.correlation_id),
                        payload,
                    )?);
                }
                self.buf.reserve(total - self.buf.len());
            } else {
                self.buf.reserve(READ_CHUNK_BYTES);
            }
            let taken = std::mem::take(&mut self.buf);
            let (result, returned) = self.stream.read(taken).await;
            self.buf = returned;
            if result? == 0 {
                return Err(FetcherError::Closed);
            }
        }
    }
}

/// Follows one leader until no local partition follows it any more.
async fn follow(broker: &Rc<Broker>, leader: i32) {
    let cluster = Rc::clone(broker.cluster.as_ref().expect("clustered broker"));
    let me = broker.config.broker_id;
    let client_id = format!("fjord-replica-{me}");
    let mut connection: Option<Connection> = None;
    info!(leader, "replica fetcher started");
    loop {
        let Some(partitions) = leaders_followed(broker).remove(&leader) else {
            info!(leader, "replica fetcher stopped: nothing follows this leader");
            return;
        };
        if connection.is_none() {
            let address = cluster.address_of(leader).and_then(|a| a.parse::<SocketAddr>().ok());
            match address {
                Some(address) => match Connection::connect(address).await {
                    Ok(c) => connection = Some(c),
                    Err(error) => {
                        debug!(leader, %error, "cannot reach the leader");
                        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                        continue;
                    }
                },
                None => {
                    warn!(leader, "leader has no address in the cluster file");
                    tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                    continue;
                }
            }
        }
        let conn = connection.as_mut().expect("connected above");
        let outcome = round(broker, conn, &partitions, &client_id).await;
        if let Err(error) = outcome {
            debug!(leader, %error, "replica fetch failed; reconnecting");
            connection = None;
            tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
        }
    }
}

/// One round: divergence checks where needed, then one fetch.
async fn round(
    broker: &Rc<Broker>,
    conn: &mut Connection,
    partitions: &[Rc<Partition>],
    client_id: &str,
) -> Result<(), FetcherError> {
    cut_divergent_tails(broker, conn, partitions, client_id).await?;
    fetch_from_log_ends(broker, conn, partitions, client_id).await
}

/// After a change of leadership: asks the leader where each epoch this replica holds ended
/// (OffsetForLeaderEpoch) and cuts what the leader never had.
async fn cut_divergent_tails(
    broker: &Rc<Broker>,
    conn: &mut Connection,
    partitions: &[Rc<Partition>],
    client_id: &str,
) -> Result<(), FetcherError> {
    let to_check: Vec<&Rc<Partition>> =
        partitions.iter().filter(|p| p.replica.needs_truncation.get()).collect();
    if to_check.is_empty() {
        return Ok(());
    }
    // The latest epoch each partition asks about.
    let asked: Vec<i32> = to_check.iter().map(|p| p.replica.latest_epoch().unwrap_or(-1)).collect();
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(broker.config.broker_id);
    request.topics = by_topic(
        &to_check,
        |p| {
            let mut q = OffsetForLeaderPartition::default();
            q.partition = p.index;
            q.current_leader_epoch = p.replica.leader_epoch();
            q.leader_epoch = p.replica.latest_epoch().unwrap_or(-1);
            q
        },
        |topic, partitions| {
            let mut t = OffsetForLeaderTopic::default();
            t.topic = topic;
            t.partitions = partitions;
            t
        },
    );
    let roles = roles_of(&to_check);
    let response: OffsetForLeaderEpochResponse =
        conn.call(ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, &request, client_id).await?;
    for topic in &response.topics {
        for answer in &topic.partitions {
            let Some(slot) = slot_of(&to_check, &topic.topic, answer.partition) else {
                continue;
            };
            let partition = to_check[slot];
            // Leadership may have moved while we waited: answers for a changed role are stale.
            if role_of(partition) != roles[slot] {
                continue;
            }
            if answer.error_code != 0 {
                debug!(partition = ?partition, error = answer.error_code, "OffsetForLeaderEpoch refused; retrying");
                continue;
            }
            cut_where_diverged(partition, answer, asked[slot], roles[slot]).await?;
        }
    }
    Ok(())
}

/// Cuts the log of `partition`, which asked about epoch `asked` in `role`, where the
/// leader's `answer` says it diverged, and marks it checked unless the role changed.
async fn cut_where_diverged(
    partition: &Partition,
    answer: &EpochEndOffset,
    asked: i32,
    role: (i32, i32),
) -> Result<(), FetcherError> {
    let log_end = partition.log_end_offset();
    let cut = if answer.end_offset < 0 {
        // No common epoch: keep only what the high watermark vouches for.
        partition.high_watermark().max(partition.log_start_offset())
    } else if answer.leader_epoch < asked {
        // The leader never had our latest epoch: its answer is where an older
        // epoch ended there; ours may have ended earlier (Kafka takes the smaller).
        answer.end_offset.min(partition.replica.end_offset_for(answer.leader_epoch, log_end).1)
    } else {
        answer.end_offset
    };
    // An epoch this replica has no start for answers -1 (end_offset_for): never
    // cut below the log start.
    let cut = cut.max(partition.log_start_offset());
    if partition.replica.latest_epoch().is_some()
        && cut < log_end
        && partition.truncate_to(cut, role).await?.is_none()
    {
        // The role changed while the log was awaited: the new role decides.
        return Ok(());
    }
    partition.replica.needs_truncation.set(false);
    Ok(())
}

/// One fetch for every partition that needs no divergence check, from its log end; appends
/// what the leader sent and takes its high watermark.
async fn fetch_from_log_ends(
    broker: &Rc<Broker>,
    conn: &mut Connection,
    partitions: &[Rc<Partition>],
    client_id: &str,
) -> Result<(), FetcherError> {
    // A throttled partition (`broker::throttle`) is left out while the follower's bucket
    // is empty; what its fetches bring is taken from the bucket. A replica that holds the
    // leader's high watermark as last heard is in sync for this (Kafka's fetcher asks its
    // own lag), even before the state it reads says so.
    let me = broker.config.broker_id;
    let throttle_of = |p: &Partition| {
        if p.log_end_offset() >= p.high_watermark() {
            return None;
        }
        broker.throttle_of(p, me, throttle::FOLLOWER_REPLICAS, throttle::FOLLOWER_RATE)
    };
    let quota = &broker.shards.replication_quotas.follower;
    // The throttled partitions, each with its rate and asked for at most what the bucket
    // holds.
    let mut limited: Vec<(&Partition, u64, i32)> = Vec::new();
    let ready: Vec<&Rc<Partition>> = partitions
        .iter()
        .filter(|p| !p.replica.needs_truncation.get())
        .filter(|p| {
            let Some(rate) = throttle_of(p) else { return true };
            let available = quota.available(rate);
            limited.push((p, rate, available.min(FETCH_PARTITION_BYTES as u64) as i32));
            available > 0
        })
        .collect();
    let throttled = |p: &Partition| limited.iter().find(|(l, _, _)| std::ptr::eq(*l, p));
    let limit_of = |p: &Partition| throttled(p).map_or(FETCH_PARTITION_BYTES, |(_, _, l)| *l);
    if ready.is_empty() {
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
        return Ok(());
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(broker.config.broker_id);
    request.max_wait_ms = FETCH_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = FETCH_BYTES;
    request.session_epoch = -1;
    request.topics = by_topic(
        &ready,
        |p| {
            let mut f = FetchPartition::default();
            f.partition = p.index;
            f.current_leader_epoch = p.replica.leader_epoch();
            f.fetch_offset = p.log_end_offset();
            f.log_start_offset = p.log_start_offset();
            f.partition_max_bytes = limit_of(p);
            f
        },
        |topic, partitions| {
            let mut t = FetchTopic::default();
            t.topic = topic;
            t.partitions = partitions;
            t
        },
    );
    let roles = roles_of(&ready);
    let response: FetchResponse =
        conn.call(ApiKey::Fetch, FETCH_VERSION, &request, client_id).await?;
    let mut stale = false;
    for topic in &response.responses {
        for data in &topic.partitions {
            let Some(slot) = slot_of(&ready, &topic.topic, data.partition_index) else {
                continue;
            };
            if role_of(ready[slot]) != roles[slot] {
                // Leadership moved while this fetch was in flight: its records are not ours.
                continue;
            }
            if let Some((_, rate, _)) = throttled(ready[slot]) {
                quota.record(*rate, data.records.as_ref().map_or(0, |r| r.len() as u64));
            }
            if let Taken::Refused = take_fetched(broker, ready[slot], data, roles[slot]).await? {
                stale = true;
            }
        }
    }
    if stale {
        tokio::time::sleep(Duration::from_millis(RETRY_MS / 2)).await;
    }
    Ok(())
}

/// How a partition's part of a fetch was taken, if not with an error.
enum Taken {
    /// Appended, or nothing to append, or the partition set to restart or to be checked.
    Done,
    /// The leader refused it with an error to wait out.
    Refused,
}

/// Takes one partition's part of a fetch, fetched in `role`: appends the leader's batches
/// (fdatasync'd with `fsync-acks-all`) and takes its high watermark and log start. Behind the leader's
/// log start it restarts the replica there; a failed append or an offset out of range
/// marks the partition for a divergence check.
async fn take_fetched(
    broker: &Broker,
    partition: &Partition,
    data: &PartitionData,
    role: (i32, i32),
) -> Result<Taken, FetcherError> {
    match ResponseError::try_from_code(data.error_code) {
        None if data.error_code == 0 => {}
        Some(ResponseError::OffsetOutOfRange) => {
            if partition.log_end_offset() < data.log_start_offset {
                warn!(partition = ?partition, leader_log_start = data.log_start_offset, "behind the leader's log start; restarting the replica there");
                partition.restart_at(data.log_start_offset, role).await?;
            } else {
                partition.replica.needs_truncation.set(true);
            }
            return Ok(Taken::Done);
        }
        _ => {
            debug!(partition = ?partition, error = data.error_code, "leader refused the fetch");
            return Ok(Taken::Refused);
        }
    }
    if let Some(records) = data.records.clone().filter(|r| !r.is_empty()) {
        match partition.append_replicated(records, data.high_watermark).await {
            Ok(()) => {
                if broker.config.fsync_acks_all {
                    partition.flush_to(partition.log_end_offset()).await?;
                }
            }
            Err(error) => {
                warn!(partition = ?partition, %error, "cannot append the leader's batches; checking for divergence");
                partition.replica.needs_truncation.set(true);
            }
        }
    } else {
        partition.follower_high_watermark(data.high_watermark);
    }
    // Records the leader deleted (DeleteRecords) go here too.
    partition.follow_log_start(data.log_start_offset).await?;
    Ok(Taken::Done)
}

/// A partition's role now, as (leader, leader epoch): an answer from the leader is the
/// partition's only while its role is still the one the request was sent in.
fn role_of(partition: &Partition) -> (i32, i32) {
    let role = partition.replica.role();
    (role.leader, role.leader_epoch)
}

/// Each partition's role (`role_of`) as a request to the leader leaves.
fn roles_of(partitions: &[&Rc<Partition>]) -> Vec<(i32, i32)> {
    partitions.iter().map(|p| role_of(p)).collect()
}

/// The place in `partitions` of `topic`-`index`, which an answer names.
fn slot_of(partitions: &[&Rc<Partition>], topic: &TopicName, index: i32) -> Option<usize> {
    partitions.iter().position(|p| &*p.topic == topic.0.as_str() && p.index == index)
}

/// A request's topics, in name order: `partition` builds each partition's entry and `topic`
/// each topic's from its name and entries.
fn by_topic<P, T>(
    partitions: &[&Rc<Partition>],
    partition: impl Fn(&Partition) -> P,
    topic: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    let mut grouped: BTreeMap<String, Vec<P>> = BTreeMap::new();
    for p in partitions {
        grouped.entry(p.topic.to_string()).or_default().push(partition(p));
    }
    grouped.into_iter().map(|(name, entries)| topic(TopicName(name.into()), entries)).collect()
}
