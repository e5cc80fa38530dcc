//! Running out of space, and back. A write that fails with ENOSPC or EDQUOT does not
//! poison the log: it makes the log *full*. A full log serves reads of everything it had
//! committed and refuses writes (`StorageError::Full`); each refused write first checks
//! whether space came back (at least `LogConfig::free_bytes_min` free), and if so reopens
//! the log from disk, so that recovery checks the tail past the last sync (CRCs, contiguous
//! offsets) and cuts whatever the failed write left before anything is written after it.
//!
//! Producer appends are also refused, before they fail, while the file system has less
//! than `free_bytes_min` free: the room kept is for replicas, checkpoints and indexes (and
//! the offsets topic, whose log has no floor). Free space is measured with `fstatvfs` at
//! most every `FREE_BYTES_CHECK_MS`, or sooner once what was written since the last
//! measurement could have taken it below the floor.

use std::io;

use tracing::{info, warn};

use crate::batch::Origin;
use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};

use super::PartitionLog;

/// Longest time between two measurements of the file system's free space.
pub(super) const FREE_BYTES_CHECK_MS: i64 = 1_000;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Whether a write ran out of space and the log refuses writes until space returns.
    pub fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// Records a write that ran out of space.
    pub(super) fn fill(&mut self, error: &io::Error) {
        if self.full.is_none() {
            warn!(dir = %self.dir.display(), %error, "out of space: the partition serves reads and refuses writes until space returns");
            self.full = Some(error.to_string());
        }
        self.free_bytes_seen = 0;
    }

    /// Before a write: fails with `Full` while the log is full and space has not returned,
    /// or (for a producer's append of `size` bytes) while free space is under the floor.
    pub(super) async fn check_room(&mut self, origin: Origin, size: u64) -> Result<()> {
        self.check_usable()?;
        if self.full.is_some() {
            self.resume_if_space().await?;
        }
        let floor = self.config.free_bytes_min;
        if origin == Origin::Client && floor > 0 {
            let free = self.free_bytes(size + floor)?;
            if free < size + floor {
                return Err(StorageError::Full {
                    dir: self.dir.clone(),
                    reason: format!(
                        "{free} bytes free on its file system, fewer than the {size} of the append and the {floor} kept free"
                    ),
                });
            }
        }
        self.free_bytes_seen = self.free_bytes_seen.saturating_sub(size);
        Ok(())
    }

    /// The file system's free bytes: measured again when the last measurement is older
    /// than `FREE_BYTES_CHECK_MS` or, less what was written since, below `wanted`.
    fn free_bytes(&mut self, wanted: u64) -> Result<u64> {
        let now = self.clock.now_ms();
        if self.free_bytes_seen < wanted
            || now.saturating_sub(self.free_checked_ms) >= FREE_BYTES_CHECK_MS
        {
            let measured = self.active().log().free_bytes();
            self.free_bytes_seen = self.guard(measured.map_err(StorageError::from))?;
            self.free_checked_ms = now;
        }
        Ok(self.free_bytes_seen)
    }

    /// A full log whose file system has `free_bytes_min` free again (at least one byte when
    /// there is no floor) is reopened from disk and takes writes; otherwise `Full`.
    async fn resume_if_space(&mut self) -> Result<()> {
        let floor = self.config.free_bytes_min.max(1);
        let free = self.free_bytes(u64::MAX)?;
        if free < floor {
            return Err(StorageError::Full {
                dir: self.dir.clone(),
                reason: format!(
                    "a write ran out of space ({}); {free} bytes free, writes resume at {floor}",
                    self.full.as_deref().unwrap_or("")
                ),
            });
        }
        // What the log had committed: a failed write's batches were never counted, so
        // whatever recovery finds past this end is theirs, and goes.
        let committed_end = self.log_end_offset();
        let reopened =
            Self::open_on(self.disk.clone(), self.clock.clone(), &self.dir, self.config.clone())
                .await;
        let mut reopened = self.guard(reopened)?;
        let found_end = reopened.log_end_offset();
        if found_end < committed_end {
            // Records the log had taken are gone (a failed sync dropped them from the page
            // cache): what was built on them (producer state, replicas' progress) cannot be
            // trusted any more. Latched, as any other I/O failure.
            let error =
                StorageError::Lost { dir: self.dir.clone(), from: found_end, to: committed_end };
            return Err(self.poison_with(error));
        }
        if found_end > committed_end && !reopened.is_full() {
            reopened.truncate_to(committed_end).await?;
        }
        info!(
            dir = %self.dir.display(),
            free_bytes = free,
            log_end_offset = reopened.log_end_offset(),
            full = reopened.is_full(),
            "space returned: partition log reopened, its tail checked"
        );
        *self = reopened;
        match &self.full {
            None => Ok(()),
            Some(reason) => {
                Err(StorageError::Full { dir: self.dir.clone(), reason: reason.clone() })
            }
        }
    }
}
