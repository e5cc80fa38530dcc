//! Offsets committed inside transactions (TxnOffsetCommit), as Kafka's group coordinator
//! keeps them: appended to the group's `__consumer_offsets` partition as a transactional
//! batch of the producer (so they are in the log, and replayed, before the transaction
//! ends), held per producer, and applied when the transaction's commit marker is written
//! to that partition (dropped on an abort). OffsetFetch does not see them before.

use bytes::Bytes;
use fjord_storage::batch::build;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::offsets_record::{decode_key, decode_value, encode_key, encode_value};
use super::{Committed, Coordinator, Group, COMMITTED_PARTITIONS_PER_GROUP_MAX, GROUPS_MAX};
use crate::clock::now_ms;

impl Coordinator {
    /// TxnOffsetCommit: checks the member as a commit does when it names one (v3+ clients
    /// send their generation), appends the offsets as `producer_id`'s, and holds them until
    /// the transaction ends.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
        generation: i32,
        member_id: &str,
        commits: Vec<(String, i32, Committed)>,
    ) -> Result<(), ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        if generation >= 0 || !member_id.is_empty() {
            if let Some(error) = self.check_commit(group_id, generation, member_id) {
                // Kafka does not hold a transactional commit to the group's rebalance.
                if error != ResponseError::RebalanceInProgress {
                    return Err(error);
                }
            }
        }
        if commits.is_empty() {
            return Ok(());
        }
        {
            let groups = self.groups.borrow();
            if !groups.contains_key(group_id) && groups.len() >= GROUPS_MAX {
                return Err(ResponseError::GroupMaxSizeReached);
            }
            let pending = self.txn_offsets.borrow();
            let held = pending.get(&producer_id).map_or(0, Vec::len);
            if held + commits.len() > COMMITTED_PARTITIONS_PER_GROUP_MAX {
                return Err(ResponseError::OffsetMetadataTooLarge);
            }
        }
        let records: Vec<(Vec<u8>, Vec<u8>)> = commits
            .iter()
            .map(|(topic, partition, committed)| {
                (encode_key(group_id, topic, *partition), encode_value(committed))
            })
            .collect();
        let built: Vec<build::Record<'_>> = records
            .iter()
            .map(|(k, v)| build::Record { key: Some(k), value: Some(v), timestamp_delta: 0 })
            .collect();
        let mut batch = build::batch(&built, now_ms());
        build::set_transactional(&mut batch, producer_id, producer_epoch);
        self.append_batch(group_id, Bytes::from(batch)).await?;
        let mut pending = self.txn_offsets.borrow_mut();
        let held = pending.entry(producer_id).or_default();
        for (topic, partition, committed) in commits {
            held.retain(|(g, t, p, _)| !(g == group_id && *t == topic && *p == partition));
            held.push((group_id.to_string(), topic, partition, committed));
        }
        Ok(())
    }

    /// The end of `producer_id`'s transaction reached an offsets partition (its marker was
    /// written there, or replayed): its held offsets of that partition's groups are applied
    /// (commit) or dropped (abort).
    pub fn complete_txn_offsets(&self, offsets_partition: usize, producer_id: i64, commit: bool) {
        let mut pending = self.txn_offsets.borrow_mut();
        let Some(held) = pending.get_mut(&producer_id) else { return };
        let count = self.offsets_log.borrow().len().max(1);
        let (ended, kept): (Vec<_>, Vec<_>) = held.drain(..).partition(|(group, ..)| {
            super::offsets_partition_index(group, count) == offsets_partition
        });
        *held = kept;
        if held.is_empty() {
            pending.remove(&producer_id);
        }
        drop(pending);
        debug!(producer_id, commit, offsets = ended.len(), "transactional offsets ended");
        if !commit {
            return;
        }
        let mut groups = self.groups.borrow_mut();
        for (group_id, topic, partition, committed) in ended {
            let group = groups.entry(group_id).or_insert_with(Group::new);
            group.offsets.insert((topic, partition), committed);
        }
    }

    /// Whether a transaction not yet ended holds an offset of the group's partition
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn has_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets
            .borrow()
            .values()
            .flatten()
            .any(|(g, t, p, _)| g == group_id && t == topic && *p == partition)
    }

    /// Replay: a record of a transactional batch of `producer_id` (held until its marker).
    pub(super) fn replay_txn_record(&self, producer_id: i64, key: &[u8], value: Option<&[u8]>) {
        let (Some((group, topic, partition)), Some(Some(committed))) =
            (decode_key(key), value.map(decode_value))
        else {
            warn!(
                producer_id,
                "a transactional record of the offsets log that is not a commit was skipped"
            );
            return;
        };
        let mut pending = self.txn_offsets.borrow_mut();
        let held = pending.entry(producer_id).or_default();
        held.retain(|(g, t, p, _)| !(*g == group && *t == topic && *p == partition));
        held.push((group, topic, partition, committed));
    }
}
