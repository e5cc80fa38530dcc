//! Thread per core: `--shards N` runs N threads, each with its own io_uring runtime and its
//! own `Broker` that owns a share of the partitions (`owner`). Every shard accepts
//! connections on the same port (SO_REUSEPORT). A request is answered by the shard whose
//! connection it arrived on: the parts that touch partitions of other shards go to their
//! owners over channels (Produce and Fetch as one message per shard per request, ListOffsets
//! per partition), and requests about the cluster as a whole (Metadata, topic
//! administration, consumer groups, producer ids) go whole to shard 0. No locks on the data
//! path: a partition is only ever touched by its owner's thread; fetched record bytes cross
//! threads as duplicated file descriptors, so they are still spliced from the file to the
//! socket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use fjord_replication::ClusterState;
use fjord_storage::io::{File, SharedFile};
use fjord_storage::FileRegion;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::warn;

use crate::broker::outcome::{
    AppendDone, EpochEnd, LogDirPartition, OffsetAnswer, PartitionOutcome, PartitionRead,
    ProducersAnswer,
};
use crate::broker::request_memory::RequestMemory;
use crate::broker::throttle::ReplicationQuotas;
use crate::partition::replica::FetchPosition;

/// The shard that owns a partition. Internal topics (consumer offsets) live on shard 0 with
/// the group coordinator.
pub fn owner(count: usize, topic: &str, index: i32) -> usize {
    if count <= 1 || topic.starts_with("__") {
        return 0;
    }
    let hash = crate::ids::java_string_hash(topic) as u32 as usize;
    hash.wrapping_add(index.max(0) as usize) % count
}

/// A fetched region crossing threads: the segment file as a duplicated descriptor, with its
/// residency mapping (`File::share`).
pub struct RemoteRegion {
    file: SharedFile,
    segment_base_offset: i64,
    position: u64,
    len: u64,
    first_offset: i64,
    next_offset: i64,
}

pub struct RemoteRead {
    error: Option<ResponseError>,
    high_watermark: i64,
    last_stable_offset: i64,
    aborted: Option<Vec<(i64, i64)>>,
    log_start_offset: i64,
    regions: Vec<RemoteRegion>,
    hw_moved: bool,
}

/// The parts of one request that other shards own, grouped by owner; each part keeps its
/// place in the request (`P`) so the answers can be put back in request order.
pub struct ByShard<P, T> {
    groups: Vec<(usize, Vec<P>, Vec<T>)>,
}

impl<P, T> Default for ByShard<P, T> {
    fn default() -> Self {
        ByShard { groups: Vec::new() }
    }
}

impl<P, T> ByShard<P, T> {
    pub fn push(&mut self, shard: usize, place: P, part: T) {
        match self.groups.iter_mut().find(|(s, _, _)| *s == shard) {
            Some((_, places, parts)) => {
                places.push(place);
                parts.push(part);
            }
            None => self.groups.push((shard, vec![place], vec![part])),
        }
    }

    /// (shard, places, parts) for each shard with parts.
    pub fn into_groups(self) -> impl Iterator<Item = (usize, Vec<P>, Vec<T>)> {
        self.groups.into_iter()
    }
}

/// The `count` answers a shard sends back for one message, or None if it is gone.
async fn answers<T>(answer: Option<oneshot::Receiver<Vec<T>>>, count: usize) -> Option<Vec<T>> {
    answer?.await.ok().filter(|answers| answers.len() == count)
}

/// One partition's records in a forwarded Produce.
pub struct ProducePart {
    pub topic: String,
    pub index: i32,
    pub records: Option<Bytes>,
    /// The request's transactional id and version (its first transactional batch in a
    /// partition is verified with, or added by, the coordinator: KIP-890).
    pub txn: Option<crate::txn::TxnWrite>,
    /// Its turn in the connection's order, and marked when this partition's append is over
    /// (or when the part is dropped unserved).
    pub done: AppendDone,
}

