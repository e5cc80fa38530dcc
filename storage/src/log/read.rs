//! Reads: whole batches from the one holding an offset, as file regions across segments.
//!
//! Invariants: a read returns at least one batch unless it starts at the log end; it never
//! returns bytes past a segment's size; an index that disagrees with its log is rebuilt
//! once from the log and the read retried (a read never trusts a false index entry).

use std::rc::Rc;

use tracing::warn;

use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::recovery;
use crate::segment::Region;

use super::{FileRegion, PartitionLog, ReadResult};

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            dir: self.dir.clone(),
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// The index of the segment that holds `offset` (the last with base <= offset).
    pub(super) fn segment_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1)
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
        self.check_usable()?;
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
                file: Rc::clone(segment.log()),
                segment_base_offset: segment.base_offset(),
                position,
                len,
                first_offset,
                next_offset,
            });
            remaining = remaining.saturating_sub(len);
            next = next_offset;
            if position + len < segment.size() || remaining == 0 {
                break;
            }
            i += 1;
        }
        Ok(result)
    }
}
