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
//! rebuilt from that log on start. Group membership is not persisted: after a restart groups
//! are Empty and members rejoin (their old member ids are unknown, so they get new ones).
//!
//! Record format in `__consumer_offsets` (inside ordinary uncompressed v2 batches):
//! ```text
//! key   = version u16 (1) | group u16-len string | topic u16-len string | partition i32
//! value = version u16 (1) | offset i64 | leader epoch i32 | commit time ms i64
//!         | metadata i32-len string (-1 = null)
//! a null value is a tombstone (the group was deleted)
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_storage::batch::{build, BatchHeader};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::ids::java_string_hash;
use crate::partition::Partition;

pub(crate) mod offsets_record;

pub use offsets_record::Committed;
use offsets_record::{decode_key, decode_value, encode_key, encode_value, parse_records};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
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
/// How long a group without members and without committed offsets is remembered (Kafka
/// drops such groups at its periodic cleanup, every 10 minutes by default).
const EMPTY_GROUP_EXPIRY: Duration = Duration::from_secs(600);
/// How often timers (session expiry, join and sync deadlines) are checked.
const TICK_MS: u64 = 100;
/// How long an offset commit waits for the in-sync replicas.
const COMMIT_REPLICATION_WAIT: Duration = Duration::from_secs(10);
/// Bytes read at a time while replaying the offsets log.
const REPLAY_READ_BYTES: u64 = 1024 * 1024;

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// How long a new group's first rebalance waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u64,
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

/// Committed offsets by topic, then partition (`None`: nothing committed there).
pub type GroupOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

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
        }
    }
}

/// A described group, for DescribeGroups and ListGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct Coordinator {
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
}

/// Java's `String.hashCode`, as Kafka uses it to place a group in `__consumer_offsets`.
/// Kafka's placement of a group: `Utils.abs(groupId.hashCode) % partitions`, where
/// `Utils.abs(Integer.MIN_VALUE)` is 0.
pub fn offsets_partition_index(group_id: &str, partitions: usize) -> usize {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.unsigned_abs() };
    abs as usize % partitions.max(1)
}

