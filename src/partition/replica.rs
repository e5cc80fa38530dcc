//! A hosted partition's place in replication: leader or follower, the leader epoch, the
//! replicas and in-sync set, the high watermark, and (on the leader) each follower's
//! progress. The cluster state decides the role (`become_leader`, `become_follower`); this
//! file keeps the invariants that follow from it:
//!
//! - a leader stamps its epoch into every batch and records where each epoch starts
//!   (`leader-epoch-checkpoint`);
//! - a follower appends the leader's batches verbatim and, before following a new leader,
//!   cuts its log where its latest epoch ended on the leader (OffsetForLeaderEpoch), so a
//!   dead leader's unreplicated tail never survives;
//! - the high watermark only grows while a leadership lasts, and never passes the log end.
//!
//! On a single broker (no cluster) the partition always leads, alone in its in-sync set.

use std::cell::{Cell, RefCell};

use fjord_replication::{LeaderEpochCache, ReplicaTracker, ReplicationError};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The role given by the cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// -1: no leader (offline, or not yet known).
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

pub struct ReplicaState {
    me: i32,
    clustered: bool,
    role: RefCell<Role>,
    high_watermark: Cell<i64>,
    /// Each follower's progress, while this replica leads.
    tracker: RefCell<Option<ReplicaTracker>>,
    /// Where each leader epoch starts; in memory as on disk, except between an assignment
    /// and its persist (made holding the log).
    epochs: RefCell<LeaderEpochCache>,
    /// Woken when the high watermark moves (acks=all producers wait on it).
    hw_advanced: Notify,
    /// A follower must check for divergence before its next fetch.
    pub needs_truncation: Cell<bool>,
    /// A request to change the in-sync set is on its way to the state file.
    pub isr_change_pending: Cell<bool>,
    /// When this replica last took a leadership (ms since the epoch; 0: never).
    leading_since_ms: Cell<i64>,
    /// The cluster state version the in-sync set came from: a state read before this
    /// leader's own in-sync change was written (and applied late, e.g. handed over by
    /// shard 0) must not undo it.
    isr_version: Cell<u64>,
}

/// How long after taking a leadership a produce whose sequence numbers skip ahead is told to
/// retry (NOT_LEADER_OR_FOLLOWER) instead of being refused as out of order. Right after a
/// failover the batch it skips is usually still on its way: in flight to the old leader,
/// or refused by a broker the client still took for the leader. OUT_OF_ORDER_SEQUENCE_NUMBER
/// there makes librdkafka bump its producer epoch and renumber every unacknowledged
/// message, duplicating those the old leader had already written in any partition; a
/// retriable error makes it retry both batches in order.
pub const LEADERSHIP_SETTLE_MS: i64 = 5_000;

/// Where a fetch reads a partition from: `offset`, and the fetcher's own log start (a
/// follower's, from Fetch v5 on; -1 from consumers and older fetches). A follower holds
/// every record below `offset` and none below `log_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub offset: i64,
    pub log_start: i64,
}

/// Why waiting for replication ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationWait {
    NotLeader,
    TimedOut,
    /// Replicated, but to fewer in-sync replicas than `min.insync.replicas`.
    NotEnoughReplicas,
}

impl ReplicaState {
    pub fn new(
        me: i32,
        clustered: bool,
        log_start: i64,
        log_end: i64,
        epochs: LeaderEpochCache,
    ) -> ReplicaState {
        let role = if clustered {
            Role { leader: -1, leader_epoch: -1, replicas: Vec::new(), isr: Vec::new() }
        } else {
            Role { leader: me, leader_epoch: 0, replicas: vec![me], isr: vec![me] }
        };
        ReplicaState {
            me,
            clustered,
            role: RefCell::new(role),
            // Clustered: start low and let the in-sync set move it, unless a checkpoint or a
            // clean close saved it (`Partition::open` restores it).
            high_watermark: Cell::new(if clustered { log_start } else { log_end }),
            tracker: RefCell::new(None),
            epochs: RefCell::new(epochs),
            hw_advanced: Notify::new(),
            needs_truncation: Cell::new(false),
            isr_change_pending: Cell::new(false),
            leading_since_ms: Cell::new(0),
            isr_version: Cell::new(0),
        }
    }

