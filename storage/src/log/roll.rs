//! Rolling: closing the active segment and starting a new one at the log end offset.
//!
//! Invariants: an empty active segment is never rolled; the closed segment is sealed and
//! synced, and the new one's files and the directory are synced, before the checkpoint's
//! recovery offset moves to the new base, so recovery never rescans a closed segment.

use tracing::info;

use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::segment::Segment;

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Before an append of `size` bytes and `offsets` offsets: marks the log dirty and rolls
    /// the active segment if the append would not fit it. Returns the time of the append.
    pub(super) async fn make_room(&mut self, size: u64, offsets: i64) -> Result<i64> {
        self.mark_dirty().await?;
        let now = self.clock.now_ms();
        if self.should_roll(size, offsets, now) {
            self.roll().await?;
        }
        Ok(now)
    }

    fn should_roll(&self, size: u64, offsets: i64, now: i64) -> bool {
        let active = self.active();
        if active.size() == 0 {
            return false;
        }
        active.size() + size > self.config.segment_bytes
            || now - active.created_at_ms() >= self.config.segment_ms as i64
            || active.next_offset() + offsets - active.base_offset() > i64::from(u32::MAX)
    }

    /// Closes the active segment and starts a new one at the log end offset. The closed
    /// segment is synced and the checkpoint moves past it, so recovery never rescans it.
    pub async fn roll(&mut self) -> Result<()> {
        self.check_room(crate::batch::Origin::Replica, 0).await?;
        if self.active().size() == 0 {
            return Ok(());
        }
        self.mark_dirty().await?;
        let result = self.active_mut().seal_files().await.map_err(StorageError::from);
        self.guard(result)?;
        let result = self.active_mut().sync_sealed().await.map_err(StorageError::from);
        self.guard_sync(result)?;
        let base = self.log_end_offset();
        self.durable_offset = base;
        let result = async {
            let now = self.clock.now_ms();
            let segment =
                Segment::create(&self.disk, &self.dir, base, self.config.index_interval_bytes, now)
                    .await?;
            self.disk.sync_dir(&self.dir).await?;
            Ok(segment)
        }
        .await;
        let segment = self.guard(result)?;
        self.segments.push(segment);
        self.write_checkpoint(false, base).await?;
        info!(dir = %self.dir.display(), base_offset = base, "rolled to a new segment");
        Ok(())
    }

    /// Rolls the active segment if it is older than `segment_ms` (for a background timer;
    /// appends check this too).
    pub async fn roll_if_due(&mut self) -> Result<()> {
        if self.clock.now_ms() - self.active().created_at_ms() >= self.config.segment_ms as i64
            && self.active().size() > 0
        {
            self.roll().await?;
        }
        Ok(())
    }
}
