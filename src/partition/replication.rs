//! A hosted partition taking its roles in replication: becoming leader or follower, the
//! in-sync set and high watermark it keeps as a leader, acks=all waits, and the follower's
//! appends and cuts of the leader's log. The state these keep (`ReplicaState`) and its
//! invariants are in `replica.rs`; this file is where that state meets the log.

use bytes::{Bytes, BytesMut};
use fjord_storage::batch::BatchHeader;
use fjord_storage::{PartitionLog, StorageError};
use tracing::{info, warn};

use super::producer::SequencedBatch;
use super::replica::{FetchPosition, ReplicationWait};
use super::Partition;

/// How often DeleteRecords looks whether the followers' log starts reached the offset: they
/// report theirs with each fetch, which an idle follower sends every few hundred ms.
const LOW_WATERMARK_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Why waiting for the low watermark ended without reaching the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowWatermarkWait {
    /// The deadline passed; the low watermark was this.
    TimedOut(i64),
    /// This replica stopped leading.
    NotLeader,
}

impl Partition {
    /// Takes the leadership of `leader_epoch` (from the cluster state of `version`).
    pub async fn become_leader(
        &self,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now_ms: i64,
        version: u64,
    ) {
        let replica = &self.replica;
        if replica.update_leadership(leader_epoch, &replicas, &isr, version, now_ms) {
            self.advance_high_watermark();
            return;
        }
        // No role while the epoch cache is persisted below: the fetcher must not act on an
        // answer from the old leader for this partition any more (it checks the role it
        // asked under), nor may anyone append before the new epoch is on disk.
        replica.drop_role(leader_epoch, replicas.clone(), isr.clone());
        let log_end = match self.start_epoch(leader_epoch).await {
            Ok(log_end) => log_end,
            Err(error) => {
                // Not led without its epoch on disk: the partition keeps no role (leader
                // -1 in the new epoch) and refuses appends; the next state applied retries.
                warn!(partition = ?self, leader_epoch, %error, "cannot persist the leader epoch cache; not leading");
                replica.wake_waiters();
                return;
            }
        };
        replica.lead(leader_epoch, replicas, isr, now_ms, version);
        info!(partition = ?self, leader_epoch, log_end, "became leader");
        self.advance_high_watermark();
    }

    /// Records and persists where `leader_epoch` starts: past any replicated append still
    /// being written (it checked the old role before the role was dropped), the new epoch
    /// starts after the old leader's last batch. Done holding the log, as every change of
    /// the epoch cache is, so that persists never overlap and a cut never lands between the
    /// assignment and its write. Returns the log end the epoch starts at.
    async fn start_epoch(&self, leader_epoch: i32) -> Result<i64, StorageError> {
        let _log = self.log.lock().await;
        let log_end = self.log_end_offset();
        self.replica.start_epoch(leader_epoch, log_end).await?;
        Ok(log_end)
    }

    /// Follows `leader` in `leader_epoch` (-1: no leader yet).
    pub fn become_follower(
        &self,
        leader: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
    ) {
        let new_leadership = self.replica.follow(leader, leader_epoch, replicas, isr);
        if new_leadership && leader >= 0 {
            info!(partition = ?self, leader, leader_epoch, "following");
        }
    }

    /// Applies an in-sync set this leader just wrote to the state (version `version`), if it
    /// still leads in that epoch, without waiting for the next state poll.
    pub fn set_isr(&self, leader_epoch: i32, isr: Vec<i32>, version: u64) {
        if self.replica.set_isr(leader_epoch, isr, version) {
            self.advance_high_watermark();
        }
    }

    /// Recomputes the high watermark (leader): the smallest log end in the in-sync set.
    pub fn advance_high_watermark(&self) -> bool {
        let replica = &self.replica;
        if !replica.clustered() || !replica.is_leader() {
            return false;
        }
        let log_end = self.log_end_offset();
        match replica.high_watermark_allowed(log_end) {
            Some(candidate) => replica.raise_high_watermark(candidate.min(log_end)),
            None => false,
        }
    }

    /// A follower fetched (leader side). Returns the in-sync set this leader now wants, if
    /// it differs from the current one.
    pub fn on_follower_fetch(
        &self,
        follower: i32,
        fetch: FetchPosition,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<Vec<i32>> {
        let log_end = self.log_end_offset();
        let fetch = FetchPosition { offset: fetch.offset.min(log_end), ..fetch };
        if !self.replica.on_follower_fetch(follower, fetch, log_end, now_ms) {
            return None;
        }
        self.advance_high_watermark();
        self.wanted_isr(now_ms, lag_max_ms)
    }

    /// The in-sync set this leader wants now (a lagging follower out, a caught-up one in).
    pub fn wanted_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        self.replica.wanted_isr(now_ms, lag_max_ms)
    }

