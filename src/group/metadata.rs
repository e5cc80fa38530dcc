//! A group's metadata in `__consumer_offsets`, as Kafka keeps it (`storeGroup` and the
//! replay of `GroupMetadataValue`): when the leader's assignment arrives, the group's
//! generation, protocol, leader and members with their assignments are appended (fdatasync'd
//! and replicated, as commits are) before any member gets its assignment; a group whose join
//! phase leaves it empty is stored empty; a deleted or forgotten group leaves a tombstone. A
//! coordinator taking over the partition replays these records: the group comes back Stable
//! (Empty without members) in its generation, and its members' sessions start afresh, so
//! members that keep heartbeating carry on without a rebalance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::membership::settle;
use super::metadata_record::{self, GroupMetadata, MemberMetadata};
use super::offset_delete::subscribed_topics;
use super::{
    offsets_partition_index, Coordinator, Group, GroupState, Member, SyncResult, GROUPS_MAX,
};
use crate::clock::now_ms;

impl Coordinator {
    /// The leader's assignment for the group's current generation: stored first, then handed
    /// to every member (the group is Stable once its metadata is durable), as Kafka's
    /// SyncGroup does. Members the leader left out get an empty assignment.
    pub(super) fn store_assignment(
        &self,
        group_id: &str,
        group: &Group,
        assignments: Vec<(String, Bytes)>,
    ) {
        let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
        let record = metadata_of(group, &assigned);
        let generation = group.generation;
        let Some(coordinator) = self.me.upgrade() else { return };
        let group_id = group_id.to_string();
        fjord_storage::io::spawn(async move {
            let stored = coordinator.append_metadata(&group_id, Some(&record)).await;
            coordinator.finish_sync(&group_id, generation, &assigned, stored);
        });
    }

    /// The stored assignment is handed out; or, if it could not be stored, every member
    /// waiting in SyncGroup gets the error and the group rebalances (Kafka's
    /// `resetAndPropagateAssignmentWithError`). Nothing happens if the group moved on
    /// meanwhile (a new join phase answered the waiting members already).
    fn finish_sync(
        &self,
        group_id: &str,
        generation: i32,
        assigned: &HashMap<String, Bytes>,
        stored: Result<(), ResponseError>,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else { return };
        if group.state != GroupState::CompletingRebalance || group.generation != generation {
            return;
        }
        let Err(error) = stored else {
            group.metadata_stored = true;
            settle(group_id, group, assigned);
            return;
        };
        warn!(
            group = group_id,
            generation,
            ?error,
            "cannot store the group's assignment; rebalancing"
        );
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResult { error: Some(error), ..SyncResult::default() });
            }
        }
        let now = Instant::now();
        self.prepare_rebalance(group_id, group, now);
        self.maybe_complete_join(group_id, group, now);
    }

    /// Stores `group`'s metadata (or, for `None`, its tombstone) without waiting: for a group
    /// that went empty or is forgotten, whose members wait for nothing (Kafka only warns
    /// when these writes fail, too).
    pub(super) fn store_in_background(&self, group_id: &str, group: Option<&Group>) {
        let record = group.map(|g| metadata_of(g, &HashMap::new()));
        let Some(coordinator) = self.me.upgrade() else { return };
        let group_id = group_id.to_string();
        fjord_storage::io::spawn(async move {
            if let Err(error) = coordinator.append_metadata(&group_id, record.as_ref()).await {
                warn!(group = %group_id, ?error, "cannot store the group's metadata");
            }
        });
    }

    /// Appends the group's metadata record (a tombstone for `None`) as commits are appended;
    /// the errors are those Kafka answers for a failed group write.
    async fn append_metadata(
        &self,
        group_id: &str,
        record: Option<&GroupMetadata>,
    ) -> Result<(), ResponseError> {
        let encoded = metadata_record::encode_key(group_id)
            .and_then(|key| Ok((key, record.map(metadata_record::encode_value).transpose()?)));
        let (key, value) = encoded.map_err(|error| {
            warn!(group = group_id, %error, "cannot encode the group's metadata");
            ResponseError::UnknownServerError
        })?;
        self.append_records(group_id, &[(key, value)]).await.map_err(|error| match error {
            ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
            other => other,
        })
    }

    /// Applies a group metadata record of the offsets log: the group as stored (its offsets
    /// kept), or for a tombstone, without members (and gone if it has no offsets either).
    pub(super) fn apply_group_record(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(group_id) = metadata_record::decode_key(key) else {
            warn!("skipping an unreadable group metadata key");
            return;
        };
        let mut groups = self.groups.borrow_mut();
        let Some(value) = value else {
            if let Some(group) = groups.get_mut(&group_id) {
                let offsets = std::mem::take(&mut group.offsets);
                *group = Group::new();
                group.offsets = offsets;
                if group.offsets.is_empty() {
                    groups.remove(&group_id);
                }
            }
            return;
        };
        let Some(stored) = metadata_record::decode_value(value) else {
            warn!(group = %group_id, "skipping an unreadable group metadata value");
            return;
        };
        if !groups.contains_key(&group_id) && groups.len() >= GROUPS_MAX {
            warn!(group = %group_id, limit = GROUPS_MAX, "not loading a group: too many groups");
            return;
        }
        let group = groups.entry(group_id).or_insert_with(Group::new);
        self.load(group, stored);
    }

    /// Makes `group` the stored one, as Kafka's replay does: Stable with its members (Empty
    /// without), in the stored generation, each member supporting the group's protocol with
    /// its stored subscription.
    fn load(&self, group: &mut Group, stored: GroupMetadata) {
        let now = Instant::now();
        let offsets = std::mem::take(&mut group.offsets);
        *group = Group::new();
        group.offsets = offsets;
        group.metadata_stored = true;
        group.state =
            if stored.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group.generation = stored.generation;
        group.protocol_type = Some(stored.protocol_type).filter(|t| !t.is_empty());
        group.protocol = stored.protocol;
        group.leader = stored.leader;
        for member in stored.members {
            let seq = self.next_member_seq.get() + 1;
            self.next_member_seq.set(seq);
            if let Some(instance) = &member.group_instance_id {
                group.static_members.insert(instance.clone(), member.member_id.clone());
            }
            let protocols =
                group.protocol.iter().map(|p| (p.clone(), member.subscription.clone())).collect();
            group.members.insert(member.member_id.clone(), member_of(member, protocols, now, seq));
        }
        group.subscribed = subscribed_topics(group);
    }

    /// Every member of the groups of offsets partition `index` starts its session now: a
    /// coordinator that just took the groups over heard from none of them yet (Kafka
    /// schedules each loaded member's heartbeat expiry afresh).
    pub(super) fn restart_sessions(&self, index: usize) {
        let count = self.offsets_log.borrow().len().max(1);
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for (group_id, group) in groups.iter_mut() {
            if offsets_partition_index(group_id, count) == index {
                group.changed_at = now;
                for member in group.members.values_mut() {
                    member.last_heartbeat = now;
                }
            }
        }
    }
}

