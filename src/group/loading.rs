//! Taking over and giving up the groups of an offsets partition: a broker coordinates the
//! groups of the `__consumer_offsets` partitions it leads, and rebuilds their committed
//! offsets and metadata (generation, leader, members and assignments) by replaying the
//! partition's log when it takes them over.

use std::rc::Rc;

use fjord_storage::batch::BatchHeader;
use tracing::{info, warn};

use super::metadata_record;
use super::offsets_record::{decode_key, decode_value, parse_records};
use super::{offsets_partition_index, Coordinator, Group, GROUPS_MAX, OFFSETS_TOPIC};
use crate::partition::Partition;

/// Bytes read at a time while replaying the offsets log.
const REPLAY_READ_BYTES: u64 = 1024 * 1024;

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
            self.take_over(index, partition).await?;
        } else if !leads && owned {
            self.give_up(index);
        }
        Ok(())
    }

    /// Coordinates the groups of offsets partition `index` from now on, their offsets
    /// replayed from its log first.
    async fn take_over(&self, index: usize, partition: Rc<Partition>) -> Result<(), GroupError> {
        if let Some(slot) = self.offsets_log.borrow_mut().get_mut(index) {
            *slot = Some(Rc::clone(&partition));
        }
        let records = self.replay(index, &partition).await?;
        self.restart_sessions(index);
        self.owned.borrow_mut().insert(index);
        info!(
            partition = index,
            records,
            groups = self.groups.borrow().len(),
            "coordinating the groups of an offsets partition"
        );
        Ok(())
    }

    /// Stops coordinating the groups of offsets partition `index`: they are forgotten, and
    /// their members' waiting requests answered UNKNOWN_MEMBER_ID.
    fn give_up(&self, index: usize) {
        self.owned.borrow_mut().remove(&index);
        let count = self.offsets_log.borrow().len().max(1);
        let mut groups = self.groups.borrow_mut();
        let leaving: Vec<String> =
            groups.keys().filter(|g| offsets_partition_index(g, count) == index).cloned().collect();
        for group_id in leaving {
            if let Some(mut group) = groups.remove(&group_id) {
                let ids: Vec<String> = group.members.keys().cloned().collect();
                for id in ids {
                    group.remove_member(&id);
                }
            }
        }
        info!(partition = index, "no longer coordinating the groups of an offsets partition");
    }

    /// Applies every commit and tombstone in `partition`'s log; the records read.
    async fn replay(&self, index: usize, partition: &Partition) -> Result<u64, GroupError> {
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
                let producer_id = header.producer_id.get();
                if header.is_control() {
                    // A transaction's end: its offsets held since its TxnOffsetCommit apply
                    // or go.
                    if let Some(kind) = fjord_storage::batch::control_type(batch_bytes) {
                        let commit = kind == fjord_storage::batch::CONTROL_COMMIT;
                        self.complete_txn_offsets(index, producer_id, commit);
                    }
                } else if header.compression_codec() == 0 {
                    for (key, value) in parse_records(batch_bytes) {
                        records += 1;
                        if header.is_transactional() {
                            self.replay_txn_record(producer_id, &key, value.as_deref());
                        } else {
                            self.apply_record(&key, value.as_deref());
                        }
                    }
                }
                at += size;
            }
            offset = next;
        }
        Ok(records)
    }

    /// Applies one record of the offsets log: a group's metadata (key version 2), a commit,
    /// or a commit's tombstone (which forgets a group left with neither offsets nor members).
    fn apply_record(&self, key: &[u8], value: Option<&[u8]>) {
        if key.get(..2) == Some(&metadata_record::KEY_VERSION.to_be_bytes()[..]) {
            self.apply_group_record(key, value);
            return;
        }
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
}
