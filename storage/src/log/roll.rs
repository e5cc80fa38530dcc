//! Rolling: closing the active segment and starting a new one at the log end offset.
//!
//! Invariants: an empty active segment is never rolled; the closed segment is sealed (its
//! index files written, and synced if its log is durable already) and the new one's files
//! and the directory are synced before the new segment takes appends. The closed segment's sync is left to the next flush (the
//! background upkeep runs one soon after a roll, `sealed_not_durable`), as Kafka flushes a
//! rolled segment in the background: an append that rolls must not wait for a gigabyte of
//! dirty pages to reach the disk. The checkpoint's recovery offset stays below the closed
//! segment until that flush is done (`checkpoint_recovery_offset`), so until then recovery
//! rescans it.

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
            || self.old_enough_to_roll(now)
            || active.next_offset() + offsets - active.base_offset() > i64::from(u32::MAX)
    }

    /// Closes the active segment and starts a new one at the log end offset. The closed
    /// segment becomes durable with the next flush.
    pub async fn roll(&mut self) -> Result<()> {
        self.check_room(crate::batch::Origin::Replica, 0).await?;
        if self.active().size() == 0 {
            return Ok(());
        }
        self.mark_dirty().await?;
        let result = self.active_mut().seal_files().await.map_err(StorageError::from);
        self.guard(result)?;
        let base = self.log_end_offset();
        if self.durable_offset >= base {
            // A flush made its log durable already; its index files, just written, must be
            // too before the durable offset (which cannot go back) counts the segment as
            // sealed and synced. Small files: cheap, unlike the log's dirty pages.
            let result = self.active().files_to_sync(true).sync().await;
            self.guard_sync(result.map_err(StorageError::from))?;
        }
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
        info!(dir = %self.dir.display(), base_offset = base, "rolled to a new segment");
        Ok(())
    }

    /// Rolls the active segment if it is older than `segment_ms` less its jitter (for a
    /// background timer; appends check this too).
    pub async fn roll_if_due(&mut self) -> Result<()> {
        if self.old_enough_to_roll(self.clock.now_ms()) && self.active().size() > 0 {
            self.roll().await?;
        }
        Ok(())
    }

    /// Whether the active segment's age reached `segment_ms` less its jitter.
    fn old_enough_to_roll(&self, now: i64) -> bool {
        let age = now - self.active().created_at_ms();
        age >= self.config.segment_ms as i64 - self.roll_jitter_ms() as i64
    }

    /// How much before `segment_ms` the active segment rolls: below
    /// `min(segment_jitter_ms, segment_ms)`, as Kafka's per-segment `rollJitterMs`. Kafka
    /// draws it at random when the segment is made; here it is a hash of the log's directory
    /// and the segment's base offset and creation time, so partitions made together still
    /// spread and a restart keeps each segment's value.
    fn roll_jitter_ms(&self) -> u64 {
        let jitter = self.config.segment_jitter_ms.min(self.config.segment_ms);
        if jitter == 0 {
            return 0;
        }
        let active = self.active();
        // FNV-1a over the directory, then SplitMix64's finaliser to spread every bit.
        let mut h = self
            .dir
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
        h ^= active.base_offset() as u64 ^ (active.created_at_ms() as u64).rotate_left(32);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (h ^ (h >> 31)) % jitter
    }
}
