//! The transaction coordinator: Kafka's `TransactionCoordinator` for the transactional ids
//! whose `__transaction_state` partitions this broker holds (all of them on one broker).
//!
//! A transactional id's state moves as Kafka's (`TransactionState`):
//! ```text
//! Empty | CompleteCommit | CompleteAbort --AddPartitionsToTxn--> Ongoing
//! Ongoing --EndTxn(commit)--> PrepareCommit --markers written--> CompleteCommit
//! Ongoing --EndTxn(abort), or its timeout, or a new InitProducerId--> PrepareAbort
//!         --markers written--> CompleteAbort
//! Empty | CompleteCommit | CompleteAbort --InitProducerId--> Empty (epoch + 1)
//! Empty | CompleteCommit | CompleteAbort --transactional.id.expiration.ms--> (tombstone)
//! ```
//! Every change is appended (fdatasync'd, replicated to the in-sync set) to the id's
//! partition of `__transaction_state` before it takes effect in memory, so a restart (which
//! replays the log) resumes where the log says: a transaction found in Prepare* is
//! completed (its markers written again, which the partitions take as retries), one found
//! Ongoing runs to its timeout. One change per id at a time: while one is being written, the
//! id answers CONCURRENT_TRANSACTIONS, which clients retry.
//!
//! Markers go through `TxnEnv::write_markers` (the broker: each partition's owning shard
//! appends a control batch), so this module knows nothing of shards or connections.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;
use fjord_storage::batch::{build, BatchHeader};
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::group::offsets_partition_index;
use crate::group::offsets_record::parse_records;
use crate::partition::Partition;

pub mod record;

use record::{decode_key, decode_value, encode_key, encode_value, TxnRecord};

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Partitions one transaction may span (bounds a record and the markers of one end).
pub const PARTITIONS_PER_TXN_MAX: usize = 100_000;
/// Transactional ids one broker coordinates.
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;
/// An epoch at this value or above is exhausted: the id gets a new producer id (Kafka's
/// `isEpochExhausted`).
const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;
/// How long a change to `__transaction_state` waits for the in-sync replicas.
const WRITE_REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes read at a time while replaying the transaction log.
const REPLAY_READ_BYTES: u64 = 1024 * 1024;
/// How long EndTxn waits for its transaction's markers before it answers anyway.
const END_TXN_COMPLETION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a partition leader's add (transactions v2) waits for the id's change being
/// written or its last transaction's markers, before it answers CONCURRENT_TRANSACTIONS.
const ADD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between rounds of markers that could not all be written (a partition without its
/// leader, say); rounds go on until every marker is written or the coordinator gives up
/// the id.
const MARKER_RETRY_MS: u64 = 500;

/// The configs `__transaction_state` is created with, as Kafka creates it.
pub fn txn_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
        ("compression.type".to_string(), "uncompressed".to_string()),
    ])
}

/// Kafka's `TransactionState`, with its status codes in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions answer (and filter by).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..=7).filter_map(TxnState::from_code).find(|s| s.name() == name)
    }

    fn is_complete_or_empty(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// The largest timeout a producer may ask for (`transaction.max.timeout.ms`).
    pub max_timeout_ms: i32,
    /// How long an id without transactions is kept (`transactional.id.expiration.ms`).
    pub id_expiration_ms: i64,
    /// How often timed-out transactions are aborted and expired ids removed
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub check_interval_ms: u64,
    /// In-sync replicas a change to `__transaction_state` needs.
    pub min_insync: i32,
    /// Whether a change is fdatasync'd before it counts, as an acks=all produce is
    /// (`--fsync-acks-all`; without it durability comes from the in-sync replicas, as in
    /// Kafka).
    pub sync: bool,
}