    /// The smallest log start among this replica and, when it leads in a cluster, its
    /// in-sync followers (Kafka's `lowWatermarkIfLeader`).
    pub fn low_watermark(&self) -> i64 {
        let log_start = self.log_start_offset();
        if !self.replica.clustered() {
            return log_start;
        }
        self.replica.low_watermark(log_start).unwrap_or(log_start)
    }

    /// Waits until the low watermark reaches `offset` (DeleteRecords: every in-sync replica
    /// has deleted the records below it), polling every `LOW_WATERMARK_POLL`, until
    /// `deadline`. `Ok` with the low watermark then, or `Err` with the last one seen (or
    /// `NotLeader` if the leadership moved meanwhile).
    pub async fn wait_low_watermark(
        &self,
        offset: i64,
        deadline: tokio::time::Instant,
    ) -> Result<i64, LowWatermarkWait> {
        loop {
            if self.replica.clustered() && !self.replica.is_leader() {
                return Err(LowWatermarkWait::NotLeader);
            }
            let low = self.low_watermark();
            if low >= offset {
                return Ok(low);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(LowWatermarkWait::TimedOut(low));
            }
            tokio::time::sleep_until(deadline.min(now + LOW_WATERMARK_POLL)).await;
        }
    }

    /// Waits until every in-sync replica holds the records below `offset` (acks=all).
    /// The in-sync set must still hold `min_insync` replicas when it does: a follower that
    /// dies while the records wait shrinks the set, and the high watermark would otherwise
    /// pass them with fewer copies than promised (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub async fn wait_replicated(
        &self,
        offset: i64,
        timeout: std::time::Duration,
        min_insync: i32,
    ) -> Result<(), ReplicationWait> {
        if !self.replica.clustered() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let replicated = || -> Option<Result<(), ReplicationWait>> {
            if self.high_watermark() < offset {
                return None;
            }
            let in_sync = self.replica.in_sync_count() as i32;
            Some(if in_sync >= min_insync {
                Ok(())
            } else {
                Err(ReplicationWait::NotEnoughReplicas)
            })
        };
        loop {
            if !self.replica.is_leader() {
                return Err(ReplicationWait::NotLeader);
            }
            self.advance_high_watermark();
            if let Some(outcome) = replicated() {
                return outcome;
            }
            let advanced = self.replica.high_watermark_moved();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if let Some(outcome) = replicated() {
                return outcome;
            }
            if tokio::time::timeout_at(deadline, advanced).await.is_err() {
                return Err(ReplicationWait::TimedOut);
            }
        }
    }

    /// Appends batches fetched from the leader, verbatim, and learns the epochs they carry.
    pub async fn append_replicated(
        &self,
        records: Bytes,
        leader_high_watermark: i64,
    ) -> Result<(), StorageError> {
        let mut epochs_seen = Vec::new();
        let mut sequenced = Vec::new();
        // Transactional batches: (producer id, epoch, base, last, control type if a marker).
        let mut transactional = Vec::new();
        let mut rest: &[u8] = &records;
        while let Some(header) = BatchHeader::view(rest) {
            epochs_seen.push((header.partition_leader_epoch.get(), header.base_offset.get()));
            // Idempotent producers' sequences travel with the batches, so a follower that
            // becomes leader still recognises a retried batch.
            if header.producer_id.get() >= 0 && header.base_sequence.get() >= 0 {
                let count = header.records_count.get().max(1);
                sequenced.push((
                    header.producer_id.get(),
                    header.producer_epoch.get(),
                    SequencedBatch {
                        first_sequence: header.base_sequence.get(),
                        last_sequence: header.base_sequence.get().wrapping_add(count - 1),
                        base_offset: header.base_offset.get(),
                        last_offset: header.last_offset(),
                        max_timestamp: header.max_timestamp.get(),
                    },
                ));
            }
            let size = header.size() as usize;
            if size == 0 || size > rest.len() {
                break;
            }
            if header.is_transactional() {
                let control = if header.is_control() {
                    Some(fjord_storage::batch::control_type(&rest[..size]))
                } else {
                    None
                };
                transactional.push((
                    header.producer_id.get(),
                    header.producer_epoch.get(),
                    header.base_offset.get(),
                    header.last_offset(),
                    control,
                ));
            }
            rest = &rest[size..];
        }
        if !transactional.is_empty() && self.txn_start_saved.get().is_none() {
            self.save_txn_start(self.log_end_offset()).await?;
        }
        {
            // Held until the epochs are persisted (see `become_leader`).
            let mut log = self.log.lock().await;
            let result = log.append_replicated(BytesMut::from(&records[..])).await;
            self.refresh(&log);
            result?;
            {
                let mut producers = self.producers.borrow_mut();
                for (producer_id, epoch, batch) in sequenced {
                    tracing::trace!(partition = ?self, producer_id, epoch, ?batch, "idempotent set replicated");
                    producers.record(producer_id, epoch, batch);
                }
            }
            for (producer_id, epoch, base, last, control) in transactional {
                self.follow_transaction(&mut log, producer_id, epoch, base, last, control).await?;
            }
            if self.replica.assign_epochs(epochs_seen) {
                self.persist_epochs().await?;
            }
        }
        self.follower_high_watermark(leader_high_watermark);
        Ok(())
    }

    /// A follower's high watermark: the leader's, as far as this log reaches.
    pub fn follower_high_watermark(&self, leader_high_watermark: i64) {
        self.replica.raise_high_watermark(leader_high_watermark.min(self.log_end_offset()));
    }

    /// Cuts this replica's log at `offset` (divergence from the leader) and forgets epochs and
    /// producer state past it, if it still follows as `expected` (leader, epoch) once it holds
    /// the log; `None` if the role changed meanwhile (nothing was cut). `become_leader` drops
    /// the role before it waits for the log, so a new leader never records its epoch at a
    /// log end that a cut then removes.
    pub async fn truncate_to(
        &self,
        offset: i64,
        expected: (i32, i32),
    ) -> Result<Option<i64>, StorageError> {
        // Never below the log start: what retention removed cannot diverge.
        let offset = offset.max(self.log_start_offset());
        let end = self
            .cut_log(expected, offset, async |log: &mut PartitionLog| {
                log.truncate_to(offset).await.map(|end| (end, end))
            })
            .await?;
        if let Some(end) = end {
            warn!(partition = ?self, offset, log_end_offset = end, "truncated divergent tail");
        }
        Ok(end)
    }

    /// Empties the log and restarts it at `offset` (the leader's log no longer overlaps), if
    /// it still follows as `expected` once it holds the log (see `truncate_to`); `false` if
    /// the role changed meanwhile.
    pub async fn restart_at(
        &self,
        offset: i64,
        expected: (i32, i32),
    ) -> Result<bool, StorageError> {
        let cut = self
            .cut_log(expected, offset, async |log: &mut PartitionLog| {
                log.truncate_fully_and_start_at(offset).await.map(|()| (offset, i64::MIN))
            })
            .await?;
        if cut.is_some() {
            // The cut left it at most at the log end, `offset`: it restarts there.
            self.replica.raise_high_watermark(offset);
        }
        Ok(cut.is_some())
    }

    /// The part `truncate_to` and `restart_at` share: if this replica still follows as
    /// `expected` once it holds the log, `cut` changes the log and says where the log ends and
    /// from which offset epochs and producer state go; they go holding the log, before a new
    /// leadership (which waits for the log) can record its own. The saved high watermark goes
    /// if it is above `offset` or the new end (a batch across `offset` goes whole), holding
    /// its lock until the lowered high watermark is in place, so no checkpoint saves the one
    /// from before the cut. `None` if the role changed (nothing was cut).
    async fn cut_log(
        &self,
        expected: (i32, i32),
        offset: i64,
        cut: impl AsyncFnOnce(&mut PartitionLog) -> Result<(i64, i64), StorageError>,
    ) -> Result<Option<i64>, StorageError> {
        let mut saved = self.hw_file.lock().await;
        let mut log = self.log.lock().await;
        if !self.still_follows(expected) {
            return Ok(None);
        }
        self.forget_high_watermark_above(&mut saved, offset).await?;
        let result = cut(&mut log).await;
        self.refresh(&log);
        self.lower_high_watermark_to_log_end();
        let (end, trim_from) = result?;
        self.producers.borrow_mut().truncate_from(trim_from);
        self.txns.borrow_mut().truncate_from(trim_from);
        if self.replica.truncate_epochs_from(trim_from) {
            self.persist_epochs().await?;
        }
        self.forget_high_watermark_above(&mut saved, end).await?;
        Ok(Some(end))
    }

    /// Writes the epoch cache as it is now. Callers hold the log, so writes never overlap
    /// (they share one temporary file) and each writes the latest cache.
    async fn persist_epochs(&self) -> Result<(), StorageError> {
        self.replica.persist_epochs().await.map_err(|error| {
            warn!(partition = ?self, %error, "cannot persist the leader epoch cache");
            StorageError::from(error)
        })
    }

    /// Whether this replica follows in the role (leader, epoch) a fetcher acted on.
    fn still_follows(&self, expected: (i32, i32)) -> bool {
        let role = self.replica.role();
        (role.leader, role.leader_epoch) == expected && role.leader != self.replica.me()
    }

    /// After a cut: the high watermark never stays above the log end, or it would rise again
    /// with records appended after the cut, committed or not.
    fn lower_high_watermark_to_log_end(&self) {
        self.replica.lower_high_watermark(self.log_end_offset());
    }
}
