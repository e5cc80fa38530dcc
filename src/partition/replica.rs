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

use fjord_replication::{LeaderEpochCache, ReplicaTracker};
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
    pub me: i32,
    pub clustered: bool,
    pub(super) role: RefCell<Role>,
    pub(crate) high_watermark: Cell<i64>,
    pub(super) tracker: RefCell<Option<ReplicaTracker>>,
    pub(super) epochs: RefCell<LeaderEpochCache>,
    /// Woken when the high watermark moves (acks=all producers wait on it).
    pub hw_advanced: Notify,
    /// A follower must check for divergence before its next fetch.
    pub needs_truncation: Cell<bool>,
    /// A request to change the in-sync set is on its way to the state file.
    pub isr_change_pending: Cell<bool>,
    /// When this replica last took a leadership (ms since the epoch; 0: never).
    pub(crate) leading_since_ms: Cell<i64>,
    /// The cluster state version the in-sync set came from: a state read before this
    /// leader's own in-sync change was written (and applied late, e.g. handed over by
    /// shard 0) must not undo it.
    pub(super) isr_version: Cell<u64>,
}

/// How long after taking a leadership a produce whose sequence numbers skip ahead is told to
/// retry (NOT_LEADER_OR_FOLLOWER) instead of being refused as out of order. Right after a
/// failover the batch it skips is usually still on its way: in flight to the old leader,
/// or refused by a broker the client still took for the leader. OUT_OF_ORDER_SEQUENCE_NUMBER
/// there makes librdkafka bump its producer epoch and renumber every unacknowledged
/// message, duplicating those the old leader had already written in any partition; a
/// retriable error makes it retry both batches in order.
pub const LEADERSHIP_SETTLE_MS: i64 = 5_000;

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
}