/// What the coordinator needs of the broker: markers written on partition leaders, and
/// producer ids.
pub trait TxnEnv {
    /// Writes the marker on each partition; each partition's error, if it failed.
    fn write_markers(&self, markers: Markers) -> LocalFuture<Vec<Option<ResponseError>>>;
    /// A new producer id (`None` if none can be handed out now).
    fn allocate_producer_id(&self) -> LocalFuture<Option<i64>>;
}

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The markers that end one transaction.
#[derive(Debug, Clone)]
pub struct Markers {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// A transactional id's state in memory.
#[derive(Debug, Clone)]
struct TxnMetadata {
    record: TxnRecord,
    /// The epoch before the last InitProducerId bump (a retry of it gets the same answer).
    last_producer_epoch: i16,
    /// A change is being written: the id answers CONCURRENT_TRANSACTIONS meanwhile.
    pending: bool,
}

/// A Produce's transactional id and request version, for the partition leader's check.
#[derive(Debug, Clone)]
pub struct TxnWrite {
    pub transactional_id: Arc<str>,
    pub request_version: i16,
}

/// What a partition leader asks an id's coordinator about one partition: is it in the
/// producer's transaction (`add` false), or add it (`add` true, transactions v2).
#[derive(Debug, Clone)]
pub struct TxnCheck {
    pub transactional_id: Arc<str>,
    pub producer_id: i64,
    pub epoch: i16,
    pub add: bool,
}

/// What EndTxn v5's checks decide: the answer to a retry, or the Prepare* to store (with
/// the epoch to remember as the last).
enum EndV2 {
    Retry((i64, i16)),
    Prepare((TxnRecord, i16)),
}

/// What InitProducerId answers.
pub type InitAnswer = Result<(i64, i16), ResponseError>;

pub struct TxnCoordinator {
    me: Weak<TxnCoordinator>,
    config: TxnConfig,
    env: Rc<dyn TxnEnv>,
    txns: RefCell<HashMap<String, TxnMetadata>>,
    /// The partitions of `__transaction_state`; empty until the topic exists.
    log: RefCell<Vec<Option<Rc<Partition>>>>,
    /// The partitions whose ids this broker coordinates: those it leads, replayed.
    /// Each with the leader epoch it was taken over in: a leadership lost and regained
    /// between two syncs (another coordinator wrote meanwhile) is taken over again.
    owned: RefCell<BTreeMap<usize, i32>>,
    /// Partitions being replayed (their ids answer COORDINATOR_LOAD_IN_PROGRESS).
    loading: RefCell<BTreeSet<usize>>,
    /// The first `sync` is done.
    started: Cell<bool>,
    /// Ids whose completion task runs (`spawn_completion`).
    completing: RefCell<std::collections::HashSet<String>>,
    /// Told whenever a change of an id is stored or given up.
    changed: tokio::sync::Notify,
    /// New ids whose first InitProducerId runs: a second one at the same time answers
    /// CONCURRENT_TRANSACTIONS instead of allocating another producer id.
    creating: RefCell<std::collections::HashSet<String>>,
}

/// Takes an id out of `TxnCoordinator::creating` when its first InitProducerId ends.
struct Creating<'a> {
    set: &'a RefCell<std::collections::HashSet<String>>,
    id: &'a str,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.set.borrow_mut().remove(self.id);
    }
}

