//! A partition hosted by this broker: its log, its idempotent-producer state, and the
//! offsets that requests read without taking the log lock.
//!
//! The log sits behind an async mutex: one append, read resolution, truncation or retention
//! pass at a time. Record bytes are sent after the lock is released (regions hold their
//! files open), so a slow consumer never holds up producers.

use std::cell::{Cell, RefCell};
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use fjord_storage::batch::{self, BatchHeader};
use fjord_storage::{LogConfig, PartitionLog, ReadResult, RetentionOutcome, StorageError};

use fjord_replication::LeaderEpochCache;

mod decompress;
pub(crate) mod recompress;
#[cfg(fuzzing)]
pub(crate) use decompress::first_compressed_record_at_or_after;
mod markers;
pub mod producer;
pub mod replica;
mod replication;
pub mod txn;

pub use replication::LowWatermarkWait;

use producer::{ProducerTable, SequenceCheck, SequencedBatch};
use replica::ReplicaState;

/// How much of the log's end is read on open to rebuild idempotent-producer state: a
/// producer retrying after a restart retries its most recent batches, which lie here.
const PRODUCER_STATE_TAIL_BYTES: u64 = 16 * 1024 * 1024;
/// Producers the verification guard remembers per partition.
const TXN_VERIFIED_MAX: usize = 10_000;

/// Why an append was refused.
#[derive(Debug)]
pub enum AppendError {
    Storage(StorageError),
    /// The producer's epoch is older than one already seen (INVALID_PRODUCER_EPOCH).
    StaleEpoch {
        current: i16,
    },
    /// The sequence does not follow the producer's last one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    /// The leadership (or its epoch) changed while the append waited for the log.
    NotLeader,
    /// The group append that took this one along ended without answering it.
    Abandoned,
    /// A retry answered as a duplicate of an append in the same group, which then failed.
    DuplicateOfFailed,
    /// A transactional batch that would open a transaction its producer's coordinator did
    /// not confirm since the producer's last marker here (INVALID_TXN_STATE): the leader's
    /// check (KIP-890) passed, then the transaction ended before the append.
    TxnNotVerified,
}

impl From<StorageError> for AppendError {
    fn from(error: StorageError) -> Self {
        AppendError::Storage(error)
    }
}

/// A successful append (or an acknowledged duplicate).
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The time the log stamped the batches with (LogAppendTime), else -1; -1 for a
    /// duplicate too (its original stamp is not kept).
    pub log_append_time: i64,
    pub duplicate: bool,
}

impl Appended {
    fn written(info: &fjord_storage::AppendInfo) -> Appended {
        Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time: info.log_append_time,
            duplicate: false,
        }
    }
}

pub struct Partition {
    pub topic: Rc<str>,
    pub index: i32,
    pub dir: PathBuf,
    pub(crate) log: tokio::sync::Mutex<PartitionLog>,
    log_end_offset: Cell<i64>,
    log_start_offset: Cell<i64>,
    durable_offset: Cell<i64>,
    pub(crate) producers: RefCell<ProducerTable>,
    /// Kafka's verification guard: producers (and epochs) whose coordinator confirmed this
    /// partition is in their open transaction since their last marker here. A batch that
    /// opens a transaction is appended only for them.
    txn_verified: RefCell<std::collections::HashMap<i64, i16>>,
    /// Transactions open here, and the last stable offset (`txn.rs`, `markers.rs`).
    pub(crate) txns: RefCell<txn::Transactions>,
    /// What `TXN_START_FILE` holds: where a restart scans from to find the transactions
    /// open here (`None`: no file, no transaction was ever seen).
    txn_start_saved: Cell<Option<i64>>,
    /// Leader or follower, in-sync set, high watermark (`replica.rs`).
    pub replica: ReplicaState,
    /// A group-commit fdatasync is running; `synced` is notified when it ends.
    syncing: Cell<bool>,
    synced: tokio::sync::Notify,
    /// Appends waiting for the log while another one holds it: whichever of them gets the
    /// log first writes all of them with one vectored write (group append).
    queued: RefCell<Vec<QueuedAppend>>,
    /// What `HIGH_WATERMARK_FILE` holds. Checkpoints, truncations below it and the close
    /// take this lock (before the log's, when both), one at a time.
    pub(crate) hw_file: tokio::sync::Mutex<HighWatermarkFile>,
    /// A compaction pass of this partition is with the cleaner (`clean`).
    cleaning: Cell<bool>,
    /// What its passes found and did, as `fjord topic describe` shows it.
    cleaner_status: Cell<crate::broker::cleaner::CleanerStatus>,
    /// The log's compaction settings (`LogConfig::compaction`), readable without its lock.
    compaction: Cell<Option<fjord_storage::Compaction>>,
}

/// The high watermark as saved in the partition's directory.
pub(crate) struct HighWatermarkFile {
    /// The value in the file (`None`: no file, or not known).
    saved: Option<i64>,
    /// The partition closed: nothing is written any more (its directory may be deleted).
    closed: bool,
}

/// Queued appends written with one write (see `Partition::append_group`).
struct AppendGroup {
    sets: Vec<Bytes>,
    /// Each set's answer channel and the leader epoch it was sent in.
    dones: Vec<(tokio::sync::oneshot::Sender<Result<Appended, AppendError>>, i32)>,
    bytes: usize,
}

/// An append waiting to be written with others (see `Partition::append`).
struct QueuedAppend {
    records: Bytes,
    leader_epoch: i32,
    done: tokio::sync::oneshot::Sender<Result<Appended, AppendError>>,
}

/// Largest record set that waits to be written with others; larger ones are written on
/// their own, where the CRC check overlaps the write. Below `OVERLAPPED_CHECK_BYTES_MIN`.
const GROUP_APPEND_SET_BYTES_MAX: usize = 128 * 1024;

/// Most bytes one group append writes.
const GROUP_APPEND_BYTES_MAX: usize = 8 * 1024 * 1024;

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

