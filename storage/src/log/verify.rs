//! Checking the whole log against itself, for tests and tools: every batch's CRC, and every
//! in-memory index entry against an index rebuilt from the log. Reads only; a copy of each
//! segment is scanned, never the segment the log holds.

use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::index::TimeIndex;
use crate::recovery;
use crate::segment::Segment;

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Checks the whole log against itself: every batch's CRC, and every in-memory and
    /// on-disk index entry against an index rebuilt from the log. For tests and tools.
    pub async fn verify(&mut self) -> Result<()> {
        self.check_usable()?;
        for i in 0..self.segments.len() {
            self.verify_segment(i).await?;
        }
        Ok(())
    }

    /// Segment `i` against a copy rebuilt by a scan of its file: the same bytes, all valid,
    /// the same next offset and offset index, and a time index whose every entry is true.
    async fn verify_segment(&self, i: usize) -> Result<()> {
        let segment = &self.segments[i];
        let mut copy = Segment::open_files(
            &self.disk,
            &self.dir,
            segment.base_offset(),
            false,
            self.config.index_interval_bytes,
            0,
        )
        .await?;
        let outcome = recovery::scan_segment(&mut copy, false).await?;
        let size = segment.size();
        if outcome.valid_bytes != size || outcome.invalid_bytes != 0 {
            return Err(mismatch(
                &copy,
                &format!("scan found {outcome:?}, the log holds {size} bytes"),
            ));
        }
        if copy.next_offset() != segment.next_offset() {
            return Err(mismatch(&copy, "next offset differs from a scan"));
        }
        if copy.index().entries() != segment.index().entries() {
            return Err(mismatch(&copy, "offset index differs from a rebuild"));
        }
        check_time_index(&copy, segment.time_index()).await
    }
}

/// Time entries need not equal a rebuild (a sealed segment reopened and appended to keeps its
/// seal entry), but each must be true: every batch of `copy` up to the one it names has
/// timestamps at most its timestamp.
async fn check_time_index<D: Disk>(copy: &Segment<D>, time_index: &TimeIndex) -> Result<()> {
    let mut running_max = crate::batch::NO_TIMESTAMP;
    let mut entries = time_index.entries().iter().peekable();
    let mut position = 0;
    while position < copy.size() {
        for header in copy.headers_at(position).await? {
            running_max = running_max.max(header.max_timestamp);
            while let Some(entry) = entries.next_if(|e| e.offset <= header.base_offset) {
                if entry.offset != header.base_offset || running_max > entry.timestamp {
                    return Err(mismatch(
                        copy,
                        &format!("time index entry {entry:?} is false at the batch {header:?}"),
                    ));
                }
            }
            position = header.position + header.size;
        }
    }
    if let Some(entry) = entries.next() {
        return Err(mismatch(copy, &format!("time index entry {entry:?} names no batch")));
    }
    Ok(())
}

/// The log disagrees with what a scan of its file found.
fn mismatch<D: Disk>(copy: &Segment<D>, what: &str) -> StorageError {
    StorageError::Corrupt {
        path: copy.log().path().to_path_buf(),
        position: copy.size(),
        reason: what.to_string(),
    }
}
