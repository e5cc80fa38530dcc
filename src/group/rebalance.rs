//! A rebalance's join phase: it starts (`prepare_rebalance`), collects JoinGroup requests,
//! and ends once every member has rejoined (after the initial delay for a new group) or at
//! its deadline. At its end members that did not rejoin are out, the group takes the
//! protocol most members prefer and a new generation, and every member is answered; the
//! leader gets the member list.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::offset_delete::subscribed_topics;
use super::{Coordinator, Group, GroupState, JoinResult, SyncResult};

impl Coordinator {
    /// Starts a join phase: members waiting for their assignment must rejoin, and the phase
    /// lasts the longest rebalance timeout at most (and, for a group that was empty, the
    /// initial delay at least).
    pub(super) fn prepare_rebalance(&self, group_id: &str, group: &mut Group, now: Instant) {
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
        group.state = GroupState::PreparingRebalance;
        group.join_deadline = Some(now + longest_rebalance_timeout(group));
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

    /// Ends the join phase if it is over: a new generation, and either an empty group or
    /// every member answered and the leader's assignment awaited.
    pub(super) fn maybe_complete_join(&self, group_id: &str, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance || !join_phase_over(group, now) {
            return;
        }
        remove_stragglers(group_id, group);
        group.generation += 1;
        group.join_deadline = None;
        group.join_not_before = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.changed_at = now;
            group.protocol = None;
            group.leader = None;
            group.subscribed = subscribed_topics(group);
            info!(group = group_id, generation = group.generation, "group is empty");
            // As Kafka: the empty group's new generation is stored, not waited for.
            group.metadata_stored = true;
            self.store_in_background(group_id, Some(group));
            return;
        }
        let protocol = chosen_protocol(group);
        group.protocol = protocol.clone();
        group.subscribed = subscribed_topics(group);
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader =
                group.members.iter().min_by_key(|(_, m)| m.joined_seq).map(|(id, _)| id.clone());
        }
        let leader = group.leader.clone().unwrap_or_default();
        let protocol_name = protocol.unwrap_or_default();
        group.state = GroupState::CompletingRebalance;
        group.sync_deadline = Some(now + longest_rebalance_timeout(group));
        answer_joins(group, &leader, &protocol_name, now);
        info!(group = group_id, generation = group.generation, members = group.members.len(), leader = %leader, protocol = %protocol_name, "join phase complete");
    }
}

/// The longest rebalance timeout of the group's members: how long a join phase and the wait
/// for the leader's assignment last at most.
fn longest_rebalance_timeout(group: &Group) -> Duration {
    group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO)
}

/// Whether the join phase may end: every member has rejoined and the initial delay is over,
/// or its deadline has passed.
fn join_phase_over(group: &Group, now: Instant) -> bool {
    let all_joined = group.members.values().all(|m| m.join_waiter.is_some());
    let delay_over = group.join_not_before.is_none_or(|t| now >= t);
    let deadline_passed = group.join_deadline.is_some_and(|t| now >= t);
    (all_joined && delay_over) || deadline_passed
}

/// Members that did not rejoin in time are out.
fn remove_stragglers(group_id: &str, group: &mut Group) {
    let stragglers: Vec<String> = group
        .members
        .iter()
        .filter(|(_, m)| m.join_waiter.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    for id in stragglers {
        warn!(group = group_id, member = %id, "member did not rejoin in time; removed");
        group.remove_member(&id);
    }
}

/// The protocol every member supports that most members list first (on a tie, the one the
/// first member lists first).
fn chosen_protocol(group: &Group) -> Option<String> {
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
    candidates
        .iter()
        .max_by_key(|n| {
            (
                votes.get(n.as_str()).copied().unwrap_or(0),
                std::cmp::Reverse(candidates.iter().position(|c| c == *n)),
            )
        })
        .cloned()
}

/// Answers every member's JoinGroup with the new generation; the leader's answer carries
/// each member's metadata for `protocol_name`. Assignments are cleared until SyncGroup.
fn answer_joins(group: &mut Group, leader: &str, protocol_name: &str, now: Instant) {
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
    for (id, member) in group.members.iter_mut() {
        member.last_heartbeat = now;
        member.assignment = Bytes::new();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResult {
                error: None,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: Some(protocol_name.to_string()),
                leader: leader.to_string(),
                member_id: id.clone(),
                members: if *id == leader { member_list.clone() } else { Vec::new() },
            });
        }
    }
}