/// The directory of a partition: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl Partition {
    /// Opens the partition's log. `me` is this broker's id; a clustered partition starts
    /// with no role until the cluster state gives it one, a single-node one leads at once.
    pub async fn open(
        data_dir: &Path,
        topic: Rc<str>,
        index: i32,
        config: LogConfig,
        me: i32,
        clustered: bool,
    ) -> Result<Partition, StorageError> {
        let dir = partition_dir(data_dir, &topic, index);
        let mut log = PartitionLog::open(&dir, config).await?;
        let epochs = LeaderEpochCache::load(&dir).await?;
        // Idempotent producers that retry across a restart find their last batches again.
        let mut producers = ProducerTable::default();
        for batch in log.tail_batches(PRODUCER_STATE_TAIL_BYTES).await? {
            if batch.producer_id >= 0 && batch.base_sequence >= 0 {
                let sequenced = SequencedBatch {
                    first_sequence: batch.base_sequence,
                    last_sequence: batch.base_sequence.wrapping_add(batch.record_count.max(1) - 1),
                    base_offset: batch.base_offset,
                    last_offset: batch.last_offset,
                    max_timestamp: batch.max_timestamp,
                };
                producers.record(batch.producer_id, batch.producer_epoch, sequenced);
            }
        }
        let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
        let replica = ReplicaState::new(me, clustered, log_start, log_end, epochs);
        let mut saved = None;
        if clustered {
            // The high watermark of the last checkpoint or clean close: committed records
            // stay readable after a restart, rather than from the next fetch round of the
            // followers on. It was committed when saved; the log may have lost its tail
            // since (a crash), so it is held within the log.
            saved = read_high_watermark(&dir).await;
            if let Some(value) = saved {
                if value > log_end {
                    // The log lost its tail (a crash before it was synced): it may grow back
                    // with records not committed, which the saved value would cover after
                    // another crash. It goes, durably, before anything is appended.
                    let path = dir.join(HIGH_WATERMARK_FILE);
                    fjord_storage::io::remove_file(&path).await?;
                    fjord_storage::io::sync_dir(&dir).await?;
                    tracing::warn!(path = %path.display(), saved = value, log_end, "the saved high watermark is past the log's end; removed it");
                    saved = None;
                }
                let high_watermark = value.clamp(log_start, log_end);
                replica.restore_high_watermark(high_watermark);
                if high_watermark > log_start {
                    tracing::info!(partition = %format_args!("{topic}-{index}"), high_watermark, saved = value, "restored the saved high watermark");
                }
            }
        }
        let partition = Partition {
            topic,
            index,
            dir,
            log_end_offset: Cell::new(log.log_end_offset()),
            log_start_offset: Cell::new(log.log_start_offset()),
            durable_offset: Cell::new(log.durable_offset()),
            compaction: Cell::new(log.config().compaction),
            log: tokio::sync::Mutex::new(log),
            producers: RefCell::new(producers),
            txn_verified: RefCell::new(std::collections::HashMap::new()),
            txns: RefCell::new(txn::Transactions::default()),
            txn_start_saved: Cell::new(None),
            replica,
            syncing: Cell::new(false),
            synced: tokio::sync::Notify::new(),
            queued: RefCell::new(Vec::new()),
            cleaning: Cell::new(false),
            cleaner_status: Cell::new(Default::default()),
            hw_file: tokio::sync::Mutex::new(HighWatermarkFile { saved, closed: false }),
        };
        partition.rebuild_transactions().await?;
        Ok(partition)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.get()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// Bytes of the partition's segments, as DescribeLogDirs reports its size (Kafka's
    /// `UnifiedLog.size`); waits for the log behind an append in progress.
    pub async fn size_bytes(&self) -> u64 {
        self.log.lock().await.size_bytes()
    }

    /// The offset consumers may read up to: on a single broker the log end, with replication
    /// the smallest log end among the in-sync replicas.
    pub fn high_watermark(&self) -> i64 {
        if self.replica.clustered() {
            self.replica.high_watermark().min(self.log_end_offset.get())
        } else {
            self.log_end_offset.get()
        }
    }

    /// Whether the topic is compacted (`cleanup.policy` with `compact`).
    pub fn compacted(&self) -> bool {
        self.compaction.get().is_some()
    }

    /// The cleaning of a compacted log as of its last upkeep (`None` if not compacted).
    pub fn cleaner_status(&self) -> Option<crate::broker::cleaner::CleanerStatus> {
        self.compacted().then(|| self.cleaner_status.get())
    }

    pub(crate) fn refresh(&self, log: &PartitionLog) {
        self.log_end_offset.set(log.log_end_offset());
        self.log_start_offset.set(log.log_start_offset());
        self.durable_offset.set(log.durable_offset());
    }

    /// Appends a producer's record batches (as received), applying idempotence checks.
    ///
    /// Small sets that find the log busy queue up; whichever of them gets the log first
    /// writes every queued set with one vectored write, and the others return as soon as
    /// their answer is there. Idempotent producers' sets are checked one after the other in
    /// the group's order, each against the table as the sets before it left it. Large sets
    /// go one by one. A queued set may be written before a large set that waits for the log
    /// ahead of it: they come from different connections, which carry no order between them
    /// (one connection's appends to a partition start one after the other: each waits for
    /// the end of the one before, `handlers::AppendOrder`, a request naming one partition
    /// twice included).
    pub async fn append(&self, records: Bytes, leader_epoch: i32) -> Result<Appended, AppendError> {
        if self.txn_start_saved.get().is_none()
            && BatchHeader::view(&records).is_some_and(|h| h.is_transactional())
        {
            // The first transaction here: where a restart must look for it goes to disk
            // before it does.
            self.save_txn_start(self.log_end_offset()).await?;
        }
        if records.len() <= GROUP_APPEND_SET_BYTES_MAX {
            if let Ok(log) = self.log.try_lock() {
                return self.append_locked(log, records, leader_epoch).await;
            }
            let (done, mut answer) = tokio::sync::oneshot::channel();
            self.queued.borrow_mut().push(QueuedAppend { records, leader_epoch, done });
            let abandoned = || Err(AppendError::Abandoned);
            // Written by another queued append: answered without waiting for the log.
            let mut log = tokio::select! {
                biased;
                result = &mut answer => return result.unwrap_or_else(|_| abandoned()),
                log = self.log.lock() => log,
            };
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            let queued = std::mem::take(&mut *self.queued.borrow_mut());
            self.append_group(&mut log, queued).await;
            drop(log);
            return answer.await.unwrap_or_else(|_| abandoned());
        }
        let log = self.log.lock().await;
        self.append_locked(log, records, leader_epoch).await
    }

    /// Writes queued appends: one vectored write per `GROUP_APPEND_BYTES_MAX`, each set
    /// answered through its channel.
    async fn append_group(&self, log: &mut PartitionLog, queued: Vec<QueuedAppend>) {
        let mut rest = queued.into_iter().peekable();
        while rest.peek().is_some() {
            let group = self.next_group(&mut rest);
            if !group.sets.is_empty() {
                self.write_group(log, group).await;
            }
        }
    }

    /// The next sets to write with one write: at most `GROUP_APPEND_BYTES_MAX` (or one
    /// set). Sets whose producer stopped waiting are dropped; sets whose leadership moved
    /// while they waited are answered at once.
    fn next_group(&self, rest: &mut Peekable<std::vec::IntoIter<QueuedAppend>>) -> AppendGroup {
        let mut group = AppendGroup { sets: Vec::new(), dones: Vec::new(), bytes: 0 };
        while let Some(next) = rest.peek() {
            if !group.sets.is_empty() && group.bytes + next.records.len() > GROUP_APPEND_BYTES_MAX {
                break;
            }
            let next = rest.next().expect("peeked");
            if next.done.is_closed() {
                // Its producer stopped waiting (its task was dropped): not written.
                continue;
            }
            // Checked again under the lock, per set: leadership may have moved while it waited.
            if !self.leads_in(next.leader_epoch) {
                let _ = next.done.send(Err(AppendError::NotLeader));
                continue;
            }
            group.bytes += next.records.len();
            group.sets.push(next.records);
            group.dones.push((next.done, next.leader_epoch));
        }
        group
    }

    /// Writes one group and answers each of its sets.
    async fn write_group(&self, log: &mut PartitionLog, group: AppendGroup) {
        let AppendGroup { sets, dones, bytes } = group;
        let epoch = dones[0].1;
        tracing::trace!(partition = ?self, sets = sets.len(), bytes, "group append");
        // Idempotent producers' sets: each is checked as the group's sets before it left
        // the table, so each admitted one is recorded at once, at the offsets it will
        // get, and forgotten again if the append fails.
        let sequenced: Vec<Option<Sequenced>> = sets.iter().map(|set| Sequenced::of(set)).collect();
        let mut answered: Vec<Option<Result<Appended, AppendError>>> =
            sets.iter().map(|_| None).collect();
        let mut admitted = vec![false; sets.len()];
        let log_end_before = log.log_end_offset();
        let results = log
            .append_shared_group(sets, epoch, |n, base_offset, last_offset| {
                answered[n] = self.admit_to_group(sequenced[n].as_ref(), base_offset, last_offset);
                admitted[n] = answered[n].is_none();
                admitted[n]
            })
            .await;
        self.refresh(log);
        self.forget_a_failed_group(&results, &admitted, &mut answered, log_end_before);
        for (result, sequenced) in results.iter().zip(&sequenced) {
            if let (Some(Ok(info)), Some(sequenced)) = (result, sequenced) {
                if info.log_append_time >= 0 {
                    let mut producers = self.producers.borrow_mut();
                    producers.restamp(
                        sequenced.producer_id,
                        info.base_offset,
                        info.log_append_time,
                    );
                }
            }
        }
        if results.iter().any(|r| matches!(r, Some(Ok(_)))) {
            self.advance_high_watermark();
        }
        for (((done, _), result), answer) in dones.into_iter().zip(results).zip(answered) {
            let answer = match result {
                Some(result) => {
                    result.map(|info| Appended::written(&info)).map_err(AppendError::from)
                }
                None => answer.expect("a set turned down was answered"),
            };
            let _ = done.send(answer);
        }
    }

    /// Whether a set of a group append is written: `None` to write it (an idempotent
    /// producer's set is recorded at once, at the offsets it will get), or the answer to
    /// give without writing it.
    fn admit_to_group(
        &self,
        sequenced: Option<&Sequenced>,
        base_offset: i64,
        last_offset: i64,
    ) -> Option<Result<Appended, AppendError>> {
        let sequenced = sequenced?;
        let answer = self.sequence_decision(sequenced);
        if answer.is_none() {
            sequenced.trace(self, "admitted to a group append", base_offset);
            if sequenced.transactional {
                self.txns.borrow_mut().on_data(
                    sequenced.producer_id,
                    sequenced.epoch,
                    base_offset,
                    last_offset,
                );
            }
            self.producers.borrow_mut().record(
                sequenced.producer_id,
                sequenced.epoch,
                sequenced.batch(base_offset, last_offset),
            );
        }
        answer
    }

    /// The admitted sets fail together (the write or its flush failed; the log is
    /// poisoned). Nothing this group recorded stands then, even if the bytes reached the
    /// file before a failed flush: a failed append is never a duplicate to acknowledge, as
    /// on the one-by-one path. A retry inside this group that was answered as a duplicate
    /// of such a set fails with it.
    fn forget_a_failed_group(
        &self,
        results: &[Option<fjord_storage::Result<fjord_storage::AppendInfo>>],
        admitted: &[bool],
        answered: &mut [Option<Result<Appended, AppendError>>],
        log_end_before: i64,
    ) {
        let write_failed = results
            .iter()
            .zip(admitted)
            .any(|(result, admitted)| *admitted && matches!(result, Some(Err(_))));
        if !write_failed {
            return;
        }
        self.producers.borrow_mut().truncate_from(log_end_before);
        self.txns.borrow_mut().truncate_from(log_end_before);
        for answer in answered.iter_mut().flatten() {
            if answer.as_ref().is_ok_and(|a| a.duplicate && a.base_offset >= log_end_before) {
                *answer = Err(AppendError::DuplicateOfFailed);
            }
        }
    }

    /// Whether this replica may append with `leader_epoch`: always on a single broker; in a
    /// cluster only as the leader of that epoch (checked under the log lock, since the
    /// leadership may move while an append waits for it).
    fn leads_in(&self, leader_epoch: i32) -> bool {
        !self.replica.clustered()
            || (self.replica.is_leader() && self.replica.leader_epoch() == leader_epoch)
    }

    /// The coordinator confirmed `producer_id`'s transaction in `epoch` includes this
    /// partition (the leader's check passed): its batch may open the transaction here.
    pub fn txn_verified(&self, producer_id: i64, epoch: i16) {
        let mut verified = self.txn_verified.borrow_mut();
        if verified.len() >= TXN_VERIFIED_MAX && !verified.contains_key(&producer_id) {
            // Bounded: the forgotten ones' next first batch is refused and retried.
            verified.clear();
        }
        verified.insert(producer_id, epoch);
    }

    /// Whether a transactional batch of (`producer_id`, `epoch`) joins the producer's
    /// transaction open here (one in that epoch, not closing): it opens none, so it needs no
    /// check with the coordinator.
    pub fn joins_open_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.txns.borrow().joinable(producer_id).is_some_and(|open| open.epoch == epoch)
    }

    /// Whether a set may be appended as far as the verification guard goes: anything but a
    /// transactional set that opens a transaction needs nothing; that one needs its
    /// producer's check confirmed since its last marker here.
    fn opens_verified(&self, sequenced: &Sequenced) -> bool {
        let (producer_id, epoch) = (sequenced.producer_id, sequenced.epoch);
        !sequenced.transactional
            || self.joins_open_transaction(producer_id, epoch)
            || self.txn_verified.borrow().get(&producer_id) == Some(&epoch)
    }

    /// What the idempotent-producer table says about a set: `None` to write it, or the
    /// answer to give without writing (a duplicate's offsets, or a refusal).
    fn sequence_decision(&self, sequenced: &Sequenced) -> Option<Result<Appended, AppendError>> {
        let check = self.producers.borrow().check(
            sequenced.producer_id,
            sequenced.epoch,
            sequenced.first_sequence,
            sequenced.count,
        );
        if check != SequenceCheck::Append {
            tracing::debug!(partition = ?self, producer_id = sequenced.producer_id, epoch = sequenced.epoch, first_sequence = sequenced.first_sequence, count = sequenced.count, ?check, "idempotent set not written");
        }
        if let SequenceCheck::OutOfOrder { expected, got } = check {
            let settling = self.replica.settling(crate::clock::now_ms());
            if self.replica.clustered() && settling && got > expected {
                tracing::info!(partition = ?self, producer_id = sequenced.producer_id, expected, got, "sequence gap right after taking the leadership: asking the producer to retry");
                return Some(Err(AppendError::NotLeader));
            }
        }
        match check {
            SequenceCheck::Append if !self.opens_verified(sequenced) => {
                tracing::info!(partition = ?self, producer_id = sequenced.producer_id, epoch = sequenced.epoch, "a transaction ended between the leader's check and the append: batch refused");
                Some(Err(AppendError::TxnNotVerified))
            }
            SequenceCheck::Append => None,
            // Kafka answers a duplicate with its batch's largest timestamp as appended as
            // `log_append_time_ms`, whatever the topic's timestamp type.
            SequenceCheck::Duplicate { base_offset, max_timestamp } => Some(Ok(Appended {
                base_offset,
                last_offset: base_offset + i64::from(sequenced.count) - 1,
                log_append_time: max_timestamp,
                duplicate: true,
            })),
            SequenceCheck::StaleEpoch { current } => Some(Err(AppendError::StaleEpoch { current })),
            SequenceCheck::OutOfOrder { expected, got } => {
                Some(Err(AppendError::OutOfOrder { expected, got }))
            }
        }
    }

    async fn append_locked(
        &self,
        mut log: tokio::sync::MutexGuard<'_, PartitionLog>,
        records: Bytes,
        leader_epoch: i32,
    ) -> Result<Appended, AppendError> {
        // Checked again under the lock: a roll's fsyncs may have kept us waiting while the
        // leadership moved, and a follower must never append with an old epoch.
        if !self.leads_in(leader_epoch) {
            return Err(AppendError::NotLeader);
        }
        let sequenced = Sequenced::of(&records);
        if let Some(answer) = sequenced.as_ref().and_then(|s| self.sequence_decision(s)) {
            if answer.as_ref().is_ok_and(|a| a.duplicate) {
                // Refuse a damaged "duplicate" rather than acknowledge it.
                batch::validate(&records, log.config().batch_bytes_max, batch::Origin::Client)
                    .map_err(|source| {
                        AppendError::Storage(StorageError::InvalidBatch {
                            index: 0,
                            position: 0,
                            source,
                        })
                    })?;
            }
            return answer;
        }
        // The records are a slice of the request frame: written from there, not copied.
        let result = log.append_shared(records, leader_epoch).await;
        self.refresh(&log);
        let info = result?;
        if let Some(sequenced) = sequenced {
            sequenced.trace(self, "appended", info.base_offset);
            if sequenced.transactional {
                self.txns.borrow_mut().on_data(
                    sequenced.producer_id,
                    sequenced.epoch,
                    info.base_offset,
                    info.last_offset,
                );
            }
            let mut batch = sequenced.batch(info.base_offset, info.last_offset);
            if info.log_append_time >= 0 {
                // Stamped by the log: that is the batch's largest timestamp now.
                batch.max_timestamp = info.log_append_time;
            }
            self.producers.borrow_mut().record(sequenced.producer_id, sequenced.epoch, batch);
        }
        // A leader whose in-sync set is itself alone (replication factor 1, or followers
        // dropped out) has the records replicated as soon as they are appended; with
        // followers this changes nothing until they fetch.
        self.advance_high_watermark();
        Ok(Appended::written(&info))
    }

    /// Makes everything below `offset` durable (acks=all), with group commit: the fdatasync
    /// runs without the log lock, so appends keep coming while it runs, and every producer
    /// waiting meanwhile is covered by the next single fdatasync instead of one each.
    pub async fn flush_to(&self, offset: i64) -> Result<(), StorageError> {
        loop {
            if self.durable_offset.get() >= offset {
                return Ok(());
            }
            if self.syncing.get() {
                let synced = self.synced.notified();
                tokio::pin!(synced);
                synced.as_mut().enable();
                if self.syncing.get() {
                    synced.await;
                }
                continue;
            }
            let target = self.log.lock().await.flush_target()?;
            let Some(target) = target else {
                let log = self.log.lock().await;
                self.refresh(&log);
                if log.log_end_offset() < offset {
                    // The log was cut below `offset` meanwhile (this replica stopped leading):
                    // there is nothing left to make durable; the caller learns it from its
                    // replication wait.
                    return Ok(());
                }
                continue;
            };
            self.syncing.set(true);
            let result = target.sync().await;
            self.syncing.set(false);
            let outcome = {
                let mut log = self.log.lock().await;
                let outcome = log.complete_flush(&target, result);
                self.refresh(&log);
                outcome
            };
            self.synced.notify_waiters();
            outcome?;
        }
    }

    pub async fn read(&self, offset: i64, max_bytes: u64) -> Result<ReadResult, StorageError> {
        let mut log = self.log.lock().await;
        log.read(offset, max_bytes).await
    }

    /// A read that stops below `end_offset` (consumers stop at the high watermark).
    pub async fn read_below(
        &self,
        offset: i64,
        max_bytes: u64,
        end_offset: i64,
    ) -> Result<ReadResult, StorageError> {
        let mut log = self.log.lock().await;
        log.read_below(offset, max_bytes, end_offset).await
    }

    /// The first offset whose record timestamp is at least `timestamp`, and that timestamp.
    /// The storage engine answers exactly within uncompressed batches; for a compressed batch
    /// it names the batch, which is decompressed here to find the record (Kafka does the same).
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let mut log = self.log.lock().await;
        let Some((offset, found)) = log.offset_for_timestamp(timestamp).await? else {
            return Ok(None);
        };
        let read = log.read(offset, 1).await?;
        drop(log);
        let Some(region) = read.regions.first() else { return Ok(Some((offset, found))) };
        let bytes = region.read_bytes().await?;
        let Some(header) = BatchHeader::view(&bytes) else { return Ok(Some((offset, found))) };
        if header.compression_codec() == 0
            || header.base_offset.get() != offset
            || header.is_log_append_time()
        {
            return Ok(Some((offset, found)));
        }
        match decompress::first_compressed_record_at_or_after(&bytes, timestamp) {
            Ok(Some((delta, record_timestamp))) => {
                Ok(Some((offset.saturating_add(i64::from(delta)), record_timestamp)))
            }
            Ok(None) => Ok(Some((offset, found))),
            Err(error) => {
                tracing::warn!(partition = ?self, offset, %error, "cannot decompress batch for a timestamp lookup; answering with its first offset");
                Ok(Some((offset, found)))
            }
        }
    }

    /// Background upkeep: retention, time-based roll, interval flush, and the sync of
    /// segments sealed by a roll (which appends leave to it), without holding the log, after
    /// which the checkpoint's recovery offset moves past them.
    pub async fn maintain(
        &self,
        now_ms: i64,
        retention: bool,
    ) -> Result<RetentionOutcome, StorageError> {
        let (outcome, sealed) = {
            let mut log = self.log.lock().await;
            let mut outcome = RetentionOutcome::default();
            if retention {
                outcome = log.apply_retention(now_ms).await?;
            }
            log.roll_if_due().await?;
            log.flush_if_due().await?;
            log.settle_write_behind().await;
            self.refresh(&log);
            (outcome, log.sealed_not_durable())
        };
        if let Some(active_base) = sealed {
            self.flush_to(active_base).await?;
            let mut log = self.log.lock().await;
            log.checkpoint_recovery_offset().await?;
        }
        self.advance_txn_start().await?;
        Ok(outcome)
    }

    /// Compaction, from the shard's upkeep: if the log is compacted and no pass of it is
    /// running, plans one (below the high watermark), and when it is due (the dirty part at
    /// least `min.cleanable.dirty.ratio` of the cleanable bytes, or a dirty record older than
    /// `max.compaction.lag.ms`) has the cleaner threads carry it out and commits it. The
    /// log is held only for the plan and the swap.
    pub async fn clean(&self, cleaner: &crate::broker::cleaner::Cleaner, now_ms: i64) {
        if self.cleaning.replace(true) {
            return;
        }
        let result = self.clean_once(cleaner, now_ms).await;
        self.cleaning.set(false);
        match result {
            Ok(Some((outcome, elapsed))) if !outcome.cleaned_segments.is_empty() => {
                let mut status = self.cleaner_status.get();
                status.dirty_ppm = Some(0);
                status.last_pass_ms = Some(now_ms);
                status.records_removed = outcome.records_removed;
                status.bytes_after = outcome.bytes_after;
                self.cleaner_status.set(status);
                tracing::info!(partition = ?self, segments = outcome.cleaned_segments.len(), bytes_before = outcome.bytes_before, bytes_after = outcome.bytes_after, records_removed = outcome.records_removed, elapsed_ms = elapsed.as_millis() as u64, "compacted");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(partition = ?self, %error, "compaction pass failed"),
        }
    }

    async fn clean_once(
        &self,
        cleaner: &crate::broker::cleaner::Cleaner,
        now_ms: i64,
    ) -> Result<Option<(fjord_storage::CleanOutcome, std::time::Duration)>, String> {
        let (plan, compaction) = {
            let mut log = self.log.lock().await;
            let Some(compaction) = log.config().compaction else { return Ok(None) };
            let options = fjord_storage::CleanOptions {
                clean_below: self.last_stable_offset(),
                map_bytes_max: cleaner.map_bytes_max(),
                min_compaction_lag_ms: compaction.min_compaction_lag_ms,
                delete_retention_ms: compaction.delete_retention_ms,
            };
            let plan = log.plan_clean(&options).await.map_err(|e| e.to_string())?;
            (plan, compaction)
        };
        let mut status = self.cleaner_status.get();
        let Some(plan) = plan else {
            status.dirty_ppm = Some(0);
            self.cleaner_status.set(status);
            return Ok(None);
        };
        let ratio_ppm = (plan.dirty_ratio() * 1e6) as u32;
        status.dirty_ppm = Some(ratio_ppm);
        self.cleaner_status.set(status);
        let overdue = plan.oldest_dirty_timestamp().is_some_and(|newest| {
            now_ms.saturating_sub(newest) as u64 > compaction.max_compaction_lag_ms
        });
        // Expired tombstones get a pass of their own, dirty bytes or not (KIP-534).
        let due = overdue || plan.tombstones_due();
        if !due && (plan.dirty_bytes() == 0 || ratio_ppm < compaction.min_cleanable_dirty_ppm) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let done = cleaner.run(plan).await?;
        let mut log = self.log.lock().await;
        let outcome = log.commit_clean(done).await.map_err(|e| e.to_string())?;
        self.refresh(&log);
        Ok(Some((outcome, started.elapsed())))
    }

    /// DeleteRecords on the leader: moves the log start to `offset`, durably, and deletes
    /// the segments wholly below it. An offset past the high watermark is refused, as
    /// Kafka's `maybeIncrementLogStartOffset` refuses it. Returns the new log start.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let mut log = self.log.lock().await;
        let high_watermark = self.high_watermark();
        if offset < 0 || offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                dir: log.dir().to_path_buf(),
                offset,
                log_start_offset: log.log_start_offset(),
                log_end_offset: high_watermark,
            });
        }
        let result = log.advance_log_start(offset).await;
        self.refresh(&log);
        result.map(|()| log.log_start_offset())
    }

    /// A follower takes its leader's log start (records deleted there), as far as its own
    /// log reaches.
    pub async fn follow_log_start(&self, leader_log_start: i64) -> Result<(), StorageError> {
        if leader_log_start <= self.log_start_offset() {
            return Ok(());
        }
        let mut log = self.log.lock().await;
        let offset = leader_log_start.min(log.log_end_offset());
        let result = log.advance_log_start(offset).await;
        self.refresh(&log);
        result
    }

    pub async fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        let compaction = config.compaction;
        self.log.lock().await.set_config(config)?;
        self.compaction.set(compaction);
        Ok(())
    }

    /// Flushes and writes the clean-shutdown checkpoint. The partition is unusable after.
    /// A clustered partition that closes cleanly saves its high watermark for the next open.
    pub async fn close(&self) -> Result<(), StorageError> {
        let mut file = self.hw_file.lock().await;
        file.closed = true;
        let mut log = self.log.lock().await;
        log.close().await?;
        drop(log);
        self.save_high_watermark(&mut file).await;
        Ok(())
    }

    /// Saves the high watermark of a clustered partition if it moved since it was last
    /// saved (every `HW_CHECKPOINT_INTERVAL_MS`, from the shard's upkeep), so that a
    /// restart after a crash also starts with it.
    pub async fn checkpoint_high_watermark(&self) {
        let mut file = self.hw_file.lock().await;
        if !file.closed {
            self.save_high_watermark(&mut file).await;
        }
    }

    async fn save_high_watermark(&self, file: &mut HighWatermarkFile) {
        let high_watermark = self.high_watermark();
        // No file means starting at the log start: nothing to write for that either.
        let unchanged = file
            .saved
            .map_or(high_watermark <= self.log_start_offset(), |saved| saved == high_watermark);
        if !self.replica.clustered() || unchanged {
            return;
        }
        let path = self.dir.join(HIGH_WATERMARK_FILE);
        match write_high_watermark(&path, high_watermark).await {
            Ok(()) => file.saved = Some(high_watermark),
            // The file holds the earlier value or none: a lower start, which is safe.
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot save the high watermark; a restart starts lower")
            }
        }
    }

    /// When the log is cut below the saved high watermark: removes the file, durably (the
    /// directory is synced), before the cut, so that a crash after the log grew back with
    /// records not committed (yet) cannot restore a high watermark that covers them. The
    /// caller holds `hw_file` until the lowered high watermark is in place, so no checkpoint
    /// saves the one from before the cut.
    pub(crate) async fn forget_high_watermark_above(
        &self,
        file: &mut HighWatermarkFile,
        offset: i64,
    ) -> Result<(), StorageError> {
        if file.saved.is_some_and(|saved| saved > offset) {
            fjord_storage::io::remove_file(&self.dir.join(HIGH_WATERMARK_FILE)).await?;
            fjord_storage::io::sync_dir(&self.dir).await?;
            file.saved = None;
        }
        Ok(())
    }
}

