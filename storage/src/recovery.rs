//! Recovery: turning whatever is on disk into a segment whose invariants hold.
//!
//! A segment is opened one of two ways:
//! - **trusted** (below the recovery checkpoint, or after a clean shutdown): its indexes are
//!   loaded and checked (`index::decode`), and only the tail after the last index entry is
//!   walked. Any inconsistency demotes it to a full scan: a short `.index` (a tail batch
//!   that should have had an entry), a `.timeindex` whose last entry is older than a batch it
//!   covers.
//! - **scanned** (at or after the recovery checkpoint after an unclean stop, or demoted):
//!   every batch from position 0 is checked (length, magic, CRC-32C, counts, each base offset
//!   exactly one past its predecessor's last offset, since the base offset is outside the
//!   CRC); the log is cut at the first byte that is not part of a valid batch, and both
//!   indexes are rebuilt from scratch with the same rule appends use.
//!
//! The scan never trusts the file length (zowens/commitlog's mistake): a torn write leaves a
//! length that covers garbage, and the CRC finds it.

use std::path::Path;

use tracing::{info, warn};

use crate::batch::{self, BatchHeader, BatchInfo, Origin, BATCH_HEADER_BYTES};
use crate::config::BATCH_BYTES_LIMIT_MAX;
use crate::disk::{Disk, DiskFile};
use crate::error::Result;
use crate::segment::Segment;

/// Bytes read at once while scanning: large sequential reads, bounded memory.
const SCAN_READ_BYTES: u64 = 1024 * 1024;

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Bytes of valid batches from position 0.
    pub valid_bytes: u64,
    /// Bytes in the file past them (cut when repairing).
    pub invalid_bytes: u64,
    pub batches: u64,
    /// Why the scan stopped early, if it did.
    pub stop_reason: Option<String>,
    /// The rebuilt index files could not be written for want of space (the error): the
    /// segment is served from its in-memory indexes, and the log opens full. Its files are
    /// rebuilt by the next scan (the checkpoint cannot move past them meanwhile).
    pub out_of_space: Option<String>,
}

/// Scans the whole `.log` of `segment`, rebuilding its in-memory indexes. With `repair`, cuts
/// the file after the last valid batch, rewrites both index files and syncs all three.
pub(crate) async fn scan_segment<D: Disk>(
    segment: &mut Segment<D>,
    repair: bool,
) -> Result<ScanOutcome> {
    let file_size = segment.log().len().await?;
    segment.forget_batches();
    let mut batches = 0u64;
    let mut stop_reason = None;
    let mut chunk = Chunk { start: 0, bytes: Vec::new() };
    while segment.size() < file_size {
        let position = segment.size();
        match next_batch(segment, &mut chunk, file_size).await? {
            Next::Batch(info) => {
                segment.index_batch(
                    position,
                    info.base_offset,
                    info.last_offset(),
                    info.size,
                    info.max_timestamp,
                );
                batches += 1;
            }
            Next::Stop(reason) => {
                stop_reason = Some(reason);
                break;
            }
        }
    }
    let mut outcome = ScanOutcome {
        valid_bytes: segment.size(),
        invalid_bytes: file_size - segment.size(),
        batches,
        stop_reason,
        out_of_space: None,
    };
    if repair {
        outcome.out_of_space = cut_after_valid_batches(segment, &outcome).await?;
    }
    Ok(outcome)
}

/// What a scan finds at the segment end: the next valid batch, or why the scan stops there.
enum Next {
    Batch(BatchInfo),
    Stop(String),
}

/// The bytes of the `.log` a scan read last, from position `start`: large sequential reads,
/// at most `SCAN_READ_BYTES` (or one batch, if larger) in memory.
struct Chunk {
    start: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    /// The bytes from `position` on, after reading again from there if the chunk does not
    /// hold `len` of them.
    async fn at<F: DiskFile>(
        &mut self,
        log: &F,
        position: u64,
        len: u64,
        file_size: u64,
    ) -> Result<&[u8]> {
        if position - self.start + len > self.bytes.len() as u64 {
            let read = SCAN_READ_BYTES.max(len).min(file_size - position);
            self.bytes = log.read_at(position, read as usize).await?;
            self.start = position;
        }
        Ok(&self.bytes[(position - self.start) as usize..])
    }
}

