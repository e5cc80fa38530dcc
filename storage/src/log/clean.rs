//! Compaction (`cleanup.policy=compact`): one cleaning pass over the closed segments, and
//! the swap that puts the cleaned segments in place of the old ones.
//!
//! A pass, as Kafka's `Cleaner.doClean`:
//! 1. The *dirty* part runs from `cleaned-to` (the end of the last pass, a file in the
//!    partition directory) to the first uncleanable offset: the active segment's base, the
//!    caller's bound (the high watermark), and the first segment newer than
//!    `min.compaction.lag.ms`. The active segment is never cleaned.
//! 2. The key -> last offset map is built over the dirty part, batch by batch, in at most
//!    `map_bytes_max` bytes (keys are kept whole, so no two keys ever collide); when it is
//!    full the pass stops mapping there and cleans up to that point, the next pass goes on.
//! 3. Every closed segment up to the mapped end is rewritten: a record stays if no later
//!    record of its key is mapped, except a tombstone (a null value) in a segment that was
//!    clean before this pass, in a batch whose newest record is older than
//!    `delete.retention.ms` (the batch's, not the segment's: merging newer segments into a
//!    cleaned one would otherwise keep its tombstones young forever).
//!    Records beyond the mapped end stay. Offsets never change. Consecutive segments that
//!    together hold at most `segment.bytes` (and span fewer than 2^31 offsets) are cleaned
//!    into one, named after the first, as Kafka's `groupSegmentsBySize` groups them: a log
//!    rolled often (a small `segment.ms`) does not keep one small file set per roll. A
//!    segment alone in its group that loses no record is left as it is.
//!
//! Batches keep their base offset, last offset delta, partition leader epoch, producer id,
//! epoch and base sequence, attributes and base timestamp; only their records, record
//! count, max timestamp (CreateTime: of the records kept) and CRC change. A batch that
//! keeps no record is removed, with one difference from Kafka: the engine keeps offsets
//! contiguous batch to batch (recovery, indexes and followers rely on it), so a run of
//! removed batches leaves one empty batch spanning their offsets (61 bytes, no producer)
//! where Kafka leaves a gap; clients skip empty batches as they skip Kafka's own (kept for
//! a producer's last sequence). An idempotent producer's batch that keeps no record stays
//! as an empty batch of its own, so its producer state survives. A compressed batch is
//! decompressed and its kept records compressed again with its own codec (`RecordsCodec`,
//! the broker's; without one it is kept whole). Control batches and transactional batches are
//! kept as they are, and their keys are not mapped: an aborted record must not shadow the
//! committed one before it, and the cleaner does not know which transactions committed
//! (Kafka's cleaner does, and removes aborted records and, later, markers). A tombstone of
//! a key some kept transactional record holds stays (`TxnKeys`): dropping it would bring
//! that older value back. A segment with aborted transactions filed
//! under it is cleaned alone, so its `.txnindex` keeps its name.
//!
//! The swap (crash-safe at every step, checked through the simulated disk):
//! 1. each cleaned segment is written under `cleaning/` with its final names, synced, and
//!    `cleaning/` synced: a crash now leaves the old segments (recovery empties `cleaning/`);
//! 2. the manifest `cleaning/swap` lists their base offsets, each followed by those of the
//!    segments merged into it, atomically and durably: the commit point;
//! 3. each cleaned file is renamed over the old one, the merged segments' files removed, the
//!    directories synced, and the manifest removed. A crash after 2 rolls forward on open:
//!    every file still under `cleaning/` for a listed base is renamed into place and every
//!    merged segment's file still there removed (`recover_swap`), before the segments are
//!    listed.
//!
//! In memory each cleaned segment replaces the old one at once: a read that already holds
//! the old file finishes on it (its inode lives until closed), new reads see the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::batch::{
    records, BatchHeader, RecordView, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
};
use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::recovery;
use crate::segment::{file_name, Segment};

use super::PartitionLog;

