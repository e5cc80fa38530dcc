//! Looking up offsets by time (ListOffsets by timestamp).
//!
//! Invariants: the walk starts from an offset index entry that names the batch at its
//! position, and from a time index entry that every batch up to it agrees with; either
//! disagreement is corruption, answered by rebuilding the segment's indexes once.

use tracing::warn;

use crate::batch;
use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::recovery;

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// The first offset whose record timestamp is at least `timestamp`, with that timestamp
    /// (ListOffsets by time). Exact within uncompressed batches; for a compressed batch the
    /// answer is the batch's base offset and max timestamp. `None` if every record is older.
    pub async fn offset_for_timestamp(&mut self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        self.check_usable()?;
        let Some(i) = self.segments.iter().position(|s| s.max_timestamp() >= timestamp) else {
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
        let time_entry = segment.time_index().lookup_before(timestamp);
        let start_offset = time_entry.map_or(segment.base_offset(), |e| e.offset);
        let entry = segment.index().lookup(start_offset);
        let mut position = entry.position;
        while position < segment.size() {
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
                        segment.log().read_at(header.position, header.size as usize).await?;
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
}