/// A loaded member, its session starting at `now`. A rebalance timeout of -1 (a record
/// older than version 1) is the session timeout, as in Kafka.
fn member_of(
    stored: MemberMetadata,
    protocols: Vec<(String, Bytes)>,
    now: Instant,
    seq: u64,
) -> Member {
    let ms = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let session_timeout = ms(stored.session_timeout_ms);
    let rebalance_timeout = if stored.rebalance_timeout_ms == -1 {
        session_timeout
    } else {
        ms(stored.rebalance_timeout_ms)
    };
    Member {
        instance_id: stored.group_instance_id,
        client_id: stored.client_id,
        client_host: stored.client_host,
        session_timeout,
        rebalance_timeout,
        protocols,
        assignment: stored.assignment,
        last_heartbeat: now,
        join_waiter: None,
        sync_waiter: None,
        joined_seq: seq,
    }
}

/// What the group's metadata record holds: each member's subscription for the group's
/// protocol and its part of `assigned` (empty where it has none).
fn metadata_of(group: &Group, assigned: &HashMap<String, Bytes>) -> GroupMetadata {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    let members = group
        .members
        .iter()
        .map(|(id, m)| MemberMetadata {
            member_id: id.clone(),
            group_instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: ms(m.rebalance_timeout),
            session_timeout_ms: ms(m.session_timeout),
            subscription: group
                .protocol
                .as_ref()
                .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                .map(|(_, metadata)| metadata.clone())
                .unwrap_or_default(),
            assignment: assigned.get(id).cloned().unwrap_or_default(),
        })
        .collect();
    GroupMetadata {
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        generation: group.generation,
        protocol: group.protocol.clone(),
        leader: group.leader.clone(),
        current_state_timestamp_ms: now_ms(),
        members,
    }
}
