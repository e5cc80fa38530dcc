//! A partition's side of transactions: the coordinator's markers (commit or abort) appended
//! as control batches, the aborted transactions filed in the log's `.txnindex`, the last
//! stable offset, and the state rebuilt on open.
//!
//! A restart must find every transaction still open here (its first offset bounds the LSO,
//! and an abort's entry needs it). Kafka keeps producer snapshots; Fjord keeps one number,
//! `TXN_START_FILE`: an offset at or below the first offset of every transaction open here,
//! and at or below the marker of every abort whose entry might not be durable. The open
//! scans batch headers from it. It is written (durably) before the first transactional
//! batch a partition ever takes, and moved up by the upkeep as transactions end: a new
//! transaction starts at the log end, which is never below the saved offset, so the file
//! never needs to move down. An abort's entry is synced before its transaction counts as
//! ended, so an upkeep never moves the offset past an abort without a durable entry.

use bytes::Bytes;
use fjord_storage::batch::{self, CONTROL_ABORT, CONTROL_COMMIT};
use fjord_storage::txn_index::AbortedTxn;
use fjord_storage::{Disk, PartitionLog, ReadResult, StorageError};

use super::{AppendError, Partition};

/// The file holding where a restart scans for open transactions (an offset, as text).
pub(crate) const TXN_START_FILE: &str = "transactions-start";
/// Largest `TXN_START_FILE` read.
const TXN_START_FILE_BYTES_MAX: u64 = 64;

