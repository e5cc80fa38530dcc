//! The partition log: an ordered list of segments, the last one active.
//!
//! Invariants:
//! - `segments` is never empty and sorted by base offset; only the last one takes appends.
//! - `log_start_offset <= log_end_offset`; offsets below the start are gone (retention).
//! - `durable_offset <= log_end_offset`: everything below it has been fdatasync'd.
//! - The checkpoint on disk never claims more than is durable: its recovery offset is
//!   written only after the bytes below it were synced, and its clean flag is cleared before
//!   the first change after an open.
//! - After any I/O error the log is poisoned: every later call fails with that error.
//!   Nothing retries a failed write or fsync (the page cache may have dropped the data).

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use tracing::{info, warn};

use crate::batch::{self, BatchInfo, Origin};
use crate::checkpoint::Checkpoint;
use crate::clock::{Clock, SystemClock};
use crate::config::{FlushPolicy, LogConfig, APPEND_BYTES_MAX};
use crate::disk::{Disk, DiskFile, RealDisk};
use crate::error::{BatchError, Result, StorageError};
use crate::io::{File, SplicePipe};
use crate::recovery::{self, ScanOutcome};
use crate::segment::{segment_path, Region, Segment};

/// Header bytes a leader rewrites in every batch: baseOffset, batchLength (unchanged) and
/// partitionLeaderEpoch.
const STAMPED_BYTES: usize = 16;

/// An append's bytes: a buffer the log may change in place, or a shared one it must not.
enum AppendInput {
    Owned(BytesMut),
    Shared(bytes::Bytes),
}

impl AppendInput {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn as_slice(&self) -> &[u8] {
        match self {
            AppendInput::Owned(b) => b,
            AppendInput::Shared(b) => b,
        }
    }
}

/// What `write_batches` writes.
enum Pieces {
    Owned(BytesMut),
    Vectored(Vec<bytes::Bytes>),
}

/// Appends at least this large check batch CRCs on another core while the write runs.
pub const OVERLAPPED_CHECK_BYTES_MIN: u64 = 256 * 1024;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest timestamp among the appended batches.
    pub max_timestamp: i64,
    pub batch_count: usize,
    pub bytes: u64,
}

/// A byte range of whole batches in one segment file. Holding it keeps the file open, so the
/// bytes stay readable even if retention deletes the segment meanwhile.
#[derive(Debug)]
pub struct FileRegion<F = File> {
    pub file: Rc<F>,
    pub segment_base_offset: i64,
    pub position: u64,
    pub len: u64,
    /// Base offset of the first batch in the region.
    pub first_offset: i64,
    /// One past the last offset in the region.
    pub next_offset: i64,
}

impl<F> Clone for FileRegion<F> {
    fn clone(&self) -> Self {
        FileRegion { file: Rc::clone(&self.file), ..*self }
    }
}

impl<F: DiskFile> FileRegion<F> {
    /// Copies the region into memory (for replication tests and tools; fetches use splice).
    pub async fn read_bytes(&self) -> Result<Vec<u8>> {
        let bytes = self.file.read_at(self.position, self.len as usize).await?;
        if bytes.len() as u64 != self.len {
            return Err(StorageError::Corrupt {
                path: self.file.path().to_path_buf(),
                position: self.position + bytes.len() as u64,
                reason: format!("file ends inside a region of {} bytes", self.len),
            });
        }
        Ok(bytes)
    }
}

impl FileRegion<File> {
    /// Sends the region to `socket` without copying it through user space
    /// (`io::splice_to_socket`, which may make the socket non-blocking).
    pub async fn splice_to(
        &self,
        pipe: &mut SplicePipe,
        socket: std::os::fd::RawFd,
    ) -> io::Result<()> {
        crate::io::splice_to_socket(pipe, &self.file, self.position, self.len, socket).await
    }
}

/// The answer to a read: whole batches, in offset order, across one or more segments.
#[derive(Debug, Clone)]
pub struct ReadResult<F = File> {
    pub regions: Vec<FileRegion<F>>,
}

impl<F> Default for ReadResult<F> {
    fn default() -> Self {
        ReadResult { regions: Vec::new() }
    }
}

impl<F: DiskFile> ReadResult<F> {
    pub fn bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// One past the last offset returned (the offset to read next), if anything was returned.
    pub fn next_offset(&self) -> Option<i64> {
        self.regions.last().map(|r| r.next_offset)
    }

    /// All region bytes concatenated (see [`FileRegion::read_bytes`]).
    pub async fn read_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.bytes() as usize);
        for region in &self.regions {
            out.extend_from_slice(&region.read_bytes().await?);
        }
        Ok(out)
    }
}

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

/// How the last open went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub clean_shutdown: bool,
    /// Segments whose log was scanned batch by batch, with what each scan found.
    pub scanned: Vec<(i64, ScanOutcome)>,
    /// Segments removed because they followed a corrupt segment or lay below the log start.
    pub removed_segments: Vec<i64>,
}

