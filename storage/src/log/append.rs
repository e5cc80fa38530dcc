//! Appends of one caller: a producer's batches in a buffer the log may stamp in place
//! (`append`), in a shared buffer it must not change (`append_shared`), or a leader's
//! batches copied by a replica, whose offsets are already assigned (`append_replicated`).
//!
//! Invariants: either every batch of a call is appended or none is; a producer's batches
//! get consecutive offsets from the log end and the caller's leader epoch, stamped before
//! the write; a replica's must already continue the log end, and are written unchanged.

use bytes::BytesMut;

use crate::batch::{self, BatchInfo, Origin};
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::Result;

use super::write::{assign_offsets, push_stamped_pieces, Pieces};
use super::PartitionLog;

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

    /// What to write for batches described by `infos` and, with `overlap`, the bytes whose
    /// contents a thread checks during the write. With `stamp`, their offsets and leader
    /// epoch (already in `infos`) are stamped: in place in an owned buffer; in copies of the
    /// header bytes, written beside the untouched rest, for a shared one.
    fn into_write(
        self,
        infos: &[BatchInfo],
        stamp: bool,
        overlap: bool,
    ) -> (Pieces, Option<bytes::Bytes>) {
        match self {
            AppendInput::Owned(mut batches) => {
                if stamp {
                    stamp_in_place(&mut batches, infos);
                }
                if overlap {
                    let frozen = batches.freeze();
                    (Pieces::Vectored(vec![frozen.clone()]), Some(frozen))
                } else {
                    (Pieces::Owned(batches), None)
                }
            }
            AppendInput::Shared(batches) => {
                let mut pieces = Vec::new();
                if stamp {
                    push_stamped_pieces(&batches, infos, &mut pieces);
                } else {
                    pieces.push(batches.clone());
                }
                (Pieces::Vectored(pieces), overlap.then_some(batches))
            }
        }
    }
}

/// Stamps each batch of `batches` with the base offset and leader epoch `infos` give it,
/// and its append time where `infos` says so.
fn stamp_in_place(batches: &mut BytesMut, infos: &[BatchInfo]) {
    let mut at = 0usize;
    for info in infos {
        batch::stamp(&mut batches[at..], info.base_offset, info.partition_leader_epoch);
        if info.stamp_append_time {
            let batch = &mut batches[at..at + info.size as usize];
            let (header, body) = batch.split_at_mut(batch::BATCH_HEADER_BYTES);
            batch::stamp_append_time(header, body, info.max_timestamp);
        }
        at += info.size as usize;
    }
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
    /// The time the log stamped the batches with (LogAppendTime), else -1 (Produce's
    /// `log_append_time_ms`).
    pub log_append_time: i64,
    pub batch_count: usize,
    pub bytes: u64,
}

impl AppendInfo {
    /// What appending the batches `infos` (stamped, non-empty), `bytes` in all, did.
    pub(super) fn of(infos: &[BatchInfo], bytes: u64) -> AppendInfo {
        let last = infos.last().expect("an append has at least one batch");
        AppendInfo {
            base_offset: infos[0].base_offset,
            last_offset: last.base_offset + i64::from(last.last_offset_delta),
            max_timestamp: infos
                .iter()
                .map(|i| i.max_timestamp)
                .max()
                .unwrap_or(batch::NO_TIMESTAMP),
            log_append_time: if last.stamp_append_time {
                last.max_timestamp
            } else {
                batch::NO_TIMESTAMP
            },
            batch_count: infos.len(),
            bytes,
        }
    }
}

impl<D: Disk, C: Clock> PartitionLog<D, C> {
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
        let size = input.len() as u64;
        let origin = if leader_epoch.is_some() { Origin::Client } else { Origin::Replica };
        self.check_room(origin, size).await?;
        // Large appends check CRCs and records on another core while the write runs; small
        // ones check first (handing work to a thread costs more than the check). Batches
        // stamped with their append time get a new CRC, so theirs is checked first.
        let append_time =
            (origin == Origin::Client && self.config.log_append_time).then(|| self.clock.now_ms());
        let overlap = size >= OVERLAPPED_CHECK_BYTES_MIN && append_time.is_none();
        let (mut infos, offsets) = self.check_batches(input.as_slice(), origin, !overlap)?;
        let now = self.make_room(size, offsets).await?;
        if let Some(epoch) = leader_epoch {
            assign_offsets(&mut infos, self.log_end_offset(), epoch, append_time);
        }
        let (write, check) = input.into_write(&infos, leader_epoch.is_some(), overlap);
        self.write_batches(write, check, &infos).await?;
        let appended = AppendInfo::of(&infos, size);
        self.flush_by_policy(now).await?;
        Ok(appended)
    }
}
