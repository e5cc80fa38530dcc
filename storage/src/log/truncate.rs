//! Truncation: a follower dropping a divergent tail, or its whole log.
//!
//! Invariants (the order is the crash story of docs/design.md): the clean flag is cleared
//! first; whole segments past the cut are deleted and the directory synced before the
//! survivor is cut, so a crash cannot bring them back behind a gap; the cut is synced
//! before the checkpoint records the new end; the log start never exceeds the log end.

use tracing::info;

use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::segment::Segment;

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Removes every batch at or after `offset` (replication: a follower dropping a divergent
    /// tail). A batch containing `offset` is removed whole, so the new log end offset can be
    /// below `offset`. Below the log start offset, the whole log is emptied and restarts
    /// there. The cut is durable before this returns.
    pub async fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        self.check_usable()?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset {
            self.truncate_fully_and_start_at(self.log_start_offset.min(offset)).await?;
            return Ok(self.log_end_offset());
        }
        self.mark_dirty().await?;
        let result = self.truncate_inner(offset).await;
        let cut = self.guard(result)?;
        let end = self.log_end_offset();
        // A cut synced the segment that is now active, whose predecessors are durable if a
        // flush reached it (a roll leaves sealed segments to the next flush). Without a cut
        // (only whole segments went), nothing new was synced.
        self.durable_offset = if cut && self.durable_offset >= self.active().base_offset() {
            end
        } else {
            self.durable_offset.min(end)
        };
        // The batch holding `offset` goes whole: when it also holds the log start, the end
        // falls below the start, which comes down with it (as an open would bring it).
        self.log_start_offset = self.log_start_offset.min(end);
        let recovery_offset = self.durable_offset;
        self.write_checkpoint(false, recovery_offset).await?;
        self.cut_aborted_from(end).await?;
        info!(dir = %self.dir.display(), offset, log_end_offset = end, "truncated log");
        Ok(end)
    }

    /// Returns whether it cut the segment now active (which syncs its log).
    async fn truncate_inner(&mut self, offset: i64) -> Result<bool> {
        // Drop whole segments that start at or after the cut (keeping at least one).
        let mut dropped = false;
        while self.segments.len() > 1 && self.active().base_offset() >= offset {
            let segment = self.segments.pop().expect("len > 1");
            segment.delete(&self.dir).await?;
            dropped = true;
        }
        // The dropped segments are gone for good before the survivor is cut: a crash after
        // the cut must not bring them back behind a gap in the offsets.
        if dropped {
            self.disk.sync_dir(&self.dir).await?;
        }
        let segment = self.segments.last_mut().expect("a log always has an active segment");
        if dropped {
            // A sealed segment is active again: its writes behind are done (its roll's flush).
            segment.start_write_behind_here();
        }
        let Some(cut) = segment.find_batch(offset).await? else {
            return Ok(false);
        };
        segment.truncate_at(cut).await?;
        self.disk.sync_dir(&self.dir).await?;
        Ok(true)
    }

    /// Deletes every segment and starts an empty log at `offset` (a follower whose log no
    /// longer overlaps the leader's).
    pub async fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.check_usable()?;
        self.mark_dirty().await?;
        let result = async {
            // Newest first, as `truncate_to` cuts: a crash in between leaves a prefix of the
            // old log, never one whose start moved without the checkpoint saying so.
            for segment in self.segments.drain(..).rev() {
                segment.delete(&self.dir).await?;
            }
            let now = self.clock.now_ms();
            let interval = self.config.index_interval_bytes;
            let segment = Segment::create(&self.disk, &self.dir, offset, interval, now).await?;
            self.disk.sync_dir(&self.dir).await?;
            Ok::<Segment<D>, StorageError>(segment)
        }
        .await;
        let segment = self.guard(result)?;
        self.segments.push(segment);
        self.aborted.clear();
        self.log_start_offset = offset;
        self.durable_offset = offset;
        self.write_checkpoint(false, offset).await
    }
}