/// One partition's log, on disk `D` (the machine's by default) with clock `C`.
#[derive(Debug)]
pub struct PartitionLog<D: Disk = RealDisk, C: Clock = SystemClock> {
    disk: D,
    clock: C,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: Vec<Segment<D>>,
    pub(crate) log_start_offset: i64,
    durable_offset: i64,
    /// Whether the checkpoint on disk still says "clean shutdown".
    clean_flag_on_disk: bool,
    last_flush_ms: i64,
    poison: Option<(io::ErrorKind, String)>,
    open_report: OpenReport,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir` on the machine's disk and clock, recovering it if
    /// the last stop was not clean.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog> {
        PartitionLog::open_on(RealDisk, SystemClock, dir, config).await
    }
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Opens (or creates) the log in `dir` on `disk`, reading the time from `clock`,
    /// recovering it if the last stop was not clean.
    pub async fn open_on(disk: D, clock: C, dir: &Path, config: LogConfig) -> Result<Self> {
        config.validate()?;
        disk.create_dir_all(dir)?;
        let names = disk.list_dir(dir)?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".log"))
            .filter(|stem| stem.len() == 20)
            .filter_map(|stem| stem.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        recovery::remove_orphans(&disk, dir, &names, &bases).await?;

        let checkpoint = Checkpoint::read(&disk, dir).await?;
        let clean = checkpoint.is_some_and(|c| c.clean_shutdown);
        let recovery_offset = checkpoint.map_or(i64::MIN, |c| c.recovery_offset);
        let mut log_start_offset =
            checkpoint.map_or(0, |c| c.log_start_offset).max(bases.first().copied().unwrap_or(0));
        let mut report = OpenReport { clean_shutdown: clean, ..OpenReport::default() };

        // A crash during retention can leave segments that lie wholly below the log start.
        while bases.len() > 1 && bases[1] <= log_start_offset {
            let base = bases.remove(0);
            warn!(dir = %dir.display(), base, log_start_offset, "removing segment below the log start");
            for extension in ["log", "index", "timeindex"] {
                disk.remove_file(&segment_path(dir, base, extension)).await?;
            }
            report.removed_segments.push(base);
        }

        let now = clock.now_ms();
        let mut segments: Vec<Segment<D>> = Vec::with_capacity(bases.len().max(1));
        // The segment holding the recovery offset and all after it are scanned when unclean.
        let first_scanned = bases.iter().rposition(|&base| base <= recovery_offset).unwrap_or(0);
        let mut cut_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let mut segment =
                Segment::open_files(&disk, dir, base, false, config.index_interval_bytes, now)
                    .await?;
            let outcome = if clean || i < first_scanned {
                recovery::open_trusted(&mut segment).await?
            } else {
                Some(recovery::scan_segment(&mut segment, true).await?)
            };
            if let Some(outcome) = outcome {
                let damaged = outcome.invalid_bytes > 0;
                report.scanned.push((base, outcome));
                if damaged && i + 1 < bases.len() {
                    cut_at = Some(i + 1);
                }
            }
            // Each segment starts where its predecessor ends. (A segment past a gap is one a
            // crash brought back after a truncation had cut its predecessor.)
            if let Some(previous) = segments.last() {
                if segment.base_offset != previous.next_offset {
                    warn!(dir = %dir.display(), base, previous_next = previous.next_offset, "segment does not follow its predecessor");
                    cut_at = Some(i);
                }
            }
            if cut_at == Some(i) {
                break;
            }
            segments.push(segment);
            if cut_at.is_some() {
                break;
            }
        }
        if let Some(cut) = cut_at {
            for &base in &bases[cut..] {
                warn!(dir = %dir.display(), base, "removing segment after a damaged one: its offsets no longer follow");
                for extension in ["log", "index", "timeindex"] {
                    disk.remove_file(&segment_path(dir, base, extension)).await?;
                }
                report.removed_segments.push(base);
            }
        }
        if segments.is_empty() {
            let segment =
                Segment::create(&disk, dir, log_start_offset, config.index_interval_bytes, now)
                    .await?;
            disk.sync_dir(dir).await?;
            segments.push(segment);
        }
        let log_end_offset = segments.last().expect("at least one segment").next_offset;
        log_start_offset = log_start_offset.min(log_end_offset);

        let mut log = PartitionLog {
            disk,
            clock,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            durable_offset: log_end_offset,
            clean_flag_on_disk: clean,
            last_flush_ms: now,
            poison: None,
            open_report: report,
        };
        if !clean && !log.open_report.scanned.is_empty() {
            // Everything now on disk was checked (and synced by the scans): record that, so
            // the next unclean open scans only what comes after. (A new, empty partition has
            // nothing to record: creating ten thousand of them should not cost an fsync each.)
            log.write_checkpoint(false, log_end_offset).await?;
        }
        info!(
            dir = %log.dir.display(),
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset,
            clean,
            "opened partition log"
        );
        Ok(log)
    }

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
        self.active().next_offset
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
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The error that poisoned this log, if any.
    pub fn poisoned(&self) -> Option<(io::ErrorKind, &str)> {
        self.poison.as_ref().map(|(kind, message)| (*kind, message.as_str()))
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
                index_entries: s.index.entries().len(),
                time_index_entries: s.time_index.entries().len(),
            })
            .collect()
    }

    pub(crate) fn active(&self) -> &Segment<D> {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment<D> {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match &self.poison {
            None => Ok(()),
            Some((kind, message)) => Err(StorageError::Poisoned {
                dir: self.dir.clone(),
                kind: *kind,
                message: message.clone(),
            }),
        }
    }

    /// Records an I/O failure: from now on every call fails.
    pub(crate) fn poison_with(&mut self, error: StorageError) -> StorageError {
        if let StorageError::Io(io_error) = &error {
            if self.poison.is_none() {
                warn!(dir = %self.dir.display(), error = %io_error, "I/O error: partition poisoned");
                self.poison = Some((io_error.kind(), io_error.to_string()));
            }
        }
        error
    }

    /// Runs `result` through poisoning.
    pub(crate) fn guard<T>(&mut self, result: Result<T>) -> Result<T> {
        result.map_err(|error| self.poison_with(error))
    }

    pub(crate) async fn write_checkpoint(
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
        Ok(())
    }

    /// Before the first change after a clean open, the checkpoint must stop saying "clean":
    /// otherwise a crash after the change would be trusted without a scan.
    pub(crate) async fn mark_dirty(&mut self) -> Result<()> {
        if self.clean_flag_on_disk {
            let recovery_offset = self.durable_offset;
            self.write_checkpoint(false, recovery_offset).await?;
        }
        Ok(())
    }

    /// Appends producer batches (one or more, concatenated, as in a Produce request): each is
    /// validated, then stamped with its base offset and `leader_epoch`, and all are written
    /// with one write. Either every batch is appended or none is.
    pub async fn append(&mut self, batches: BytesMut, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_inner(AppendInput::Owned(batches), Some(leader_epoch)).await
    }

    /// Like [`PartitionLog::append`], for batches in a shared buffer (a slice of the request
    /// frame): nothing is copied. The stamped 16 bytes of each batch's header are written
    /// from a small buffer of their own and the rest straight from `batches`, in one
    /// vectored write.
    pub async fn append_shared(
        &mut self,
        batches: bytes::Bytes,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        self.append_inner(AppendInput::Shared(batches), Some(leader_epoch)).await
    }

    /// Appends the record sets of several producers with one vectored write (group append).
    /// Each set is checked on its own (size, CRC and records, before the write), so a bad
    /// one is refused alone; the others get consecutive offsets in the order given.
    ///
    /// `admit(n, base_offset, last_offset)` is asked, in order, about each set `n` that
    /// passed its checks, with the offsets it will get if written: it returns whether to write it
    /// (the caller's own checks, such as idempotent producers' sequence numbers, which must
    /// see the sets admitted before it). Returns one entry per set: `None` for a set
    /// `admit` turned down, else its result. A set of `OVERLAPPED_CHECK_BYTES_MIN` or more
    /// belongs in `append_shared` instead; sets past `APPEND_BYTES_MAX` in total are refused.
    pub async fn append_shared_group(
        &mut self,
        sets: Vec<bytes::Bytes>,
        leader_epoch: i32,
        mut admit: impl FnMut(usize, i64, i64) -> bool,
    ) -> Vec<Option<Result<AppendInfo>>> {
        let count = sets.len();
        if self.check_poison().is_err() {
            return (0..count)
                .map(|_| Some(Err(self.check_poison().expect_err("poisoned"))))
                .collect();
        }
        let mut results: Vec<Option<Result<AppendInfo>>> = (0..count).map(|_| None).collect();
        // (set index, its batches) for the sets that pass their checks and are admitted.
        let mut accepted: Vec<(usize, Vec<BatchInfo>)> = Vec::new();
        let mut size = 0u64;
        let mut offsets = 0i64;
        for (n, set) in sets.iter().enumerate() {
            let set_size = set.len() as u64;
            if size + set_size > APPEND_BYTES_MAX {
                results[n] = Some(Err(StorageError::AppendTooLarge {
                    size: size + set_size,
                    max: APPEND_BYTES_MAX,
                }));
                continue;
            }
            match self.check_batches(set, Origin::Client, true) {
                Ok((infos, set_offsets)) => {
                    let base_offset = self.log_end_offset() + offsets;
                    if admit(n, base_offset, base_offset + set_offsets - 1) {
                        size += set_size;
                        offsets += set_offsets;
                        accepted.push((n, infos));
                    }
                }
                Err(error) => results[n] = Some(Err(error)),
            }
        }
        if !accepted.is_empty() {
            if let Err(error) =
                self.write_group(&sets, &mut accepted, size, offsets, leader_epoch).await
            {
                // The first set reports the failure itself; the others what it left behind
                // (the log is poisoned after a failed write).
                let mut first = Some(error);
                for (n, _) in &accepted {
                    let error = match first.take() {
                        Some(error) => error,
                        None => self.check_poison().err().unwrap_or_else(|| {
                            StorageError::Io(io::Error::other("the group append failed"))
                        }),
                    };
                    results[*n] = Some(Err(error));
                }
            } else {
                for (n, infos) in &accepted {
                    let last = infos.last().expect("a set has at least one batch");
                    results[*n] = Some(Ok(AppendInfo {
                        base_offset: infos[0].base_offset,
                        last_offset: last.base_offset + i64::from(last.last_offset_delta),
                        max_timestamp: infos
                            .iter()
                            .map(|i| i.max_timestamp)
                            .max()
                            .unwrap_or(batch::NO_TIMESTAMP),
                        batch_count: infos.len(),
                        bytes: sets[*n].len() as u64,
                    }));
                }
            }
        }
        results
    }

    /// Checks the batches of one append: its size, each batch's structure and, with
    /// `contents`, its CRC and records (large appends check those while the write runs);
    /// a replica's batches must also continue the log's offsets. Returns the batches and
    /// how many offsets they take.
    fn check_batches(
        &self,
        bytes: &[u8],
        origin: Origin,
        contents: bool,
    ) -> Result<(Vec<BatchInfo>, i64)> {
        let size = bytes.len() as u64;
        if size > APPEND_BYTES_MAX {
            return Err(StorageError::AppendTooLarge { size, max: APPEND_BYTES_MAX });
        }
        if size == 0 {
            return Err(StorageError::EmptyAppend);
        }
        let mut infos: Vec<BatchInfo> = Vec::new();
        let mut position = 0u64;
        let mut expected = self.log_end_offset();
        while position < size {
            let index = infos.len();
            let rest = &bytes[position as usize..];
            let checked = if contents {
                batch::validate(rest, self.config.batch_bytes_max, origin)
            } else {
                batch::validate_structure(rest, self.config.batch_bytes_max, origin)
            };
            let info =
                checked.map_err(|source| StorageError::InvalidBatch { index, position, source })?;
            if origin == Origin::Replica && info.base_offset != expected {
                let source =
                    BatchError::UnexpectedBaseOffset { expected, actual: info.base_offset };
                return Err(StorageError::InvalidBatch { index, position, source });
            }
            expected = if origin == Origin::Replica {
                info.last_offset() + 1
            } else {
                expected + i64::from(info.last_offset_delta) + 1
            };
            position += info.size;
            infos.push(info);
        }
        Ok((infos, expected - self.log_end_offset()))
    }

    /// Stamps the accepted sets with consecutive offsets and writes them in one vectored write.
    async fn write_group(
        &mut self,
        sets: &[bytes::Bytes],
        accepted: &mut [(usize, Vec<BatchInfo>)],
        size: u64,
        offsets: i64,
        leader_epoch: i32,
    ) -> Result<()> {
        let now = self.make_room(size, offsets).await?;
        let mut next = self.log_end_offset();
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let mut all: Vec<BatchInfo> = Vec::new();
        for (n, infos) in accepted.iter_mut() {
            let set = &sets[*n];
            let mut at = 0usize;
            for info in infos.iter_mut() {
                info.base_offset = next;
                info.partition_leader_epoch = leader_epoch;
                next += i64::from(info.last_offset_delta) + 1;
                let mut header = BytesMut::from(&set[at..at + STAMPED_BYTES]);
                batch::stamp_header(&mut header, info.base_offset, leader_epoch);
                pieces.push(header.freeze());
                pieces.push(set.slice(at + STAMPED_BYTES..at + info.size as usize));
                at += info.size as usize;
                all.push(*info);
            }
        }
        self.write_batches(Pieces::Vectored(pieces), None, &all).await?;
        self.flush_by_policy(now).await
    }

    /// Appends batches copied from a leader, whose offsets are already assigned: the first
    /// must start at the log end offset and each following one right after its predecessor.
    pub async fn append_replicated(&mut self, batches: BytesMut) -> Result<AppendInfo> {
        self.append_inner(AppendInput::Owned(batches), None).await
    }

    async fn append_inner(
        &mut self,
        input: AppendInput,
        leader_epoch: Option<i32>,
    ) -> Result<AppendInfo> {
        self.check_poison()?;
        let size = input.len() as u64;
        let origin = if leader_epoch.is_some() { Origin::Client } else { Origin::Replica };
        // Large appends check CRCs and records on another core while the write runs; small
        // ones check first (handing work to a thread costs more than the check).
        let overlap = size >= OVERLAPPED_CHECK_BYTES_MIN;
        let (mut infos, offsets) = self.check_batches(input.as_slice(), origin, !overlap)?;

        let now = self.make_room(size, offsets).await?;
        // Stamp base offsets and the leader epoch: in place in an owned buffer; in copies of
        // the 16 header bytes (written beside the untouched rest) for a shared one.
        let mut next = self.log_end_offset();
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let (owned, shared) = match input {
            AppendInput::Owned(batches) => (Some(batches), None),
            AppendInput::Shared(batches) => (None, Some(batches)),
        };
        let mut owned = owned;
        let mut at = 0usize;
        for info in &mut infos {
            if let Some(epoch) = leader_epoch {
                info.base_offset = next;
                info.partition_leader_epoch = epoch;
                next += i64::from(info.last_offset_delta) + 1;
                match (&mut owned, &shared) {
                    (Some(batches), _) => batch::stamp(&mut batches[at..], info.base_offset, epoch),
                    (None, Some(batches)) => {
                        let mut header = BytesMut::from(&batches[at..at + STAMPED_BYTES]);
                        batch::stamp_header(&mut header, info.base_offset, epoch);
                        pieces.push(header.freeze());
                        pieces.push(batches.slice(at + STAMPED_BYTES..at + info.size as usize));
                    }
                    (None, None) => unreachable!("one of the two buffers"),
                }
            }
            at += info.size as usize;
        }
        let base_offset = infos[0].base_offset;
        let (write, check) = match (owned, shared) {
            (Some(batches), _) if !overlap => (Pieces::Owned(batches), None),
            (Some(batches), _) => {
                let frozen = batches.freeze();
                (Pieces::Vectored(vec![frozen.clone()]), Some(frozen))
            }
            (None, Some(batches)) => {
                if leader_epoch.is_none() {
                    pieces.push(batches.clone());
                }
                (Pieces::Vectored(pieces), overlap.then_some(batches))
            }
            (None, None) => unreachable!("one of the two buffers"),
        };
        self.write_batches(write, check, &infos).await?;
        let appended = AppendInfo {
            base_offset,
            last_offset: self.log_end_offset() - 1,
            max_timestamp: infos
                .iter()
                .map(|i| i.max_timestamp)
                .max()
                .unwrap_or(batch::NO_TIMESTAMP),
            batch_count: infos.len(),
            bytes: size,
        };
        self.flush_by_policy(now).await?;
        Ok(appended)
    }

    /// Before an append of `size` bytes and `offsets` offsets: marks the log dirty and rolls
    /// the active segment if the append would not fit it. Returns the time of the append.
    async fn make_room(&mut self, size: u64, offsets: i64) -> Result<i64> {
        self.mark_dirty().await?;
        let now = self.clock.now_ms();
        if self.should_roll(size, offsets, now) {
            self.roll().await?;
        }
        Ok(now)
    }

    /// After an append: an fdatasync if the flush policy asks for one now.
    async fn flush_by_policy(&mut self, now: i64) -> Result<()> {
        match self.config.flush {
            FlushPolicy::EveryAppend => self.flush().await,
            FlushPolicy::IntervalMs(interval) if now - self.last_flush_ms >= interval as i64 => {
                self.flush().await
            }
            FlushPolicy::IntervalMs(_) | FlushPolicy::Never => Ok(()),
        }
    }

    /// Writes validated, stamped batches after the last one. With `check`, another thread
    /// verifies their CRCs and records while the write runs, and a batch that fails is cut
    /// off the file again before anything counts it, so the log is unchanged.
    async fn write_batches(
        &mut self,
        write: Pieces,
        check: Option<bytes::Bytes>,
        infos: &[BatchInfo],
    ) -> Result<()> {
        let check = check.map(|copy| {
            let mut spans = Vec::with_capacity(infos.len());
            let mut at = 0u64;
            for (index, info) in infos.iter().enumerate() {
                spans.push((index, at, info.size));
                at += info.size;
            }
            tokio::task::spawn_blocking(move || {
                for (index, position, size) in spans {
                    batch::verify_contents(&copy[position as usize..(position + size) as usize])
                        .map_err(|source| (index, position, source))?;
                }
                Ok::<(), (usize, u64, BatchError)>(())
            })
        });
        let end_before = self.active().size;
        // The bytes written are exactly the batches counted.
        let written_bytes = match &write {
            Pieces::Owned(batches) => batches.len() as u64,
            Pieces::Vectored(pieces) => pieces.iter().map(|p| p.len() as u64).sum(),
        };
        let counted_bytes: u64 = infos.iter().map(|info| info.size).sum();
        assert_eq!(written_bytes, counted_bytes, "an append writes the bytes of its batches");
        let written = match write {
            Pieces::Owned(batches) => self.active_mut().write_tail(batches).await.map(|_| ()),
            Pieces::Vectored(pieces) => self.active_mut().write_tail_vectored(pieces).await,
        }
        .map_err(StorageError::from);
        let checked = match check {
            Some(handle) => Some(handle.await),
            None => None,
        };
        self.guard(written)?;
        match checked {
            None | Some(Ok(Ok(()))) => {
                self.active_mut().commit_tail(infos);
                Ok(())
            }
            Some(Ok(Err((index, position, source)))) => {
                let cut = self.active_mut().cut_log(end_before).map_err(StorageError::from);
                self.guard(cut)?;
                Err(StorageError::InvalidBatch { index, position, source })
            }
            Some(Err(join_error)) => Err(self.poison_with(StorageError::Io(io::Error::other(
                format!("batch check thread failed: {join_error}"),
            )))),
        }
    }

    fn should_roll(&self, size: u64, offsets: i64, now: i64) -> bool {
        let active = self.active();
        if active.size == 0 {
            return false;
        }
        active.size + size > self.config.segment_bytes
            || now - active.created_at_ms >= self.config.segment_ms as i64
            || active.next_offset + offsets - active.base_offset > i64::from(u32::MAX)
    }

    /// Closes the active segment and starts a new one at the log end offset. The closed
    /// segment is synced and the checkpoint moves past it, so recovery never rescans it.
    pub async fn roll(&mut self) -> Result<()> {
        self.check_poison()?;
        if self.active().size == 0 {
            return Ok(());
        }
        self.mark_dirty().await?;
        let result = self.active_mut().seal().await.map_err(StorageError::from);
        self.guard(result)?;
        let base = self.log_end_offset();
        self.durable_offset = base;
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
        self.write_checkpoint(false, base).await?;
        info!(dir = %self.dir.display(), base_offset = base, "rolled to a new segment");
        Ok(())
    }

    /// Makes every appended byte durable (fdatasync of the active segment).
    pub async fn flush(&mut self) -> Result<()> {
        self.check_poison()?;
        let end = self.log_end_offset();
        if self.durable_offset < end {
            let result = self.active_mut().flush().await.map_err(StorageError::from);
            self.guard(result)?;
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
        self.check_poison()?;
        let end = self.log_end_offset();
        if self.durable_offset >= end {
            return Ok(None);
        }
        Ok(Some((Rc::clone(&self.active().log), end)))
    }

    /// Group commit, part two: records the outcome of syncing a `flush_target`. A failed
    /// sync poisons the log (nothing retries an fsync).
    pub fn complete_flush(&mut self, end: i64, result: io::Result<()>) -> Result<()> {
        self.guard(result.map_err(StorageError::from))?;
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

    /// Rolls the active segment if it is older than `segment_ms` (for a background timer;
    /// appends check this too).
    pub async fn roll_if_due(&mut self) -> Result<()> {
        if self.clock.now_ms() - self.active().created_at_ms >= self.config.segment_ms as i64
            && self.active().size > 0
        {
            self.roll().await?;
        }
        Ok(())
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            dir: self.dir.clone(),
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// The index of the segment that holds `offset` (the last with base <= offset).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
    }

    /// Like [`PartitionLog::read`], but only batches that start below `end_offset` (the high
    /// watermark: consumers must not see records the in-sync replicas do not all have).
    /// Empty when `offset >= end_offset`.
    pub async fn read_below(
        &mut self,
        offset: i64,
        max_bytes: u64,
        end_offset: i64,
    ) -> Result<ReadResult<D::File>> {
        if offset >= end_offset
            && offset <= self.log_end_offset()
            && offset >= self.log_start_offset
        {
            return Ok(ReadResult::default());
        }
        let mut result = self.read(offset, max_bytes).await?;
        let Some(cut) = result.regions.iter().position(|r| r.next_offset > end_offset) else {
            return Ok(result);
        };
        result.regions.truncate(cut + 1);
        let region = &result.regions[cut];
        let segment = self.segment_for(region.segment_base_offset);
        let found = self.segments[segment].find_batch(end_offset).await;
        let boundary = match found {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(result),
            Err(error) => return Err(self.poison_with(error)),
        };
        let region = &mut result.regions[cut];
        if boundary.position <= region.position {
            result.regions.truncate(cut);
        } else {
            region.len = boundary.position - region.position;
            region.next_offset = boundary.base_offset;
        }
        Ok(result)
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` in total but always
    /// at least one batch. Empty at the log end offset; an error outside the log.
    pub async fn read(&mut self, offset: i64, max_bytes: u64) -> Result<ReadResult<D::File>> {
        self.check_poison()?;
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(self.out_of_range(offset));
        }
        let mut result = ReadResult::default();
        let mut next = offset;
        let mut remaining = max_bytes;
        let mut i = self.segment_for(offset);
        while i < self.segments.len() && next < end {
            let segment = &self.segments[i];
            let region = match segment.read_region(next, remaining, result.regions.is_empty()).await
            {
                Ok(region) => region,
                Err(StorageError::Corrupt { path, position, reason }) => {
                    // An index that disagrees with the log: rebuild it once and retry.
                    warn!(path = %path.display(), position, %reason, "index disagrees with log; rebuilding");
                    let scanned = recovery::scan_segment(&mut self.segments[i], false).await;
                    self.guard(scanned)?;
                    self.segments[i].read_region(next, remaining, result.regions.is_empty()).await?
                }
                Err(error) => return Err(self.poison_with(error)),
            };
            let Some(Region { position, len, first_offset, next_offset }) = region else {
                if result.regions.is_empty() {
                    i += 1;
                    continue;
                }
                break;
            };
            let segment = &self.segments[i];
            result.regions.push(FileRegion {
                file: Rc::clone(&segment.log),
                segment_base_offset: segment.base_offset,
                position,
                len,
                first_offset,
                next_offset,
            });
            remaining = remaining.saturating_sub(len);
            next = next_offset;
            if position + len < segment.size || remaining == 0 {
                break;
            }
            i += 1;
        }
        Ok(result)
    }

    /// The first offset whose record timestamp is at least `timestamp`, with that timestamp
    /// (ListOffsets by time). Exact within uncompressed batches; for a compressed batch the
    /// answer is the batch's base offset and max timestamp. `None` if every record is older.
    pub async fn offset_for_timestamp(&mut self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        self.check_poison()?;
        let Some(i) = self.segments.iter().position(|s| s.max_timestamp >= timestamp) else {
            return Ok(None);
        };
        let found = match self.offset_for_timestamp_in(i, timestamp).await {
            Err(StorageError::Corrupt { path, position, reason }) => {
                // An index that disagrees with the log: rebuild it once and retry (as `read`).
                warn!(path = %path.display(), position, %reason, "index disagrees with log; rebuilding");
                let scanned = recovery::scan_segment(&mut self.segments[i], false).await;
                self.guard(scanned)?;
                self.offset_for_timestamp_in(i, timestamp).await
            }
            other => other,
        };
        self.guard(found)
    }

    /// `offset_for_timestamp` within segment `i`. The offset index entry the walk starts from
    /// must name the batch at its position, or the walk could start past the answer.
    async fn offset_for_timestamp_in(
        &self,
        i: usize,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let segment = &self.segments[i];
        let time_entry = segment.time_index.lookup_before(timestamp);
        let start_offset = time_entry.map_or(segment.base_offset, |e| e.offset);
        let entry = segment.index.lookup(start_offset);
        let mut position = entry.position;
        while position < segment.size {
            let headers = segment.headers_at(position).await?;
            if position == entry.position && headers[0].base_offset != entry.offset {
                return Err(segment.corrupt(
                    position,
                    format!(
                        "index says offset {} starts here, the log says {}",
                        entry.offset, headers[0].base_offset
                    ),
                ));
            }
            for header in &headers {
                // The time entry says the batches up to its own are older than `timestamp`, so
                // the walk skips nothing; a batch that says otherwise shows a false entry.
                if let Some(e) = time_entry.filter(|e| {
                    header.base_offset <= e.offset && header.max_timestamp > e.timestamp
                }) {
                    return Err(segment.corrupt(
                        header.position,
                        format!(
                            "time index entry {e:?} is older than the batch at offset {}",
                            header.base_offset
                        ),
                    ));
                }
                if header.max_timestamp >= timestamp && header.last_offset >= self.log_start_offset
                {
                    let batch_bytes =
                        segment.log.read_at(header.position, header.size as usize).await?;
                    let found = match batch::first_record_at_or_after(&batch_bytes, timestamp) {
                        Some((delta, record_timestamp)) => {
                            (header.base_offset + i64::from(delta), record_timestamp)
                        }
                        None => (header.base_offset, header.max_timestamp),
                    };
                    return Ok(Some((found.0.max(self.log_start_offset), found.1)));
                }
            }
            let last = headers.last().expect("at least one header");
            position = last.position + last.size;
        }
        Ok(None)
    }

    /// Removes every batch at or after `offset` (replication: a follower dropping a divergent
    /// tail). A batch containing `offset` is removed whole, so the new log end offset can be
    /// below `offset`. Below the log start offset, the whole log is emptied and restarts
    /// there. The cut is durable before this returns.
    pub async fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        self.check_poison()?;
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset {
            self.truncate_fully_and_start_at(self.log_start_offset.min(offset)).await?;
            return Ok(self.log_end_offset());
        }
        self.mark_dirty().await?;
        let result = self.truncate_inner(offset).await;
        self.guard(result)?;
        let end = self.log_end_offset();
        self.durable_offset = end;
        // The batch holding `offset` goes whole: when it also holds the log start, the end
        // falls below the start, which comes down with it (as an open would bring it).
        self.log_start_offset = self.log_start_offset.min(end);
        self.write_checkpoint(false, end).await?;
        info!(dir = %self.dir.display(), offset, log_end_offset = end, "truncated log");
        Ok(end)
    }

    async fn truncate_inner(&mut self, offset: i64) -> Result<()> {
        // Drop whole segments that start at or after the cut (keeping at least one).
        let mut dropped = false;
        while self.segments.len() > 1 && self.active().base_offset >= offset {
            let segment = self.segments.pop().expect("len > 1");
            segment.delete(&self.dir).await?;
            dropped = true;
        }
        // The dropped segments are gone for good before the survivor is cut: a crash after
        // the cut must not bring them back behind a gap in the offsets.
        if dropped {
            self.disk.sync_dir(&self.dir).await?;
        }
        let segment = self.segments.last_mut().expect("a log always has an active segment");
        let Some(cut) = segment.find_batch(offset).await? else {
            return Ok(());
        };
        let cut_offset = cut.base_offset;
        let index_len = segment.index.truncate_from(cut_offset);
        let time_len = segment.time_index.truncate_from(cut_offset);
        segment.cut_log(cut.position)?;
        segment.truncate_index_files(index_len, time_len).await?;
        segment.log.sync_data().await?;
        // Recompute the tail state from the last surviving index entry.
        segment.last_batch_offset = None;
        // The entries below the cut are kept as they were; whether they agree with the log
        // was settled when the segment was opened.
        let _disagreement = segment.load_tail(cut.position).await?;
        if segment.next_offset != cut_offset && cut.position > 0 {
            return Err(segment.corrupt(
                cut.position,
                format!(
                    "after truncation the log ends at offset {}, expected {cut_offset}",
                    segment.next_offset
                ),
            ));
        }
        segment.next_offset = cut_offset;
        self.disk.sync_dir(&self.dir).await?;
        Ok(())
    }

    /// Deletes every segment and starts an empty log at `offset` (a follower whose log no
    /// longer overlaps the leader's).
    pub async fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.check_poison()?;
        self.mark_dirty().await?;
        let result = async {
            // Newest first, as `truncate_to` cuts: a crash in between leaves a prefix of the
            // old log, never one whose start moved without the checkpoint saying so.
            for segment in self.segments.drain(..).rev() {
                segment.delete(&self.dir).await?;
            }
            let now = self.clock.now_ms();
            let interval = self.config.index_interval_bytes;
            let segment = Segment::create(&self.disk, &self.dir, offset, interval, now).await?;
            self.disk.sync_dir(&self.dir).await?;
            Ok::<Segment<D>, StorageError>(segment)
        }
        .await;
        let segment = self.guard(result)?;
        self.segments.push(segment);
        self.log_start_offset = offset;
        self.durable_offset = offset;
        self.write_checkpoint(false, offset).await
    }

    /// Syncs everything and writes the clean-shutdown checkpoint; the next open trusts the
    /// files without scanning them. Every later call on this log fails.
    pub async fn close(&mut self) -> Result<()> {
        self.check_poison()?;
        self.poison = Some((io::ErrorKind::Other, "the log was closed".to_string()));
        let result = self.active_mut().seal().await.map_err(StorageError::from);
        self.guard(result)?;
        let end = self.log_end_offset();
        self.durable_offset = end;
        self.write_checkpoint(true, end).await?;
        info!(dir = %self.dir.display(), log_end_offset = end, "closed partition log cleanly");
        Ok(())
    }

    /// Checks the whole log against itself: every batch's CRC, and every in-memory and
    /// on-disk index entry against an index rebuilt from the log. For tests and tools.
    pub async fn verify(&mut self) -> Result<()> {
        self.check_poison()?;
        for i in 0..self.segments.len() {
            let segment = &self.segments[i];
            let (index, time_index, size, next) = (
                segment.index.clone(),
                segment.time_index.clone(),
                segment.size,
                segment.next_offset,
            );
            let mut copy = Segment::open_files(
                &self.disk,
                &self.dir,
                segment.base_offset,
                false,
                self.config.index_interval_bytes,
                0,
            )
            .await?;
            let outcome = recovery::scan_segment(&mut copy, false).await?;
            let mismatch = |what: &str| StorageError::Corrupt {
                path: copy.log.path().to_path_buf(),
                position: copy.size,
                reason: what.to_string(),
            };
            if outcome.valid_bytes != size || outcome.invalid_bytes != 0 {
                return Err(mismatch(&format!(
                    "scan found {outcome:?}, the log holds {size} bytes"
                )));
            }
            if copy.next_offset != next {
                return Err(mismatch("next offset differs from a scan"));
            }
            if copy.index.entries() != index.entries() {
                return Err(mismatch("offset index differs from a rebuild"));
            }
            // Time entries need not equal a rebuild (a sealed segment reopened and appended
            // to keeps its seal entry), but each must be true: every batch up to the one it
            // names has timestamps at most its timestamp.
            let mut running_max = crate::batch::NO_TIMESTAMP;
            let mut entries = time_index.entries().iter().peekable();
            let mut position = 0;
            while position < copy.size {
                for header in copy.headers_at(position).await? {
                    running_max = running_max.max(header.max_timestamp);
                    while let Some(entry) = entries.next_if(|e| e.offset <= header.base_offset) {
                        if entry.offset != header.base_offset || running_max > entry.timestamp {
                            return Err(mismatch(&format!(
                                "time index entry {entry:?} is false at the batch {header:?}"
                            )));
                        }
                    }
                    position = header.position + header.size;
                }
            }
            if let Some(entry) = entries.next() {
                return Err(mismatch(&format!("time index entry {entry:?} names no batch")));
            }
        }
        Ok(())
    }
}