/// A transactional id's place in `__transaction_state`, as Kafka's `partitionFor`.
pub fn txn_partition_index(transactional_id: &str, partitions: usize) -> usize {
    offsets_partition_index(transactional_id, partitions)
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig, env: Rc<dyn TxnEnv>) -> Rc<TxnCoordinator> {
        Rc::new_cyclic(|me| TxnCoordinator {
            me: me.clone(),
            config,
            env,
            txns: RefCell::new(HashMap::new()),
            log: RefCell::new(Vec::new()),
            owned: RefCell::new(BTreeMap::new()),
            loading: RefCell::new(BTreeSet::new()),
            started: Cell::new(false),
            completing: RefCell::new(std::collections::HashSet::new()),
            changed: tokio::sync::Notify::new(),
            creating: RefCell::new(std::collections::HashSet::new()),
        })
    }

    pub fn is_loaded(&self) -> bool {
        self.started.get()
    }

    /// Takes over the ids of the partitions of `__transaction_state` this broker leads
    /// (replaying each: ids found in Prepare* get their markers written again and are
    /// completed, open ones run to their timeout) and gives up those of the partitions it
    /// no longer leads. Called with the topic's partitions whenever the leadership may have
    /// moved (on one broker: once, owning all).
    pub async fn sync(&self, partitions: Vec<Option<Rc<Partition>>>) {
        *self.log.borrow_mut() = partitions.clone();
        let count = partitions.len();
        for (index, partition) in partitions.iter().enumerate() {
            let leads = partition.as_ref().is_some_and(|p| p.replica.is_leader());
            let epoch = partition.as_ref().map_or(-1, |p| p.replica.leader_epoch());
            let owned_in = self.owned.borrow().get(&index).copied();
            let owned = owned_in.is_some();
            if leads && owned_in != Some(epoch) && !self.loading.borrow().contains(&index) {
                let partition = Rc::clone(partition.as_ref().expect("led"));
                self.take_over(index, count, &partition).await;
            } else if !leads && owned {
                self.owned.borrow_mut().remove(&index);
                self.txns.borrow_mut().retain(|id, _| txn_partition_index(id, count) != index);
                info!(
                    partition = index,
                    "no longer coordinating the transactional ids of a transaction state partition"
                );
            }
        }
        self.started.set(true);
    }

    async fn take_over(&self, index: usize, count: usize, partition: &Rc<Partition>) {
        self.loading.borrow_mut().insert(index);
        self.txns.borrow_mut().retain(|id, _| txn_partition_index(id, count) != index);
        let records = match self.replay(partition).await {
            Ok(records) => records,
            Err(error) => {
                warn!(partition = ?partition, %error, "cannot replay a transaction state partition");
                self.loading.borrow_mut().remove(&index);
                return;
            }
        };
        self.loading.borrow_mut().remove(&index);
        let epoch = partition.replica.leader_epoch();
        self.owned.borrow_mut().insert(index, epoch);
        let unfinished: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(id, t)| {
                txn_partition_index(id, count) == index
                    && matches!(t.record.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if records > 0 {
            info!(
                partition = index,
                records,
                completing = unfinished.len(),
                "took over the transactional ids of a transaction state partition"
            );
        }
        for id in unfinished {
            self.spawn_completion(id);
        }
    }

    async fn replay(&self, partition: &Partition) -> Result<u64, fjord_storage::StorageError> {
        let mut offset = partition.log_start_offset();
        let end = partition.log_end_offset();
        let mut records = 0u64;
        while offset < end {
            let read = partition.read(offset, REPLAY_READ_BYTES).await?;
            let Some(next) = read.next_offset() else { break };
            let bytes = read.read_bytes().await?;
            let mut at = 0usize;
            while let Some(header) = bytes.get(at..).and_then(BatchHeader::view) {
                let size = header.size() as usize;
                let Some(batch_bytes) = bytes.get(at..at + size) else { break };
                if header.compression_codec() == 0 && !header.is_control() {
                    for (key, value) in parse_records(batch_bytes) {
                        records += 1;
                        self.apply_record(&key, value.as_deref());
                    }
                }
                at += size;
            }
            offset = next;
        }
        Ok(records)
    }

    fn apply_record(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(id) = decode_key(key) else { return };
        let mut txns = self.txns.borrow_mut();
        match value.map(decode_value) {
            None => {
                txns.remove(&id);
            }
            Some(Some(record)) => {
                txns.insert(id, TxnMetadata { record, last_producer_epoch: -1, pending: false });
            }
            Some(None) => warn!(
                transactional_id = id,
                "a transaction state record that does not parse was skipped"
            ),
        }
    }

    /// The partition of `__transaction_state` an id lives in, if this broker holds it.
    fn partition_of(&self, transactional_id: &str) -> Option<Rc<Partition>> {
        let log = self.log.borrow();
        let index = txn_partition_index(transactional_id, log.len());
        log.get(index).cloned().flatten()
    }

    /// Checks common to every request about an id: coordinated here, and loaded.
    fn check_owner(&self, transactional_id: &str) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if !self.started.get() {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        let index = txn_partition_index(transactional_id, self.log.borrow().len());
        if self.loading.borrow().contains(&index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        let owned = self.owned.borrow().contains_key(&index);
        match self.partition_of(transactional_id) {
            Some(partition) if owned && partition.replica.is_leader() => Ok(()),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// Appends a change of `transactional_id` (a tombstone for `None`) and waits until it
    /// is durable and replicated.
    async fn write(
        &self,
        transactional_id: &str,
        record: Option<&TxnRecord>,
    ) -> Result<(), ResponseError> {
        let partition = self.partition_of(transactional_id).ok_or(ResponseError::NotCoordinator)?;
        if !partition.replica.is_leader() {
            return Err(ResponseError::NotCoordinator);
        }
        let key = encode_key(transactional_id).ok_or(ResponseError::InvalidRequest)?;
        let value = record.map(encode_value);
        let built =
            [build::Record { key: Some(&key), value: value.as_deref(), timestamp_delta: 0 }];
        let batch = build::batch(&built, now_ms());
        let epoch = partition.replica.leader_epoch().max(0);
        let appended = partition.append(Bytes::from(batch), epoch).await.map_err(|error| {
            warn!(transactional_id, ?error, "cannot append to {TXN_TOPIC}");
            ResponseError::NotCoordinator
        })?;
        // Complete* is not synced on its own (the next change of any id in the partition
        // syncs it with its own): lost in a crash, the replay finds Prepare* and writes the
        // markers again, which partitions take as any marker. One fdatasync less per commit.
        let completes = record
            .is_some_and(|r| matches!(r.state, TxnState::CompleteCommit | TxnState::CompleteAbort));
        if self.config.sync && !completes {
            partition.flush_to(appended.last_offset + 1).await.map_err(|error| {
                warn!(transactional_id, %error, "cannot sync {TXN_TOPIC}");
                ResponseError::NotCoordinator
            })?;
        }
        partition
            .wait_replicated(
                appended.last_offset + 1,
                WRITE_REPLICATION_WAIT,
                self.config.min_insync,
            )
            .await
            .map_err(|wait| {
                warn!(transactional_id, ?wait, "transaction state not replicated in time");
                ResponseError::CoordinatorNotAvailable
            })
    }

    /// Writes `record` as the id's new state while the id is marked pending; applies it in
    /// memory once stored (or clears the mark if the write failed).
    async fn transition(
        &self,
        transactional_id: &str,
        record: TxnRecord,
        last_producer_epoch: i16,
    ) -> Result<(), ResponseError> {
        {
            let mut txns = self.txns.borrow_mut();
            let entry = txns.entry(transactional_id.to_string()).or_insert_with(|| TxnMetadata {
                record: record.clone(),
                last_producer_epoch: -1,
                pending: false,
            });
            entry.pending = true;
        }
        let written = self.write(transactional_id, Some(&record)).await;
        if let Some(entry) = self.txns.borrow_mut().get_mut(transactional_id) {
            entry.pending = false;
            if written.is_ok() {
                entry.record = record;
                entry.last_producer_epoch = last_producer_epoch;
            }
        }
        self.changed.notify_waiters();
        written
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> InitAnswer {
        self.check_owner(transactional_id)?;
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let known = self.txns.borrow().get(transactional_id).cloned();
        let mut _creating = None;
        let metadata = match known {
            Some(metadata) => metadata,
            None => {
                if !self.creating.borrow_mut().insert(transactional_id.to_string()) {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                _creating = Some(Creating { set: &self.creating, id: transactional_id });
                if self.txns.borrow().len() >= TRANSACTIONAL_IDS_MAX {
                    warn!(limit = TRANSACTIONAL_IDS_MAX, "too many transactional ids");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                let producer_id = self
                    .env
                    .allocate_producer_id()
                    .await
                    .ok_or(ResponseError::CoordinatorNotAvailable)?;
                TxnMetadata {
                    record: TxnRecord {
                        producer_id,
                        producer_epoch: -1,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        last_update_ms: now_ms(),
                        start_ms: -1,
                        previous_producer_id: -1,
                        next_producer_id: -1,
                        client_version: 0,
                    },
                    last_producer_epoch: -1,
                    pending: false,
                }
            }
        };
        let current = &metadata.record;
        if let Some((expected_id, expected_epoch)) = expected {
            let matches = current.producer_epoch == -1
                || expected_id == current.producer_id
                || (expected_epoch >= EPOCH_EXHAUSTED);
            if !matches {
                return Err(ResponseError::ProducerFenced);
            }
        }
        if metadata.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(ResponseError::ConcurrentTransactions);
            }
            TxnState::Ongoing => {
                // The old producer's transaction is aborted and the producer fenced; the new
                // one retries until that is done.
                info!(
                    transactional_id,
                    producer_id = current.producer_id,
                    epoch = current.producer_epoch,
                    "a new producer of the id aborts the open transaction"
                );
                self.abort_fenced(transactional_id.to_string());
                return Err(ResponseError::ConcurrentTransactions);
            }
            TxnState::Dead => return Err(ResponseError::ConcurrentTransactions),
            _ => {}
        }
        let mut next = current.clone();
        let mut last = current.producer_epoch;
        let exhausted = current.producer_epoch >= EPOCH_EXHAUSTED
            && expected.is_none_or(|(_, epoch)| epoch == current.producer_epoch);
        if exhausted {
            next.producer_id = self
                .env
                .allocate_producer_id()
                .await
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            next.producer_epoch = 0;
            last = -1;
        } else {
            match expected {
                Some((_, epoch))
                    if epoch == metadata.last_producer_epoch && epoch != current.producer_epoch =>
                {
                    // A retry of the InitProducerId that made the current epoch.
                    return Ok((current.producer_id, current.producer_epoch));
                }
                Some((_, epoch))
                    if current.producer_epoch != -1 && epoch != current.producer_epoch =>
                {
                    return Err(ResponseError::ProducerFenced);
                }
                None => last = -1,
                _ => {}
            }
            next.producer_epoch = current.producer_epoch + 1;
        }
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.start_ms = -1;
        next.previous_producer_id = -1;
        next.next_producer_id = -1;
        next.client_version = 0;
        next.timeout_ms = timeout_ms;
        next.last_update_ms = now_ms();
        self.transition(transactional_id, next.clone(), last).await?;
        info!(
            transactional_id,
            producer_id = next.producer_id,
            epoch = next.producer_epoch,
            "transactional producer initialized"
        );
        Ok((next.producer_id, next.producer_epoch))
    }

    /// Checks the producer's id and epoch against the id's: INVALID_PRODUCER_ID_MAPPING,
    /// PRODUCER_FENCED, CONCURRENT_TRANSACTIONS while a change is written.
    fn check_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TxnMetadata, ResponseError> {
        self.check_owner(transactional_id)?;
        let txns = self.txns.borrow();
        let metadata = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if metadata.record.hands_out(producer_id, epoch) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if metadata.record.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if metadata.record.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if metadata.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(metadata.clone())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition). `v2`:
    /// a partition leader's add for a producer of transactions v2 (its Produce v12 or
    /// TxnOffsetCommit v5 are the add), which marks the transaction as one of protocol v2.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        v2: bool,
    ) -> Result<(), ResponseError> {
        if !v2 {
            return self.add_once(transactional_id, producer_id, epoch, partitions, false).await;
        }
        // The leaders of a transaction's partitions add them at once, as its first batches
        // arrive: they wait for each other's changes (and for the last transaction's
        // markers) instead of sending their producer back to retry, so its later batches,
        // pipelined behind the refused first ones, never find the partition added first.
        let deadline = tokio::time::Instant::now() + ADD_WAIT;
        loop {
            let changed = self.changed.notified();
            match self.add_once(transactional_id, producer_id, epoch, partitions, true).await {
                Err(ResponseError::ConcurrentTransactions)
                    if tokio::time::Instant::now() < deadline =>
                {
                    let _ = tokio::time::timeout_at(deadline, changed).await;
                }
                other => return other,
            }
        }
    }

    async fn add_once(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        v2: bool,
    ) -> Result<(), ResponseError> {
        let metadata = self.check_producer(transactional_id, producer_id, epoch)?;
        let record = &metadata.record;
        match record.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(ResponseError::ConcurrentTransactions);
            }
            TxnState::Ongoing if partitions.iter().all(|p| record.partitions.contains(p)) => {
                return Ok(());
            }
            TxnState::Dead => return Err(ResponseError::InvalidTxnState),
            _ => {}
        }
        if record.partitions.len() + partitions.len() > PARTITIONS_PER_TXN_MAX {
            return Err(ResponseError::InvalidRequest);
        }
        let mut next = record.clone();
        if next.state.is_complete_or_empty() {
            next.partitions.clear();
            next.start_ms = now_ms();
            next.client_version = if v2 { 2 } else { 0 };
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms();
        self.transition(transactional_id, next, metadata.last_producer_epoch).await
    }

    /// AddPartitionsToTxn v4+ with `verify_only`: whether each partition is in the open
    /// transaction (a partition leader's check of KIP-890): TRANSACTION_ABORTABLE if not.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_owner(transactional_id)?;
        let txns = self.txns.borrow();
        let metadata = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if metadata.record.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if metadata.record.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if matches!(metadata.record.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|p| {
                let open = metadata.record.state == TxnState::Ongoing;
                (!(open && metadata.record.partitions.contains(p)))
                    .then_some(ResponseError::TransactionAbortable)
            })
            .collect())
    }

    /// EndTxn. Prepare* is stored and answered (after the markers, within a bound); the
    /// markers and the Complete* record follow in the background. With `v2` (EndTxn v5,
    /// KIP-890 part 2) the epoch goes up by one at every end, the markers carry the new
    /// epoch (a late write of the ended transaction is refused by every partition), and the
    /// answer is the producer id and epoch of the producer's next transaction.
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        v2: bool,
    ) -> Result<(i64, i16), ResponseError> {
        let (next, last_epoch) = if v2 {
            match self.end_v2(transactional_id, producer_id, epoch, commit).await? {
                EndV2::Retry(answer) => return Ok(answer),
                EndV2::Prepare(next) => next,
            }
        } else {
            let metadata = self.check_producer(transactional_id, producer_id, epoch)?;
            let record = &metadata.record;
            match (record.state, commit) {
                (TxnState::Ongoing, _) => {}
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    return Ok((record.producer_id, record.producer_epoch))
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    return Err(ResponseError::ConcurrentTransactions);
                }
                _ => return Err(ResponseError::InvalidTxnState),
            }
            let mut next = record.clone();
            next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
            next.last_update_ms = now_ms();
            (next, metadata.last_producer_epoch)
        };
        let answer = if next.next_producer_id != -1 {
            (next.next_producer_id, 0)
        } else {
            (next.producer_id, next.producer_epoch)
        };
        self.transition(transactional_id, next, last_epoch).await?;
        // Answered once the markers are written and Complete* stored, within a bound: the
        // producer's next AddPartitionsToTxn would otherwise find the id still preparing and
        // back off (CONCURRENT_TRANSACTIONS; the Java client waits 20 ms). Past the bound
        // the answer goes (the transaction is decided and stored) and completion goes on.
        if let Some(completion) = self.spawn_completion(transactional_id.to_string()) {
            let _ = tokio::time::timeout(END_TXN_COMPLETION_WAIT, completion).await;
        }
        Ok(answer)
    }

    /// EndTxn v5's checks and next state, as Kafka's coordinator for transactions v2: a
    /// retry is told apart from the next end by the epoch (the stored one is the retry's
    /// plus one); an abort with nothing open still bumps the epoch (fencing writes that
    /// may be on their way to partitions that never told the coordinator).
    async fn end_v2(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<EndV2, ResponseError> {
        self.check_owner(transactional_id)?;
        let metadata = self
            .txns
            .borrow()
            .get(transactional_id)
            .cloned()
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let record = &metadata.record;
        let retry_on_overflow = record.previous_producer_id == producer_id
            && epoch == i16::MAX - 1
            && record.producer_epoch == 0;
        let retry_on_bump = i32::from(record.producer_epoch) == i32::from(epoch) + 1;
        let valid_epoch = match record.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == record.producer_epoch
            }
            _ => epoch == record.producer_epoch,
        };
        if record.hands_out(producer_id, epoch) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if record.producer_id != producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if metadata.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let retry = retry_on_bump || retry_on_overflow;
        let current = (record.producer_id, record.producer_epoch);
        let prepare = match (record.state, commit) {
            (TxnState::Ongoing, _) => true,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if retry => {
                return Ok(EndV2::Retry(current));
            }
            (TxnState::CompleteCommit, false) if !retry => false,
            (TxnState::CompleteAbort | TxnState::Empty, false) => false,
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(ResponseError::ConcurrentTransactions);
            }
            _ => {
                info!(
                    transactional_id,
                    state = record.state.name(),
                    commit,
                    "EndTxn in a state that cannot end so"
                );
                return Err(ResponseError::InvalidTxnState);
            }
        };
        let mut next = record.clone();
        if !prepare {
            next.partitions.clear();
        }
        next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        next.client_version = 2;
        next.producer_epoch = record.producer_epoch.saturating_add(1);
        next.previous_producer_id = -1;
        next.next_producer_id = -1;
        if record.producer_epoch >= EPOCH_EXHAUSTED {
            next.next_producer_id = self
                .env
                .allocate_producer_id()
                .await
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
        }
        next.last_update_ms = now_ms();
        Ok(EndV2::Prepare((next, record.producer_epoch)))
    }

    /// An open transaction whose producer is replaced or timed out: the epoch goes up (the
    /// old producer is fenced) and the transaction is aborted, in the background.
    fn abort_fenced(&self, transactional_id: String) {
        let Some(me) = self.me.upgrade() else { return };
        fjord_storage::io::spawn(async move {
            let Some(metadata) = me.txns.borrow().get(&transactional_id).cloned() else { return };
            if metadata.pending || metadata.record.state != TxnState::Ongoing {
                return;
            }
            let mut next = metadata.record.clone();
            // Kafka's fence: one up; transactions v2 add their bump at every end, so the
            // producer's retried EndTxn (its epoch plus one) is not taken for a retry.
            let bump = if next.is_v2() { 2 } else { 1 };
            next.producer_epoch = next.producer_epoch.saturating_add(bump);
            next.state = TxnState::PrepareAbort;
            next.last_update_ms = now_ms();
            if let Err(error) = me.transition(&transactional_id, next, -1).await {
                warn!(transactional_id, ?error, "cannot store the abort of a fenced transaction");
                return;
            }
            me.complete(&transactional_id).await;
        });
    }

    /// Completes a prepared transaction in a task; one task per id at a time (a second
    /// would race the first's Complete* record with later changes).
    fn spawn_completion(&self, transactional_id: String) -> Option<tokio::task::JoinHandle<()>> {
        let me = self.me.upgrade()?;
        if !self.completing.borrow_mut().insert(transactional_id.clone()) {
            return None;
        }
        Some(fjord_storage::io::spawn(async move {
            me.complete(&transactional_id).await;
            me.completing.borrow_mut().remove(&transactional_id);
        }))
    }

    /// Writes the markers of a prepared transaction until all are written, then stores
    /// Complete*.
    async fn complete(&self, transactional_id: &str) {
        // Partitions still without their marker (those that failed a round are retried,
        // the others are not written twice).
        let mut remaining: Option<Vec<(String, i32)>> = None;
        loop {
            let Some(metadata) = self.txns.borrow().get(transactional_id).cloned() else { return };
            let commit = match metadata.record.state {
                TxnState::PrepareCommit => true,
                TxnState::PrepareAbort => false,
                _ => return,
            };
            if self.check_owner(transactional_id).is_err() {
                return;
            }
            let partitions = remaining
                .take()
                .unwrap_or_else(|| metadata.record.partitions.iter().cloned().collect());
            if !partitions.is_empty() {
                let markers = Markers {
                    producer_id: metadata.record.producer_id,
                    producer_epoch: metadata.record.producer_epoch,
                    commit,
                    coordinator_epoch: self.coordinator_epoch(transactional_id),
                    partitions: partitions.clone(),
                };
                let results = self.env.write_markers(markers).await;
                let mut retry = Vec::new();
                for (partition, error) in partitions.into_iter().zip(results) {
                    match error {
                        None => {}
                        Some(error) if retriable_marker_error(&error) => retry.push(partition),
                        Some(error) => warn!(
                            transactional_id,
                            topic = partition.0,
                            partition = partition.1,
                            ?error,
                            "a transaction marker was refused; that partition is left as it is"
                        ),
                    }
                }
                if !retry.is_empty() {
                    warn!(transactional_id, failed = ?retry, "transaction markers not written yet; retrying");
                    remaining = Some(retry);
                    tokio::time::sleep(std::time::Duration::from_millis(MARKER_RETRY_MS)).await;
                    continue;
                }
            }
            remaining = Some(Vec::new());
            let mut next = metadata.record.clone();
            next.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
            next.last_update_ms = now_ms();
            if next.next_producer_id != -1 {
                // The epoch overflowed: the producer goes on with the new id.
                next.previous_producer_id = next.producer_id;
                next.producer_id = next.next_producer_id;
                next.producer_epoch = 0;
                next.next_producer_id = -1;
            }
            match self.transition(transactional_id, next, metadata.last_producer_epoch).await {
                Ok(()) => {
                    info!(
                        transactional_id,
                        commit,
                        partitions = metadata.record.partitions.len(),
                        "transaction completed"
                    );
                    return;
                }
                Err(ResponseError::NotCoordinator) => return,
                Err(error) => {
                    warn!(
                        transactional_id,
                        ?error,
                        "cannot store a completed transaction; retrying"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(MARKER_RETRY_MS)).await;
                }
            }
        }
    }

    /// The epoch of the id's partition's leadership: markers carry it, so a partition can
    /// tell a deposed coordinator's.
    fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        self.partition_of(transactional_id).map_or(0, |p| p.replica.leader_epoch().max(0))
    }

    /// From the coordinator's timer: aborts transactions open past their timeout (fencing
    /// their producer) and removes ids unused for `transactional.id.expiration.ms`.
    pub async fn check_timeouts(&self) {
        if !self.started.get() {
            return;
        }
        let now = now_ms();
        let (timed_out, expired): (Vec<String>, Vec<String>) = {
            let txns = self.txns.borrow();
            let timed_out = txns
                .iter()
                .filter(|(_, t)| {
                    !t.pending
                        && t.record.state == TxnState::Ongoing
                        && t.record.start_ms.saturating_add(i64::from(t.record.timeout_ms)) < now
                })
                .map(|(id, _)| id.clone())
                .collect();
            let expired = txns
                .iter()
                .filter(|(_, t)| {
                    !t.pending
                        && t.record.state.is_complete_or_empty()
                        && t.record.last_update_ms
                            <= now.saturating_sub(self.config.id_expiration_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            (timed_out, expired)
        };
        for id in timed_out {
            if self.check_owner(&id).is_ok() {
                info!(
                    transactional_id = id,
                    "transaction timed out: aborting it and fencing its producer"
                );
                self.abort_fenced(id);
            }
        }
        for id in expired {
            if self.check_owner(&id).is_err() {
                continue;
            }
            // Checked again as the id is marked: an earlier expiry's write may have let a
            // producer start using it meanwhile.
            let horizon = now_ms().saturating_sub(self.config.id_expiration_ms);
            let still_expired = match self.txns.borrow_mut().get_mut(&id) {
                Some(entry)
                    if !entry.pending
                        && entry.record.state.is_complete_or_empty()
                        && entry.record.last_update_ms <= horizon =>
                {
                    entry.pending = true;
                    true
                }
                _ => false,
            };
            if !still_expired {
                continue;
            }
            let written = self.write(&id, None).await;
            let mut txns = self.txns.borrow_mut();
            match written {
                Ok(()) => {
                    txns.remove(&id);
                    info!(transactional_id = id, "transactional id expired");
                }
                Err(error) => {
                    if let Some(entry) = txns.get_mut(&id) {
                        entry.pending = false;
                    }
                    warn!(
                        transactional_id = id,
                        ?error,
                        "cannot store the expiry of a transactional id"
                    );
                }
            }
        }
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ResponseError> {
        self.check_owner(transactional_id)?;
        let txns = self.txns.borrow();
        let metadata = txns.get(transactional_id).ok_or(ResponseError::TransactionalIdNotFound)?;
        if metadata.record.state == TxnState::Dead {
            return Err(ResponseError::TransactionalIdNotFound);
        }
        Ok(describe(transactional_id, &metadata.record))
    }

    /// Every id this broker coordinates (ListTransactions), Dead ones left out.
    pub fn list(&self) -> Vec<TxnDescription> {
        let txns = self.txns.borrow();
        let mut out: Vec<TxnDescription> = txns
            .iter()
            .filter(|(id, t)| t.record.state != TxnState::Dead && self.check_owner(id).is_ok())
            .map(|(id, t)| describe(id, &t.record))
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

/// A transactional id as DescribeTransactions and ListTransactions tell it.
#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The partitions of the open transaction (none when Empty or Complete*).
    pub partitions: Vec<(String, i32)>,
}

fn describe(transactional_id: &str, record: &TxnRecord) -> TxnDescription {
    let open = !record.state.is_complete_or_empty();
    TxnDescription {
        transactional_id: transactional_id.to_string(),
        state: record.state,
        timeout_ms: record.timeout_ms,
        start_ms: record.start_ms,
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch,
        partitions: if open { record.partitions.iter().cloned().collect() } else { Vec::new() },
    }
}

/// Marker errors a later round may get past (Kafka's coordinator retries these, and
/// UNKNOWN_TOPIC_OR_PARTITION, which in Fjord means the partition is gone from the cluster
/// state: a deleted topic's partitions are dropped from the transaction, as Kafka drops them).
fn retriable_marker_error(error: &ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::NotEnoughReplicas
            | ResponseError::NotEnoughReplicasAfterAppend
            | ResponseError::RequestTimedOut
            | ResponseError::KafkaStorageError
            | ResponseError::CoordinatorNotAvailable
    )
}
