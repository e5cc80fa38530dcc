//! Appends of one caller: a producer's batches in a buffer the log may stamp in place
//! (`append`), in a shared buffer it must not change (`append_shared`), or a leader's
//! batches copied by a replica, whose offsets are already assigned (`append_replicated`).
//!
//! Invariants: either every batch of a call is appended or none is; a producer's batches
//! get consecutive offsets from the log end and the caller's leader epoch, stamped before
//! the write; a replica's must already continue the log end, and are written unchanged.

use bytes::BytesMut;

use crate::batch::{self, Origin};
use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::Result;

use super::write::{Pieces, STAMPED_BYTES};
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
    pub batch_count: usize,
    pub bytes: u64,
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
        self.check_poison()?;
        let size = input.len() as u64;
        let origin = if leader_epoch.is_some() { Origin::Client } else { Origin::Replica };
        // Large appends check CRCs and records on another core while the write runs; small
        // ones check first (handing work to a thread costs more than the check).
        let overlap = size >= OVERLAPPED_CHECK_BYTES_MIN;
        let (mut infos, offsets) = self.check_batches(input.as_slice(), origin, !overlap)?;

        let now = self.make_room(size, offsets).await?;
        // Stamp base offsets and the leader epoch: in place in an owned buffer; in copies of
        // the 16 header bytes (written beside the untouched rest) for a shared one.
        let mut next = self.log_end_offset();
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let (owned, shared) = match input {
            AppendInput::Owned(batches) => (Some(batches), None),
            AppendInput::Shared(batches) => (None, Some(batches)),
        };
        let mut owned = owned;
        let mut at = 0usize;
        for info in &mut infos {
            if let Some(epoch) = leader_epoch {
                info.base_offset = next;
                info.partition_leader_epoch = epoch;
                next += i64::from(info.last_offset_delta) + 1;
                match (&mut owned, &shared) {
                    (Some(batches), _) => batch::stamp(&mut batches[at..], info.base_offset, epoch),
                    (None, Some(batches)) => {
                        let mut header = BytesMut::from(&batches[at..at + STAMPED_BYTES]);
                        batch::stamp_header(&mut header, info.base_offset, epoch);
                        pieces.push(header.freeze());
                        pieces.push(batches.slice(at + STAMPED_BYTES..at + info.size as usize));
                    }
                    (None, None) => unreachable!("one of the two buffers"),
                }
            }
            at += info.size as usize;
        }
        let base_offset = infos[0].base_offset;
        let (write, check) = match (owned, shared) {
            (Some(batches), _) if !overlap => (Pieces::Owned(batches), None),
            (Some(batches), _) => {
                let frozen = batches.freeze();
                (Pieces::Vectored(vec![frozen.clone()]), Some(frozen))
            }
            (None, Some(batches)) => {
                if leader_epoch.is_none() {
                    pieces.push(batches.clone());
                }
                (Pieces::Vectored(pieces), overlap.then_some(batches))
            }
            (None, None) => unreachable!("one of the two buffers"),
        };
        self.write_batches(write, check, &infos).await?;
        let appended = AppendInfo {
            base_offset,
            last_offset: self.log_end_offset() - 1,
            max_timestamp: infos
                .iter()
                .map(|i| i.max_timestamp)
                .max()
                .unwrap_or(batch::NO_TIMESTAMP),
            batch_count: infos.len(),
            bytes: size,
        };
        self.flush_by_policy(now).await?;
        Ok(appended)
    }
}
