//! fjord-storage: the partition log engine.
//!
//! A partition is a directory of segments (`<base offset>.log`, `.index`, `.timeindex`) that
//! hold Kafka RecordBatch v2 bytes exactly as producers sent them, with only the base offset
//! and partition leader epoch stamped. This crate appends, reads (as file regions, for
//! splice), looks up by timestamp, truncates, applies retention, flushes, and recovers after
//! a crash. It knows bytes, offsets and segments; nothing of sockets or Kafka API keys.
//!
//! - [`batch`]: the v2 batch header view, validation and stamping.
//! - [`PartitionLog`] (`log/`, a file per concept): open, appends, roll, flush and group
//!   commit, reads, lookup by time, truncation, retention, verify, close.
//! - `segment.rs`, `index.rs`: one segment's files and its sparse indexes.
//! - `recovery.rs`, `checkpoint.rs`: what happens after an unclean stop.
//! - [`io`]: the `fjord-io` crate, re-exported: the only code that touches io_uring (and
//!   `unsafe`), including splice to sockets.

#![deny(unsafe_code)]

pub mod batch;
mod checkpoint;
mod clock;
mod config;
mod disk;
mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
mod index;
mod log;
mod recovery;
mod segment;
pub mod sim;
pub mod txn_index;

pub use fjord_io as io;

pub use checkpoint::Checkpoint;
pub use clock::{Clock, SystemClock};
pub use config::{
    Compaction, FlushPolicy, LogConfig, APPEND_BYTES_MAX, BATCH_BYTES_LIMIT_MAX, SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN,
};
pub use disk::{Disk, DiskFile, RealDisk};
pub use error::{BatchError, Result, StorageError};
pub use index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
pub use log::{
    AppendInfo, BatchSummary, CleanDone, CleanOptions, CleanOutcome, CleanPlan, FileRegion,
    FlushTarget, OpenReport, PartitionLog, ReadResult, RecordsCodec, RetentionOutcome, SegmentInfo,
    OVERLAPPED_CHECK_BYTES_MIN,
};
pub use recovery::ScanOutcome;
pub use segment::file_name;
