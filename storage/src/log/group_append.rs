//! Group append: the record sets of several producers written with one vectored write.
//!
//! Invariants: each set is checked on its own (size, CRC and records, before the write),
//! so a bad one is refused alone; the admitted sets get consecutive offsets in the order
//! given; a failed write fails every admitted set (and poisons the log).

use crate::batch::{BatchInfo, Origin};
use crate::clock::Clock;
use crate::config::APPEND_BYTES_MAX;
use crate::disk::Disk;
use crate::error::{Result, StorageError};

use super::write::{assign_offsets, push_stamped_pieces, Pieces};
use super::{AppendInfo, PartitionLog};

/// The sets of a group that passed their checks and were admitted, in order.
struct Admitted {
    /// (set index, its batches).
    sets: Vec<(usize, Vec<BatchInfo>)>,
    /// Their bytes and offsets in total.
    size: u64,
    offsets: i64,
}

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
        admit: impl FnMut(usize, i64, i64) -> bool,
    ) -> Vec<Option<Result<AppendInfo>>> {
        let count = sets.len();
        let size = sets.iter().map(|s| s.len() as u64).sum();
        if let Err(error) = self.check_room(Origin::Client, size).await {
            let reason = error.to_string();
            let mut first = Some(error);
            return (0..count)
                .map(|_| {
                    Some(Err(first.take().unwrap_or_else(|| StorageError::Full {
                        dir: self.dir.clone(),
                        reason: reason.clone(),
                    })))
                })
                .collect();
        }
        let mut results: Vec<Option<Result<AppendInfo>>> = (0..count).map(|_| None).collect();
        let mut admitted = self.check_and_admit(&sets, &mut results, admit);
        if !admitted.sets.is_empty() {
            match self.write_group(&sets, &mut admitted, leader_epoch).await {
                Ok(()) => report_appended(&sets, &admitted, &mut results),
                Err(error) => self.report_failed(error, &admitted, &mut results),
            }
        }
        results
    }

    /// Checks each set and asks `admit` about those that pass, with the offsets they will
    /// get; a set refused by its checks gets its error in `results`.
    fn check_and_admit(
        &self,
        sets: &[bytes::Bytes],
        results: &mut [Option<Result<AppendInfo>>],
        mut admit: impl FnMut(usize, i64, i64) -> bool,
    ) -> Admitted {
        let mut admitted = Admitted { sets: Vec::new(), size: 0, offsets: 0 };
        for (n, set) in sets.iter().enumerate() {
            let set_size = set.len() as u64;
            if admitted.size + set_size > APPEND_BYTES_MAX {
                results[n] = Some(Err(StorageError::AppendTooLarge {
                    size: admitted.size + set_size,
                    max: APPEND_BYTES_MAX,
                }));
                continue;
            }
            match self.check_batches(set, Origin::Client, true) {
                Ok((infos, set_offsets)) => {
                    let base_offset = self.log_end_offset() + admitted.offsets;
                    if admit(n, base_offset, base_offset + set_offsets - 1) {
                        admitted.size += set_size;
                        admitted.offsets += set_offsets;
                        admitted.sets.push((n, infos));
                    }
                }
                Err(error) => results[n] = Some(Err(error)),
            }
        }
        admitted
    }

    /// Stamps the admitted sets with consecutive offsets and writes them in one vectored write.
    async fn write_group(
        &mut self,
        sets: &[bytes::Bytes],
        admitted: &mut Admitted,
        leader_epoch: i32,
    ) -> Result<()> {
        let now = self.make_room(admitted.size, admitted.offsets).await?;
        let mut next = self.log_end_offset();
        let append_time = self.config.log_append_time.then(|| self.clock.now_ms());
        let mut pieces: Vec<bytes::Bytes> = Vec::new();
        let mut all: Vec<BatchInfo> = Vec::new();
        for (n, infos) in &mut admitted.sets {
            next = assign_offsets(infos, next, leader_epoch, append_time);
            push_stamped_pieces(&sets[*n], infos, &mut pieces);
            all.extend_from_slice(infos);
        }
        self.write_batches(Pieces::Vectored(pieces), None, &all).await?;
        self.flush_by_policy(now).await
    }

    /// A failed group write fails every admitted set: the first reports the failure itself,
    /// the others what it left behind (the latched poison after an I/O failure, else
    /// `GroupWriteFailed` naming the failure).
    fn report_failed(
        &self,
        error: StorageError,
        admitted: &Admitted,
        results: &mut [Option<Result<AppendInfo>>],
    ) {
        let reason = error.to_string();
        let mut first = Some(error);
        for (n, _) in &admitted.sets {
            let error = match first.take() {
                Some(error) => error,
                None => self.check_usable().err().unwrap_or_else(|| {
                    if self.is_full() {
                        StorageError::Full { dir: self.dir.clone(), reason: reason.clone() }
                    } else {
                        StorageError::GroupWriteFailed {
                            dir: self.dir.clone(),
                            reason: reason.clone(),
                        }
                    }
                }),
            };
            results[*n] = Some(Err(error));
        }
    }
}

/// A written group: each admitted set's result is what its batches got.
fn report_appended(
    sets: &[bytes::Bytes],
    admitted: &Admitted,
    results: &mut [Option<Result<AppendInfo>>],
) {
    for (n, infos) in &admitted.sets {
        results[*n] = Some(Ok(AppendInfo::of(infos, sets[*n].len() as u64)));
    }
}