/// Where a clustered partition keeps its high watermark (text), written by the periodic
/// checkpoint and by a clean close, read by the next open.
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark";

/// How often a shard saves the high watermarks that moved (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` is 5 s too).
pub const HW_CHECKPOINT_INTERVAL_MS: u64 = 5_000;

/// Writes the high watermark as a fixed-width line (`HIGH_WATERMARK_LINE_BYTES`) at the
/// start of the file, in place: one write within one disk sector, so a crash leaves the old
/// line or the new one, and a checkpoint costs no file creation or rename (with 10,000
/// busy partitions, writing a temporary file and renaming it over took 12.5 s per round for
/// 5,000 partitions of a shard). Not synced: a lost write only means starting lower, which
/// is always safe, and every saved value was committed when it was saved.
async fn write_high_watermark(path: &Path, high_watermark: i64) -> std::io::Result<()> {
    let file = fjord_storage::io::File::open_rw(path, true).await?;
    let line =
        format!("{:0width$}\n", high_watermark.max(0), width = HIGH_WATERMARK_LINE_BYTES - 1);
    let (written, _) = file.write_all_at(line.into_bytes(), 0).await;
    let closed = file.close().await;
    written.and(closed)
}

/// The saved line: 20 digits and a newline (any `i64` offset fits).
const HIGH_WATERMARK_LINE_BYTES: usize = 21;

