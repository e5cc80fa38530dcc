//! The log's aborted transactions (`txn_index.rs`): loaded from the segments' `.txnindex`
//! files on open, appended when an abort marker is written, cut with the log, and gone
//! with their segments.
//!
//! Invariants: `aborted` holds `(segment base, entry)` in marker order; every entry's marker
//! lies in the log (below the log end) and in the segment it is filed under; the file of a
//! segment holds exactly that segment's entries once `append_aborted` returns (synced).

use tracing::warn;

use super::PartitionLog;
use crate::clock::Clock;
use crate::disk::{Disk, DiskFile};
use crate::error::Result;
use crate::segment::segment_path;
use crate::txn_index::{decode_file, AbortedTxn, ENTRY_BYTES};

/// Largest `.txnindex` file read on open: 2^20 aborted transactions in one segment.
const TXN_INDEX_BYTES_MAX: u64 = (ENTRY_BYTES as u64) << 20;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// Reads every segment's `.txnindex`. Entries whose marker is not in the log (a crash cut
    /// the log below it) and a torn last entry are dropped, and their file rewritten.
    pub(super) async fn load_aborted(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let bases: Vec<i64> = self.segments.iter().map(|s| s.base_offset()).collect();
        for base in bases {
            let path = segment_path(&self.dir, base, "txnindex");
            let Some(bytes) = self.disk.read_file(&path, TXN_INDEX_BYTES_MAX).await? else {
                continue;
            };
            let (entries, whole) = decode_file(&bytes);
            let kept: Vec<AbortedTxn> = entries
                .iter()
                .copied()
                .filter(|e| e.last_offset < end && e.last_offset >= base)
                .collect();
            if !whole || kept.len() != entries.len() {
                warn!(path = %path.display(), entries = entries.len(), kept = kept.len(), whole, "aborted-transaction index had entries past the log end or a torn entry: rewritten");
                self.aborted.extend(kept.iter().map(|e| (base, *e)));
                self.rewrite_txn_index(base).await?;
            } else {
                self.aborted.extend(kept.iter().map(|e| (base, *e)));
            }
        }
        self.aborted.sort_by_key(|(_, e)| e.last_offset);
        Ok(())
    }

    /// Files an aborted transaction (its marker already appended), durably.
    pub async fn append_aborted(&mut self, txn: AbortedTxn) -> Result<()> {
        self.check_usable()?;
        let Some(segment) = self.segments.iter().rev().find(|s| s.base_offset() <= txn.last_offset)
        else {
            return Ok(());
        };
        let base = segment.base_offset();
        let path = segment_path(&self.dir, base, "txnindex");
        let result: std::io::Result<()> = async {
            let file = self.disk.open_rw(&path, true).await?;
            let len = file.len().await?;
            // Whole entries only: a torn entry a crash left is overwritten.
            let at = len - len % ENTRY_BYTES as u64;
            let (written, _) = file.write_all_at(txn.encode().to_vec(), at).await;
            written?;
            file.sync_data().await?;
            file.close().await?;
            if len == 0 {
                self.disk.sync_dir(&self.dir).await?;
            }
            Ok(())
        }
        .await;
        self.guard(result.map_err(crate::error::StorageError::from))?;
        // In marker order, whatever order the appends came in.
        let at = self.aborted.partition_point(|(_, e)| e.last_offset <= txn.last_offset);
        self.aborted.insert(at, (base, txn));
        Ok(())
    }

    /// The aborted transactions a read of `[from, upper)` must be told of: those whose
    /// marker is at or after `from` and whose first record is below `upper` (Kafka's
    /// `collectAbortedTxns`).
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|(_, e)| e.last_offset < from);
        self.aborted[start..].iter().map(|(_, e)| *e).filter(|e| e.first_offset < upper).collect()
    }

    /// Forgets the entries of segments that are gone (retention; their files went with them).
    pub(super) fn forget_aborted_below(&mut self, first_base: i64) {
        self.aborted.retain(|(base, _)| *base >= first_base);
    }

    /// After a truncation to `end`: entries whose marker was cut go, from memory and file.
    pub(super) async fn cut_aborted_from(&mut self, end: i64) -> Result<()> {
        let cut: Vec<i64> =
            self.aborted.iter().filter(|(_, e)| e.last_offset >= end).map(|(b, _)| *b).collect();
        if cut.is_empty() {
            return Ok(());
        }
        self.aborted.retain(|(_, e)| e.last_offset < end);
        let mut bases = cut;
        bases.dedup();
        for base in bases {
            if self.segments.iter().any(|s| s.base_offset() == base) {
                self.rewrite_txn_index(base).await?;
            }
        }
        Ok(())
    }

    /// Writes the segment's `.txnindex` with the entries in memory (removes it if none).
    async fn rewrite_txn_index(&mut self, base: i64) -> Result<()> {
        let path = segment_path(&self.dir, base, "txnindex");
        let bytes: Vec<u8> =
            self.aborted.iter().filter(|(b, _)| *b == base).flat_map(|(_, e)| e.encode()).collect();
        let result = if bytes.is_empty() {
            async {
                self.disk.remove_file(&path).await?;
                self.disk.sync_dir(&self.dir).await
            }
            .await
        } else {
            self.disk.write_file_atomic(&path, bytes).await
        };
        self.guard(result.map_err(crate::error::StorageError::from))
    }

    /// The bases of the segments that have aborted transactions filed (the cleaner does not
    /// merge them into others, so their files keep their names).
    pub(super) fn segments_with_aborted(&self) -> Vec<i64> {
        let mut bases: Vec<i64> = self.aborted.iter().map(|(b, _)| *b).collect();
        bases.dedup();
        bases
    }
}