/// One partition of a forwarded Fetch: read from `offset`, at most `partition_max_bytes`.
pub struct FetchPart {
    pub topic: String,
    pub index: i32,
    pub position: FetchPosition,
    pub partition_max_bytes: u64,
    pub epoch: i32,
    /// The fetch's isolation level (1: read_committed).
    pub isolation: i8,
}

/// What a forwarded whole request came to.
pub enum FrameReply {
    Frame(Bytes),
    Nothing,
    Close(String),
}

pub enum Message {
    /// The partitions of one Produce request that this shard owns, answered in order.
    Produce {
        parts: Vec<ProducePart>,
        acks: i16,
        timeout_ms: i32,
        reply: oneshot::Sender<Vec<PartitionOutcome>>,
    },
    /// The partitions of one Fetch request that this shard owns, answered in order; together
    /// they read at most `max_bytes` (the response's budget).
    Fetch {
        parts: Vec<FetchPart>,
        replica: i32,
        max_bytes: u64,
        reply: oneshot::Sender<Vec<RemoteRead>>,
    },
    /// DeleteRecords for a partition the shard owns (`handlers::delete_records_before`).
    DeleteRecords {
        topic: String,
        index: i32,
        offset: i64,
        reply: oneshot::Sender<OffsetAnswer>,
    },
    /// A transaction marker for a partition the shard owns (`handlers::txn`): its error.
    WriteMarker {
        topic: String,
        index: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        reply: oneshot::Sender<Option<ResponseError>>,
    },
    /// On shard 0: a partition leader's check of a partition in a transaction
    /// (`handlers::txn::check_here`).
    CheckTxn {
        check: crate::txn::TxnCheck,
        topic: String,
        index: i32,
        reply: oneshot::Sender<Option<ResponseError>>,
    },
    /// DeleteRecords' wait for a partition the shard owns: the answer's offset is its low
    /// watermark, once it reached `offset` or `deadline` passed.
    LowWatermark {
        topic: String,
        index: i32,
        offset: i64,
        deadline: tokio::time::Instant,
        reply: oneshot::Sender<OffsetAnswer>,
    },
    ListOffset {
        topic: String,
        index: i32,
        timestamp: i64,
        read_committed: bool,
        reply: oneshot::Sender<OffsetAnswer>,
    },
    /// DescribeLogDirs: the partitions this shard hosts, all (`None`) or those of `wanted`.
    LogDirPartitions {
        wanted: Option<Vec<(String, i32)>>,
        reply: oneshot::Sender<Vec<LogDirPartition>>,
    },
    /// DescribeProducers for one partition.
    Producers {
        topic: String,
        index: i32,
        reply: oneshot::Sender<ProducersAnswer>,
    },
    /// OffsetForLeaderEpoch for one partition.
    EpochEnd {
        topic: String,
        index: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
        reply: oneshot::Sender<EpochEnd>,
    },
    Frame {
        payload: Bytes,
        peer: Option<SocketAddr>,
        reply: oneshot::Sender<FrameReply>,
    },
    /// Topics were created or deleted, or `changed` (its config or partition count).
    TopicsChanged {
        changed: Option<String>,
        reply: oneshot::Sender<()>,
    },
    /// On one broker: the broker configs changed while running, to apply to this shard's
    /// partitions.
    BrokerConfigsChanged {
        configs: fjord_replication::DynamicBrokerConfigs,
        reply: oneshot::Sender<()>,
    },
    /// In a cluster, from shard 0: a new cluster state, to apply to this shard's partitions.
    ApplyState {
        state: Arc<ClusterState>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// This shard's view of the others.
pub struct Shards {
    pub me: usize,
    pub count: usize,
    peers: Vec<mpsc::UnboundedSender<Message>>,
    /// Woken on every append on any shard, for fetches waiting on `min_bytes`.
    pub data_arrived: Arc<Notify>,
    /// The request memory budget (`request-memory-max`), one for all shards together.
    pub request_memory: Arc<RequestMemory>,
    /// The replication throttles' buckets, one pair for all shards together.
    pub replication_quotas: Arc<ReplicationQuotas>,
}

impl Shards {
    pub fn single(request_memory: Arc<RequestMemory>) -> Shards {
        Shards {
            me: 0,
            count: 1,
            peers: Vec::new(),
            data_arrived: Arc::new(Notify::new()),
            request_memory,
            replication_quotas: Arc::default(),
        }
    }

    pub fn new(
        me: usize,
        peers: Vec<mpsc::UnboundedSender<Message>>,
        data_arrived: Arc<Notify>,
        request_memory: Arc<RequestMemory>,
        replication_quotas: Arc<ReplicationQuotas>,
    ) -> Shards {
        Shards { me, count: peers.len(), peers, data_arrived, request_memory, replication_quotas }
    }

    /// Whether this shard opens the partition.
    pub fn owns(&self, topic: &str, index: i32) -> bool {
        owner(self.count, topic, index) == self.me
    }

    /// The shard that owns the partition, if it is another one.
    pub fn owner_of(&self, topic: &str, index: i32) -> Option<usize> {
        if self.count <= 1 {
            return None;
        }
        let shard = owner(self.count, topic, index);
        (shard != self.me).then_some(shard)
    }

    /// Whether whole cluster-level requests go to shard 0 from here.
    pub fn forwards_to_first(&self) -> bool {
        self.count > 1 && self.me != 0
    }

    fn send(&self, shard: usize, message: Message) -> bool {
        self.peers[shard].send(message).is_ok()
    }

    /// Sends the appends of `parts` to `shard`, which owns them, as one message, without
    /// waiting: the outcomes (in the order of `parts`) are awaited with `produced`.
    pub fn produce(
        &self,
        shard: usize,
        parts: Vec<ProducePart>,
        acks: i16,
        timeout_ms: i32,
    ) -> Option<oneshot::Receiver<Vec<PartitionOutcome>>> {
        let (reply, answer) = oneshot::channel();
        self.send(shard, Message::Produce { parts, acks, timeout_ms, reply }).then_some(answer)
    }

    /// The outcomes of appends sent with `produce`; a shard that is gone gives
    /// UNKNOWN_SERVER_ERROR for each of its `count` partitions.
    pub async fn produced(
        answer: Option<oneshot::Receiver<Vec<PartitionOutcome>>>,
        count: usize,
    ) -> Vec<PartitionOutcome> {
        answers(answer, count).await.unwrap_or_else(|| {
            let failed = PartitionOutcome::refused(
                ResponseError::UnknownServerError,
                "the shard owning the partition is gone".to_string(),
            );
            vec![failed; count]
        })
    }

    /// Sends the read of `parts` to `shard`, which owns them, without waiting: the answer
    /// (in the order of `parts`) is awaited with `fetched`, so several shards read at once.
    pub fn fetch(
        &self,
        shard: usize,
        parts: Vec<FetchPart>,
        replica: i32,
        max_bytes: u64,
    ) -> Option<oneshot::Receiver<Vec<RemoteRead>>> {
        let (reply, answer) = oneshot::channel();
        self.send(shard, Message::Fetch { parts, replica, max_bytes, reply }).then_some(answer)
    }

    /// The reads sent with `fetch`, as this shard's regions; a shard that is gone gives
    /// UNKNOWN_SERVER_ERROR for each of its `count` partitions.
    pub async fn fetched(
        answer: Option<oneshot::Receiver<Vec<RemoteRead>>>,
        count: usize,
    ) -> Vec<PartitionRead> {
        let failed = || PartitionRead::refused(ResponseError::UnknownServerError);
        let Some(remote) = answers(answer, count).await else {
            return (0..count).map(|_| failed()).collect();
        };
        remote
            .into_iter()
            .map(|remote| PartitionRead {
                error: remote.error,
                high_watermark: remote.high_watermark,
                last_stable_offset: remote.last_stable_offset,
                aborted: remote.aborted,
                log_start_offset: remote.log_start_offset,
                hw_moved: remote.hw_moved,
                regions: remote
                    .regions
                    .into_iter()
                    .map(|r| FileRegion {
                        file: Rc::new(File::from_shared(r.file)),
                        segment_base_offset: r.segment_base_offset,
                        position: r.position,
                        len: r.len,
                        first_offset: r.first_offset,
                        next_offset: r.next_offset,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sends `shard` the message `ask` builds around a reply channel and awaits the answer;
    /// None if the shard is gone or dropped the message.
    async fn ask<T>(
        &self,
        shard: usize,
        ask: impl FnOnce(oneshot::Sender<T>) -> Message,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if !self.send(shard, ask(reply)) {
            return None;
        }
        answer.await.ok()
    }

    pub async fn list_offset(
        &self,
        shard: usize,
        topic: String,
        index: i32,
        timestamp: i64,
        read_committed: bool,
    ) -> OffsetAnswer {
        let answer = self
            .ask(shard, |reply| Message::ListOffset {
                topic,
                index,
                timestamp,
                read_committed,
                reply,
            })
            .await;
        answer.unwrap_or(OffsetAnswer::refused(ResponseError::UnknownServerError))
    }

    /// DeleteRecords on a partition `shard` owns (see `handlers::delete_records_before`).
    pub async fn delete_records(
        &self,
        shard: usize,
        topic: String,
        index: i32,
        offset: i64,
    ) -> OffsetAnswer {
        let answer =
            self.ask(shard, |reply| Message::DeleteRecords { topic, index, offset, reply }).await;
        answer.unwrap_or(OffsetAnswer::refused(ResponseError::UnknownServerError))
    }

    /// A transaction marker on a partition `shard` owns (`handlers::txn::write_marker_here`).
    #[allow(clippy::too_many_arguments)]
    pub async fn write_marker(
        &self,
        shard: usize,
        topic: String,
        index: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Option<ResponseError> {
        let answer = self
            .ask(shard, |reply| Message::WriteMarker {
                topic,
                index,
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
                reply,
            })
            .await;
        answer.unwrap_or(Some(ResponseError::NotLeaderOrFollower))
    }

    /// Asks shard 0's coordinator about a partition in a transaction (`TxnCheck`).
    pub async fn check_txn(
        &self,
        check: crate::txn::TxnCheck,
        topic: String,
        index: i32,
    ) -> Option<ResponseError> {
        let answer = self.ask(0, |reply| Message::CheckTxn { check, topic, index, reply }).await;
        answer.unwrap_or(Some(ResponseError::CoordinatorNotAvailable))
    }

    /// DeleteRecords' wait on a partition `shard` owns (`handlers::low_watermark_reaching`).
    pub async fn low_watermark(
        &self,
        shard: usize,
        topic: String,
        index: i32,
        offset: i64,
        deadline: tokio::time::Instant,
    ) -> OffsetAnswer {
        let answer = self
            .ask(shard, |reply| Message::LowWatermark { topic, index, offset, deadline, reply })
            .await;
        answer.unwrap_or(OffsetAnswer::refused(ResponseError::UnknownServerError))
    }

    /// Asks `shard` for the partitions it hosts (see `handlers::log_dir_partitions`), without
    /// waiting: the answer is awaited with `log_dir_partitions_of`, so the shards look at once.
    pub fn log_dir_partitions(
        &self,
        shard: usize,
        wanted: Option<Vec<(String, i32)>>,
    ) -> Option<oneshot::Receiver<Vec<LogDirPartition>>> {
        let (reply, answer) = oneshot::channel();
        self.send(shard, Message::LogDirPartitions { wanted, reply }).then_some(answer)
    }

    /// The partitions a shard asked with `log_dir_partitions` hosts; `None` if it is gone.
    pub async fn log_dir_partitions_of(
        answer: Option<oneshot::Receiver<Vec<LogDirPartition>>>,
    ) -> Option<Vec<LogDirPartition>> {
        answer?.await.ok()
    }

    /// The idempotent producers of a partition `shard` owns (see
    /// `handlers::partition_producers`).
    pub async fn producers(&self, shard: usize, topic: String, index: i32) -> ProducersAnswer {
        let answer = self.ask(shard, |reply| Message::Producers { topic, index, reply }).await;
        answer.unwrap_or(ProducersAnswer::refused(ResponseError::UnknownServerError))
    }

    /// Where an epoch ended in a partition `shard` owns (see `handlers::epochs::epoch_end`).
    pub async fn epoch_end(
        &self,
        shard: usize,
        topic: String,
        index: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> EpochEnd {
        let answer = self
            .ask(shard, |reply| Message::EpochEnd {
                topic,
                index,
                current_leader_epoch,
                leader_epoch,
                reply,
            })
            .await;
        answer.unwrap_or(EpochEnd::refused(ResponseError::UnknownServerError))
    }

    /// Sends a whole request to shard 0 and returns its answer.
    pub async fn forward(&self, payload: Bytes, peer: Option<SocketAddr>) -> FrameReply {
        let (reply, answer) = oneshot::channel();
        if !self.send(0, Message::Frame { payload, peer, reply }) {
            return FrameReply::Close("shard 0 is gone".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| FrameReply::Close("shard 0 dropped the request".to_string()))
    }

    /// Shard 0, after creating or deleting topics, or changing topic `changed`: every other
    /// shard opens, drops or changes its share before the client hears back.
    pub async fn topics_changed(&self, changed: Option<&str>) {
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            let changed = changed.map(str::to_string);
            if self.send(shard, Message::TopicsChanged { changed, reply }) {
                let _ = answer.await;
            }
        }
    }

    /// Every other shard takes in changed broker configs, one after the other.
    pub async fn broker_configs_changed(&self, configs: &fjord_replication::DynamicBrokerConfigs) {
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            let configs = configs.clone();
            if self.send(shard, Message::BrokerConfigsChanged { configs, reply }) {
                let _ = answer.await;
            }
        }
    }

    /// Shard 0 in a cluster, with a new state: every other shard applies it to its own
    /// partitions (and takes their roles) before shard 0 applies it and answers from it.
    /// They apply it at once, each on its own thread.
    pub async fn apply_state_on_others(&self, state: &Arc<ClusterState>) {
        let mut answers = Vec::with_capacity(self.count);
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            if self.send(shard, Message::ApplyState { state: Arc::clone(state), reply }) {
                answers.push(answer);
            }
        }
        for answer in answers {
            let _ = answer.await;
        }
    }

    /// Shard 0 at shutdown: every other shard drains and closes its partitions first.
    pub async fn shut_down_others(&self) {
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            if self.send(shard, Message::Shutdown { reply }) {
                let _ = answer.await;
            }
        }
    }
}

impl RemoteRead {
    /// A read of this shard's, with each segment file as a descriptor another thread can own.
    pub(crate) fn from_local(read: PartitionRead) -> RemoteRead {
        let mut regions = Vec::with_capacity(read.regions.len());
        let mut error = read.error;
        for region in read.regions {
            match region.file.share() {
                Ok(file) => regions.push(RemoteRegion {
                    file,
                    segment_base_offset: region.segment_base_offset,
                    position: region.position,
                    len: region.len,
                    first_offset: region.first_offset,
                    next_offset: region.next_offset,
                }),
                Err(e) => {
                    warn!(%e, "cannot hand a segment file to another shard");
                    error = Some(ResponseError::KafkaStorageError);
                    regions.clear();
                    break;
                }
            }
        }
        RemoteRead {
            error,
            high_watermark: read.high_watermark,
            last_stable_offset: read.last_stable_offset,
            aborted: read.aborted,
            log_start_offset: read.log_start_offset,
            regions,
            hw_moved: read.hw_moved,
        }
    }
}
