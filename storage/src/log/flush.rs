//! Making appends durable: an fdatasync when the flush policy asks, group commit (whose
//! syncs run outside the log so that appends go on meanwhile), and the syncs of segments
//! sealed by a roll, which a roll leaves to the next flush.
//!
//! Invariants: `durable_offset` only moves forward and never past the log end, and only
//! after the syncs that cover it succeeded; it never passes the base of a sealed segment
//! whose index files were not synced since it was sealed; a failed sync poisons the log.

use std::io;

use crate::clock::Clock;
use crate::config::FlushPolicy;
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::segment::SegmentFiles;

use super::PartitionLog;

/// What a flush started at one moment makes durable: the files of every segment holding
/// offsets at or past the durable offset (the log of the active one; log and index files
/// of sealed ones), synced with [`FlushTarget::sync`] without holding the log, then
/// reported with [`PartitionLog::complete_flush`].
#[derive(Debug)]
pub struct FlushTarget<D: Disk> {
    segments: Vec<SegmentFiles<D>>,
    /// The log end when the target was taken: durable once its syncs succeeded.
    end: i64,
    /// The base of the segment that was active then (its index files not synced).
    active_base: i64,
}

impl<D: Disk> FlushTarget<D> {
    /// The offset below which everything is durable once the target is synced.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Syncs the target's files, oldest segment first.
    pub async fn sync(&self) -> io::Result<()> {
        for segment in &self.segments {
            segment.sync().await?;
        }
        Ok(())
    }
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// After an append: an fdatasync if the flush policy or the count of offsets not yet
    /// durable (`flush_messages`, Kafka's `unflushedMessages >= flush.messages`) asks for
    /// one now.
    pub(super) async fn flush_by_policy(&mut self, now: i64) -> Result<()> {
        let not_durable = self.log_end_offset() - self.durable_offset;
        if self.config.flush_messages.is_some_and(|count| not_durable >= count as i64) {
            return self.flush().await;
        }
        match self.config.flush {
            FlushPolicy::EveryAppend => self.flush().await,
            FlushPolicy::IntervalMs(interval) if now - self.last_flush_ms >= interval as i64 => {
                self.flush().await
            }
            FlushPolicy::IntervalMs(_) | FlushPolicy::Never => Ok(()),
        }
    }

    /// Makes every appended byte durable, holding the log meanwhile.
    pub async fn flush(&mut self) -> Result<()> {
        if let Some(target) = self.flush_target()? {
            let result = target.sync().await;
            self.complete_flush(&target, result)?;
        }
        self.last_flush_ms = self.clock.now_ms();
        Ok(())
    }

    /// Group commit, part one: what a flush started now would cover, or `None` if everything
    /// is already durable. The caller syncs it *without* holding the log, so appends
    /// continue meanwhile, and then reports with [`PartitionLog::complete_flush`]. One
    /// flush then covers every append that arrived before it started.
    pub fn flush_target(&self) -> Result<Option<FlushTarget<D>>> {
        self.check_usable()?;
        let end = self.log_end_offset();
        if self.durable_offset >= end {
            return Ok(None);
        }
        Ok(Some(self.target_from_durable(false)))
    }

    /// The files of every segment holding offsets at or past the durable offset; the
    /// active one's index files too when `active_sealed` (a closing log seals it), and then
    /// the active one even if it is durable already.
    pub(super) fn target_from_durable(&self, active_sealed: bool) -> FlushTarget<D> {
        let active_base = self.active().base_offset();
        let segments = self
            .segments
            .iter()
            .filter(|segment| {
                segment.next_offset() > self.durable_offset
                    || (active_sealed && segment.base_offset() == active_base)
            })
            .map(|segment| {
                segment.files_to_sync(active_sealed || segment.base_offset() != active_base)
            })
            .collect();
        FlushTarget { segments, end: self.log_end_offset(), active_base }
    }

    /// Group commit, part two: records the outcome of syncing a `flush_target`. A failed
    /// sync poisons the log (nothing retries an fsync). If a roll sealed the segment the
    /// target synced as active, its index files were not synced: the durable offset stops
    /// at its base, and the next flush syncs it as sealed.
    pub fn complete_flush(
        &mut self,
        target: &FlushTarget<D>,
        result: io::Result<()>,
    ) -> Result<()> {
        self.guard_sync(result.map_err(StorageError::from))?;
        let sealed_since = self.active().base_offset() != target.active_base;
        let cap = if sealed_since { target.active_base } else { i64::MAX };
        let reached = target.end.min(self.log_end_offset()).min(cap);
        self.durable_offset = self.durable_offset.max(reached);
        self.last_flush_ms = self.clock.now_ms();
        Ok(())
    }

    /// Whether a sealed segment is not durable yet (a roll leaves its sync to a flush): the
    /// active segment's base offset if so, for the caller to flush up to.
    pub fn sealed_not_durable(&self) -> Option<i64> {
        let active_base = self.active().base_offset();
        (self.durable_offset < active_base).then_some(active_base)
    }

    /// For the upkeep: an active segment that took no append since the last call settles
    /// its write-behind (`Segment::settle_write_behind`), so an idle partition holds none of
    /// the broker's write-behind budget.
    pub async fn settle_write_behind(&mut self) {
        self.active_mut().settle_write_behind().await;
    }

    /// Flushes if the flush policy's interval has passed; for a background timer.
    pub async fn flush_if_due(&mut self) -> Result<()> {
        if let FlushPolicy::IntervalMs(interval) = self.config.flush {
            if self.clock.now_ms() - self.last_flush_ms >= interval as i64 {
                return self.flush().await;
            }
        }
        Ok(())
    }
}
