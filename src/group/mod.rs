//! The group coordinator: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets (OffsetCommit, OffsetFetch), for every group
//! of this broker.
//!
//! A group moves through Empty -> PreparingRebalance -> CompletingRebalance -> Stable, as in
//! Kafka. A rebalance collects JoinGroup requests (each held open until the join phase ends),
//! picks the protocol most members prefer, bumps the generation and answers every member; the
//! leader gets the member list and computes the assignment client-side, then SyncGroup hands
//! each member its part. Members that stop heartbeating for their session timeout are removed
//! and the group rebalances. Timers run from one tick task.
//!
//! Committed offsets are data: every commit is appended (and fdatasync'd) to the internal
//! topic `__consumer_offsets` before it is acknowledged, and the coordinator's offsets are
//! rebuilt from that log on start. So is a group's metadata (Kafka's group metadata record:
//! generation, protocol, leader, members and assignments), stored when the leader's
//! assignment arrives and before it is handed out: a coordinator that takes the group over
//! carries on in the same generation, and members that keep heartbeating never notice.
//!
//! Record format in `__consumer_offsets` (inside ordinary uncompressed v2 batches):
//! ```text
//! key   = version u16 (1) | group u16-len string | topic u16-len string | partition i32
//! value = version u16 (1) | offset i64 | leader epoch i32 | commit time ms i64
//!         | metadata i32-len string (-1 = null)
//! a null value is a tombstone (the group was deleted)
//! ```
//! Group metadata records (key version 2) are laid out in `metadata_record.rs`.
//!
//! The files: the coordinator and its groups' state (`mod.rs`, whose private fields its
//! files share); JoinGroup (`join.rs`) and the end of a join phase (`rebalance.rs`);
//! SyncGroup, Heartbeat, LeaveGroup and the timers (`membership.rs`); committed offsets
//! (`offsets.rs`) and their records (`offsets_record.rs`), OffsetDelete
//! (`offset_delete.rs`); the group's metadata, stored and
//! loaded (`metadata.rs`), and its record (`metadata_record.rs`); taking over and giving up an
//! offsets partition's groups, replaying its log (`loading.rs`); DescribeGroups and
//! ListGroups (`description.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::ids::java_string_hash;
use crate::partition::Partition;

mod description;
mod expiry;
mod join;
mod loading;
mod membership;
mod metadata;
pub(crate) mod metadata_record;
mod offset_delete;
mod offsets;
pub(crate) mod offsets_record;
mod rebalance;
mod txn_offsets;

pub use description::GroupDescription;
pub use loading::GroupError;
pub use offset_delete::OffsetDeletions;
pub use offsets::GroupOffsets;
pub use offsets_record::Committed;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The configs `__consumer_offsets` is created with, as Kafka creates it: compacted, so each
/// group's partition keeps only its last commit and a deleted group's tombstones go after
/// `delete.retention.ms`, in 100 MiB segments. The coordinator's replay reads whatever the
/// cleaner left: the last record per key is all it applies anyway.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
    ])
}
/// Groups one broker coordinates.
pub const GROUPS_MAX: usize = 10_000;
/// Members per group (Kafka's `group.max.size` is unlimited by default; a bound keeps a
/// runaway client from exhausting memory).
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// Committed partitions per group.
pub const COMMITTED_PARTITIONS_PER_GROUP_MAX: usize = 100_000;
/// Bytes of commit metadata per partition (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Bytes of one member's protocol metadata or assignment.
pub const MEMBER_METADATA_BYTES_MAX: usize = 1024 * 1024;

/// Coordinator settings.

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// How long a new group's first rebalance waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u64,
    /// The broker's wake-up for parked fetches, notified after every append to
    /// `__consumer_offsets` as a produce notifies it: a follower's fetch parked on an
    /// offsets partition must come back at once, since the commit waits for it.
    pub appended: std::sync::Arc<tokio::sync::Notify>,
    /// How long committed offsets nobody reads are kept (Kafka's `offsets.retention.minutes`,
    /// in ms here; `expiry.rs`).
    pub offsets_retention_ms: u64,
    /// How often offsets are checked for expiry (`offsets.retention.check.interval.ms`).
    pub offsets_retention_check_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata); only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    joined_seq: u64,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, with when they expire unused.
    pending: HashMap<String, Instant>,
    static_members: HashMap<String, String>,
    offsets: HashMap<(String, i32), Committed>,
    /// PreparingRebalance: when the join phase ends at the latest.
    join_deadline: Option<Instant>,
    /// PreparingRebalance: the join phase may not end before this (initial delay).
    join_not_before: Option<Instant>,
    /// CompletingRebalance: when the leader's SyncGroup is due.
    sync_deadline: Option<Instant>,
    /// When the group last changed state.
    changed_at: Instant,
    /// Whether `__consumer_offsets` may hold a metadata record of the group (stored or
    /// loaded): forgetting the group then needs a tombstone.
    metadata_stored: bool,
    /// The topics the members subscribe to, as of the current generation's start or the
    /// group's load (`None`: not a consumer group, or not known); OffsetDelete keeps the
    /// offsets of these (`offset_delete.rs`).
    subscribed: Option<std::collections::BTreeSet<String>>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            offsets: HashMap::new(),
            join_deadline: None,
            join_not_before: None,
            sync_deadline: None,
            changed_at: Instant::now(),
            metadata_stored: false,
            subscribed: None,
        }
    }

    /// Removes a member, answering any JoinGroup or SyncGroup it has waiting with
    /// UNKNOWN_MEMBER_ID; it stops being the static member of its instance id, and the leader.
    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id {
                if self.static_members.get(instance).is_some_and(|id| id == member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResult::error(ResponseError::UnknownMemberId, member_id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResult {
                    error: Some(ResponseError::UnknownMemberId),
                    ..SyncResult::default()
                });
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }
}

