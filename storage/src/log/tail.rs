//! The batch headers at the end of the log, for state that the broker rebuilds on open
//! (idempotent producers' last sequences). Reads headers only, never record bytes.

use super::PartitionLog;
use crate::batch::BatchHeader;
use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::Result;

/// Header fields of one batch near the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The batch's largest timestamp, as its producer (or LogAppendTime) set it.
    pub max_timestamp: i64,
}

/// Bytes read at once while walking the tail.
const TAIL_READ_BYTES: u64 = 64 * 1024;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// The headers of the batches in about the last `bytes_max` bytes of the active
    /// segment, oldest first, starting at an index entry (a batch boundary).
    pub async fn tail_batches(&mut self, bytes_max: u64) -> Result<Vec<BatchSummary>> {
        self.check_usable()?;
        let result = self.tail_batches_unguarded(bytes_max).await;
        self.guard(result)
    }

    async fn tail_batches_unguarded(&self, bytes_max: u64) -> Result<Vec<BatchSummary>> {
        let segment = self.active();
        let start =
            segment.index().lookup_position(segment.size().saturating_sub(bytes_max)).position;
        let mut out = Vec::new();
        let mut position = start;
        while position < segment.size() {
            let window = segment
                .log()
                .read_at(position, TAIL_READ_BYTES.min(segment.size() - position) as usize)
                .await?;
            let mut at = 0usize;
            while let Some(header) = window.get(at..).and_then(BatchHeader::view) {
                let size = header.size();
                if size < crate::batch::BATCH_HEADER_BYTES as u64
                    || position + at as u64 + size > segment.size()
                {
                    return Err(segment.corrupt(
                        position + at as u64,
                        "implausible batch header in the tail".to_string(),
                    ));
                }
                out.push(BatchSummary {
                    base_offset: header.base_offset.get(),
                    last_offset: header.last_offset(),
                    record_count: header.records_count.get(),
                    producer_id: header.producer_id.get(),
                    producer_epoch: header.producer_epoch.get(),
                    base_sequence: header.base_sequence.get(),
                    max_timestamp: header.max_timestamp.get(),
                });
                at += size as usize;
            }
            if at == 0 {
                return Err(segment
                    .corrupt(position, "no whole batch header in the tail window".to_string()));
            }
            position += at as u64;
        }
        Ok(out)
    }
}
