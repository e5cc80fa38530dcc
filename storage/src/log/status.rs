//! What a partition log tells about itself: its directory and settings, its offsets, its
//! size and a summary of each segment. Nothing here changes the log except `set_config`,
//! which takes effect from the next append or roll.

use std::path::Path;

use crate::clock::Clock;
use crate::config::LogConfig;
use crate::disk::Disk;
use crate::error::Result;

use super::{OpenReport, PartitionLog};

/// A summary of one segment, for tools and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub index_entries: usize,
    pub time_index_entries: usize,
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Changes the settings (a topic config update); applies from the next append or roll.
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// What the open found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.open_report
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Every offset below this is on disk (fdatasync'd).
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size()).sum()
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                index_entries: s.index().entries().len(),
                time_index_entries: s.time_index().entries().len(),
            })
            .collect()
    }
}
