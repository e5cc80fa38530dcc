//! What every append path shares: checking its batches before the write, and writing them
//! after the last batch of the active segment.
//!
//! Invariants: the bytes written are exactly the batches counted; batches become part of
//! the segment (reads, indexes, size) only after the write succeeded and, for a large
//! append, after their contents passed the check that ran beside the write; a batch that
//! fails it is cut off the file again, so the log is unchanged.

use bytes::BytesMut;

use crate::batch::{self, BatchInfo, Origin};
use crate::clock::Clock;
use crate::config::APPEND_BYTES_MAX;
use crate::disk::Disk;
use crate::error::{BatchError, Result, StorageError};

use super::PartitionLog;

/// Header bytes a leader rewrites in every batch: baseOffset, batchLength (unchanged) and
/// partitionLeaderEpoch.
const STAMPED_BYTES: usize = 16;

/// What `write_batches` writes.
pub(super) enum Pieces {
    Owned(BytesMut),
    Vectored(Vec<bytes::Bytes>),
}

impl Pieces {
    fn len(&self) -> u64 {
        match self {
            Pieces::Owned(batches) => batches.len() as u64,
            Pieces::Vectored(pieces) => pieces.iter().map(|p| p.len() as u64).sum(),
        }
    }
}

/// A batch of an append whose contents failed the check: its index, its position in the
/// append, and why.
type ContentsError = (usize, u64, BatchError);

/// Checks the CRC and records of the batches `infos` in `copy` on another thread (the
/// write runs meanwhile): the first that fails is the answer.
fn spawn_contents_check(
    copy: bytes::Bytes,
    infos: &[BatchInfo],
) -> tokio::task::JoinHandle<std::result::Result<(), ContentsError>> {
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
        Ok(())
    })
}

/// Gives the batches `infos` consecutive offsets from `next` and the leader epoch, and with
/// `append_time` (a LogAppendTime log) that time as their max timestamp; returns the offset
/// after them.
pub(super) fn assign_offsets(
    infos: &mut [BatchInfo],
    mut next: i64,
    leader_epoch: i32,
    append_time: Option<i64>,
) -> i64 {
    for info in infos {
        info.base_offset = next;
        info.partition_leader_epoch = leader_epoch;
        if let Some(time) = append_time {
            info.max_timestamp = time;
            info.stamp_append_time = true;
        }
        next += i64::from(info.last_offset_delta) + 1;
    }
    next
}

/// Pushes the pieces that write `batches` stamped as `infos` says without changing them: each
/// batch's first `STAMPED_BYTES` from a stamped copy, the rest straight from `batches`; a
/// batch stamped with its append time has its whole header copied (its timestamp, type and
/// CRC change too).
pub(super) fn push_stamped_pieces(
    batches: &bytes::Bytes,
    infos: &[BatchInfo],
    pieces: &mut Vec<bytes::Bytes>,
) {
    let mut at = 0usize;
    for info in infos {
        let end = at + info.size as usize;
        let stamped =
            if info.stamp_append_time { batch::BATCH_HEADER_BYTES } else { STAMPED_BYTES };
        let mut header = BytesMut::from(&batches[at..at + stamped]);
        batch::stamp_header(&mut header, info.base_offset, info.partition_leader_epoch);
        if info.stamp_append_time {
            batch::stamp_append_time(&mut header, &batches[at + stamped..end], info.max_timestamp);
        }
        pieces.push(header.freeze());
        pieces.push(batches.slice(at + stamped..end));
        at = end;
    }
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Checks the batches of one append: its size, each batch's structure and, with
    /// `contents`, its CRC and records (large appends check those while the write runs);
    /// a replica's batches must also continue the log's offsets. Returns the batches and
    /// how many offsets they take.
    pub(super) fn check_batches(
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
        // A leader's batch is copied whatever this replica's size limit (Kafka's followers
        // ignore `max.message.bytes` too): the leader took it, maybe just before a lowered
        // limit reached it, and a follower that refused it could never catch up.
        let batch_bytes_max = match origin {
            Origin::Client => self.config.batch_bytes_max,
            Origin::Replica => crate::BATCH_BYTES_LIMIT_MAX,
        };
        while position < size {
            let index = infos.len();
            let rest = &bytes[position as usize..];
            let checked = if contents {
                batch::validate(rest, batch_bytes_max, origin)
            } else {
                batch::validate_structure(rest, batch_bytes_max, origin)
            };
            let info = checked
                .and_then(|info| match origin {
                    Origin::Client => self.check_timestamps(info, expected),
                    Origin::Replica => Ok(info),
                })
                .map_err(|source| StorageError::InvalidBatch { index, position, source })?;
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

    /// Refuses a producer's batch whose first or largest timestamp lies outside the window
    /// `timestamp_before_max_ms` / `timestamp_after_max_ms` around now (Kafka's
    /// `LogValidator.validateTimestamp`, which reads every record; Fjord reads the header).
    fn check_timestamps(
        &self,
        info: BatchInfo,
        offset: i64,
    ) -> std::result::Result<BatchInfo, BatchError> {
        let (before, after) =
            (self.config.timestamp_before_max_ms, self.config.timestamp_after_max_ms);
        // The broker's clock replaces the producer's timestamps: nothing to check (Kafka
        // checks only CreateTime).
        if self.config.log_append_time || (before.is_none() && after.is_none()) {
            return Ok(info);
        }
        let now = self.clock.now_ms();
        let bound =
            |ms: Option<u64>| ms.map_or(i64::MAX, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let earliest = now.saturating_sub(bound(before));
        let latest = now.saturating_add(bound(after));
        for timestamp in [info.first_timestamp, info.max_timestamp] {
            if timestamp >= 0 && !(earliest..=latest).contains(&timestamp) {
                return Err(BatchError::TimestampOutOfRange {
                    timestamp,
                    offset,
                    earliest,
                    latest,
                });
            }
        }
        Ok(info)
    }

    /// verifies their CRCs and records while the write runs, and a batch that fails is cut
    /// off the file again before anything counts it, so the log is unchanged.
    pub(super) async fn write_batches(
        &mut self,
        write: Pieces,
        check: Option<bytes::Bytes>,
        infos: &[BatchInfo],
    ) -> Result<()> {
        let check = check.map(|copy| spawn_contents_check(copy, infos));
        let end_before = self.active().size();
        let counted_bytes: u64 = infos.iter().map(|info| info.size).sum();
        assert_eq!(write.len(), counted_bytes, "an append writes the bytes of its batches");
        let preallocate = self.config.preallocate;
        let written = match write {
            Pieces::Owned(batches) => {
                self.active_mut().write_tail(batches, preallocate).await.map(|_| ())
            }
            Pieces::Vectored(pieces) => {
                self.active_mut().write_tail_vectored(pieces, preallocate).await
            }
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
                self.active_mut().write_behind().await;
                Ok(())
            }
            Some(Ok(Err((index, position, source)))) => {
                let cut = self.active_mut().cut_log(end_before).map_err(StorageError::from);
                self.guard(cut)?;
                Err(StorageError::InvalidBatch { index, position, source })
            }
            Some(Err(join_error)) => Err(self.poison_with(StorageError::CheckFailed {
                dir: self.dir.clone(),
                reason: join_error.to_string(),
            })),
        }
    }
}
