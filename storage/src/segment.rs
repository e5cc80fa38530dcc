//! A segment: one `.log` file of whole batches, its `.index` and its `.timeindex`, all named
//! by the segment's base offset in 20 digits (`00000000000000001234.log`).
//!
//! Invariants:
//! - `size` is the byte length of the batches this process knows to be whole and valid; the
//!   file is never read past it. Positions are byte positions in the `.log` file, offsets are
//!   Kafka offsets; they are never mixed.
//! - Batches are contiguous from position 0 to `size`, base offsets increase, and
//!   `next_offset` is one past the last batch's last offset (`base_offset` when empty).
//! - The in-memory indexes cover every batch below `size` and are identical to what a scan
//!   of the log would rebuild (`index_batch` is the single rule for both).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{BatchHeader, BatchInfo, BATCH_HEADER_BYTES};
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use tokio_uring::buf::IoBuf;
use tracing::debug;

/// Bytes read at once when walking batch headers: covers several index intervals, so a
/// lookup usually needs one read.
const WALK_WINDOW_BYTES: u64 = 16 * 1024;
/// Least and most bytes reserved ahead of the log end (`Segment::preallocate_for`). Writes
/// into reserved blocks skip ext4's delayed-allocation work, and an fdatasync finds their
/// blocks already allocated; at most this much per partition is held beyond its data.
const PREALLOCATE_BYTES_MIN: u64 = 64 * 1024;
const PREALLOCATE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Write-behind (`Segment::write_behind`): writeback of the active segment is started in
/// steps of this many bytes as appends go on, and an append waits for the writeback of its
/// segment's oldest step once more than `WRITE_BEHIND_DIRTY_MAX_BYTES` of the segment, or
/// more than `WRITE_BEHIND_BROKER_MAX_BYTES` of all active segments together, is not known
/// to be written back. The kernel's dirty-page limits (gigabytes here) then never build up
/// behind the broker, and a producer faster than the disk is slowed a step at a time
/// instead of stopped at once by the kernel's throttling or a flusher's burst
/// (docs/design.md, "Write-behind").
const WRITE_BEHIND_STEP_BYTES: u64 = 4 * 1024 * 1024;
const WRITE_BEHIND_DIRTY_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const WRITE_BEHIND_BROKER_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Bytes appended to the active segments of this process and not known to be written back
/// (the sum of each segment's `write_behind_counted`): one broker per process.
static WRITE_BEHIND_PENDING_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Bytes of all active segments not known to be written back (see `write_behind`).
pub(crate) fn write_behind_pending_bytes() -> u64 {
    WRITE_BEHIND_PENDING_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Free space a reservation must leave on the file system: reservations stop before the
/// disk is short, so they never take the room a write of another partition needs.
const PREALLOCATE_FREE_BYTES_MIN: u64 = 1024 * 1024 * 1024;

/// An index file, opened only while it is read or written: a partition keeps one descriptor
/// per segment (its `.log`), not three, so ten thousand partitions fit the usual limits.
#[derive(Debug, Clone)]
struct IndexFile<D: Disk> {
    disk: D,
    path: PathBuf,
}

impl<D: Disk> IndexFile<D> {
    async fn write_all_at(&self, bytes: Vec<u8>, position: u64) -> (std::io::Result<()>, Vec<u8>) {
        let file = match self.disk.open_rw(&self.path, true).await {
            Ok(file) => file,
            Err(error) => return (Err(error), bytes),
        };
        let (result, bytes) = file.write_all_at(bytes, position).await;
        let closed = file.close().await;
        (result.and(closed), bytes)
    }

    async fn sync_data(&self) -> std::io::Result<()> {
        let file = self.disk.open_rw(&self.path, true).await?;
        let synced = file.sync_data().await;
        let closed = file.close().await;
        synced.and(closed)
    }

    /// Cuts (or creates) the file at `len` bytes.
    async fn set_len(&self, len: u64) -> std::io::Result<()> {
        let file = self.disk.open_rw(&self.path, true).await?;
        let result = if file.len().await? != len { file.set_len(len) } else { Ok(()) };
        let closed = file.close().await;
        result.and(closed)
    }

    /// The whole file (empty if missing).
    async fn read_all(&self) -> std::io::Result<Vec<u8>> {
        Ok(self.disk.read_file(&self.path, INDEX_FILE_BYTES_MAX).await?.unwrap_or_default())
    }
}

/// A segment's files to sync (`Segment::files_to_sync`).
#[derive(Debug)]
pub(crate) struct SegmentFiles<D: Disk> {
    log: Rc<D::File>,
    indexes: Option<[IndexFile<D>; 2]>,
}

impl<D: Disk> SegmentFiles<D> {
    pub(crate) async fn sync(&self) -> std::io::Result<()> {
        self.log.sync_data().await?;
        for index in self.indexes.iter().flatten() {
            index.sync_data().await?;
        }
        Ok(())
    }
}

/// The largest index file read: a 2 GiB segment with an entry per 4 KiB needs 4 MiB.
const INDEX_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// The file name of a segment file: base offset in 20 digits and an extension.
pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// The header fields of one batch found while walking a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderInfo {
    pub position: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
}

