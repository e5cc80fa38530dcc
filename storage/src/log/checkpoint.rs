//! When the log writes its checkpoint (the file's format is `crate::checkpoint`).
//!
//! Invariants: the checkpoint never claims more than is durable (its recovery offset is
//! written only after the bytes below it were synced); its clean flag is cleared before the
//! first change after an open (`mark_dirty`) and set only by `close`, after everything was
//! synced; `clean_flag_on_disk` mirrors what the file says.

use tracing::info;

use crate::checkpoint::Checkpoint;
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Result, StorageError};

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    pub(super) async fn write_checkpoint(
        &mut self,
        clean: bool,
        recovery_offset: i64,
    ) -> Result<()> {
        let checkpoint = Checkpoint {
            clean_shutdown: clean,
            recovery_offset,
            log_start_offset: self.log_start_offset,
        };
        let result = checkpoint.write(&self.disk, &self.dir).await.map_err(StorageError::from);
        self.guard(result)?;
        self.clean_flag_on_disk = clean;
        self.recovery_offset_on_disk = recovery_offset;
        Ok(())
    }

    /// Moves the checkpoint's recovery offset up to the durable offset once that has passed
    /// the start of the active segment and the checkpoint's offset has not: a roll leaves
    /// its sealed segment to a later flush, and until this runs an unclean open rescans
    /// from the old offset, sealed segments included. For the background upkeep, after
    /// `sealed_not_durable` was flushed.
    pub async fn checkpoint_recovery_offset(&mut self) -> Result<()> {
        self.check_usable()?;
        let active_base = self.active().base_offset();
        if self.durable_offset >= active_base && self.recovery_offset_on_disk < active_base {
            let durable = self.durable_offset;
            self.write_checkpoint(false, durable).await?;
        }
        Ok(())
    }

    /// Before the first change after a clean open, the checkpoint must stop saying "clean":
    /// otherwise a crash after the change would be trusted without a scan.
    pub(super) async fn mark_dirty(&mut self) -> Result<()> {
        if self.clean_flag_on_disk {
            let recovery_offset = self.durable_offset;
            self.write_checkpoint(false, recovery_offset).await?;
        }
        Ok(())
    }

    /// Syncs everything and writes the clean-shutdown checkpoint; the next open trusts the
    /// files without scanning them. Every later call on this log fails (`Closed`).
    pub async fn close(&mut self) -> Result<()> {
        self.check_usable()?;
        self.closed = true;
        let result = self.active_mut().seal_files().await.map_err(StorageError::from);
        self.guard(result)?;
        let result = self.target_from_durable(true).sync().await.map_err(StorageError::from);
        self.guard_sync(result)?;
        let end = self.log_end_offset();
        self.durable_offset = end;
        self.write_checkpoint(true, end).await?;
        info!(dir = %self.dir.display(), log_end_offset = end, "closed partition log cleanly");
        Ok(())
    }
}
