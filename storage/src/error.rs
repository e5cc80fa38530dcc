//! The storage crate's errors. Each variant carries the evidence: which partition directory
//! or file, which position or offset, what was expected and what was found.

use std::io;
use std::path::PathBuf;

/// Why a record batch was refused. The log is unchanged when an append fails with one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: u64, available: u64 },
    #[error("batch length field {length} is below the 49-byte minimum of a v2 batch")]
    LengthTooSmall { length: i32 },
    #[error("batch of {size} bytes exceeds batch_bytes_max {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("batch magic {magic}, only magic 2 (RecordBatch v2) is supported")]
    WrongMagic { magic: i8 },
    #[error("batch CRC-32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("batch compression codec {codec} is unknown (0-4 are defined)")]
    UnknownCompression { codec: u8 },
    #[error("batch record count {count} is invalid")]
    InvalidRecordCount { count: i32 },
    #[error("batch record count {count} disagrees with last offset delta {last_offset_delta}")]
    CountDeltaMismatch { count: i32, last_offset_delta: i32 },
    #[error("batch header counts {header_count} records, its bytes hold {actual_count}")]
    CountBytesMismatch { header_count: i32, actual_count: u64 },
    #[error("batch records are malformed at byte {position} of the batch: {reason}")]
    MalformedRecords { position: u64, reason: &'static str },
    #[error("replicated batch has base offset {actual}, the log expects {expected}")]
    UnexpectedBaseOffset { expected: i64, actual: i64 },
    /// A producer's timestamp outside the topic's `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` window around the broker's clock (Kafka's words).
    #[error("Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{earliest}, {latest}]")]
    TimestampOutOfRange { timestamp: i64, offset: i64, earliest: i64, latest: i64 },
}

/// An error from the partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid batch #{index} at byte {position} of the append: {source}")]
    InvalidBatch { index: usize, position: u64, source: BatchError },

    #[error("append of {size} bytes exceeds append_bytes_max {max}")]
    AppendTooLarge { size: u64, max: u64 },

    #[error("append holds no batches")]
    EmptyAppend,

    #[error("offset {offset} is out of range for {dir}: log start {log_start_offset}, log end {log_end_offset}")]
    OffsetOutOfRange { dir: PathBuf, offset: i64, log_start_offset: i64, log_end_offset: i64 },

    #[error("{path} is corrupt at position {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },

    #[error("partition {dir} is poisoned by an earlier I/O error and refuses all calls: {kind:?}: {message}")]
    Poisoned { dir: PathBuf, kind: io::ErrorKind, message: String },

    /// A write refused while the log is full (`LogConfig::free_bytes_min`, or an earlier
    /// write that ran out of space); reads go on, and writes resume once space returns.
    #[error("partition {dir} refuses writes: {reason}")]
    Full { dir: PathBuf, reason: String },

    /// Records the log had taken were not on disk when it was reopened after running out
    /// of space (a failed sync dropped them): latched as an I/O failure.
    #[error(
        "partition {dir}: records {from}..{to} were lost when its file system ran out of space"
    )]
    Lost { dir: PathBuf, from: i64, to: i64 },

    #[error("partition {dir} is closed")]
    Closed { dir: PathBuf },

    #[error("partition {dir}: the group write this append was part of failed: {reason}")]
    GroupWriteFailed { dir: PathBuf, reason: String },

    /// The thread checking an append's batches while they were written did not answer (it
    /// panicked): the written bytes are unverified, and the log latches as after an I/O
    /// failure.
    #[error("partition {dir}: the batch check failed: {reason}")]
    CheckFailed { dir: PathBuf, reason: String },

    #[error("invalid config {name} = {value}: {reason}")]
    InvalidConfig { name: &'static str, value: String, reason: &'static str },

    #[error("{0}")]
    Io(#[from] io::Error),
}

impl StorageError {
    /// The I/O error kind behind this error, when it is an I/O failure (directly or through
    /// poisoning). The broker maps `StorageFull` and friends to Kafka error codes.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StorageError::Io(error) => Some(error.kind()),
            StorageError::Poisoned { kind, .. } => Some(*kind),
            StorageError::Full { .. } => Some(io::ErrorKind::StorageFull),
            _ => None,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Whether an I/O error says the file system (or the user's quota) is out of space.
pub(crate) fn out_of_space(kind: io::ErrorKind) -> bool {
    matches!(kind, io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}