/// The directory, inside a partition's, where cleaned segments are written before the swap.
const CLEANING_DIR: &str = "cleaning";
/// The swap manifest under `CLEANING_DIR`: the base offsets of the segments being swapped.
const SWAP_MANIFEST: &str = "swap";
/// The file holding the offset the last pass cleaned up to.
const CLEANED_TO_FILE: &str = "cleaned-to";
/// Bytes of one small file read back (`cleaned-to`, the manifest) at most.
const SMALL_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Bytes read at once when walking a segment's batches (a larger batch is read whole).
const READ_WINDOW_BYTES: u64 = 1024 * 1024;
/// What one map entry costs beyond its key's bytes (the offset, the hash table's slot and
/// the key's allocation), counted against `CleanOptions::map_bytes_max`.
const MAP_ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Attribute bits: the codec (0 = none), and the control flag.
const CODEC_MASK: i16 = 0x07;
const CONTROL_BIT: i16 = 0x20;
const TRANSACTIONAL_BIT: i16 = 0x10;
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// Decompression and compression of a batch's records, so that compressed batches can be
/// cleaned: the storage engine knows no codec (the broker's does). Without one, compressed
/// batches are kept whole.
pub trait RecordsCodec {
    /// The records of a batch (the bytes after its header) compressed with `codec` (1-4).
    fn decompress(&self, codec: u8, records: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// `records` compressed with `codec`, as a batch of that codec carries them.
    fn compress(&self, codec: u8, records: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

/// A batch's records, uncompressed: borrowed when the batch is not compressed, decompressed
/// with `codec` when it is; `None` for a control batch, a transactional one, or a compressed
/// one without codec.
fn plain_records<'a>(
    batch: &'a [u8],
    codec: Option<&dyn RecordsCodec>,
) -> std::result::Result<Option<std::borrow::Cow<'a, [u8]>>, String> {
    plain_records_of(batch, codec, false)
}

/// `plain_records`, of a transactional batch too if `transactional`.
fn plain_records_of<'a>(
    batch: &'a [u8],
    codec: Option<&dyn RecordsCodec>,
    transactional: bool,
) -> std::result::Result<Option<std::borrow::Cow<'a, [u8]>>, String> {
    let header = BatchHeader::view(batch).ok_or("no header")?;
    let attributes = header.attributes.get();
    let skipped = if transactional { CONTROL_BIT } else { CONTROL_BIT | TRANSACTIONAL_BIT };
    if attributes & skipped != 0 {
        return Ok(None);
    }
    let body = &batch[BATCH_HEADER_BYTES..];
    match (attributes & CODEC_MASK, codec) {
        (0, _) => Ok(Some(std::borrow::Cow::Borrowed(body))),
        (compression, Some(codec)) => {
            Ok(Some(std::borrow::Cow::Owned(codec.decompress(compression as u8, body)?)))
        }
        (_, None) => Ok(None),
    }
}

/// What a pass may clean and how.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Offsets at and above this are not cleaned (the high watermark, or the last stable
    /// offset once transactions exist).
    pub clean_below: i64,
    /// Bytes the key -> offset map may take (`log.cleaner.dedupe.buffer.size`).
    pub map_bytes_max: u64,
    /// A segment whose newest record is younger than this is not cleaned
    /// (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: u64,
    /// How long a tombstone stays after the pass that first cleaned it
    /// (`delete.retention.ms`).
    pub delete_retention_ms: u64,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanOutcome {
    /// The base offsets of the segments rewritten.
    pub cleaned_segments: Vec<i64>,
    /// Their bytes before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records removed.
    pub records_removed: u64,
    /// The dirty part starts here for the next pass.
    pub cleaned_to: i64,
    /// When a tombstone this pass kept in the clean part becomes old enough to go
    /// (`delete.retention.ms` past its segment's newest record); `None` if it kept none.
    pub tombstones_due_ms: Option<i64>,
}

/// The key -> last offset map of a pass, bounded in bytes.
struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
    bytes: u64,
    bytes_max: u64,
}

impl OffsetMap {
    fn new(bytes_max: u64) -> OffsetMap {
        OffsetMap { latest: HashMap::new(), bytes: 0, bytes_max }
    }