/// Why the coordinator could not take over an offsets partition's groups.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("replaying {partition} at offset {offset}: {source}")]
    Replay {
        partition: String,
        offset: i64,
        #[source]
        source: fjord_storage::StorageError,
    },
    #[error("replaying {partition}: reading the records at offset {offset}: {source}")]
    ReplayRead {
        partition: String,
        offset: i64,
        #[source]
        source: fjord_storage::StorageError,
    },
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
        let coordinator = Rc::new(Coordinator {
            config,
            groups: RefCell::new(HashMap::new()),
            offsets_log: RefCell::new(offsets_log),
            owned: RefCell::new(std::collections::BTreeSet::new()),
            next_member_seq: std::cell::Cell::new(0),
            commit_min_insync: std::cell::Cell::new(1),
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

    /// Takes over (replaying its log) or gives up the groups of offsets partition `index` of
    /// `count` (the offsets topic may appear after the coordinator starts).
    pub async fn set_owned(
        &self,
        index: usize,
        count: usize,
        leads: bool,
        partition: Option<Rc<Partition>>,
    ) -> Result<(), GroupError> {
        if self.offsets_log.borrow().len() < count {
            self.offsets_log.borrow_mut().resize(count, None);
        }
        let owned = self.owned.borrow().contains(&index);
        if leads && !owned {
            let Some(partition) = partition else { return Ok(()) };
            if let Some(slot) = self.offsets_log.borrow_mut().get_mut(index) {
                *slot = Some(Rc::clone(&partition));
            }
            let records = self.replay(&partition).await?;
            self.owned.borrow_mut().insert(index);
            info!(
                partition = index,
                records,
                groups = self.groups.borrow().len(),
                "coordinating the groups of an offsets partition"
            );
        } else if !leads && owned {
            self.owned.borrow_mut().remove(&index);
            let count = self.offsets_log.borrow().len().max(1);
            let mut groups = self.groups.borrow_mut();
            let leaving: Vec<String> = groups
                .keys()
                .filter(|g| offsets_partition_index(g, count) == index)
                .cloned()
                .collect();
            for group_id in leaving {
                if let Some(mut group) = groups.remove(&group_id) {
                    let ids: Vec<String> = group.members.keys().cloned().collect();
                    for id in ids {
                        remove_member(&mut group, &id);
                    }
                }
            }
            info!(partition = index, "no longer coordinating the groups of an offsets partition");
        }
        Ok(())
    }

    async fn replay(&self, partition: &Partition) -> Result<u64, GroupError> {
        let mut offset = partition.log_start_offset();
        let end = partition.log_end_offset();
        let mut records = 0u64;
        while offset < end {
            let read = partition.read(offset, REPLAY_READ_BYTES).await.map_err(|source| {
                GroupError::Replay { partition: format!("{partition:?}"), offset, source }
            })?;
            let Some(next) = read.next_offset() else { break };
            let bytes = read.read_bytes().await.map_err(|source| GroupError::ReplayRead {
                partition: format!("{partition:?}"),
                offset,
                source,
            })?;
            let mut at = 0usize;
            while let Some(header) = bytes.get(at..).and_then(BatchHeader::view) {
                let size = header.size() as usize;
                let Some(batch_bytes) = bytes.get(at..at + size) else { break };
                if header.compression_codec() == 0 {
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
        let Some((group, topic, partition)) = decode_key(key) else {
            warn!("skipping an unreadable key in {OFFSETS_TOPIC}");
            return;
        };
        let mut groups = self.groups.borrow_mut();
        match value.map(decode_value) {
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                    if g.offsets.is_empty() && g.members.is_empty() {
                        groups.remove(&group);
                    }
                }
            }
            Some(Some(committed)) => {
                if groups.len() < GROUPS_MAX || groups.contains_key(&group) {
                    groups
                        .entry(group)
                        .or_insert_with(Group::new)
                        .offsets
                        .insert((topic, partition), committed);
                }
            }
            Some(None) => warn!(group = %group, "skipping an unreadable value in {OFFSETS_TOPIC}"),
        }
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

    // ----- JoinGroup -------------------------------------------------------------------

    /// Handles a JoinGroup: either an immediate answer, or a receiver answered when the join
    /// phase completes.
    #[allow(clippy::result_large_err)] // the Err is the answer to send, built once per refused join
    pub fn join(&self, request: JoinRequest) -> Result<oneshot::Receiver<JoinResult>, JoinResult> {
        let JoinRequest { group_id, mut member_id, .. } = request.clone();
        if group_id.is_empty() {
            return Err(JoinResult::error(ResponseError::InvalidGroupId, &member_id));
        }
        if !self.owns(&group_id) {
            return Err(JoinResult::error(ResponseError::NotCoordinator, &member_id));
        }
        if request.session_timeout_ms < self.config.session_timeout_ms_min
            || request.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return Err(JoinResult::error(ResponseError::InvalidSessionTimeout, &member_id));
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id));
        }
        if request.protocols.iter().any(|(_, m)| m.len() > MEMBER_METADATA_BYTES_MAX) {
            return Err(JoinResult::error(ResponseError::InvalidRequest, &member_id));
        }
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&group_id) && groups.len() >= GROUPS_MAX {
            warn!(group = %group_id, limit = GROUPS_MAX, "JoinGroup refused: too many groups");
            return Err(JoinResult::error(ResponseError::GroupMaxSizeReached, &member_id));
        }
        let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
        if !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(request.protocol_type.as_str());
            let shares_protocol = request.protocols.iter().any(|(name, _)| {
                group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shares_protocol {
                return Err(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &member_id,
                ));
            }
        }
        if member_id.is_empty() {
            member_id = self.new_member_id(&request.client_id);
            match &request.group_instance_id {
                Some(instance) => {
                    // A static member rejoining: the new id replaces the old one, which is fenced.
                    if let Some(old) =
                        group.static_members.insert(instance.clone(), member_id.clone())
                    {
                        if let Some(mut old_member) = group.members.remove(&old) {
                            if let Some(waiter) = old_member.join_waiter.take() {
                                let _ = waiter
                                    .send(JoinResult::error(ResponseError::FencedInstanceId, &old));
                            }
                        }
                        if group.leader.as_deref() == Some(old.as_str()) {
                            group.leader = None;
                        }
                    }
                }
                None if request.require_known_member_id => {
                    if group.pending.len() >= MEMBERS_PER_GROUP_MAX {
                        warn!(group = %group_id, limit = MEMBERS_PER_GROUP_MAX, "JoinGroup refused: too many pending member ids");
                        return Err(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
                    }
                    let expiry = Instant::now()
                        + Duration::from_millis(request.session_timeout_ms.max(0) as u64);
                    group.pending.insert(member_id.clone(), expiry);
                    return Err(JoinResult::error(ResponseError::MemberIdRequired, &member_id));
                }
                None => {}
            }
        } else if !group.members.contains_key(&member_id)
            && group.pending.remove(&member_id).is_none()
        {
            return Err(JoinResult::error(ResponseError::UnknownMemberId, &member_id));
        } else if let Some(instance) = &request.group_instance_id {
            if group.static_members.get(instance).is_some_and(|id| id != &member_id) {
                return Err(JoinResult::error(ResponseError::FencedInstanceId, &member_id));
            }
            group.static_members.insert(instance.clone(), member_id.clone());
        }
        if !group.members.contains_key(&member_id) && group.members.len() >= MEMBERS_PER_GROUP_MAX {
            warn!(group = %group_id, limit = MEMBERS_PER_GROUP_MAX, "JoinGroup refused: group is full");
            return Err(JoinResult::error(ResponseError::GroupMaxSizeReached, &member_id));
        }
        let now = Instant::now();
        let (sender, receiver) = oneshot::channel();
        let seq = self.next_member_seq.get() + 1;
        self.next_member_seq.set(seq);
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heartbeat: now,
            join_waiter: None,
            sync_waiter: None,
            joined_seq: seq,
        });
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(
            request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
        );
        member.protocols = request.protocols;
        member.last_heartbeat = now;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        if let Some(old) = member.join_waiter.replace(sender) {
            let _ = old.send(JoinResult::error(ResponseError::RebalanceInProgress, &member_id));
        }
        if group.protocol_type.is_none() || group.members.len() == 1 {
            group.protocol_type = Some(request.protocol_type);
        }
        if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(&group_id, group, now);
        }
        self.maybe_complete_join(&group_id, group, now);
        Ok(receiver)
    }

    fn prepare_rebalance(&self, group_id: &str, group: &mut Group, now: Instant) {
        let was_empty = group.state == GroupState::Empty;
        if group.state == GroupState::CompletingRebalance {
            // Members waiting for their assignment must rejoin.
            for member in group.members.values_mut() {
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncResult {
                        error: Some(ResponseError::RebalanceInProgress),
                        ..SyncResult::default()
                    });
                }
            }
        }
        let timeout =
            group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
        group.state = GroupState::PreparingRebalance;
        group.join_deadline = Some(now + timeout);
        group.join_not_before =
            was_empty.then(|| now + Duration::from_millis(self.config.initial_rebalance_delay_ms));
        group.sync_deadline = None;
        info!(
            group = group_id,
            generation = group.generation,
            members = group.members.len(),
            "rebalance started"
        );
    }

    fn maybe_complete_join(&self, group_id: &str, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = group.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = group.join_not_before.is_none_or(|t| now >= t);
        let deadline_passed = group.join_deadline.is_some_and(|t| now >= t);
        if !((all_joined && delay_over) || deadline_passed) {
            return;
        }
        // Members that did not rejoin in time are out.
        let stragglers: Vec<String> = group
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in stragglers {
            warn!(group = group_id, member = %id, "member did not rejoin in time; removed");
            remove_member(group, &id);
        }
        group.generation += 1;
        group.join_deadline = None;
        group.join_not_before = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.changed_at = now;
            group.protocol = None;
            group.leader = None;
            info!(group = group_id, generation = group.generation, "group is empty");
            return;
        }
        // The protocol every member supports that most members list first.
        let candidates: Vec<String> = group
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let candidates: Vec<String> = candidates
            .into_iter()
            .filter(|n| group.members.values().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in group.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let protocol = candidates
            .iter()
            .max_by_key(|n| {
                (
                    votes.get(n.as_str()).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|c| c == *n)),
                )
            })
            .cloned();
        group.protocol = protocol.clone();
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader =
                group.members.iter().min_by_key(|(_, m)| m.joined_seq).map(|(id, _)| id.clone());
        }
        let leader = group.leader.clone().unwrap_or_default();
        let protocol_name = protocol.unwrap_or_default();
        let member_list: Vec<(String, Option<String>, Bytes)> = group
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol_name)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), metadata)
            })
            .collect();
        group.state = GroupState::CompletingRebalance;
        let sync_timeout =
            group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
        group.sync_deadline = Some(now + sync_timeout);
        for (id, member) in group.members.iter_mut() {
            member.last_heartbeat = now;
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinResult {
                    error: None,
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: Some(protocol_name.clone()),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader { member_list.clone() } else { Vec::new() },
                });
            }
        }
        info!(group = group_id, generation = group.generation, members = group.members.len(), leader = %leader, protocol = %protocol_name, "join phase complete");
    }

    // ----- SyncGroup -------------------------------------------------------------------

    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<oneshot::Receiver<SyncResult>, SyncResult> {
        let fail = |error| SyncResult { error: Some(error), ..SyncResult::default() };
        if group_id.is_empty() {
            return Err(fail(ResponseError::InvalidGroupId));
        }
        if !self.owns(group_id) {
            return Err(fail(ResponseError::NotCoordinator));
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return Err(fail(ResponseError::UnknownMemberId));
        };
        if !group.members.contains_key(member_id) {
            return Err(fail(ResponseError::UnknownMemberId));
        }
        if generation != group.generation {
            return Err(fail(ResponseError::IllegalGeneration));
        }
        if assignments.iter().any(|(_, a)| a.len() > MEMBER_METADATA_BYTES_MAX) {
            return Err(fail(ResponseError::InvalidRequest));
        }
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol.clone();
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Err(fail(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let member = &group.members[member_id];
                Err(SyncResult {
                    error: None,
                    protocol_type,
                    protocol_name,
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                group.members.get_mut(member_id).expect("checked above").sync_waiter = Some(sender);
                if group.leader.as_deref() == Some(member_id) {
                    let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                    let now = Instant::now();
                    for (id, member) in group.members.iter_mut() {
                        member.assignment = assigned.get(id).cloned().unwrap_or_default();
                        member.last_heartbeat = now;
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncResult {
                                error: None,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                    group.state = GroupState::Stable;
                    group.sync_deadline = None;
                    info!(group = group_id, generation = group.generation, "group is stable");
                }
                Ok(receiver)
            }
        }
    }

    // ----- Heartbeat and LeaveGroup ----------------------------------------------------

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        if !self.owns(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if let Some(instance) = instance_id {
            if group.static_members.get(instance).is_some_and(|id| id != member_id) {
                return Some(ResponseError::FencedInstanceId);
            }
        }
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return Some(ResponseError::IllegalGeneration);
        }
        member.last_heartbeat = Instant::now();
        match state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// Removes members; returns an error per member (None = removed).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups.borrow_mut();
        // An unknown group has none of the members: each is unknown, as Kafka answers.
        let Some(group) = groups.get_mut(group_id) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]);
        };
        let now = Instant::now();
        let mut results = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let id = match (member_id.is_empty(), instance_id) {
                (true, Some(instance)) => {
                    group.static_members.get(instance).cloned().unwrap_or_default()
                }
                _ => member_id.clone(),
            };
            if let Some(instance) = instance_id {
                if !member_id.is_empty()
                    && group.static_members.get(instance).is_some_and(|known| known != member_id)
                {
                    results.push(Some(ResponseError::FencedInstanceId));
                    continue;
                }
            }
            if group.members.contains_key(&id) {
                remove_member(group, &id);
                info!(group = group_id, member = %id, "member left");
                removed = true;
                results.push(None);
            } else {
                results.push(Some(ResponseError::UnknownMemberId));
            }
        }
        if removed {
            if group.state != GroupState::PreparingRebalance {
                self.prepare_rebalance(group_id, group, now);
            }
            self.maybe_complete_join(group_id, group, now);
        }
        Ok(results)
    }

    /// Session expiry and join/sync deadlines; run every `TICK_MS`.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for (group_id, group) in groups.iter_mut() {
            // Member ids handed out but never used (a client that gave up) expire.
            group.pending.retain(|_, expiry| *expiry > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                warn!(group = %group_id, member = %id, "member's session timed out; removed");
                remove_member(group, id);
            }
            let sync_late = group.state == GroupState::CompletingRebalance
                && group.sync_deadline.is_some_and(|t| now >= t);
            if (!expired.is_empty() && group.state != GroupState::PreparingRebalance) || sync_late {
                if sync_late {
                    warn!(group = %group_id, "leader did not send its assignment in time; rebalancing");
                }
                self.prepare_rebalance(group_id, group, now);
            }
            self.maybe_complete_join(group_id, group, now);
        }
        // A group with no members and no committed offsets is gone (Kafka deletes such groups
        // too); otherwise every group id ever used would count toward GROUPS_MAX forever.
        groups.retain(|_, g| {
            let forgotten = g.state == GroupState::Empty
                && g.members.is_empty()
                && g.pending.is_empty()
                && g.offsets.is_empty();
            !(forgotten && now.duration_since(g.changed_at) > EMPTY_GROUP_EXPIRY)
        });
    }

    /// Runs `tick` forever.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
            self.tick();
        }
    }

    // ----- Offsets ---------------------------------------------------------------------

    /// Checks that a commit comes from a current member (or is a simple commit to a group
    /// without members).
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Option<ResponseError> {
        // An empty group id is allowed here, as Kafka allows it for offset commits (for
        // compatibility with old clients); the other group APIs refuse it.
        if !self.owns(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 { None } else { Some(ResponseError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                None
            } else {
                Some(ResponseError::UnknownMemberId)
            };
        }
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        // Between JoinGroup and SyncGroup the member does not know its partitions yet (Kafka
        // refuses too). While a rebalance is only being prepared the generation is still the
        // one the member consumed under, and Kafka takes its commits: a member committing on
        // its way out of the group (another member's leave started the rebalance) must not
        // lose them.
        if group.state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// Durably stores commits: appended and fdatasync'd to `__consumer_offsets` first, then
    /// applied. Each entry is (topic, partition, committed).
    pub async fn commit(
        &self,
        group_id: &str,
        commits: Vec<(String, i32, Committed)>,
    ) -> Result<(), ResponseError> {
        if commits.is_empty() {
            return Ok(());
        }
        {
            let groups = self.groups.borrow();
            let known = groups.get(group_id).map_or(0, |g| g.offsets.len());
            if !groups.contains_key(group_id) && groups.len() >= GROUPS_MAX {
                return Err(ResponseError::GroupMaxSizeReached);
            }
            if known + commits.len() > COMMITTED_PARTITIONS_PER_GROUP_MAX {
                warn!(
                    group = group_id,
                    limit = COMMITTED_PARTITIONS_PER_GROUP_MAX,
                    "commit refused: too many committed partitions"
                );
                return Err(ResponseError::OffsetMetadataTooLarge);
            }
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = commits
            .iter()
            .map(|(topic, partition, committed)| {
                (encode_key(group_id, topic, *partition), Some(encode_value(committed)))
            })
            .collect();
        self.append_records(group_id, &records).await?;
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for (topic, partition, committed) in commits {
            group.offsets.insert((topic, partition), committed);
        }
        Ok(())
    }

    async fn append_records(
        &self,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), ResponseError> {
        let built: Vec<build::Record<'_>> = records
            .iter()
            .map(|(k, v)| build::Record { key: Some(k), value: v.as_deref(), timestamp_delta: 0 })
            .collect();
        let batch = build::batch(&built, now_ms());
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::NotCoordinator)?;
        if !partition.replica.is_leader() {
            return Err(ResponseError::NotCoordinator);
        }
        let epoch = partition.replica.leader_epoch().max(0);
        let appended = partition.append(Bytes::from(batch), epoch).await.map_err(|error| {
            warn!(group = group_id, ?error, "cannot append to {OFFSETS_TOPIC}");
            ResponseError::CoordinatorNotAvailable
        })?;
        partition.flush_to(appended.last_offset + 1).await.map_err(|error| {
            warn!(group = group_id, %error, "cannot sync {OFFSETS_TOPIC}");
            ResponseError::CoordinatorNotAvailable
        })?;
        // Replicated to the whole in-sync set before it counts: commits survive failover.
        partition
            .wait_replicated(
                appended.last_offset + 1,
                COMMIT_REPLICATION_WAIT,
                self.commit_min_insync.get(),
            )
            .await
            .map_err(|wait| {
                warn!(group = group_id, ?wait, "offset commit not replicated in time");
                match wait {
                    crate::partition::replica::ReplicationWait::NotLeader => {
                        ResponseError::NotCoordinator
                    }
                    crate::partition::replica::ReplicationWait::TimedOut
                    | crate::partition::replica::ReplicationWait::NotEnoughReplicas => {
                        ResponseError::RequestTimedOut
                    }
                }
            })
    }

    /// Committed offsets of a group: for the given partitions, or all when `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Result<GroupOffsets, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        Ok(match wanted {
            Some(wanted) => wanted
                .iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|p| {
                            (*p, group.and_then(|g| g.offsets.get(&(topic.clone(), *p)).cloned()))
                        })
                        .collect();
                    (topic.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
                if let Some(group) = group {
                    for ((topic, partition), committed) in &group.offsets {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push((*partition, Some(committed.clone())));
                    }
                }
                for partitions in by_topic.values_mut() {
                    partitions.sort_by_key(|(p, _)| *p);
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// Deletes an empty group and its offsets (tombstones in the log).
    pub async fn delete_group(&self, group_id: &str) -> Option<ResponseError> {
        if !self.owns(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id) else {
                return Some(ResponseError::GroupIdNotFound);
            };
            if !group.members.is_empty() {
                return Some(ResponseError::NonEmptyGroup);
            }
            group
                .offsets
                .keys()
                .map(|(topic, partition)| (encode_key(group_id, topic, *partition), None))
                .collect()
        };
        if !keys.is_empty() {
            if let Err(error) = self.append_records(group_id, &keys).await {
                return Some(error);
            }
        }
        let mut groups = self.groups.borrow_mut();
        if groups.get(group_id).is_some_and(|g| g.members.is_empty()) {
            groups.remove(group_id);
            info!(group = group_id, "group deleted");
            None
        } else {
            Some(ResponseError::NonEmptyGroup)
        }
    }

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else { return Ok(None) };
        // As Kafka: the protocol and each member's metadata and assignment only once the
        // group is stable; before that they are not settled.
        let stable = group.state == GroupState::Stable;
        Ok(Some(GroupDescription {
            group_id: group_id.to_string(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                group.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: group
                .members
                .iter()
                .map(|(id, m)| {
                    let metadata = group
                        .protocol
                        .as_ref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, md)| md.clone());
                    let (metadata, assignment) = if stable {
                        (metadata.unwrap_or_default(), m.assignment.clone())
                    } else {
                        Default::default()
                    };
                    (
                        id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        metadata,
                        assignment,
                    )
                })
                .collect(),
        }))
    }

    /// (group id, protocol type, state) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.borrow();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(id, g)| {
                (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name())
            })
            .collect();
        out.sort();
        out
    }
}

fn remove_member(group: &mut Group, member_id: &str) {
    if let Some(mut member) = group.members.remove(member_id) {
        if let Some(instance) = &member.instance_id {
            if group.static_members.get(instance).is_some_and(|id| id == member_id) {
                group.static_members.remove(instance);
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
    if group.leader.as_deref() == Some(member_id) {
        group.leader = None;
    }
}