/// Largest high-watermark file read: a longer one is not ours and is ignored.
const HIGH_WATERMARK_FILE_BYTES_MAX: u64 = 64;

/// The high watermark saved by the last checkpoint or clean close, if any (a damaged file
/// is ignored: starting at the log start is always safe).
pub(crate) async fn read_high_watermark(dir: &Path) -> Option<i64> {
    let path = dir.join(HIGH_WATERMARK_FILE);
    match fjord_storage::io::read_file(&path, HIGH_WATERMARK_FILE_BYTES_MAX).await {
        // The first line: a file written by an older version may hold more after it.
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
            .filter(|offset: &i64| *offset >= 0),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the saved high watermark");
            None
        }
    }
}

/// An idempotent producer's record set: who sent it and the sequence numbers it carries
/// (the first batch's header names the producer, epoch and first sequence; the whole set
/// is one sequence range).
struct Sequenced {
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    count: i32,
    /// The largest timestamp of the set's last batch.
    max_timestamp: i64,
    /// Its batches belong to a transaction (attribute bit 4).
    transactional: bool,
}

impl Sequenced {
    /// `None` for a producer without an id (or without sequence numbers).
    fn of(records: &[u8]) -> Option<Sequenced> {
        let header = BatchHeader::view(records)?;
        let (producer_id, first_sequence) = (header.producer_id.get(), header.base_sequence.get());
        (producer_id >= 0 && first_sequence >= 0).then(|| {
            let (count, max_timestamp) = total_records(records);
            Sequenced {
                producer_id,
                epoch: header.producer_epoch.get(),
                first_sequence,
                count,
                max_timestamp,
                transactional: header.is_transactional(),
            }
        })
    }