    /// Whether `keys` (not all new) fit; then records them at their offsets.
    fn put_all(&mut self, keys: &[(&[u8], i64)]) -> bool {
        let added: u64 = keys
            .iter()
            .filter(|(key, _)| !self.latest.contains_key(*key))
            .map(|(key, _)| key.len() as u64 + MAP_ENTRY_OVERHEAD_BYTES)
            .sum();
        if self.bytes + added > self.bytes_max {
            return false;
        }
        self.bytes += added;
        for (key, offset) in keys {
            self.latest.insert(key.to_vec(), *offset);
        }
        true
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// Calls `visit` with each batch of the first `size` bytes of `file` (a segment's log, whole
/// batches from its first byte), in order, until it answers `false`.
async fn for_each_batch<F: DiskFile>(
    file: &F,
    size: u64,
    mut visit: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<()> {
    let corrupt = |position: u64, reason: &str| StorageError::Corrupt {
        path: file.path().to_path_buf(),
        position,
        reason: reason.to_string(),
    };
    let mut position = 0u64;
    while position < size {
        let window = READ_WINDOW_BYTES.min(size - position);
        let mut bytes = file.read_at(position, window as usize).await?;
        let mut at = 0usize;
        while let Some(header) = bytes.get(at..).and_then(BatchHeader::view) {
            let batch_size = header.size() as usize;
            if batch_size < BATCH_HEADER_BYTES || position + (at + batch_size) as u64 > size {
                return Err(corrupt(position + at as u64, "implausible batch size"));
            }
            if at + batch_size > bytes.len() {
                if at > 0 {
                    break;
                }
                // One batch larger than the window: read it whole.
                bytes = file.read_at(position, batch_size).await?;
                if bytes.len() < batch_size {
                    return Err(corrupt(position, "batch past the file end"));
                }
            }
            if !visit(&bytes[at..at + batch_size])? {
                return Ok(());
            }
            at += batch_size;
        }
        if at == 0 {
            return Err(corrupt(position, "no whole batch at this position"));
        }
        position += at as u64;
    }
    Ok(())
}

/// Sets a batch's record count, max timestamp, length and CRC after its records changed.
fn reseal(batch: &mut [u8], count: i32, max_timestamp: i64) {
    let length = (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    batch[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    batch[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// An empty batch covering `base..=last` (removed batches), with no producer.
fn empty_batch(base: i64, last: i64, timestamp: i64, leader_epoch: i32) -> Vec<u8> {
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    batch[0..8].copy_from_slice(&base.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    batch[16] = crate::batch::MAGIC_V2 as u8;
    let delta = i32::try_from(last - base).expect("a run of removed batches within a segment");
    batch[23..27].copy_from_slice(&delta.to_be_bytes());
    batch[27..35].copy_from_slice(&timestamp.to_be_bytes());
    batch[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    batch[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    batch[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    reseal(&mut batch, 0, timestamp);
    batch
}

/// The rewriting of one segment's batches: what stays, and runs of removed batches.
struct Rewriter {
    out: Vec<Vec<u8>>,
    /// A run of removed batches not yet written: (base, last, max timestamp, leader epoch).
    removed: Option<(i64, i64, i64, i32)>,
    records_removed: u64,
    /// When the first tombstone that stayed below the mapped end may go: its batch's
    /// newest timestamp plus `delete.retention.ms`, plus one.
    tombstones_due_ms: Option<i64>,
}

/// Keys of the transactional records a pass has seen so far, in offset order: a tombstone
/// of one of these keys stays (the cleaner keeps transactional records whole, so dropping
/// a later tombstone would bring the older transactional value back). Bounded: past
/// `TXN_KEYS_BYTES_MAX` no tombstone goes in this pass.
#[derive(Default)]
struct TxnKeys {
    keys: std::collections::HashSet<Vec<u8>>,
    bytes: u64,
    full: bool,
}

/// Bytes of transactional keys one pass remembers (`TxnKeys`).
const TXN_KEYS_BYTES_MAX: u64 = 32 * 1024 * 1024;

impl TxnKeys {
    /// Remembers the keys of a transactional batch's records (decompressed with `codec`;
    /// without one, or if they do not parse, no tombstone goes in this pass).
    fn remember(&mut self, batch: &[u8], codec: Option<&dyn RecordsCodec>) {
        if self.full {
            return;
        }
        let body = match plain_records_of(batch, codec, true) {
            Ok(Some(body)) => body,
            _ => {
                self.full = true;
                return;
            }
        };
        let Some(all) = records(&body) else {
            self.full = true;
            return;
        };
        for key in all.iter().filter_map(|r| r.key) {
            if self.keys.insert(key.to_vec()) {
                self.bytes += key.len() as u64 + MAP_ENTRY_OVERHEAD_BYTES;
            }
        }
        if self.bytes > TXN_KEYS_BYTES_MAX {
            self.full = true;
            self.keys.clear();
        }
    }

    fn shadows(&self, key: &[u8]) -> bool {
        self.full || self.keys.contains(key)
    }
}

impl Rewriter {
    fn keep(&mut self, batch: Vec<u8>) {
        self.flush_removed();
        self.out.push(batch);
    }

    fn remove(&mut self, header: &BatchHeader) {
        let (base, last) = (header.base_offset.get(), header.last_offset());
        let (timestamp, epoch) = (header.max_timestamp.get(), header.partition_leader_epoch.get());
        self.removed = Some(match self.removed {
            Some((first, _, max, _)) => (first, last, max.max(timestamp), epoch),
            None => (base, last, timestamp, epoch),
        });
    }

    fn flush_removed(&mut self) {
        if let Some((base, last, timestamp, epoch)) = self.removed.take() {
            self.out.push(empty_batch(base, last, timestamp, epoch));
        }
    }
}

/// When a batch's tombstones may go (the module's rules).
#[derive(Debug, Clone, Copy)]
struct TombstoneRule {
    /// The batch's segment was clean before this pass.
    clean_before: bool,
    /// A batch whose newest timestamp is older than this is past `delete.retention.ms`.
    horizon: i64,
    retention_ms: i64,
}

/// Rewrites one batch with the records that stay (see the module's rules); a compressed
/// batch's kept records are compressed again with its own codec.
fn clean_batch(
    batch: &[u8],
    map: &OffsetMap,
    mapped_end: i64,
    tombstones: TombstoneRule,
    codec: Option<&dyn RecordsCodec>,
    rewriter: &mut Rewriter,
    txn_keys: &mut TxnKeys,
) -> std::result::Result<(), String> {
    let header = BatchHeader::view(batch).ok_or("no header")?;
    if header.is_transactional() && !header.is_control() {
        txn_keys.remember(batch, codec);
    }
    let Some(body) = plain_records(batch, codec)? else {
        rewriter.keep(batch.to_vec());
        return Ok(());
    };
    let attributes = header.attributes.get();
    let base = header.base_offset.get();
    let base_timestamp = header.base_timestamp.get();
    let all = records(&body).ok_or("malformed records")?;
    // Decided per batch, by its newest timestamp: a segment's would move with every merge
    // of newer segments into it, and its tombstones would never be old enough.
    let drop_tombstones =
        tombstones.clean_before && header.max_timestamp.get() < tombstones.horizon;
    let mut tombstones_kept = false;
    let kept: Vec<&RecordView<'_>> = all
        .iter()
        .filter(|record| {
            let offset = base + i64::from(record.offset_delta);
            if offset >= mapped_end {
                return true;
            }
            let Some(key) = record.key else { return true };
            if map.latest(key).is_some_and(|latest| offset < latest) {
                return false;
            }
            let drop = drop_tombstones && !txn_keys.shadows(key);
            if record.value.is_none() && !drop {
                tombstones_kept = true;
            }
            !(record.value.is_none() && drop)
        })
        .collect();
    rewriter.records_removed += (all.len() - kept.len()) as u64;
    if tombstones_kept {
        let due =
            header.max_timestamp.get().saturating_add(tombstones.retention_ms).saturating_add(1);
        rewriter.tombstones_due_ms = Some(rewriter.tombstones_due_ms.map_or(due, |d| d.min(due)));
    }
    if kept.len() == all.len() {
        rewriter.keep(batch.to_vec());
    } else if !kept.is_empty() || header.producer_id.get() >= 0 {
        let mut records = Vec::new();
        for record in &kept {
            records.extend_from_slice(record.bytes);
        }
        let compression = (attributes & CODEC_MASK) as u8;
        if compression != 0 {
            let codec = codec.expect("a compressed batch is rewritten only with a codec");
            records = codec.compress(compression, &records)?;
        }
        let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
        out.extend_from_slice(&records);
        let max_timestamp = if attributes & LOG_APPEND_TIME_BIT != 0 {
            header.max_timestamp.get()
        } else {
            kept.iter()
                .map(|record| base_timestamp.wrapping_add(record.timestamp_delta))
                .max()
                .unwrap_or(base_timestamp)
        };
        reseal(&mut out, kept.len() as i32, max_timestamp);
        rewriter.keep(out);
    } else {
        rewriter.remove(header);
    }
    Ok(())
}

/// A closed segment as a pass found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlannedSegment {
    base: i64,
    next_offset: i64,
    size: u64,
    max_timestamp: i64,
    created_at_ms: i64,
    /// Aborted transactions are filed under it (`txn.rs`): it is cleaned alone, so its
    /// `.txnindex` keeps naming it.
    has_aborted: bool,
}

/// A pass decided on the log's thread (`PartitionLog::plan_clean`), to be carried out on any
/// thread (`run`: it reads the closed segments by path and writes under `cleaning/`, which
/// nothing else touches) and committed on the log's thread again (`commit_clean`).
#[derive(Debug, Clone)]
pub struct CleanPlan {
    dir: PathBuf,
    /// The closed segments from the first one to the last a pass may touch.
    segments: Vec<PlannedSegment>,
    /// The first of them holding offsets past `cleaned_to`.
    first_dirty: usize,
    cleaned_to: i64,
    now_ms: i64,
    index_interval_bytes: u64,
    /// Cleaned segments are merged up to this size (`segment.bytes`).
    segment_bytes: u64,
    options: CleanOptions,
    /// A tombstone in the clean part is old enough to go (`tombstones_due`).
    tombstones_due: bool,
}

/// A segment written under `cleaning/`: the cleaned records of one or more consecutive
/// closed segments, named after the first, whose place it takes; the others go.
#[derive(Debug, Clone)]
struct CleanedSegment {
    first: PlannedSegment,
    /// The base offsets of the segments after `first` merged into it.
    absorbed: Vec<i64>,
}

/// A pass carried out, to be committed (`PartitionLog::commit_clean`).
#[derive(Debug)]
pub struct CleanDone {
    plan: CleanPlan,
    cleaned: Vec<CleanedSegment>,
    outcome: CleanOutcome,
}

impl CleanPlan {
    /// Bytes of the dirty part (segments past the last pass's end).
    pub fn dirty_bytes(&self) -> u64 {
        self.segments[self.first_dirty..].iter().map(|s| s.size).sum()
    }

    /// The dirty part's share of the bytes a pass may touch (Kafka's cleanable ratio).
    pub fn dirty_ratio(&self) -> f64 {
        let total: u64 = self.segments.iter().map(|s| s.size).sum();
        if total == 0 {
            return 0.0;
        }
        self.dirty_bytes() as f64 / total as f64
    }

    /// Whether a tombstone an earlier pass kept is now past `delete.retention.ms`: a pass
    /// is due for it even with nothing dirty (as KIP-534 has Kafka clean for tombstones
    /// alone). Unknown after the log is opened, so taken as due then: one pass looks.
    pub fn tombstones_due(&self) -> bool {
        self.tombstones_due
    }

    /// The newest record of the oldest dirty segment (for `max.compaction.lag.ms`).
    pub fn oldest_dirty_timestamp(&self) -> Option<i64> {
        self.segments.get(self.first_dirty).map(|s| s.max_timestamp)
    }

    /// Builds the map and writes the cleaned segments (module documentation), on `disk`,
    /// calling `paced` with the bytes read or written after each segment (a rate limit).
    /// `codec` decompresses and compresses batches' records; without one, compressed
    /// batches are neither mapped nor cleaned.
    pub async fn run<D: Disk>(
        self,
        disk: &D,
        codec: Option<&dyn RecordsCodec>,
        mut paced: impl AsyncFnMut(u64),
    ) -> Result<CleanDone> {
        let cleaned_to = self.cleaned_to;
        let mut outcome = CleanOutcome { cleaned_to, ..CleanOutcome::default() };
        let mut files = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            files.push(
                disk.open_rw(&crate::segment::segment_path(&self.dir, segment.base, "log"), false)
                    .await?,
            );
        }
        let mut map = OffsetMap::new(self.options.map_bytes_max);
        let mut mapped_end = cleaned_to;
        let dirty = self.first_dirty < self.segments.len();
        let mut last_mapped = self.first_dirty.min(self.segments.len() - 1);
        for (index, (file, planned)) in
            files.iter().zip(&self.segments).enumerate().skip(self.first_dirty)
        {
            let mut full = false;
            for_each_batch(file, planned.size, |batch| {
                let header = BatchHeader::view(batch).expect("a whole batch");
                if header.last_offset() < cleaned_to {
                    return Ok(true);
                }
                let base = header.base_offset.get();
                let corrupt = |why: String| StorageError::Corrupt {
                    path: file.path().to_path_buf(),
                    position: 0,
                    reason: format!("the batch at offset {base}: {why}"),
                };
                if let Some(body) = plain_records(batch, codec).map_err(corrupt)? {
                    let all =
                        records(&body).ok_or_else(|| corrupt("malformed records".to_string()))?;
                    let keys: Vec<(&[u8], i64)> = all
                        .iter()
                        .filter_map(|r| Some((r.key?, base + i64::from(r.offset_delta))))
                        .collect();
                    if !map.put_all(&keys) {
                        full = true;
                        return Ok(false);
                    }
                }
                mapped_end = header.last_offset() + 1;
                Ok(true)
            })
            .await?;
            paced(planned.size).await;
            last_mapped = index;
            if full {
                break;
            }
        }
        let retention = i64::try_from(self.options.delete_retention_ms).unwrap_or(i64::MAX);
        if dirty && mapped_end <= cleaned_to {
            warn!(dir = %self.dir.display(), cleaned_to, bytes_max = self.options.map_bytes_max, "the cleaner's map cannot hold one batch's keys: nothing cleaned");
            // Tombstones are not looked at: a pass for them alone waits a retention period.
            outcome.tombstones_due_ms = Some(self.now_ms.saturating_add(retention));
            return Ok(CleanDone { plan: self, cleaned: Vec::new(), outcome });
        }
        let horizon = self.now_ms.saturating_sub(retention);
        let cleaning = self.dir.join(CLEANING_DIR);
        disk.create_dir_all(&cleaning)?;
        let mut cleaned = Vec::new();
        let mut txn_keys = TxnKeys::default();
        for group in merge_groups(&self.segments[..=last_mapped], self.segment_bytes) {
            let mut rewriter = Rewriter {
                out: Vec::new(),
                removed: None,
                records_removed: 0,
                tombstones_due_ms: None,
            };
            for index in group.clone() {
                let (file, old) = (&files[index], self.segments[index]);
                // Tombstones go only from segments a pass cleaned before, once old enough.
                let tombstones = TombstoneRule {
                    clean_before: index < self.first_dirty,
                    horizon,
                    retention_ms: retention,
                };
                let mut failed = None;
                for_each_batch(file, old.size, |batch| {
                    if let Err(reason) = clean_batch(
                        batch,
                        &map,
                        mapped_end,
                        tombstones,
                        codec,
                        &mut rewriter,
                        &mut txn_keys,
                    ) {
                        failed = Some(reason);
                        return Ok(false);
                    }
                    Ok(true)
                })
                .await?;
                if let Some(reason) = failed {
                    return Err(StorageError::Corrupt {
                        path: file.path().to_path_buf(),
                        position: 0,
                        reason: format!("cannot clean: {reason}"),
                    });
                }
            }
            rewriter.flush_removed();
            let members = &self.segments[group.clone()];
            let bytes_before: u64 = members.iter().map(|s| s.size).sum();
            let first = members[0];
            if let Some(due) = rewriter.tombstones_due_ms {
                outcome.tombstones_due_ms =
                    Some(outcome.tombstones_due_ms.map_or(due, |d: i64| d.min(due)));
            }
            if rewriter.records_removed == 0 && members.len() == 1 {
                paced(bytes_before).await;
                continue;
            }
            let size =
                write_cleaned(disk, &cleaning, first, self.index_interval_bytes, &rewriter.out)
                    .await?;
            paced(bytes_before + size).await;
            outcome.bytes_before += bytes_before;
            outcome.bytes_after += size;
            outcome.records_removed += rewriter.records_removed;
            outcome.cleaned_segments.extend(members.iter().map(|s| s.base));
            let absorbed = members[1..].iter().map(|s| s.base).collect();
            cleaned.push(CleanedSegment { first, absorbed });
        }
        for file in files {
            file.close().await?;
        }
        outcome.cleaned_to = mapped_end;
        Ok(CleanDone { plan: self, cleaned, outcome })
    }
}

/// Consecutive segments grouped to be cleaned into one, as Kafka's `groupSegmentsBySize`:
/// together they hold at most `segment_bytes` (so the cleaned segment holds no more) and
/// span fewer than 2^31 offsets (its index keeps offsets relative to its base).
fn merge_groups(segments: &[PlannedSegment], segment_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut bytes = segments[start].size;
        while let Some(next) = segments.get(end) {
            let span = next.next_offset - segments[start].base;
            if bytes + next.size > segment_bytes
                || span > i64::from(i32::MAX)
                || segments[start].has_aborted
                || next.has_aborted
            {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

/// Writes `batches` as the cleaned copy of `old` under `cleaning`, sealed and synced;
/// returns its size.
async fn write_cleaned<D: Disk>(
    disk: &D,
    cleaning: &Path,
    old: PlannedSegment,
    index_interval_bytes: u64,
    batches: &[Vec<u8>],
) -> Result<u64> {
    let mut segment =
        Segment::create(disk, cleaning, old.base, index_interval_bytes, old.created_at_ms).await?;
    for batch in batches {
        let header = BatchHeader::view(batch).expect("a built batch");
        let (base, last) = (header.base_offset.get(), header.last_offset());
        let max_timestamp = header.max_timestamp.get();
        let position = segment.size();
        segment.write_tail(batch.clone(), false).await?;
        segment.index_batch(position, base, last, batch.len() as u64, max_timestamp);
    }
    segment.seal_files().await?;
    segment.files_to_sync(true).sync().await?;
    Ok(segment.size())
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// One cleaning pass on this thread: `plan_clean`, `CleanPlan::run`, `commit_clean`.
    /// Holds the log throughout; the broker runs the middle part on its cleaner thread.
    pub async fn clean(&mut self, options: &CleanOptions) -> Result<CleanOutcome> {
        let Some(plan) = self.plan_clean(options).await? else {
            return Ok(CleanOutcome { cleaned_to: self.cleaned_to, ..CleanOutcome::default() });
        };
        let done = plan.run(&self.disk, None, async |_| {}).await;
        let done = self.guard(done)?;
        self.commit_clean(done).await
    }

    /// What a pass would clean now (module documentation, step 1); `None` when no closed
    /// segment may be touched.
    pub async fn plan_clean(&mut self, options: &CleanOptions) -> Result<Option<CleanPlan>> {
        self.check_usable()?;
        if self.cleaned_to == i64::MIN {
            self.cleaned_to = self.read_cleaned_to().await?;
        }
        let now = self.clock.now_ms();
        let cleaned_to = self.cleaned_to.max(self.segments[0].base_offset());
        let lag = i64::try_from(options.min_compaction_lag_ms).unwrap_or(i64::MAX);
        let with_aborted = self.segments_with_aborted();
        let segments: Vec<PlannedSegment> = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| {
                s.next_offset() <= options.clean_below
                    && s.max_timestamp() <= now.saturating_sub(lag)
            })
            .map(|s| PlannedSegment {
                base: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                created_at_ms: s.created_at_ms(),
                has_aborted: with_aborted.contains(&s.base_offset()),
            })
            .collect();
        if segments.is_empty() {
            return Ok(None);
        }
        let first_dirty =
            segments.iter().position(|s| s.next_offset > cleaned_to).unwrap_or(segments.len());
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            segments,
            first_dirty,
            cleaned_to,
            now_ms: now,
            index_interval_bytes: self.config.index_interval_bytes,
            segment_bytes: self.config.segment_bytes,
            options: options.clone(),
            tombstones_due: self.tombstones_due_ms.is_none_or(|due| due <= now),
        }))
    }

    /// Puts a pass's cleaned segments in place (the swap) if the segments it read are still
    /// the log's, as they were; otherwise drops its work (retention or a truncation changed
    /// the log meanwhile) and the next pass starts again.
    pub async fn commit_clean(&mut self, done: CleanDone) -> Result<CleanOutcome> {
        self.check_usable()?;
        let CleanDone { plan, cleaned, mut outcome } = done;
        let first_base = self.segments[0].base_offset();
        let closed = &self.segments[..self.segments.len() - 1];
        // Retention may have deleted segments at the start meanwhile (their cleaned copies
        // are dropped); any other change (a truncation) voids the whole pass.
        let gone = |p: &PlannedSegment| p.next_offset <= first_base;
        let same = |p: &PlannedSegment| {
            closed.iter().any(|s| {
                s.base_offset() == p.base && s.next_offset() == p.next_offset && s.size() == p.size
            })
        };
        let unchanged = plan.segments.iter().all(|p| gone(p) || same(p));
        let cleaning = self.dir.join(CLEANING_DIR);
        // Retention deletes from the start: a cleaned segment whose first part is still
        // there has all its parts.
        let (still_there, dropped): (Vec<CleanedSegment>, Vec<CleanedSegment>) =
            cleaned.into_iter().partition(|c| unchanged && !gone(&c.first));
        // A merged copy dropped because its first segment went leaves its other segments
        // uncleaned: the next pass must see them as dirty again.
        let survivors = dropped
            .iter()
            .flat_map(|c| c.absorbed.iter())
            .filter(|base| closed.iter().any(|s| s.base_offset() == **base));
        let cap = survivors.min().copied().unwrap_or(i64::MAX).max(plan.cleaned_to);
        for c in &dropped {
            for extension in ["log", "index", "timeindex"] {
                let removed =
                    self.disk.remove_file(&cleaning.join(file_name(c.first.base, extension))).await;
                self.guard(removed.map_err(StorageError::from))?;
            }
        }
        if !unchanged {
            info!(dir = %self.dir.display(), "the log changed during a cleaning pass: its work is dropped");
            return Ok(CleanOutcome { cleaned_to: self.cleaned_to, ..CleanOutcome::default() });
        }
        if !still_there.is_empty() {
            self.swap(&cleaning, &still_there).await?;
        }
        let mapped_end = outcome.cleaned_to.min(cap).max(plan.cleaned_to);
        self.tombstones_due_ms = Some(outcome.tombstones_due_ms.unwrap_or(i64::MAX));
        self.write_cleaned_to(mapped_end).await?;
        self.cleaned_to = mapped_end;
        outcome.cleaned_to = mapped_end;
        info!(dir = %self.dir.display(), segments = outcome.cleaned_segments.len(), bytes_before = outcome.bytes_before, bytes_after = outcome.bytes_after, records_removed = outcome.records_removed, cleaned_to = mapped_end, "cleaned");
        Ok(outcome)
    }

    /// Puts each cleaned segment in place of the old one of its base offset and removes the
    /// ones merged into it (module documentation, "The swap").
    async fn swap(&mut self, cleaning: &Path, cleaned: &[CleanedSegment]) -> Result<()> {
        self.mark_dirty().await?;
        let entries: Vec<SwapEntry> =
            cleaned.iter().map(|c| (c.first.base, c.absorbed.clone())).collect();
        let result = async {
            self.disk.sync_dir(cleaning).await?;
            self.disk
                .write_file_atomic(&cleaning.join(SWAP_MANIFEST), manifest(&entries).into_bytes())
                .await?;
            finish_swap(&self.disk, &self.dir, &entries).await
        }
        .await;
        self.guard(result.map_err(StorageError::from))?;
        for (base, absorbed) in &entries {
            let index = self
                .segments
                .iter()
                .position(|s| s.base_offset() == *base)
                .expect("a cleaned segment replaces one of the log's");
            let created_at_ms = self.segments[index].created_at_ms();
            let opened = async {
                let mut segment = Segment::open_files(
                    &self.disk,
                    &self.dir,
                    *base,
                    false,
                    self.config.index_interval_bytes,
                    created_at_ms,
                )
                .await?;
                recovery::open_trusted(&mut segment).await?;
                Ok(segment)
            }
            .await;
            let segment = self.guard(opened)?;
            // The merged ones follow it; their files are gone from the directory already.
            let merged = index + 1..index + 1 + absorbed.len();
            debug_assert!(self.segments[merged.clone()]
                .iter()
                .zip(absorbed)
                .all(|(s, base)| s.base_offset() == *base));
            for old in self.segments.drain(merged) {
                old.log().free_elsewhere();
            }
            self.segments[index].log().free_elsewhere();
            self.segments[index] = segment;
        }
        Ok(())
    }

    async fn read_cleaned_to(&self) -> Result<i64> {
        let path = self.dir.join(CLEANED_TO_FILE);
        Ok(match self.disk.read_file(&path, SMALL_FILE_BYTES_MAX).await? {
            Some(bytes) => String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(i64::MIN),
            None => i64::MIN,
        })
    }

    async fn write_cleaned_to(&mut self, offset: i64) -> Result<()> {
        let path = self.dir.join(CLEANED_TO_FILE);
        let result = self.disk.write_file_atomic(&path, offset.to_string().into_bytes()).await;
        self.guard(result.map_err(StorageError::from))
    }
}

/// One line of the swap manifest: a cleaned segment's base offset, and the base offsets of
/// the segments merged into it (removed by the swap).
type SwapEntry = (i64, Vec<i64>);

/// The manifest's text: a line per cleaned segment, its base offset and then those of the
/// segments merged into it, separated by spaces.
fn manifest(entries: &[SwapEntry]) -> String {
    let line = |(base, absorbed): &SwapEntry| {
        std::iter::once(base).chain(absorbed).map(i64::to_string).collect::<Vec<_>>().join(" ")
    };
    entries.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// The entries of a manifest's text (lines that do not parse are skipped: the manifest is
/// written whole, atomically, so there are none).
fn parse_manifest(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .filter_map(|line| {
            let offsets: Option<Vec<i64>> =
                line.split_whitespace().map(|word| word.parse().ok()).collect();
            let offsets = offsets?;
            let (base, absorbed) = offsets.split_first()?;
            Some((*base, absorbed.to_vec()))
        })
        .collect()
}

/// The swap's step 3: moves every cleaned file still under `cleaning/` into place, removes
/// the files of the segments merged into one, makes the names durable and removes the
/// manifest. Safe to run again after a crash at any point of it.
async fn finish_swap<D: Disk>(disk: &D, dir: &Path, entries: &[SwapEntry]) -> std::io::Result<()> {
    let cleaning = dir.join(CLEANING_DIR);
    let names = disk.list_dir(&cleaning)?;
    for (base, absorbed) in entries {
        for extension in ["log", "index", "timeindex"] {
            let name = file_name(*base, extension);
            if names.contains(&name) {
                disk.rename(&cleaning.join(&name), &dir.join(&name)).await?;
            }
        }
        for merged in absorbed {
            for extension in ["log", "index", "timeindex"] {
                disk.remove_file(&dir.join(file_name(*merged, extension))).await?;
            }
        }
    }
    disk.sync_dir(dir).await?;
    disk.sync_dir(&cleaning).await?;
    disk.remove_file(&cleaning.join(SWAP_MANIFEST)).await?;
    disk.sync_dir(&cleaning).await
}

/// On open, before the segments are listed: finishes a swap whose manifest is durable, and
/// removes what an unfinished cleaning left under `cleaning/` otherwise.
pub(super) async fn recover_swap<D: Disk>(disk: &D, dir: &Path) -> Result<()> {
    let cleaning: PathBuf = dir.join(CLEANING_DIR);
    if disk.list_dir(&cleaning).is_err() {
        return Ok(());
    }
    if let Some(bytes) = disk.read_file(&cleaning.join(SWAP_MANIFEST), SMALL_FILE_BYTES_MAX).await?
    {
        let entries = parse_manifest(&String::from_utf8_lossy(&bytes));
        warn!(dir = %dir.display(), ?entries, "finishing a swap of cleaned segments that a stop interrupted");
        finish_swap(disk, dir, &entries).await?;
    }
    // Cleaned segments of a pass that never reached its manifest: the old ones stand.
    for name in disk.list_dir(&cleaning)? {
        disk.remove_file(&cleaning.join(&name)).await?;
    }
    Ok(())
}