/// A byte range of whole batches within one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub position: u64,
    pub len: u64,
    pub first_offset: i64,
    pub next_offset: i64,
}

/// One segment. Its fields are private to this file: every change goes through a method
/// that keeps the invariants above (`index_batch` for growth, `forget_batches` before a
/// rebuild, `cut_log` and `truncate_at` for cuts, `read_indexes` and `load_tail` on open).
#[derive(Debug)]
pub(crate) struct Segment<D: Disk> {
    base_offset: i64,
    log: Rc<D::File>,
    index_file: IndexFile<D>,
    time_index_file: IndexFile<D>,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    last_batch_offset: Option<i64>,
    index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    created_at_ms: i64,
    index_interval_bytes: u64,
    /// The log file's disk blocks are reserved up to here (past its size, which stays put):
    /// see `preallocate_for`.
    preallocated_to: u64,
    preallocate_refused: bool,
    /// Write-behind: writeback started up to here, and waited for up to here.
    write_back_started: u64,
    write_back_waited: u64,
    /// What this segment adds to `WRITE_BEHIND_PENDING_BYTES`: its bytes past
    /// `write_back_waited` as of its last append; 0 once sealed or settled.
    write_behind_counted: u64,
    /// An append happened since the last `settle_write_behind`.
    appended_since_settle: bool,
}

impl<D: Disk> Drop for Segment<D> {
    fn drop(&mut self) {
        self.uncount_write_behind();
    }
}

/// The range to reserve before writing `len` bytes at `size` in a log file reserved up to
/// `reserved_to`, with `free` bytes free on its file system: None if the reservation covers
/// the write or would leave less than `PREALLOCATE_FREE_BYTES_MIN` free.
fn reservation(size: u64, len: u64, reserved_to: u64, free: u64) -> Option<(u64, u64)> {
    let end = size + len;
    if end <= reserved_to {
        return None;
    }
    let from = reserved_to.max(size);
    let to = end + size.clamp(PREALLOCATE_BYTES_MIN, PREALLOCATE_BYTES_MAX);
    (free >= (to - from).saturating_add(PREALLOCATE_FREE_BYTES_MIN)).then_some((from, to))
}

/// The path of one of a segment's files.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    dir.join(file_name(base_offset, extension))
}

