//! A member's life in its group after JoinGroup: SyncGroup (the leader's assignment handed
//! to every member), Heartbeat, LeaveGroup, and the timers that remove members whose
//! session ran out and restart a rebalance whose leader never sent its assignment.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{Coordinator, Group, GroupState, SyncResult, MEMBER_METADATA_BYTES_MAX};

/// How long a group without members and without committed offsets is remembered (Kafka
/// drops such groups at its periodic cleanup, every 10 minutes by default).
const EMPTY_GROUP_EXPIRY: Duration = Duration::from_secs(600);
/// How often timers (session expiry, join and sync deadlines) are checked.
const TICK_MS: u64 = 100;

impl Coordinator {
    /// Handles a SyncGroup: either an immediate answer, or a receiver answered once the
    /// leader's assignment comes (the leader's own SyncGroup brings it).
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
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Err(fail(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let member = &group.members[member_id];
                Err(SyncResult {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                group.members.get_mut(member_id).expect("checked above").sync_waiter = Some(sender);
                if group.leader.as_deref() == Some(member_id) {
                    self.store_assignment(group_id, group, assignments);
                }
                Ok(receiver)
            }
        }
    }

    /// Handles a Heartbeat: the member's session goes on; the error tells it to rejoin.
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
                group.remove_member(&id);
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
        let interval = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        if now.duration_since(self.expiry_checked.get()) >= interval {
            self.expiry_checked.set(now);
            self.expire_offsets();
        }
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
                group.remove_member(id);
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
        groups.retain(|group_id, g| {
            let forgotten = g.state == GroupState::Empty
                && g.members.is_empty()
                && g.pending.is_empty()
                && g.offsets.is_empty()
                && now.duration_since(g.changed_at) > EMPTY_GROUP_EXPIRY;
            if forgotten && g.metadata_stored {
                // Its metadata record would bring it back after a failover.
                self.store_in_background(group_id, None);
            }
            !forgotten
        });
    }

    /// Runs `tick` forever.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
            self.tick();
        }
    }
}

/// The leader's assignment is stored: every member gets its part (those waiting in SyncGroup
/// at once) and the group is stable.
pub(super) fn settle(group_id: &str, group: &mut Group, assigned: &HashMap<String, Bytes>) {
    let protocol_type = group.protocol_type.clone();
    let protocol_name = group.protocol.clone();
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
