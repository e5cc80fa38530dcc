//! The leader epoch cache of one partition: for each leader epoch, the first offset written
//! in it. With it a returning replica asks the leader "where did my latest epoch end?"
//! (OffsetForLeaderEpoch) and cuts whatever it has past that point: records a dead leader
//! wrote that never reached the in-sync set.
//!
//! File `leader-epoch-checkpoint` in the partition directory, Kafka's text format:
//! ```text
//! 0            version
//! 2            entry count
//! 0 0          epoch, start offset
//! 3 1742
//! ```
//! Written atomically (`Disk::write_file_atomic`) whenever it changes (only on leadership
//! changes and truncation), on the partition's [`Disk`] (the machine's by default; the
//! simulator in `tests/simulation.rs`). A file holding fewer entries than its count says is
//! refused, as Kafka refuses it, rather than read as a shorter history.

use std::path::{Path, PathBuf};

use fjord_storage::{Disk, RealDisk};

use crate::ReplicationError;

/// Epoch entries kept: one per leadership change of the partition; older ones are dropped.
pub(crate) const EPOCH_ENTRIES_MAX: usize = 10_000;
/// The checkpoint file's size limit: `EPOCH_ENTRIES_MAX` lines of two numbers fit in a
/// third of it.
const EPOCH_FILE_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LeaderEpochCache<D: Disk = RealDisk> {
    disk: D,
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the cache of partition directory `dir` from the machine's disk (empty if there
    /// is no checkpoint yet).
    pub async fn load(dir: &Path) -> Result<LeaderEpochCache, ReplicationError> {
        LeaderEpochCache::load_on(RealDisk, dir).await
    }
}

impl<D: Disk> LeaderEpochCache<D> {
    /// Loads the cache of partition directory `dir` from `disk` (empty if there is no
    /// checkpoint yet).
    pub async fn load_on(disk: D, dir: &Path) -> Result<LeaderEpochCache<D>, ReplicationError> {
        let path = dir.join("leader-epoch-checkpoint");
        let mut entries = Vec::new();
        if let Some(bytes) = disk.read_file(&path, EPOCH_FILE_BYTES_MAX).await? {
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines();
            let bad = |reason: &str| ReplicationError::StateFile {
                path: path.display().to_string(),
                reason: reason.to_string(),
            };
            if lines.next().map(str::trim) != Some("0") {
                return Err(bad("unknown version"));
            }
            let count: usize = lines
                .next()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| bad("bad entry count"))?;
            for line in lines.take(count.min(EPOCH_ENTRIES_MAX)) {
                let mut parts = line.split_whitespace();
                let epoch =
                    parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad epoch"))?;
                let offset =
                    parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| bad("bad offset"))?;
                entries.push((epoch, offset));
            }
            if entries.len() < count.min(EPOCH_ENTRIES_MAX) {
                return Err(bad(&format!(
                    "{count} entries expected, {} found (truncated?)",
                    entries.len()
                )));
            }
        }
        Ok(LeaderEpochCache { disk, path, entries })
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset`. Only a newer epoch adds an entry.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.entries.push((epoch, start_offset));
        if self.entries.len() > EPOCH_ENTRIES_MAX {
            self.entries.remove(0);
        }
        true
    }

    /// The epoch `offset` was written in: that of the last entry starting at or before it
    /// (Kafka's `epochForOffset`); `None` below the first entry.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries.iter().rev().find(|(_, start)| *start <= offset).map(|(epoch, _)| *epoch)
    }

    /// Kafka's OffsetForLeaderEpoch answer for this cache (`end_offset_in`).
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        end_offset_in(&self.entries, epoch, log_end_offset)
    }

    /// Drops entries that start at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < offset);
        self.entries.len() != before
    }

    pub async fn persist(&self) -> Result<(), ReplicationError> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, offset) in &self.entries {
            text.push_str(&format!("{epoch} {offset}\n"));
        }
        self.disk.write_file_atomic(&self.path, text.into_bytes()).await?;
        Ok(())
    }
}

/// The answer to "where did `requested` end?" from epoch entries (epoch, start offset), by
/// the rules of Kafka's `LeaderEpochFileCache.endOffsetFor`:
/// - epoch -1, or one above every entry: `(-1, -1)` (undefined);
/// - the latest epoch: it has not ended, `(epoch, log_end_offset)`;
/// - an epoch below every entry: `(requested, start of the first entry)`, since older data
///   is gone;
/// - otherwise the largest epoch at most `requested` and the start of the next one.
pub fn end_offset_in(entries: &[(i32, i64)], requested: i32, log_end_offset: i64) -> (i32, i64) {
    const UNDEFINED: (i32, i64) = (-1, -1);
    if requested == -1 {
        return UNDEFINED;
    }
    if entries.last().is_some_and(|(latest, _)| *latest == requested) {
        return (requested, log_end_offset);
    }
    let Some(&(_, higher_start)) = entries.iter().find(|(epoch, _)| *epoch > requested) else {
        return UNDEFINED;
    };
    match entries.iter().rev().find(|(epoch, _)| *epoch <= requested) {
        Some(&(floor, _)) => (floor, higher_start),
        None => (requested, higher_start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let mut cache = LeaderEpochCache {
            disk: RealDisk,
            path: PathBuf::from("/nonexistent"),
            entries: Vec::new(),
        };
        assert!(cache.assign(0, 0));
        assert!(!cache.assign(0, 5), "the same epoch adds nothing");
        assert!(cache.assign(3, 100));
        assert!(cache.assign(5, 250));
        assert_eq!(cache.end_offset_for(0, 300), (0, 100));
        assert_eq!(cache.end_offset_for(2, 300), (0, 100));
        assert_eq!(cache.end_offset_for(3, 300), (3, 250));
        assert_eq!(cache.end_offset_for(5, 300), (5, 300));
        assert_eq!(cache.end_offset_for(9, 300), (-1, -1), "above the latest epoch: undefined");
        assert_eq!(cache.end_offset_for(-1, 300), (-1, -1));
        assert_eq!(cache.epoch_for_offset(0), Some(0));
        assert_eq!(cache.epoch_for_offset(100), Some(3));
        assert_eq!(cache.epoch_for_offset(299), Some(5));
        assert!(cache.truncate_from(250));
        assert_eq!(cache.latest_epoch(), Some(3));
        let mut empty =
            LeaderEpochCache { disk: RealDisk, path: PathBuf::from("/x"), entries: vec![(4, 10)] };
        assert_eq!(
            empty.end_offset_for(3, 20),
            (3, 10),
            "below the first epoch: where the first starts"
        );
        assert!(empty.truncate_from(0));
    }
}
