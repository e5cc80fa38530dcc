//! The settings of one partition log, with the limits they are checked against.
//!
//! Every limit here is named with a `_max` suffix and says why it exists; `validate` runs
//! once when a log is opened, so the rest of the crate can rely on the bounds.

use crate::error::{Result, StorageError};

/// Positions in `.index` entries are u32 and an append may add up to `APPEND_BYTES_MAX` past
/// `segment_bytes`, so segments stay below 2 GiB to keep every position representable.
pub const SEGMENT_BYTES_MAX: u64 = (1 << 31) - 1;
/// The most bytes one append call may carry: bounds the memory of a single write and keeps
/// `segment_bytes + append` below `u32::MAX`.
pub const APPEND_BYTES_MAX: u64 = 256 * 1024 * 1024;
// A fetch checks whether a segment's pages are cached through a mapping of this many bytes
// (the I/O crate's); any segment, plus one append past it, must fit it.
const _: () = assert!(fjord_io::RESIDENCY_MAP_BYTES >= SEGMENT_BYTES_MAX + APPEND_BYTES_MAX);
/// The smallest segment worth having: one header's worth and some records.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// The largest single batch Fjord accepts: Kafka's own ceiling for `message.max.bytes` is far
/// lower in practice; this bounds what recovery and reads ever load at once.
pub const BATCH_BYTES_LIMIT_MAX: u64 = 64 * 1024 * 1024;

/// When appended bytes are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every append call (one call may carry many batches: a group commit).
    EveryAppend,
    /// When at least this many milliseconds have passed since the last flush, checked on
    /// append and by [`crate::PartitionLog::flush_if_due`].
    IntervalMs(u64),
    /// Only on roll, truncation and close; the page cache decides otherwise.
    Never,
}

/// Settings of one partition log. Defaults follow Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would pass this size (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll to a new segment once the active one is this old (`segment.ms`).
    pub segment_ms: u64,
    /// Each segment rolls up to this much before `segment_ms` (`segment.jitter.ms`), by an
    /// amount drawn per segment, so that partitions made together do not all roll at once;
    /// 0: exactly at `segment_ms`.
    pub segment_jitter_ms: u64,
    /// Bytes of log between two sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// Delete closed segments whose newest timestamp is older than this (`retention.ms`);
    /// `None` keeps them forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest closed segments while the partition is larger than this
    /// (`retention.bytes`); `None` keeps them.
    pub retention_bytes: Option<u64>,
    /// When appends are synced to disk.
    pub flush: FlushPolicy,
    /// Also sync once at least this many offsets are not durable (`flush.messages`), checked
    /// after each append; `None`: no such count.
    pub flush_messages: Option<u64>,
    /// The largest batch accepted (`max.message.bytes`).
    pub batch_bytes_max: u64,
    /// Producer appends are refused while the file system has fewer bytes free than this,
    /// leaving room for replicas, checkpoints, indexes and the offsets topic; 0: no floor.
    /// A log that ran out of space takes writes again once this much is free (`space.rs`).
    pub free_bytes_min: u64,
    /// Whether the active segment reserves disk blocks ahead of its end (`preallocate`).
    /// Off by default, as in Kafka: on ext4 a reservation allocates blocks, which may read
    /// block bitmaps from a busy disk while the append waits (60-166 ms traced under a
    /// sustained load, docs/benchmarks.md), for a throughput gain of a few percent.
    pub preallocate: bool,
    /// How far before the broker's clock a producer's timestamp may be
    /// (`message.timestamp.before.max.ms`); `None`: any. Checked on the batch header's first
    /// timestamp, for producers' batches only.
    pub timestamp_before_max_ms: Option<u64>,
    /// How far after the broker's clock a producer's timestamp may be
    /// (`message.timestamp.after.max.ms`); `None`: any. Checked on the batch header's
    /// largest timestamp, for producers' batches only.
    pub timestamp_after_max_ms: Option<u64>,
    /// Producers' batches get the broker's clock as their timestamp when appended
    /// (`message.timestamp.type=LogAppendTime`); else they keep the producer's (CreateTime).
    pub log_append_time: bool,
    /// Set for a compacted log (`cleanup.policy` with `compact`): how it is cleaned
    /// (`PartitionLog::plan_clean` and the broker's cleaner). Retention by time and size is
    /// separate: a log that is only compacted has `retention_ms` and `retention_bytes` unset.
    pub compaction: Option<Compaction>,
}

/// The compaction settings of a compacted log, Kafka's topic configs of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// `min.cleanable.dirty.ratio`, in millionths: a pass runs once the dirty part is at
    /// least this share of the cleanable bytes.
    pub min_cleanable_dirty_ppm: u32,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes a pass run whatever
    /// the ratio.
    pub max_compaction_lag_ms: u64,
    /// `delete.retention.ms`: how long a tombstone stays after the pass that first cleaned it.
    pub delete_retention_ms: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            min_cleanable_dirty_ppm: 500_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: u64::MAX,
            delete_retention_ms: 24 * 3600 * 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_jitter_ms: 0,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            flush: FlushPolicy::EveryAppend,
            flush_messages: None,
            batch_bytes_max: 1024 * 1024 + 12,
            free_bytes_min: 0,
            preallocate: false,
            timestamp_before_max_ms: None,
            timestamp_after_max_ms: None,
            log_append_time: false,
            compaction: None,
        }
    }
}

impl LogConfig {
    /// Checks every value against its limit.
    pub fn validate(&self) -> Result<()> {
        fn invalid(name: &'static str, value: impl ToString, reason: &'static str) -> Result<()> {
            Err(StorageError::InvalidConfig { name, value: value.to_string(), reason })
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return invalid(
                "segment_bytes",
                self.segment_bytes,
                "must be between 1 KiB and 2 GiB - 1",
            );
        }
        if self.segment_ms == 0 {
            return invalid("segment_ms", self.segment_ms, "must be at least 1");
        }
        if self.index_interval_bytes == 0 || self.index_interval_bytes > self.segment_bytes {
            return invalid(
                "index_interval_bytes",
                self.index_interval_bytes,
                "must be between 1 and segment_bytes",
            );
        }
        if self.batch_bytes_max < crate::batch::BATCH_HEADER_BYTES as u64
            || self.batch_bytes_max > BATCH_BYTES_LIMIT_MAX
        {
            return invalid(
                "batch_bytes_max",
                self.batch_bytes_max,
                "must be between 61 bytes and 64 MiB",
            );
        }
        if self.flush_messages == Some(0) {
            return invalid("flush_messages", 0, "must be at least 1");
        }
        if let FlushPolicy::IntervalMs(0) = self.flush {
            return invalid("flush", "interval 0", "use EveryAppend instead of a zero interval");
        }
        Ok(())
    }
}
