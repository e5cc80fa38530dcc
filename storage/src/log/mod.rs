//! The partition log: an ordered list of segments, the last one active.
//!
//! Invariants:
//! - `segments` is never empty and sorted by base offset; only the last one takes appends.
//! - `log_start_offset <= log_end_offset`; offsets below the start are gone (retention).
//! - `durable_offset <= log_end_offset`: everything below it has been fdatasync'd, and the
//!   index files of every segment sealed below it too.
//! - The checkpoint on disk never claims more than is durable: its recovery offset is
//!   written only after the bytes below it were synced, and its clean flag is cleared before
//!   the first change after an open. `recovery_offset_on_disk` mirrors that offset.
//! - After any I/O error the log is poisoned: every later call fails with that error.
//!   Nothing retries a failed write or fsync (the page cache may have dropped the data).
//!   Running out of space (ENOSPC, EDQUOT) is the exception: the log is full, reads go on,
//!   writes are refused until space returns, and the log is then reopened, so recovery
//!   checks the tail the failed write left before anything is written after it.
//!
//! The fields are private to this folder; each file below adds the methods of one concept:
//! - `open.rs`: opening, with recovery of what an unclean stop left.
//! - `status.rs`: what the log tells about itself (offsets, sizes, segments).
//! - `poison.rs`: the latched I/O failure; `space.rs`: running out of space and back.
//! - `checkpoint.rs`: when the checkpoint is written, cleared and marked clean (close).
//! - `append.rs`: one caller's batches; `group_append.rs`: several producers' in one write;
//!   `write.rs`: the checks and the write both share.
//! - `roll.rs`: closing the active segment and starting the next.
//! - `flush.rs`: fdatasync by policy, the two halves of group commit, and the syncs of
//!   sealed segments a roll leaves to them.
//! - `region.rs`: what a read returns; `read.rs`: reads; `time_lookup.rs`: offsets by time.
//! - `truncate.rs`: cutting a divergent tail; `retention.rs`: deleting old segments.
//! - `tail.rs`: the batch headers at the end, for state rebuilt on open.
//! - `clean.rs`: compaction, a cleaning pass and its crash-safe swap.
//! - `verify.rs`: checking the whole log against itself.

mod append;
mod checkpoint;
mod clean;
mod flush;
mod group_append;
mod open;
mod poison;
mod read;
mod region;
mod retention;
mod roll;
mod space;
mod status;
mod tail;
mod time_lookup;
mod truncate;
mod txn;
mod verify;
mod write;

use std::io;
use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use crate::config::LogConfig;
use crate::disk::{Disk, RealDisk};
use crate::segment::Segment;

pub use append::{AppendInfo, OVERLAPPED_CHECK_BYTES_MIN};
pub use clean::{CleanDone, CleanOptions, CleanOutcome, CleanPlan, RecordsCodec};
pub use flush::FlushTarget;
pub use open::OpenReport;
pub use region::{FileRegion, ReadResult};
pub use retention::RetentionOutcome;
pub use status::SegmentInfo;
pub use tail::BatchSummary;

/// One partition's log, on disk `D` (the machine's by default) with clock `C`.
#[derive(Debug)]
pub struct PartitionLog<D: Disk = RealDisk, C: Clock = SystemClock> {
    disk: D,
    clock: C,
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment<D>>,
    log_start_offset: i64,
    durable_offset: i64,
    /// Whether the checkpoint on disk still says "clean shutdown".
    clean_flag_on_disk: bool,
    /// The recovery offset the checkpoint on disk holds (`i64::MIN` if none).
    recovery_offset_on_disk: i64,
    last_flush_ms: i64,
    poison: Option<(io::ErrorKind, String)>,
    /// Set when a write ran out of space: the failed call's error (`space.rs`).
    full: Option<String>,
    /// The file system's free bytes as last measured, less what was written since, and
    /// when it was measured (`space.rs`).
    free_bytes_seen: u64,
    free_checked_ms: i64,
    /// Set by `close`: every later call fails with `StorageError::Closed`.
    closed: bool,
    /// Aborted transactions, `(segment base, entry)` in marker order (`txn.rs`).
    aborted: Vec<(i64, crate::txn_index::AbortedTxn)>,
    open_report: OpenReport,
    /// Compaction: the offset the last cleaning pass reached (`clean.rs`), read from its
    /// file on the first plan; `i64::MIN` until then.
    cleaned_to: i64,
    /// Compaction: when a tombstone the last pass kept may go (`i64::MAX`: none kept;
    /// `None`: not known, as after opening).
    tombstones_due_ms: Option<i64>,
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    fn active(&self) -> &Segment<D> {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_first_base(&self) -> i64 {
        self.segments.first().expect("a log always has an active segment").base_offset()
    }

    fn active_mut(&mut self) -> &mut Segment<D> {
        self.segments.last_mut().expect("a log always has an active segment")
    }
}