    /// A high watermark saved by a checkpoint or a clean close (already within the log),
    /// before any role.
    pub fn restore_high_watermark(&self, offset: i64) {
        self.high_watermark.set(offset);
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether `broker` is in the in-sync set this replica knows.
    pub fn in_sync(&self, broker: i32) -> bool {
        self.role.borrow().isr.contains(&broker)
    }

    pub fn is_leader(&self) -> bool {
        self.role.borrow().leader == self.me
    }

    pub fn leader_epoch(&self) -> i32 {
        self.role.borrow().leader_epoch
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.borrow().latest_epoch()
    }

    /// The leader epoch `offset` was written in (ListOffsets answers it), -1 if unknown. A
    /// partition that never changed leader keeps no epoch entries: everything in it was
    /// written in its current epoch.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        let epochs = self.epochs.borrow();
        match epochs.latest_epoch() {
            None => self.leader_epoch(),
            Some(_) => epochs.epoch_for_offset(offset).unwrap_or(-1),
        }
    }

    /// OffsetForLeaderEpoch, answered from this replica's epoch cache.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        self.epochs.borrow().end_offset_for(epoch, log_end)
    }

    /// This broker's id.
    pub fn me(&self) -> i32 {
        self.me
    }

    /// Whether the partition is replicated (false: a single broker, always leading).
    pub fn clustered(&self) -> bool {
        self.clustered
    }

    /// The high watermark as kept (the partition holds it within its log end).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }

    /// Moves the high watermark up to `offset` (never down) and wakes acks=all waiters if
    /// it moved.
    pub(super) fn raise_high_watermark(&self, offset: i64) -> bool {
        if offset <= self.high_watermark.get() {
            return false;
        }
        self.high_watermark.set(offset);
        self.hw_advanced.notify_waiters();
        true
    }

    /// Brings the high watermark down to `offset` if it is above: only after a cut of the
    /// log, which ends the leadership it grew in.
    pub(super) fn lower_high_watermark(&self, offset: i64) {
        if self.high_watermark.get() > offset {
            self.high_watermark.set(offset);
        }
    }

    /// A future that completes when the high watermark moves or the role is lost.
    pub(super) fn high_watermark_moved(&self) -> Notified<'_> {
        self.hw_advanced.notified()
    }

    /// Whether this replica took its leadership less than `LEADERSHIP_SETTLE_MS` ago.
    pub(super) fn settling(&self, now_ms: i64) -> bool {
        now_ms - self.leading_since_ms.get() < LEADERSHIP_SETTLE_MS
    }

    /// The leadership of `leader_epoch` goes on (this replica already leads in it): its
    /// replica set changes, and its in-sync set too unless `version` is older than the state
    /// the current one came from. `false` if this replica does not lead in that epoch.
    pub(super) fn update_leadership(
        &self,
        leader_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        version: u64,
        now_ms: i64,
    ) -> bool {
        let mut role = self.role.borrow_mut();
        if role.leader != self.me || role.leader_epoch != leader_epoch {
            return false;
        }
        if role.replicas != replicas {
            if let Some(tracker) = self.tracker.borrow_mut().as_mut() {
                tracker.set_replicas(replicas, now_ms);
            }
        }
        role.replicas = replicas.to_vec();
        if version >= self.isr_version.get() {
            role.isr = isr.to_vec();
            self.isr_version.set(version);
        }
        true
    }

    /// No leader in `leader_epoch` as far as this replica knows: nothing is appended, and
    /// the fetcher drops any answer it asked for under the role before.
    pub(super) fn drop_role(&self, leader_epoch: i32, replicas: Vec<i32>, isr: Vec<i32>) {
        *self.role.borrow_mut() = Role { leader: -1, leader_epoch, replicas, isr };
        self.needs_truncation.set(false);
    }

    /// Wakes acks=all waiters so that they find the role gone.
    pub(super) fn wake_waiters(&self) {
        self.hw_advanced.notify_waiters();
    }

    /// Leads in `leader_epoch` (its start already on disk), tracking `replicas` from
    /// `now_ms`, with the in-sync set of state `version`.
    pub(super) fn lead(
        &self,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now_ms: i64,
        version: u64,
    ) {
        *self.tracker.borrow_mut() = Some(ReplicaTracker::new(self.me, &replicas, now_ms));
        self.leading_since_ms.set(now_ms);
        *self.role.borrow_mut() = Role { leader: self.me, leader_epoch, replicas, isr };
        self.isr_version.set(version);
        self.needs_truncation.set(false);
    }

    /// Follows `leader` in `leader_epoch` (-1: no leader). Returns whether the leadership is
    /// a new one: then the follower tracker goes, a divergence check is due (with a leader)
    /// and acks=all waiters learn that this replica no longer leads.
    pub(super) fn follow(
        &self,
        leader: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
    ) -> bool {
        let new_leadership = {
            let role = self.role.borrow();
            role.leader != leader || role.leader_epoch != leader_epoch
        };
        *self.role.borrow_mut() = Role { leader, leader_epoch, replicas, isr };
        if new_leadership {
            *self.tracker.borrow_mut() = None;
            self.needs_truncation.set(leader >= 0);
            self.hw_advanced.notify_waiters();
        }
        new_leadership
    }

    /// Applies an in-sync set this leader wrote to the state as `version`, if it still leads
    /// in `leader_epoch` and no newer state was applied. Returns whether it did.
    pub(super) fn set_isr(&self, leader_epoch: i32, isr: Vec<i32>, version: u64) -> bool {
        let mut role = self.role.borrow_mut();
        if role.leader != self.me
            || role.leader_epoch != leader_epoch
            || version < self.isr_version.get()
        {
            return false;
        }
        role.isr = isr;
        self.isr_version.set(version);
        true
    }

    /// How many replicas are in the in-sync set.
    pub(super) fn in_sync_count(&self) -> usize {
        self.role.borrow().isr.len()
    }

    /// The high watermark the in-sync set allows with this leader's log ending at
    /// `log_end`; `None` when not leading (no follower tracker).
    pub(super) fn high_watermark_allowed(&self, log_end: i64) -> Option<i64> {
        let isr = self.role.borrow().isr.clone();
        let tracker = self.tracker.borrow();
        Some(tracker.as_ref()?.high_watermark(&isr, log_end))
    }

    /// Records a follower's fetch at `fetch_offset` (leader side); `false` if it changed
    /// nothing or this replica does not lead.
    pub(super) fn on_follower_fetch(
        &self,
        follower: i32,
        fetch: FetchPosition,
        log_end: i64,
        now_ms: i64,
    ) -> bool {
        let mut tracker = self.tracker.borrow_mut();
        tracker.as_mut().is_some_and(|tracker| {
            tracker.on_log_start(follower, fetch.log_start);
            tracker.on_fetch(follower, fetch.offset, log_end, now_ms)
        })
    }

    /// The smallest log start among this leader (`log_start`) and its in-sync followers;
    /// `None` when not leading.
    pub(super) fn low_watermark(&self, log_start: i64) -> Option<i64> {
        let isr = self.role.borrow().isr.clone();
        let tracker = self.tracker.borrow();
        Some(tracker.as_ref()?.low_watermark(&isr, log_start))
    }

    /// The in-sync set this leader wants now, if it differs from the current one.
    pub(super) fn wanted_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        let isr = self.role.borrow().isr.clone();
        let tracker = self.tracker.borrow();
        tracker.as_ref()?.wanted_isr(&isr, self.high_watermark.get(), now_ms, lag_max_ms)
    }

    /// Records where each (epoch, start offset) starts; `true` if the cache changed (the
    /// caller, holding the log, persists it).
    pub(super) fn assign_epochs(&self, starts: impl IntoIterator<Item = (i32, i64)>) -> bool {
        let mut epochs = self.epochs.borrow_mut();
        let mut changed = false;
        for (epoch, offset) in starts {
            changed |= epochs.assign(epoch, offset);
        }
        changed
    }

    /// Forgets the epochs that start at or after `offset` (the log was cut there); `true`
    /// if the cache changed (the caller, holding the log, persists it).
    pub(super) fn truncate_epochs_from(&self, offset: i64) -> bool {
        self.epochs.borrow_mut().truncate_from(offset)
    }

    /// Writes the epoch cache as it is now. Callers hold the log, so writes never overlap
    /// (they share one temporary file) and each writes the latest cache.
    pub(super) async fn persist_epochs(&self) -> Result<(), ReplicationError> {
        let epochs = self.epochs.borrow().clone();
        epochs.persist().await
    }

    /// Records and persists that `leader_epoch` starts at `log_end` (the caller holds the
    /// log). If the persist fails the cache goes back to what the disk holds, so that a
    /// later attempt assigns and persists it again.
    pub(super) async fn start_epoch(
        &self,
        leader_epoch: i32,
        log_end: i64,
    ) -> Result<(), ReplicationError> {
        let before = self.epochs.borrow().clone();
        if !self.assign_epochs([(leader_epoch, log_end)]) {
            return Ok(());
        }
        let persisted = self.persist_epochs().await;
        if persisted.is_err() {
            *self.epochs.borrow_mut() = before;
        }
        persisted
    }
}
