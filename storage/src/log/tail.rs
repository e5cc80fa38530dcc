//! The batch headers at the end of the log, or from an offset on, for state that the broker
//! rebuilds on open (idempotent producers' last sequences, open transactions). Reads
//! headers only, and a control batch's first record (its type).

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
    pub attributes: i16,
    /// A control batch's type (`batch::control_type`: 0 abort, 1 commit); `None` for data.
    pub control_type: Option<i16>,
}

impl BatchSummary {
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
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
        walk_segment(segment, start, |summary| out.push(summary)).await?;
        Ok(out)
    }

    /// Visits the headers of every batch that holds offsets at or after `offset`, oldest
    /// first, to the log end.
    pub async fn batches_from(
        &mut self,
        offset: i64,
        mut visit: impl FnMut(BatchSummary),
    ) -> Result<()> {
        self.check_usable()?;
        let first = self.segments.iter().rposition(|s| s.base_offset() <= offset).unwrap_or(0);
        let mut result = Ok(());
        for segment in &self.segments[first..] {
            let start = segment.index().lookup(offset).position;
            result = walk_segment(segment, start, |summary| {
                if summary.last_offset >= offset {
                    visit(summary);
                }
            })
            .await;
            if result.is_err() {
                break;
            }
        }
        self.guard(result)
    }
}

/// Visits the batches of `segment` from byte `start` (a batch boundary) to its end.
async fn walk_segment<D: Disk>(
    segment: &crate::segment::Segment<D>,
    start: u64,
    mut visit: impl FnMut(BatchSummary),
) -> Result<()> {
    {
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
                let control_type = if header.is_control() {
                    match window.get(at..at + size as usize) {
                        Some(whole) => crate::batch::control_type(whole),
                        // Read again from its start, whole this time (control batches are
                        // a few dozen bytes; a window holds many).
                        None if at > 0 => break,
                        None => None,
                    }
                } else {
                    None
                };
                visit(BatchSummary {
                    base_offset: header.base_offset.get(),
                    last_offset: header.last_offset(),
                    record_count: header.records_count.get(),
                    producer_id: header.producer_id.get(),
                    producer_epoch: header.producer_epoch.get(),
                    base_sequence: header.base_sequence.get(),
                    max_timestamp: header.max_timestamp.get(),
                    attributes: header.attributes.get(),
                    control_type,
                });
                at += size as usize;
            }
            if at == 0 {
                return Err(segment
                    .corrupt(position, "no whole batch header in the tail window".to_string()));
            }
            position += at as u64;
        }
        Ok(())
    }
}
