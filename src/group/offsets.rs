//! Committed offsets: OffsetCommit (checked against the group's membership, then appended,
//! fdatasync'd and replicated to `__consumer_offsets` before it counts), OffsetFetch, and
//! DeleteGroups (tombstones for every committed partition).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use fjord_storage::batch::build;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::metadata_record::encode_key as encode_group_key;
use super::offsets_record::{encode_key, encode_value};
use super::{
    Committed, Coordinator, Group, GroupState, COMMITTED_PARTITIONS_PER_GROUP_MAX, GROUPS_MAX,
    OFFSETS_TOPIC,
};
use crate::clock::now_ms;
use crate::partition::replica::ReplicationWait;

/// How long an offset commit waits for the in-sync replicas.
const COMMIT_REPLICATION_WAIT: Duration = Duration::from_secs(10);

/// Committed offsets by topic, then partition (`None`: nothing committed there).
pub type GroupOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

impl Coordinator {
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
        let keys: Vec<(String, String, i32)> =
            commits.iter().map(|(t, p, _)| (group_id.to_string(), t.clone(), *p)).collect();
        self.set_pending(&keys, true);
        let appended = self.append_records(group_id, &records).await;
        self.set_pending(&keys, false);
        appended?;
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for (topic, partition, committed) in commits {
            group.offsets.insert((topic, partition), committed);
        }
        Ok(())
    }

    pub(super) async fn append_records(
        &self,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), ResponseError> {
        let built: Vec<build::Record<'_>> = records
            .iter()
            .map(|(k, v)| build::Record { key: Some(k), value: v.as_deref(), timestamp_delta: 0 })
            .collect();
        let batch = build::batch(&built, now_ms());
        self.append_batch(group_id, Bytes::from(batch)).await
    }

    /// Appends a batch to the group's offsets partition, durably and replicated.
    pub(super) async fn append_batch(
        &self,
        group_id: &str,
        batch: Bytes,
    ) -> Result<(), ResponseError> {
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::NotCoordinator)?;
        if !partition.replica.is_leader() {
            return Err(ResponseError::NotCoordinator);
        }
        let epoch = partition.replica.leader_epoch().max(0);
        let appended = partition.append(batch, epoch).await.map_err(|error| {
            warn!(group = group_id, ?error, "cannot append to {OFFSETS_TOPIC}");
            ResponseError::CoordinatorNotAvailable
        })?;
        // Followers long-polling this partition fetch it now, not when their wait ends.
        self.config.appended.notify_waiters();
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
                    ReplicationWait::NotLeader => ResponseError::NotCoordinator,
                    ReplicationWait::TimedOut | ReplicationWait::NotEnoughReplicas => {
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

    /// Deletes an empty group and its offsets (tombstones in the log, for each offset and
    /// for the group's metadata, as Kafka writes them).
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
            let mut keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = group
                .offsets
                .keys()
                .map(|(topic, partition)| (encode_key(group_id, topic, *partition), None))
                .collect();
            // A group id too long for a record was never stored: it needs no tombstone.
            keys.extend(encode_group_key(group_id).ok().map(|key| (key, None)));
            keys
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
}