/// Reads and checks the batch at the segment end (length, magic, CRC, counts, and a base
/// offset right after its predecessor's last offset).
async fn next_batch<D: Disk>(
    segment: &Segment<D>,
    chunk: &mut Chunk,
    file_size: u64,
) -> Result<Next> {
    let position = segment.size();
    let bytes = chunk.at(&**segment.log(), position, BATCH_HEADER_BYTES as u64, file_size).await?;
    let Some(header) = BatchHeader::view(bytes) else {
        return Ok(Next::Stop(format!("torn batch header at position {position}")));
    };
    let size = header.size();
    if size > BATCH_BYTES_LIMIT_MAX || position + size > file_size {
        return Ok(Next::Stop(format!(
            "batch at position {position} claims {size} bytes, {} remain",
            file_size - position
        )));
    }
    let bytes = chunk.at(&**segment.log(), position, size, file_size).await?;
    let info = match batch::validate(bytes, BATCH_BYTES_LIMIT_MAX, Origin::Replica) {
        Ok(info) => info,
        Err(error) => {
            return Ok(Next::Stop(format!("invalid batch at position {position}: {error}")));
        }
    };
    // Appends assign offsets densely (a replica's batches must start at the log end too),
    // so each batch starts exactly where its predecessor ended. The base offset is not
    // covered by the CRC: this is the check that catches it torn or flipped.
    let relative_last = info.last_offset() - segment.base_offset();
    if info.base_offset != segment.next_offset() || relative_last > i64::from(u32::MAX) {
        return Ok(Next::Stop(format!(
            "batch at position {position} has base offset {}, expected {} and within the segment",
            info.base_offset,
            segment.next_offset()
        )));
    }
    Ok(Next::Batch(info))
}

/// After a scan: cuts the file after the last valid batch, rewrites both index files from
/// the rebuilt indexes and syncs all three. Returns the error that kept the index files from
/// being rewritten for want of space, if one did.
async fn cut_after_valid_batches<D: Disk>(
    segment: &mut Segment<D>,
    outcome: &ScanOutcome,
) -> Result<Option<String>> {
    if outcome.invalid_bytes > 0 {
        warn!(
            path = %segment.log().path().display(),
            position = outcome.valid_bytes,
            cut_bytes = outcome.invalid_bytes,
            reason = outcome.stop_reason.as_deref().unwrap_or(""),
            "truncating segment at the first invalid byte"
        );
        segment.cut_log(outcome.valid_bytes)?;
    }
    // The cut itself frees space and must happen; only the rewritten index files may wait
    // for space (the segment is served from its in-memory indexes meanwhile).
    match segment.rewrite_indexes_and_sync().await {
        Err(error) if crate::error::out_of_space(error.kind()) => {
            warn!(path = %segment.log().path().display(), %error, "no space to rewrite the segment's indexes: served from memory until space returns");
            Ok(Some(error.to_string()))
        }
        other => other.map(|()| None).map_err(Into::into),
    }
}

/// Opens a segment trusting its indexes, falling back to a full scan if anything disagrees.
/// Returns the scan outcome when a scan ran.
pub(crate) async fn open_trusted<D: Disk>(segment: &mut Segment<D>) -> Result<Option<ScanOutcome>> {
    match load_indexes(segment).await {
        Ok(()) => Ok(None),
        Err(reason) => {
            info!(path = %segment.log().path().display(), %reason, "rebuilding segment indexes from the log");
            scan_segment(segment, true).await.map(Some)
        }
    }
}

async fn load_indexes<D: Disk>(segment: &mut Segment<D>) -> std::result::Result<(), String> {
    let file_size = segment.log().len().await.map_err(|e| e.to_string())?;
    segment.read_indexes(file_size).await?;
    if let Some(reason) = segment.load_tail(file_size).await.map_err(|e| e.to_string())? {
        return Err(reason);
    }
    if segment.time_index().last().is_some_and(|e| e.offset >= segment.next_offset()) {
        return Err(".timeindex: entry past the log end".to_string());
    }
    Ok(())
}

/// Removes files in `dir` that belong to no segment: indexes without a `.log`, temp files.
pub(crate) async fn remove_orphans<D: Disk>(
    disk: &D,
    dir: &Path,
    names: &[String],
    bases: &[i64],
) -> Result<()> {
    for name in names {
        let orphan_index = ["index", "timeindex", "txnindex"].iter().any(|extension| {
            name.strip_suffix(&format!(".{extension}"))
                .and_then(|stem| stem.parse::<i64>().ok())
                .is_some_and(|base| !bases.contains(&base))
        });
        if orphan_index || name.ends_with(".tmp") {
            warn!(path = %dir.join(name).display(), "removing orphaned file");
            disk.remove_file(&dir.join(name)).await?;
        }
    }
    Ok(())
}
