//! Making appends durable: an fdatasync of the active segment when the flush policy asks,
//! and group commit, whose sync runs outside the log so that appends go on meanwhile.
//!
//! Invariants: `durable_offset` only moves forward and never past the log end, and only
//! after the sync that covers it succeeded; a failed sync poisons the log.

use std::io;
use std::rc::Rc;

use crate::clock::Clock;
use crate::config::FlushPolicy;
use crate::disk::Disk;
use crate::error::{Result, StorageError};

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// After an append: an fdatasync if the flush policy asks for one now.
    pub(super) async fn flush_by_policy(&mut self, now: i64) -> Result<()> {
        match self.config.flush {
            FlushPolicy::EveryAppend => self.flush().await,
            FlushPolicy::IntervalMs(interval) if now - self.last_flush_ms >= interval as i64 => {
                self.flush().await
            }
            FlushPolicy::IntervalMs(_) | FlushPolicy::Never => Ok(()),
        }
    }

    /// Makes every appended byte durable (fdatasync of the active segment).
    pub async fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        let end = self.log_end_offset();
        if self.durable_offset < end {
            let result = self.active_mut().flush().await.map_err(StorageError::from);
            self.guard_sync(result)?;
            self.durable_offset = end;
        }
        self.last_flush_ms = self.clock.now_ms();
        Ok(())
    }

    /// Group commit, part one: what a flush started now would cover, or `None` if everything
    /// is already durable. The caller syncs the returned file *without* holding the log, so
    /// appends continue meanwhile, and then reports with [`PartitionLog::complete_flush`].
    /// One fdatasync then covers every append that arrived before it started.
    pub fn flush_target(&self) -> Result<Option<(Rc<D::File>, i64)>> {
        self.check_usable()?;
        let end = self.log_end_offset();
        if self.durable_offset >= end {
            return Ok(None);
        }
        Ok(Some((Rc::clone(self.active().log()), end)))
    }

    /// Group commit, part two: records the outcome of syncing a `flush_target`. A failed
    /// sync poisons the log (nothing retries an fsync).
    pub fn complete_flush(&mut self, end: i64, result: io::Result<()>) -> Result<()> {
        self.guard_sync(result.map_err(StorageError::from))?;
        // A roll meanwhile sealed (and synced) the old segment itself; `end` only ever
        // moves the durable offset forward.
        self.durable_offset = self.durable_offset.max(end.min(self.log_end_offset()));
        self.last_flush_ms = self.clock.now_ms();
        Ok(())
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
