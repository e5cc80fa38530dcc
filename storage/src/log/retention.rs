//! Retention: deleting the oldest closed segments by age and by total size, and those
//! wholly below a log start that DeleteRecords moved.
//!
//! Only a prefix of closed segments is ever deleted, never the active one, so the log stays
//! contiguous. The log start offset moves first (in memory and in the checkpoint) and the
//! files go after: a crash in between leaves segments below the log start, which the next
//! open removes. A fetch holding a deleted segment's file keeps reading it until it is done.

use tracing::info;

use super::PartitionLog;
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::Result;

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: Vec<i64>,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Deletes closed segments whose newest timestamp is more than `retention_ms` before
    /// `now_ms`, then the oldest closed segments while the log exceeds `retention_bytes`.
    pub async fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        self.check_usable()?;
        let closed = self.segments.len() - 1;
        let mut delete = self.closed_below_start();
        if let Some(retention_ms) = self.config.retention_ms {
            let cutoff = now_ms.saturating_sub(retention_ms as i64);
            while delete < closed && self.segments[delete].max_timestamp() < cutoff {
                delete += 1;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let mut excess = self.size_bytes().saturating_sub(retention_bytes);
            let already: u64 = self.segments[..delete].iter().map(|s| s.size()).sum();
            excess = excess.saturating_sub(already);
            while delete < closed && excess >= self.segments[delete].size() && excess > 0 {
                excess -= self.segments[delete].size();
                delete += 1;
            }
        }
        self.delete_prefix(delete).await
    }

    /// How many closed segments, from the oldest, hold nothing at or above the log start.
    fn closed_below_start(&self) -> usize {
        let closed = self.segments.len() - 1;
        (0..closed)
            .take_while(|i| self.segments[i + 1].base_offset() <= self.log_start_offset)
            .count()
    }

    /// Deletes the `delete` oldest (closed) segments: the log start moves past them in the
    /// checkpoint first, the files go after.
    async fn delete_prefix(&mut self, delete: usize) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome {
            log_start_offset: self.log_start_offset,
            ..RetentionOutcome::default()
        };
        if delete == 0 {
            return Ok(outcome);
        }
        self.mark_dirty().await?;
        let new_start = self.segments[delete].base_offset().max(self.log_start_offset);
        self.log_start_offset = new_start;
        let durable = self.durable_offset();
        self.write_checkpoint(false, durable.max(new_start)).await?;
        let dir = self.dir.clone();
        for segment in self.segments.drain(..delete).collect::<Vec<_>>() {
            outcome.deleted_segments.push(segment.base_offset());
            outcome.deleted_bytes += segment.size();
            let result = segment.delete(&dir).await.map_err(crate::error::StorageError::from);
            self.guard(result)?;
        }
        outcome.log_start_offset = new_start;
        let first_base = self.active_first_base();
        self.forget_aborted_below(first_base);
        info!(dir = %dir.display(), segments = outcome.deleted_segments.len(), bytes = outcome.deleted_bytes, log_start_offset = new_start, "deleted segments below the log start");
        Ok(outcome)
    }

    /// Moves the log start offset forward (DeleteRecords, or a follower following its
    /// leader), durably, then deletes the closed segments wholly below it (a crash between
    /// the two leaves them to the next open).
    pub async fn advance_log_start(&mut self, offset: i64) -> Result<()> {
        self.check_usable()?;
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if offset > self.log_end_offset() {
            return Err(crate::error::StorageError::OffsetOutOfRange {
                dir: self.dir.clone(),
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        self.mark_dirty().await?;
        self.log_start_offset = offset;
        let durable = self.durable_offset();
        self.write_checkpoint(false, durable).await?;
        let below = self.closed_below_start();
        self.delete_prefix(below).await.map(|_| ())
    }
}