impl Partition {
    /// The offset read_committed consumers read below: the first offset of the oldest
    /// transaction not yet stable, or the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        match self.txns.borrow_mut().first_unstable(high_watermark) {
            Some(first) => first.min(high_watermark),
            None => high_watermark,
        }
    }

    /// A read below `end_offset`, with the aborted transactions a read_committed consumer
    /// must drop among the records it gets (those overlapping `[offset, end_offset)`).
    pub async fn read_committed(
        &self,
        offset: i64,
        max_bytes: u64,
        end_offset: i64,
    ) -> Result<(ReadResult, Vec<AbortedTxn>), StorageError> {
        let mut log = self.log.lock().await;
        let read = log.read_below(offset, max_bytes, end_offset).await?;
        let aborted = log.aborted_between(offset, end_offset);
        Ok((read, aborted))
    }

    /// Appends the marker that ends `producer_id`'s transaction here (WriteTxnMarkers), as
    /// this partition's leader in `leader_epoch`; returns the marker's offset. A marker of
    /// an epoch older than the producer's newest is refused (a fenced coordinator's).
    pub async fn write_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<i64, AppendError> {
        if let Some(current) = self.producers.borrow().epoch_of(producer_id) {
            if epoch < current {
                return Err(AppendError::StaleEpoch { current });
            }
        }
        let control_type = if commit { CONTROL_COMMIT } else { CONTROL_ABORT };
        let marker = batch::build::control_batch(
            producer_id,
            epoch,
            control_type,
            coordinator_epoch,
            crate::clock::now_ms(),
        );
        let appended = self.append(Bytes::from(marker), leader_epoch).await?;
        let offset = appended.base_offset;
        // Before any other task runs: a batch checked before the marker opens nothing now,
        // and none joins the transaction while its abort entry is written.
        self.txn_verified.borrow_mut().remove(&producer_id);
        self.txns.borrow_mut().closing(producer_id);
        self.producers.borrow_mut().bump_epoch(producer_id, epoch);
        let first = self.txns.borrow().open_of(producer_id).map(|t| t.first_offset);
        if let (false, Some(first_offset)) = (commit, first) {
            let entry = AbortedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
                last_stable_offset: self.last_stable_offset(),
            };
            self.log.lock().await.append_aborted(entry).await?;
        }
        // Ended only once its abort entry is durable (the module's rule).
        self.txns.borrow_mut().on_marker(producer_id, offset);
        tracing::debug!(partition = ?self, producer_id, epoch, commit, offset, "transaction marker written");
        Ok(offset)
    }

    /// A follower copying a transactional batch: its transaction opens here, or, for a
    /// marker, ends (an abort filed in this replica's own `.txnindex`).
    pub(super) async fn follow_transaction(
        &self,
        log: &mut PartitionLog,
        producer_id: i64,
        epoch: i16,
        base_offset: i64,
        last_offset: i64,
        control: Option<Option<i16>>,
    ) -> Result<(), StorageError> {
        match control {
            None => {
                self.txns.borrow_mut().on_data(producer_id, epoch, base_offset, last_offset);
            }
            Some(control_type) => {
                self.producers.borrow_mut().bump_epoch(producer_id, epoch);
                let first = self.txns.borrow().open_of(producer_id).map(|t| t.first_offset);
                if let (Some(CONTROL_ABORT), Some(first_offset)) = (control_type, first) {
                    let entry = AbortedTxn {
                        producer_id,
                        first_offset,
                        last_offset: base_offset,
                        last_stable_offset: self.last_stable_offset(),
                    };
                    log.append_aborted(entry).await?;
                }
                self.txns.borrow_mut().on_marker(producer_id, base_offset);
            }
        }
        Ok(())
    }

    /// On open: the transactions open here and the aborts whose entries a crash lost, from
    /// the batch headers after `TXN_START_FILE`'s offset (nothing to do without the file).
    pub(super) async fn rebuild_transactions(&self) -> Result<(), StorageError> {
        let path = self.dir.join(TXN_START_FILE);
        let saved = fjord_storage::io::read_file(&path, TXN_START_FILE_BYTES_MAX)
            .await?
            .and_then(|bytes| String::from_utf8_lossy(&bytes).trim().parse::<i64>().ok());
        let Some(start) = saved else { return Ok(()) };
        self.txn_start_saved.set(Some(start));
        let mut log = self.log.lock().await;
        let mut found = Vec::new();
        let from = start.max(log.log_start_offset());
        log.batches_from(from, |summary| {
            if summary.is_transactional() && summary.producer_id >= 0 {
                found.push(summary);
            }
        })
        .await?;
        let (mut opened, mut aborts) = (0usize, 0usize);
        for summary in found {
            let producer_id = summary.producer_id;
            let Some(control_type) = summary.control_type else {
                if summary.attributes & 0x20 == 0 {
                    let txns = &mut self.txns.borrow_mut();
                    opened += usize::from(txns.on_data(
                        producer_id,
                        summary.producer_epoch,
                        summary.base_offset,
                        summary.last_offset,
                    ));
                }
                continue;
            };
            let first = self.txns.borrow().open_of(producer_id).map(|t| t.first_offset);
            let marker = summary.base_offset;
            if let (CONTROL_ABORT, Some(first_offset)) = (control_type, first) {
                let filed =
                    log.aborted_between(marker, i64::MAX).iter().any(|e| e.last_offset == marker);
                if !filed {
                    aborts += 1;
                    let entry = AbortedTxn {
                        producer_id,
                        first_offset,
                        last_offset: marker,
                        last_stable_offset: first_offset,
                    };
                    log.append_aborted(entry).await?;
                }
            }
            self.producers.borrow_mut().bump_epoch(producer_id, summary.producer_epoch);
            self.txns.borrow_mut().on_marker(producer_id, marker);
        }
        if opened > 0 || aborts > 0 {
            tracing::info!(partition = ?self, from = start, transactions_seen = opened, aborts_filed_again = aborts, "transactions rebuilt from the log");
        }
        Ok(())
    }

    /// Writes `TXN_START_FILE` (durably: a restart relies on it).
    pub(super) async fn save_txn_start(&self, offset: i64) -> Result<(), StorageError> {
        let path = self.dir.join(TXN_START_FILE);
        fjord_storage::RealDisk.write_file_atomic(&path, offset.to_string().into_bytes()).await?;
        self.txn_start_saved.set(Some(offset));
        Ok(())
    }

    /// From the upkeep: moves `TXN_START_FILE` up to where the transactions still open
    /// start (or the log end), so a restart scans only what it must.
    pub(super) async fn advance_txn_start(&self) -> Result<(), StorageError> {
        let Some(saved) = self.txn_start_saved.get() else { return Ok(()) };
        // Transactions whose markers are below the high watermark are forgotten first (an
        // upkeep is also where a replica nobody fetches from prunes them), and the offset
        // never passes what is durable: a marker still in the page cache could be lost
        // with its abort entry's reason to exist.
        let _ = self.last_stable_offset();
        let durable = self.durable_offset.get();
        let start = self.txns.borrow().scan_start(self.log_end_offset().min(durable));
        if start > saved {
            self.save_txn_start(start).await?;
        }
        Ok(())
    }
}
