//! Group append: the record sets of several producers written with one vectored write.
//!
//! Invariants: each set is checked on its own (size, CRC and records, before the write),
//! so a bad one is refused alone; the admitted sets get consecutive offsets in the order
//! given; a failed write fails every admitted set (and poisons the log).

use std::io;

use bytes::BytesMut;

use crate::batch::{self, BatchInfo, Origin};
use crate::clock::Clock;
use crate::config::APPEND_BYTES_MAX;
use crate::disk::Disk;
use crate::error::{Result, StorageError};

use super::write::{Pieces, STAMPED_BYTES};
use super::{AppendInfo, PartitionLog};

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Appends the record sets of several producers with one vectored write (group append).
    /// Each set is checked on its own (size, CRC and records, before the write), so a bad
    /// one is refused alone; the others get consecutive offsets in the order given.
    ///
    /// `admit(n, base_offset, last_offset)` is asked, in order, about each set `n` that
    /// passed its checks, with the offsets it will get if written: it returns whether to write it
    /// (the caller's own checks, such as idempotent producers' sequence numbers, which must
    /// see the sets admitted before it). Returns one entry per set: `None` for a set
    /// `admit` turned down, else its result. A set of `OVERLAPPED_CHECK_BYTES_MIN` or more
    /// belongs in `append_shared` instead; sets past `APPEND_BYTES_MAX` in total are refused.
    pub async fn append_shared_group(
        &mut self,
        sets: Vec<bytes::Bytes>,
        leader_epoch: i32,
        mut admit: impl FnMut(usize, i64, i64) -> bool,
    ) -> Vec<Option<Result<AppendInfo>>> {
        let count = sets.len();
        if self.check_poison().is_err() {
            return (0..count)
                .map(|_| Some(Err(self.check_poison().expect_err("poisoned"))))
                .collect();
        }
        let mut results: Vec<Option<Result<AppendInfo>>> = (0..count).map(|_| None).collect();
        // (set index, its batches) for the sets that pass their checks and are admitted.
        let mut accepted: Vec<(usize, Vec<BatchInfo>)> = Vec::new();
        let mut size = 0u64;
        let mut offsets = 0i64;
        for (n, set) in sets.iter().enumerate() {
            let set_size = set.len() as u64;
            if size + set_size > APPEND_BYTES_MAX {
                results[n] = Some(Err(StorageError::AppendTooLarge {
                    size: size + set_size,
                    max: APPEND_BYTES_MAX,
                }));
                continue;
            }
            match self.check_batches(set, Origin::Client, true) {
                Ok((infos, set_offsets)) => {
                    let base_offset = self.log_end_offset() + offsets;
                    if admit(n, base_offset, base_offset + set_offsets - 1) {
                        size += set_size;
                        offsets += set_offsets;
                        accepted.push((n, infos));
                    }
                }
                Err(error) => results[n] = Some(Err(error)),
            }
        }
        if !accepted.is_empty() {
            if let Err(error) =
                self.write_group(&sets, &mut accepted, size, offsets, leader_epoch).await
            {
                // The first set reports the failure itself; the others what it left behind
                // (the log is poisoned after a failed write).
                let mut first = Some(error);
                for (n, _) in &accepted {
                    let error = match first.take() {
                        Some(error) => error,
                        None => self.check_poison().err().unwrap_or_else(|| {
                            StorageError::Io(io::Error::other("the group append failed"))
                        }),
                    };
                    results[*n] = Some(Err(error));
                }
            } else {
                for (n, infos) in &accepted {
                    let last = infos.last().expect("a set has at least one batch");
                    results[*n] = Some(Ok(AppendInfo {
                        base_offset: infos[0].base_offset,
                        last_offset: last.base_offset + i64::from(last.last_offset_delta),
                        max_timestamp: infos
                            .iter()
                            .map(|i| i.max_timestamp)
                            .max()
                            .unwrap_or(batch::NO_TIMESTAMP),
                        batch_count: infos.len(),
                        bytes: sets[*n].len() as u64,
                    }));
                }
            }
        }
        results
    }

    /// Stamps the accepted sets with consecutive offsets and writes them in one vectored write.
    async fn write_group(
        &mut self,
        sets: &[bytes::Bytes],
        accepted: &mut [(usize, Vec<BatchInfo>)],
        size: u64,
        offsets: i64,
        leader_epoch: i32,
    ) -> Result<()> {
        let now = self.make_room(size, offsets).await?;
        let mut next = self.log_end_offset();
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let mut all: Vec<BatchInfo> = Vec::new();
        for (n, infos) in accepted.iter_mut() {
            let set = &sets[*n];
            let mut at = 0usize;
            for info in infos.iter_mut() {
                info.base_offset = next;
                info.partition_leader_epoch = leader_epoch;
                next += i64::from(info.last_offset_delta) + 1;
                let mut header = BytesMut::from(&set[at..at + STAMPED_BYTES]);
                batch::stamp_header(&mut header, info.base_offset, leader_epoch);
                pieces.push(header.freeze());
                pieces.push(set.slice(at + STAMPED_BYTES..at + info.size as usize));
                at += info.size as usize;
                all.push(*info);
            }
        }
        self.write_batches(Pieces::Vectored(pieces), None, &all).await?;
        self.flush_by_policy(now).await
    }
}