impl<D: Disk> Segment<D> {
    /// Opens the three files of a segment (creating them when asked), with empty indexes.
    pub(crate) async fn open_files(
        disk: &D,
        dir: &Path,
        base_offset: i64,
        create: bool,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Segment<D>> {
        let log = disk.open_rw(&segment_path(dir, base_offset, "log"), create).await?;
        let index_file =
            IndexFile { disk: disk.clone(), path: segment_path(dir, base_offset, "index") };
        let time_index_file =
            IndexFile { disk: disk.clone(), path: segment_path(dir, base_offset, "timeindex") };
        Ok(Segment {
            base_offset,
            log: Rc::new(log),
            index_file,
            time_index_file,
            size: 0,
            next_offset: base_offset,
            max_timestamp: crate::batch::NO_TIMESTAMP,
            last_batch_offset: None,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            created_at_ms: now_ms,
            index_interval_bytes,
            preallocated_to: 0,
            preallocate_refused: false,
            write_back_started: 0,
            write_back_waited: 0,
            write_behind_counted: 0,
            appended_since_settle: false,
        })
    }

    /// Creates a new, empty segment. Any leftover files of the same name are emptied.
    pub(crate) async fn create(
        disk: &D,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Segment<D>> {
        let segment =
            Segment::open_files(disk, dir, base_offset, true, index_interval_bytes, now_ms).await?;
        // Leftovers are rare (a crash right after an earlier create); truncating a new, empty
        // file is not free on ext4 (it starts writeback at close), so check first.
        if segment.log.len().await? > 0 {
            segment.log.set_len(0)?;
        }
        for file in [&segment.index_file, &segment.time_index_file] {
            file.set_len(0).await?;
        }
        Ok(segment)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// One past the last offset of the segment's batches (`base_offset` when empty).
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of whole, valid batches: the file is never read past it.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub(crate) fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    /// The `.log` file, for reads, for regions that outlive the segment, and for syncs.
    /// Writes and cuts go through the segment (`write_tail`, `cut_log`, `truncate_at`).
    pub(crate) fn log(&self) -> &Rc<D::File> {
        &self.log
    }

    pub(crate) fn index(&self) -> &OffsetIndex {
        &self.index
    }

    pub(crate) fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// Forgets every batch, in memory only (the files are untouched): the state of an empty
    /// segment, from which a scan rebuilds it batch by batch with `index_batch`.
    pub(crate) fn forget_batches(&mut self) {
        self.index = OffsetIndex::new(self.base_offset);
        self.time_index = TimeIndex::new(self.base_offset);
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = crate::batch::NO_TIMESTAMP;
        self.last_batch_offset = None;
        self.bytes_since_index_entry = 0;
    }

    /// Reads and decodes both index files into memory, for a log of `file_size` bytes, with
    /// why they cannot be trusted if they cannot. What they say about the log's tail is
    /// checked next, by `load_tail`.
    pub(crate) async fn read_indexes(&mut self, file_size: u64) -> std::result::Result<(), String> {
        let index_bytes = self.index_file.read_all().await.map_err(|e| e.to_string())?;
        self.index = OffsetIndex::decode(self.base_offset, &index_bytes, file_size, i64::MAX)
            .map_err(|e| format!(".index: {e}"))?;
        let time_bytes = self.time_index_file.read_all().await.map_err(|e| e.to_string())?;
        // With no offset entry, the tail walk covers the whole log and finds the max timestamp
        // itself; with one, only the time index knows the timestamps before it.
        if time_bytes.is_empty() && !self.index.entries().is_empty() {
            return Err(
                "time index file is empty or missing for a segment with offset index entries"
                    .to_string(),
            );
        }
        self.time_index = TimeIndex::decode(self.base_offset, &time_bytes, i64::MAX)
            .map_err(|e| format!(".timeindex: {e}"))?;
        Ok(())
    }

    /// Rewrites both index files from the in-memory indexes, then syncs all three files
    /// (after a scan rebuilt the indexes and cut the log at its last valid batch).
    pub(crate) async fn rewrite_indexes_and_sync(&mut self) -> std::io::Result<()> {
        self.truncate_index_files(0, 0).await?;
        self.persist_indexes().await?;
        self.log.sync_data().await?;
        self.index_file.sync_data().await?;
        self.time_index_file.sync_data().await
    }

    /// The one rule that builds indexes, used by appends and by rebuilds alike.
    pub(crate) fn index_batch(
        &mut self,
        position: u64,
        base_offset: i64,
        last_offset: i64,
        size: u64,
        max_timestamp: i64,
    ) {
        // What the rest of the segment relies on, checked in release builds too (recovery
        // checks the same of what it reads back: `recovery::scan_segment`).
        assert_eq!(position, self.size, "batch at {position} is not at the segment end");
        assert_eq!(
            base_offset, self.next_offset,
            "batch at {position} has base offset {base_offset}, the segment expects {}",
            self.next_offset
        );
        assert!(
            last_offset >= base_offset && size >= BATCH_HEADER_BYTES as u64,
            "batch at {position}: offsets {base_offset}..={last_offset}, {size} bytes"
        );
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        if self.bytes_since_index_entry >= self.index_interval_bytes && position > 0 {
            self.index.push(base_offset, position);
            if self.max_timestamp >= 0 {
                self.time_index.push(self.max_timestamp, base_offset);
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += size;
        self.size = position + size;
        self.next_offset = last_offset + 1;
        self.last_batch_offset = Some(base_offset);
    }

    /// Writes `bytes` (whole, validated, stamped batches described by `infos`) at the end.
    /// On error the segment's state is unchanged and the caller poisons the log.
    /// Writes `bytes` after the last batch without making them part of the segment yet: until
    /// `commit_tail`, reads, indexes and `size` ignore them (a failed check can cut them off).
    /// With `preallocate`, disk blocks are reserved ahead first (`preallocate_for`).
    pub(crate) async fn write_tail<B: IoBuf + AsRef<[u8]>>(
        &mut self,
        bytes: B,
        preallocate: bool,
    ) -> std::io::Result<B> {
        if preallocate {
            self.preallocate_for(bytes.bytes_init() as u64).await;
        }
        let (result, bytes) = self.log.write_all_at(bytes, self.size).await;
        result.map(|()| bytes)
    }

    /// Like `write_tail`, from several buffers in one vectored write.
    pub(crate) async fn write_tail_vectored(
        &mut self,
        pieces: Vec<bytes::Bytes>,
        preallocate: bool,
    ) -> std::io::Result<()> {
        if preallocate {
            self.preallocate_for(pieces.iter().map(|p| p.len() as u64).sum()).await;
        }
        self.log.writev_all_at(pieces, self.size).await
    }

    /// Reserves the disk blocks of the next `len` bytes and more ahead of them, when the
    /// reservation made before does not cover them. The reservation ahead grows with the
    /// segment (about its size, from `PREALLOCATE_BYTES_MIN` to `PREALLOCATE_BYTES_MAX`), so
    /// a partition written once holds little and a busy one asks rarely; none is made that
    /// would leave less than `PREALLOCATE_FREE_BYTES_MIN` free. A file system that refuses
    /// (no support, no space) is not asked again for this segment: the write goes ahead
    /// without, as it always could.
    async fn preallocate_for(&mut self, len: u64) {
        if self.size + len <= self.preallocated_to || self.preallocate_refused {
            return;
        }
        let free = match self.log.free_bytes() {
            Ok(free) => free,
            Err(error) => {
                debug!(path = %self.log.path().display(), %error, "cannot read the free space; writing without preallocation");
                self.preallocate_refused = true;
                return;
            }
        };
        // None: short of space (asked again at the next write past the reservation).
        let Some((from, to)) = reservation(self.size, len, self.preallocated_to, free) else {
            return;
        };
        match self.log.preallocate(from, to - from).await {
            Ok(()) => self.preallocated_to = to,
            Err(error) => {
                debug!(path = %self.log.path().display(), %error, "cannot preallocate; writing without");
                self.preallocate_refused = true;
            }
        }
    }

    /// After an append: starts the writeback of what was appended since the last step once
    /// that is `WRITE_BEHIND_STEP_BYTES` (not waited for: a task of its own); then, while
    /// more than `WRITE_BEHIND_DIRTY_MAX_BYTES` of this segment, or more than
    /// `WRITE_BEHIND_BROKER_MAX_BYTES` of all active segments, is not known to be written
    /// back, waits for the writeback of this segment's oldest step. Waiting a step at a time
    /// paces a producer faster than the disk evenly instead of in long pauses. Errors are
    /// only logged: writeback errors are reported again by the next `sync_data`, which is
    /// what decides durability.
    pub(crate) async fn write_behind(&mut self) {
        if self.size < self.write_back_started {
            // Cut below what was written back (a truncation): start again from the cut.
            (self.write_back_started, self.write_back_waited) = (self.size, self.size);
        }
        self.appended_since_settle = true;
        if self.size - self.write_back_started >= WRITE_BEHIND_STEP_BYTES {
            let (from, len) = (self.write_back_started, self.size - self.write_back_started);
            self.write_back_started = self.size;
            let log = Rc::clone(&self.log);
            tokio_uring::spawn(async move {
                if let Err(error) = log.write_back(from, len, false).await {
                    debug!(path = %log.path().display(), from, len, %error, "write-behind: starting writeback failed");
                }
            });
        }
        self.count_write_behind();
        loop {
            let pending = self.size - self.write_back_waited;
            let over_segment = pending > WRITE_BEHIND_DIRTY_MAX_BYTES;
            let over_broker = write_behind_pending_bytes() > WRITE_BEHIND_BROKER_MAX_BYTES
                && pending > WRITE_BEHIND_STEP_BYTES;
            if !over_segment && !over_broker {
                break;
            }
            let from = self.write_back_waited;
            let to = from + WRITE_BEHIND_STEP_BYTES;
            self.write_back_waited = to;
            self.write_back_started = self.write_back_started.max(to);
            if let Err(error) = self.log.write_back(from, to - from, true).await {
                debug!(path = %self.log.path().display(), from, to, %error, "write-behind: waiting for writeback failed");
            }
            self.count_write_behind();
        }
    }

    /// Starts write-behind at the segment's current end: what an open found there is not
    /// this process's appending to pace.
    pub(crate) fn start_write_behind_here(&mut self) {
        (self.write_back_started, self.write_back_waited) = (self.size, self.size);
        self.uncount_write_behind();
    }

    /// Brings this segment's share of `WRITE_BEHIND_PENDING_BYTES` up to date.
    fn count_write_behind(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.size.saturating_sub(self.write_back_waited);
        if now >= self.write_behind_counted {
            WRITE_BEHIND_PENDING_BYTES.fetch_add(now - self.write_behind_counted, Relaxed);
        } else {
            WRITE_BEHIND_PENDING_BYTES.fetch_sub(self.write_behind_counted - now, Relaxed);
        }
        self.write_behind_counted = now;
    }

    /// Takes this segment out of the write-behind count: it is sealed (the flush that follows
    /// a roll writes it back), settled or gone.
    fn uncount_write_behind(&mut self) {
        WRITE_BEHIND_PENDING_BYTES
            .fetch_sub(self.write_behind_counted, std::sync::atomic::Ordering::Relaxed);
        self.write_behind_counted = 0;
    }

    /// For the upkeep: a segment with no append since the last call waits for the writeback
    /// of everything it holds (the kernel's flusher has usually written it already) and
    /// leaves the broker's count, so idle partitions never hold the broker's budget.
    pub(crate) async fn settle_write_behind(&mut self) {
        if std::mem::take(&mut self.appended_since_settle) || self.write_behind_counted == 0 {
            return;
        }
        let (from, to) = (self.write_back_waited, self.size);
        if let Err(error) = self.log.write_back(from, to - from, true).await {
            debug!(path = %self.log.path().display(), from, to, %error, "write-behind: settling failed");
        }
        (self.write_back_started, self.write_back_waited) = (to, to);
        self.uncount_write_behind();
    }

    /// Cuts the log file to `len` bytes (which also frees the blocks reserved past its end).
    pub(crate) fn cut_log(&mut self, len: u64) -> std::io::Result<()> {
        self.log.set_len(len)?;
        self.preallocated_to = 0;
        Ok(())
    }

    /// Makes the batches written by `write_tail` part of the segment.
    pub(crate) fn commit_tail(&mut self, infos: &[BatchInfo]) {
        let mut at = self.size;
        for info in infos {
            self.index_batch(
                at,
                info.base_offset,
                info.last_offset(),
                info.size,
                info.max_timestamp,
            );
            at += info.size;
        }
    }

    /// Writes index entries not yet in their files (no sync: indexes are rebuilt on recovery).
    async fn persist_indexes(&mut self) -> std::io::Result<()> {
        if let Some((position, bytes)) = self.index.take_unpersisted() {
            let (result, _) = self.index_file.write_all_at(bytes, position).await;
            result?;
        }
        if let Some((position, bytes)) = self.time_index.take_unpersisted() {
            let (result, _) = self.time_index_file.write_all_at(bytes, position).await;
            result?;
        }
        Ok(())
    }

    /// Makes the log durable. Index entries of the active segment are not written here:
    /// after an unclean stop the active segment is always rescanned (it holds the recovery
    /// point), so its index files only need to be current when it is sealed.
    /// Sealing's writes: the last time index entry, the index files, and the log cut to
    /// its size (a write that runs out of space fails here, not in the sync after it).
    pub(crate) async fn seal_files(&mut self) -> std::io::Result<()> {
        self.uncount_write_behind();
        if let Some(last) = self.last_batch_offset {
            if self.max_timestamp >= 0 {
                self.time_index.push(self.max_timestamp, last);
            }
        }
        self.persist_indexes().await?;
        // Blocks reserved past the end are given back (on ext4, truncating to the same size
        // frees them), also those a crash left behind.
        self.cut_log(self.size)
    }

    /// The files a sync of this segment covers, to be synced without holding the segment:
    /// its log, and once it is sealed (`sealed`) its index files too (an active segment's
    /// index files are written only when it is sealed).
    pub(crate) fn files_to_sync(&self, sealed: bool) -> SegmentFiles<D> {
        SegmentFiles {
            log: Rc::clone(&self.log),
            indexes: sealed.then(|| [self.index_file.clone(), self.time_index_file.clone()]),
        }
    }

    /// Removes the batch `cut` (found by `find_batch`) and every batch after it: the
    /// indexes and their files lose their entries from it on, the log file is cut at its
    /// position and synced, and the tail state is recomputed from the last surviving index
    /// entry. The segment then ends right before `cut`, or the log disagrees with its index.
    pub(crate) async fn truncate_at(&mut self, cut: HeaderInfo) -> Result<()> {
        let cut_offset = cut.base_offset;
        let index_len = self.index.truncate_from(cut_offset);
        let time_len = self.time_index.truncate_from(cut_offset);
        self.cut_log(cut.position)?;
        self.truncate_index_files(index_len, time_len).await?;
        self.log.sync_data().await?;
        // Recompute the tail state from the last surviving index entry.
        self.last_batch_offset = None;
        // The entries below the cut are kept as they were; whether they agree with the log
        // was settled when the segment was opened.
        let _disagreement = self.load_tail(cut.position).await?;
        if self.next_offset != cut_offset && cut.position > 0 {
            return Err(self.corrupt(
                cut.position,
                format!(
                    "after truncation the log ends at offset {}, expected {cut_offset}",
                    self.next_offset
                ),
            ));
        }
        self.next_offset = cut_offset;
        Ok(())
    }

    /// Cuts the index files to `index_len` and `time_len` bytes.
    async fn truncate_index_files(&self, index_len: u64, time_len: u64) -> std::io::Result<()> {
        self.index_file.set_len(index_len).await?;
        self.time_index_file.set_len(time_len).await
    }

    /// Reads the headers of the batches in a window starting at `position` (at least one).
    pub(crate) async fn headers_at(&self, position: u64) -> Result<Vec<HeaderInfo>> {
        self.headers_in(position, WALK_WINDOW_BYTES).await
    }

    /// Like `headers_at`, reading about `window_bytes` (at least one header's worth): callers
    /// that know how far they need to look read no more than that.
    async fn headers_in(&self, position: u64, window_bytes: u64) -> Result<Vec<HeaderInfo>> {
        if position >= self.size {
            return Err(
                self.corrupt(position, format!("header walk past the segment end {}", self.size))
            );
        }
        let len = window_bytes
            .clamp(BATCH_HEADER_BYTES as u64, WALK_WINDOW_BYTES)
            .min(self.size - position);
        let window = self.log.read_at(position, len as usize).await?;
        if (window.len() as u64) < len {
            return Err(self.corrupt(
                position + window.len() as u64,
                format!("file ends before the segment size {}", self.size),
            ));
        }
        let mut headers = Vec::new();
        let mut at = 0usize;
        while let Some(header) = window.get(at..).and_then(BatchHeader::view) {
            let absolute = position + at as u64;
            let info = HeaderInfo {
                position: absolute,
                base_offset: header.base_offset.get(),
                last_offset: header.last_offset(),
                size: header.size(),
                max_timestamp: header.max_timestamp.get(),
            };
            if info.size < BATCH_HEADER_BYTES as u64
                || absolute + info.size > self.size
                || info.last_offset < info.base_offset
                || info.last_offset == i64::MAX
            {
                return Err(self.corrupt(absolute, format!("implausible batch header {info:?}")));
            }
            if let Some(previous) = headers.last().map(|h: &HeaderInfo| h.last_offset) {
                if info.base_offset <= previous {
                    return Err(self.corrupt(
                        absolute,
                        format!("base offset {} does not follow {previous}", info.base_offset),
                    ));
                }
            }
            headers.push(info);
            at += info.size as usize;
        }
        if headers.is_empty() {
            return Err(
                self.corrupt(position, "no whole batch header at this position".to_string())
            );
        }
        Ok(headers)
    }

    /// The batch that contains `offset`, or the first one after it; `None` past the end.
    pub(crate) async fn find_batch(&self, offset: i64) -> Result<Option<HeaderInfo>> {
        if offset >= self.next_offset || self.size == 0 {
            return Ok(None);
        }
        let entry = self.index.lookup(offset);
        let mut position = entry.position;
        let mut first = true;
        loop {
            // The batch holding `offset` starts within about one index interval of the entry.
            let window = if first {
                self.index_interval_bytes + BATCH_HEADER_BYTES as u64
            } else {
                WALK_WINDOW_BYTES
            };
            let headers = self.headers_in(position, window).await?;
            if first && headers[0].base_offset != entry.offset {
                return Err(self.corrupt(
                    position,
                    format!(
                        "index says offset {} starts here, the log says {}",
                        entry.offset, headers[0].base_offset
                    ),
                ));
            }
            first = false;
            for header in &headers {
                if header.last_offset >= offset {
                    return Ok(Some(*header));
                }
            }
            let last = headers.last().expect("headers_at returns at least one");
            position = last.position + last.size;
            if position >= self.size {
                return Ok(None);
            }
        }
    }

    /// Whole batches from the one holding `offset`, at most `max_bytes` of them, except that
    /// the first batch is always included when `at_least_one` is set.
    pub(crate) async fn read_region(
        &self,
        offset: i64,
        max_bytes: u64,
        at_least_one: bool,
    ) -> Result<Option<Region>> {
        let Some(first) = self.find_batch(offset).await? else {
            return Ok(None);
        };
        if first.size > max_bytes && !at_least_one {
            return Ok(None);
        }
        let start = first.position;
        // Saturating: callers may pass u64::MAX for "everything".
        let limit = start.saturating_add(max_bytes.max(first.size));
        if limit >= self.size {
            return Ok(Some(Region {
                position: start,
                len: self.size - start,
                first_offset: first.base_offset,
                next_offset: self.next_offset,
            }));
        }
        // Batches up to the last index entry below `limit` are whole: entries sit on batch
        // starts. From there, walk headers while the next batch still fits.
        let entry = self.index.lookup_position(limit);
        let from_entry = entry.position > start;
        let (mut end, mut next_offset) = if from_entry {
            (entry.position, entry.offset)
        } else {
            (start + first.size, first.last_offset + 1)
        };
        'walk: while end < self.size {
            // Only headers that start below `limit` can still fit.
            let headers =
                self.headers_in(end, limit.saturating_sub(end) + BATCH_HEADER_BYTES as u64).await?;
            // The entry is trusted for everything before it, so check that it names the batch
            // at its position (as `find_batch` does); the caller rebuilds the index if not.
            if from_entry && end == entry.position && headers[0].base_offset != entry.offset {
                return Err(self.corrupt(
                    end,
                    format!(
                        "index says offset {} starts here, the log says {}",
                        entry.offset, headers[0].base_offset
                    ),
                ));
            }
            for header in headers {
                if header.position + header.size > limit {
                    break 'walk;
                }
                end = header.position + header.size;
                next_offset = header.last_offset + 1;
            }
        }
        Ok(Some(Region {
            position: start,
            len: end - start,
            first_offset: first.base_offset,
            next_offset,
        }))
    }

    /// Walks from the last index entry to the end of the file, checking that the entry sits on
    /// a batch with the offset it names, and sets `size`, `next_offset`, `max_timestamp` and
    /// the index bookkeeping from what it finds. Used when a segment is trusted on open.
    ///
    /// Returns why the indexes disagree with the walked batches, if they do: a batch that
    /// `index_batch` would have given an entry (one starting `index_interval_bytes` or more
    /// past the last entry: the `.index` is short), or a batch newer than the last time entry
    /// that claims to cover it (the `.timeindex` understates, and `max_timestamp` with it).
    /// A trusted open then rebuilds both.
    pub(crate) async fn load_tail(&mut self, file_size: u64) -> Result<Option<String>> {
        let entry = self.index.last();
        let time_entry = self.time_index.last();
        self.size = file_size;
        let mut position = entry.map_or(0, |e| e.position);
        let walk_start = position;
        let mut disagreement = None;
        self.next_offset = entry.map_or(self.base_offset, |e| e.offset);
        self.max_timestamp = time_entry.map_or(crate::batch::NO_TIMESTAMP, |e| e.timestamp);
        self.bytes_since_index_entry = file_size - position;
        let mut first = true;
        while position < file_size {
            let headers = self.headers_at(position).await?;
            if first && entry.is_some_and(|e| e.offset != headers[0].base_offset) {
                return Err(self.corrupt(
                    position,
                    "last index entry does not name the batch at its position".to_string(),
                ));
            }
            first = false;
            for header in headers {
                if disagreement.is_none()
                    && header.position - walk_start >= self.index_interval_bytes
                {
                    disagreement = Some(format!(".index: lacks an entry for the batch at position {} (short or missing file)", header.position));
                }
                if let Some(e) = time_entry.filter(|e| {
                    header.base_offset <= e.offset && header.max_timestamp > e.timestamp
                }) {
                    disagreement.get_or_insert(format!(
                        ".timeindex: entry {e:?} is older than the batch at offset {} ({})",
                        header.base_offset, header.max_timestamp
                    ));
                }
                self.next_offset = header.last_offset + 1;
                self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
                self.last_batch_offset = Some(header.base_offset);
                position = header.position + header.size;
            }
        }
        Ok(disagreement)
    }

    pub(crate) fn corrupt(&self, position: u64, reason: String) -> StorageError {
        StorageError::Corrupt { path: self.log.path().to_path_buf(), position, reason }
    }

    /// Removes the segment's files. Open handles (a fetch in flight) keep reading the data;
    /// the log's space is freed off this thread once the last of them closes
    /// (`DiskFile::free_elsewhere`). The index files are closed already (`IndexFile`).
    pub(crate) async fn delete(self, dir: &Path) -> std::io::Result<()> {
        let base = self.base_offset;
        self.log.free_elsewhere();
        for extension in ["log", "index", "timeindex", "txnindex"] {
            self.index_file.disk.remove_file(&segment_path(dir, base, extension)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_with_the_segment_and_stop_before_the_disk_is_short() {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        // A new segment: the write plus the least reservation ahead.
        assert_eq!(reservation(0, 1000, 0, 100 * GIB), Some((0, 1000 + PREALLOCATE_BYTES_MIN)));
        // Inside the reservation: nothing to do.
        assert_eq!(reservation(1000, 1000, 1000 + PREALLOCATE_BYTES_MIN, 100 * GIB), None);
        // Past it: from where it ended, about the segment's size ahead...
        assert_eq!(
            reservation(4 * MIB, MIB, 4 * MIB + 100, 100 * GIB),
            Some((4 * MIB + 100, 9 * MIB))
        );
        // ...but never more than the most.
        assert_eq!(
            reservation(GIB / 2, MIB, GIB / 2, 100 * GIB),
            Some((GIB / 2, GIB / 2 + MIB + PREALLOCATE_BYTES_MAX))
        );
        // After a cut (reserved_to reset to 0) it starts at the end of the data.
        assert_eq!(reservation(4 * MIB, 10, 0, 100 * GIB), Some((4 * MIB, 8 * MIB + 10)));
        // Not when it would leave less than the minimum free.
        let wanted = 1000 + PREALLOCATE_BYTES_MIN;
        assert_eq!(reservation(0, 1000, 0, wanted + PREALLOCATE_FREE_BYTES_MIN), Some((0, wanted)));
        assert_eq!(reservation(0, 1000, 0, wanted + PREALLOCATE_FREE_BYTES_MIN - 1), None);
    }
}