    fn trace(&self, partition: &Partition, what: &str, base_offset: i64) {
        tracing::trace!(
            ?partition,
            producer_id = self.producer_id,
            epoch = self.epoch,
            first_sequence = self.first_sequence,
            count = self.count,
            base_offset,
            "idempotent set {what}"
        );
    }

    fn batch(&self, base_offset: i64, last_offset: i64) -> SequencedBatch {
        SequencedBatch {
            first_sequence: self.first_sequence,
            last_sequence: self.first_sequence.wrapping_add(self.count - 1),
            base_offset,
            last_offset,
            max_timestamp: self.max_timestamp,
        }
    }
}

/// Total records of all batches in a record set (header counts), and the largest timestamp
/// of its last batch.
fn total_records(mut records: &[u8]) -> (i32, i64) {
    let mut count = 0i32;
    let mut max_timestamp = -1;
    while let Some(header) = BatchHeader::view(records) {
        count = count.saturating_add(header.records_count.get().max(0));
        max_timestamp = header.max_timestamp.get();
        let size = header.size() as usize;
        if size > records.len() || size == 0 {
            break;
        }
        records = &records[size..];
    }
    (count, max_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_storage::batch::build;

    /// A record set of `count` records from `producer_id` (-1: none) starting at `first_sequence`.
    fn set(producer_id: i64, first_sequence: i32, count: usize) -> Bytes {
        let value = [0x61u8; 16];
        let records: Vec<build::Record<'_>> = (0..count)
            .map(|_| build::Record { key: None, value: Some(&value), timestamp_delta: 0 })
            .collect();
        let mut bytes = build::batch(&records, 1_700_000_000_000);
        if producer_id >= 0 {
            build::set_producer(&mut bytes, producer_id, 0, first_sequence);
        }
        Bytes::from(bytes)
    }

    /// Runs `test` on an io_uring runtime with a directory of its own, removed after.
    fn in_fresh_dir<F, Fut>(label: &str, test: F)
    where
        F: FnOnce(std::path::PathBuf) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir =
            std::env::temp_dir().join(format!("fjord-partition-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        fjord_storage::io::block_on(test(dir.clone()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Yields the appends below may take to reach the queue (each queues on its first poll).
    const QUEUE_YIELDS_MAX: usize = 64;

    /// Spawns an append of each set while the caller holds `partition`'s log, and returns
    /// once every one has queued behind it: released, the log writes them as one group, in
    /// this order.
    async fn queue_appends(
        partition: &Rc<Partition>,
        sets: &[Bytes],
    ) -> Vec<tokio::task::JoinHandle<Result<Appended, AppendError>>> {
        let tasks: Vec<_> = sets
            .iter()
            .cloned()
            .map(|records| {
                let partition = Rc::clone(partition);
                fjord_storage::io::spawn(async move { partition.append(records, 0).await })
            })
            .collect();
        for _ in 0..QUEUE_YIELDS_MAX {
            if partition.queued.borrow().len() == sets.len() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            partition.queued.borrow().len(),
            sets.len(),
            "every append queued behind the held log"
        );
        tasks
    }

    /// The file's content for a saved high watermark: one fixed-width line, overwritten in
    /// place.
    fn saved_line(value: i64) -> String {
        format!("{value:020}\n")
    }

    /// Opens (again) partition t-0 of a cluster under `data`, as broker 0.
    async fn open_clustered(data: &Path) -> Result<Partition, StorageError> {
        Partition::open(data, Rc::from("t"), 0, LogConfig::default(), 0, true).await
    }

    /// Partition t-0 under `data`, led by broker 0 alone in epoch 0, and the path of its
    /// saved high watermark.
    async fn leader_alone(data: &Path) -> (Partition, PathBuf) {
        let partition = open_clustered(data).await.expect("open");
        partition.become_leader(0, vec![0], vec![0], 1_000, 1).await;
        (partition, partition_dir(data, "t", 0).join(HIGH_WATERMARK_FILE))
    }

    #[test]
    fn a_transactional_batch_opens_a_transaction_only_once_verified_since_the_last_marker() {
        in_fresh_dir("guard", |data| async move {
            let (partition, _) = leader_alone(&data).await;
            let transactional = |sequence: i32| {
                let mut records = set(7, sequence, 2).to_vec();
                build::set_transactional(&mut records, 7, 0);
                build::set_producer(&mut records, 7, 0, sequence);
                Bytes::from(records)
            };
            // Not checked with the coordinator: refused, nothing written.
            let refused = partition.append(transactional(0), 0).await;
            assert!(matches!(refused, Err(AppendError::TxnNotVerified)), "{refused:?}");
            assert_eq!(partition.log_end_offset(), 0);
            // Checked: opens the transaction; its next batch needs no check.
            partition.txn_verified(7, 0);
            partition.append(transactional(0), 0).await.expect("verified");
            partition.append(transactional(2), 0).await.expect("in the open transaction");
            // The marker ends it and the check with it: a batch checked before the marker
            // (a late one) opens nothing.
            partition.write_marker(7, 0, true, 0, 0).await.expect("marker");
            let late = partition.append(transactional(4), 0).await;
            assert!(matches!(late, Err(AppendError::TxnNotVerified)), "{late:?}");
            partition.txn_verified(7, 0);
            partition.append(transactional(4), 0).await.expect("checked again");
        });
    }

    #[test]
    fn the_high_watermark_is_kept_across_a_checkpoint_and_a_crash_or_a_clean_close() {
        in_fresh_dir("hw", |data| async move {
            let open = || open_clustered(&data);
            let (partition, file) = leader_alone(&data).await;
            let appended = partition.append(set(-1, 0, 5), 0).await.expect("append");
            assert_eq!(
                (appended.base_offset, partition.high_watermark()),
                (0, 5),
                "alone in its in-sync set, the leader commits at once"
            );
            // The periodic checkpoint saves it; a crash after it (no close) keeps it.
            partition.checkpoint_high_watermark().await;
            assert_eq!(std::fs::read_to_string(&file).expect("checkpointed"), saved_line(5));
            assert_eq!(
                open().await.expect("reopen after a crash").high_watermark(),
                5,
                "committed records readable before any role or fetch"
            );
            // A clean close saves the latest one.
            partition.append(set(-1, 0, 2), 0).await.expect("append");
            partition.close().await.expect("close");
            assert_eq!(std::fs::read_to_string(&file).expect("saved by the close"), saved_line(7));
            assert_eq!(open().await.expect("reopen").high_watermark(), 7);
            // A closed partition writes nothing more (its directory may be deleted next), even
            // if its high watermark moved after the close (a late follower fetch).
            partition.replica.lower_high_watermark(6);
            partition.checkpoint_high_watermark().await;
            assert_eq!(
                std::fs::read_to_string(&file).expect("file"),
                saved_line(7),
                "a closed partition saved its high watermark again"
            );
            // A damaged saved value is ignored; one past the log is held to the log's end, and
            // it goes at once: the log lost its tail, and may grow back with records that the
            // value would cover.
            std::fs::write(&file, "999").expect("write");
            assert_eq!(open().await.expect("reopen").high_watermark(), 7);
            assert!(!file.exists(), "a saved high watermark past the log's end outlived the open");
            // Only the first line counts (an older version wrote a shorter number).
            std::fs::write(&file, "00000000000000000004\n99").expect("write");
            assert_eq!(open().await.expect("reopen").high_watermark(), 4);
            for damaged in ["not a number", "", "-4"] {
                std::fs::write(&file, damaged).expect("write");
                assert_eq!(open().await.expect("reopen").high_watermark(), 0, "{damaged:?}");
            }
        });
    }

    #[test]
    fn a_cut_below_the_saved_high_watermark_removes_it_before_the_log_grows_back() {
        in_fresh_dir("hw-cut", |data| async move {
            let open = || open_clustered(&data);
            let (partition, file) = leader_alone(&data).await;
            partition.append(set(-1, 0, 2), 0).await.expect("append");
            partition.append(set(-1, 0, 3), 0).await.expect("append");
            partition.checkpoint_high_watermark().await;
            assert_eq!(std::fs::read_to_string(&file).expect("checkpointed"), saved_line(5));
            // Cut to 2 (an unclean case: below what was committed), then the log grows back
            // to 5 with records only this replica has: its high watermark stays at 2.
            partition.become_follower(1, 1, vec![0, 1], vec![0, 1]);
            // A cut asked for under a role that is no longer this replica's does nothing.
            assert_eq!(partition.truncate_to(2, (1, 0)).await.expect("truncate"), None);
            assert_eq!(
                (partition.log_end_offset(), std::fs::read_to_string(&file).expect("kept")),
                (5, saved_line(5))
            );
            assert_eq!(partition.truncate_to(2, (1, 1)).await.expect("truncate"), Some(2));
            assert!(!file.exists(), "the saved high watermark outlived a cut below it");
            partition.become_leader(2, vec![0, 1], vec![0, 1], 2_000, 2).await;
            partition.append(set(-1, 0, 3), 2).await.expect("append");
            assert_eq!((partition.log_end_offset(), partition.high_watermark()), (5, 2));
            // A crash now must not restore 5, which would expose offsets 2-4.
            assert_eq!(open().await.expect("reopen after a crash").high_watermark(), 0);
            partition.checkpoint_high_watermark().await;
            assert_eq!(open().await.expect("reopen after a crash").high_watermark(), 2);
        });
    }

    #[test]
    fn a_state_older_than_the_leaders_own_in_sync_change_does_not_undo_it() {
        in_fresh_dir("isr", |dir| async move {
            let partition = Partition::open(&dir, Rc::from("t"), 0, LogConfig::default(), 0, true)
                .await
                .expect("open");
            partition.become_leader(3, vec![0, 1, 2], vec![0, 1], 1_000, 5).await;
            assert_eq!(partition.replica.role().isr, vec![0, 1]);
            // This leader wrote state version 7 taking broker 2 back in...
            partition.set_isr(3, vec![0, 1, 2], 7);
            // ...and then a state read before that write (version 6) is applied late.
            partition.become_leader(3, vec![0, 1, 2], vec![0, 1], 1_100, 6).await;
            assert_eq!(
                partition.replica.role().isr,
                vec![0, 1, 2],
                "version 6 must not undo version 7's in-sync set"
            );
            // A state at or after it applies, as does a new leadership from any version.
            partition.become_leader(3, vec![0, 1, 2], vec![0], 1_200, 8).await;
            assert_eq!(partition.replica.role().isr, vec![0]);
            partition.set_isr(3, vec![0, 2], 7);
            assert_eq!(
                partition.replica.role().isr,
                vec![0],
                "an in-sync change older than the applied state is ignored too"
            );
            partition.become_leader(4, vec![0, 1, 2], vec![0, 1, 2], 1_300, 9).await;
            assert_eq!(
                (partition.replica.leader_epoch(), partition.replica.role().isr.clone()),
                (4, vec![0, 1, 2])
            );
            partition.close().await.expect("close");
        });
    }

    #[test]
    fn a_leader_whose_epoch_cannot_be_persisted_does_not_lead_until_a_later_state_retries() {
        in_fresh_dir("epoch-persist", |data| async move {
            let partition = open_clustered(&data).await.expect("open");
            // The epoch cache's temporary file is a directory: its persist fails (EISDIR).
            let temp = partition_dir(&data, "t", 0).join("leader-epoch-checkpoint.tmp");
            std::fs::create_dir(&temp).expect("block the epoch cache's temporary file");
            partition.become_leader(1, vec![0], vec![0], 1_000, 1).await;
            let role = partition.replica.role();
            assert_eq!(
                (role.leader, role.leader_epoch),
                (-1, 1),
                "led an epoch whose start is not on disk"
            );
            assert_eq!(
                partition.replica.latest_epoch(),
                None,
                "the cache kept what the disk lacks"
            );
            let refused = partition.append(set(-1, 0, 1), 1).await;
            assert!(
                matches!(refused, Err(AppendError::NotLeader)),
                "appended in an epoch not on disk: {refused:?}"
            );
            // The next state applied retries, and leads once the persist succeeds.
            std::fs::remove_dir(&temp).expect("unblock");
            partition.become_leader(1, vec![0], vec![0], 1_100, 2).await;
            assert!(partition.replica.is_leader());
            assert_eq!(partition.replica.latest_epoch(), Some(1));
            let appended = partition.append(set(-1, 0, 1), 1).await.expect("append once leading");
            assert_eq!(appended.base_offset, 0);
            let on_disk =
                LeaderEpochCache::load(&partition_dir(&data, "t", 0)).await.expect("load");
            assert_eq!(on_disk.entries(), &[(1, 0)]);
            partition.close().await.expect("close");
        });
    }

    #[test]
    fn sets_of_one_producer_in_one_group_append_are_checked_against_each_other() {
        in_fresh_dir("group", |dir| async move {
            let partition = Rc::new(
                Partition::open(&dir, Rc::from("t"), 0, LogConfig::default(), 0, false)
                    .await
                    .expect("open"),
            );
            // The log is held, so every append below queues; released, they are written as
            // one group, in this order.
            let held = partition.log.lock().await;
            let sets = [
                set(7, 0, 2),  // written at 0..=1
                set(7, 0, 2),  // a retry of it: the duplicate of a set not yet written
                set(7, 2, 3),  // the next sequence: at 2..=4
                set(7, 9, 1),  // a gap: refused
                set(8, 0, 1),  // another producer: at 5
                set(-1, 0, 1), // no producer id: at 6
            ];
            let tasks = queue_appends(&partition, &sets).await;
            drop(held);
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("append task"));
            }
            let offsets: Vec<Option<(i64, i64, bool)>> = outcomes
                .iter()
                .map(|o| o.as_ref().ok().map(|a| (a.base_offset, a.last_offset, a.duplicate)))
                .collect();
            assert_eq!(
                offsets,
                vec![
                    Some((0, 1, false)),
                    Some((0, 1, true)),
                    Some((2, 4, false)),
                    None,
                    Some((5, 5, false)),
                    Some((6, 6, false))
                ]
            );
            assert!(
                matches!(outcomes[3], Err(AppendError::OutOfOrder { expected: 5, got: 9 })),
                "the gap is refused against the group's own earlier set: {:?}",
                outcomes[3]
            );
            assert_eq!(
                partition.log_end_offset(),
                7,
                "the retry and the refused set were not written"
            );
            // Later appends see what the group recorded.
            let retried = partition.append(set(7, 2, 3), 0).await.expect("retry after the group");
            assert_eq!((retried.base_offset, retried.duplicate), (2, true));
            partition.close().await.expect("close");
        });
    }

    #[test]
    fn a_failed_group_append_leaves_no_duplicate_to_acknowledge() {
        in_fresh_dir("group-fail", |dir| async move {
            let log_dir = partition_dir(&dir, "t", 0);
            // An empty active segment whose file is /dev/full: every write fails (ENOSPC).
            let mut log =
                PartitionLog::open(&log_dir, LogConfig::default()).await.expect("open the log");
            log.append_shared(set(-1, 0, 1), 0).await.expect("first append");
            log.roll().await.expect("roll");
            let active = log_dir.join(fjord_storage::file_name(log.log_end_offset(), "log"));
            log.close().await.expect("close");
            std::fs::remove_file(&active).expect("remove the empty active segment");
            std::os::unix::fs::symlink("/dev/full", &active).expect("symlink /dev/full");

            let partition = Rc::new(
                Partition::open(&dir, Rc::from("t"), 0, LogConfig::default(), 0, false)
                    .await
                    .expect("open"),
            );
            let held = partition.log.lock().await;
            let sets = [set(7, 0, 2), set(7, 0, 2)];
            let tasks = queue_appends(&partition, &sets).await;
            drop(held);
            for (n, task) in tasks.into_iter().enumerate() {
                let outcome = task.await.expect("append task");
                // The set whose write failed, and its retry answered in the same group as its
                // duplicate: neither may be acknowledged.
                assert!(
                    outcome.is_err(),
                    "set {n} of a failed group append was acknowledged: {outcome:?}"
                );
            }
            // Nor may a later retry be taken for a duplicate of what was never written.
            let later = partition.append(set(7, 0, 2), 0).await;
            assert!(
                later.is_err(),
                "a retry after the failed group append was acknowledged: {later:?}"
            );
        });
    }
}