pub struct Coordinator {
    /// This coordinator, for the tasks that store group metadata (they outlive the request).
    me: Weak<Coordinator>,
    config: GroupConfig,
    groups: RefCell<HashMap<String, Group>>,
    /// The partitions of `__consumer_offsets` (`None` where this broker holds no replica); a
    /// group's commits go to partition `hash(group) mod len`.
    offsets_log: RefCell<Vec<Option<Rc<Partition>>>>,
    /// The offsets partitions whose groups this broker coordinates (those it leads).
    owned: RefCell<std::collections::BTreeSet<usize>>,
    next_member_seq: std::cell::Cell<u64>,
    /// In-sync replicas a commit needs (`min.insync.replicas`).
    pub commit_min_insync: std::cell::Cell<i32>,
    /// When the timers last looked for expired offsets.
    expiry_checked: std::cell::Cell<Instant>,
    /// Commits appended but not yet applied, per (group, topic, partition): expiry leaves
    /// these partitions alone (`expiry.rs`), as Kafka skips pending commits.
    pending_commits: RefCell<HashMap<(String, String, i32), u32>>,
    /// Groups whose expired offsets' tombstones are being stored.
    expiring_groups: RefCell<std::collections::HashSet<String>>,
    /// Offsets committed in transactions not yet ended, per producer id (TxnOffsetCommit):
    /// in the log, applied when the transaction's commit marker is (`txn_offsets.rs`).
    txn_offsets: RefCell<HashMap<i64, Vec<PendingTxnOffset>>>,
}

/// One offset of a transaction not yet ended: (group, topic, partition, what is committed).
type PendingTxnOffset = (String, String, i32, Committed);

/// Java's `String.hashCode`, as Kafka uses it to place a group in `__consumer_offsets`.
/// Kafka's placement of a group: `Utils.abs(groupId.hashCode) % partitions`, where
/// `Utils.abs(Integer.MIN_VALUE)` is 0.
pub fn offsets_partition_index(group_id: &str, partitions: usize) -> usize {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.unsigned_abs() };
    abs as usize % partitions.max(1)
}

impl Coordinator {
    /// Builds the coordinator over the offsets topic's partitions. With `own_all` (a single
    /// broker) it coordinates every group at once and replays every partition; in a cluster
    /// it takes over a partition's groups when it becomes that partition's leader
    /// (`set_owned`).
    pub async fn open(
        config: GroupConfig,
        offsets_log: Vec<Option<Rc<Partition>>>,
        own_all: bool,
    ) -> Result<Rc<Coordinator>, GroupError> {
        let coordinator = Rc::new_cyclic(|me| Coordinator {
            me: me.clone(),
            config,
            groups: RefCell::new(HashMap::new()),
            offsets_log: RefCell::new(offsets_log),
            owned: RefCell::new(std::collections::BTreeSet::new()),
            next_member_seq: std::cell::Cell::new(0),
            commit_min_insync: std::cell::Cell::new(1),
            expiry_checked: std::cell::Cell::new(Instant::now()),
            pending_commits: RefCell::new(HashMap::new()),
            expiring_groups: RefCell::new(std::collections::HashSet::new()),
            txn_offsets: RefCell::new(HashMap::new()),
        });
        if own_all {
            let partitions = coordinator.offsets_log.borrow().clone();
            let count = partitions.len();
            for (index, partition) in partitions.into_iter().enumerate() {
                coordinator.set_owned(index, count, true, partition).await?;
            }
        }
        Ok(coordinator)
    }

    /// The offsets partition a group belongs to.
    pub fn partition_of(&self, group_id: &str) -> usize {
        let count = self.offsets_log.borrow().len().max(1);
        offsets_partition_index(group_id, count)
    }

    /// Whether this broker coordinates `group_id` now.
    pub fn owns(&self, group_id: &str) -> bool {
        self.owned.borrow().contains(&self.partition_of(group_id))
    }

    fn offsets_partition(&self, group_id: &str) -> Option<Rc<Partition>> {
        let index = self.partition_of(group_id);
        self.offsets_log.borrow().get(index).cloned().flatten()
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let seq = self.next_member_seq.get() + 1;
        self.next_member_seq.set(seq);
        let random = crate::ids::random_id();
        let client = if client_id.is_empty() { "member" } else { client_id };
        format!("{client}-{}-{seq}", crate::ids::hex(&random[..8]))
    }
}
