//! Transactions as one partition sees them: which producers have a transaction open here
//! (from their first transactional batch to their marker), the last stable offset (LSO)
//! that read_committed consumers read below, and the aborted transactions they drop.
//!
//! Kafka's `ProducerStateManager.firstUnstableOffset`: a transaction is unstable from its
//! first batch until its marker is below the high watermark (a marker the followers have
//! not copied yet could still be lost with this leader). The LSO is the smallest first
//! offset of an unstable transaction, or the high watermark when there is none.
//!
//! Invariants: a producer has at most one open transaction; `completed` holds transactions
//! whose marker is written but may not be below the high watermark yet, as
//! (producer id, first offset, marker offset).

use std::collections::HashMap;

/// Open transactions per partition, at most (a producer opens one at a time; producers per
/// partition are bounded by the producer table's limit).
pub const OPEN_TRANSACTIONS_MAX: usize = super::producer::PRODUCERS_PER_PARTITION_MAX;

/// A transaction open in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTxn {
    pub first_offset: i64,
    pub epoch: i16,
    /// The newest timestamp of its batches here (DescribeTransactions' start is the
    /// coordinator's; this is what DescribeProducers shows).
    pub last_offset: i64,
}

#[derive(Debug, Default)]
pub struct Transactions {
    open: HashMap<i64, OpenTxn>,
    completed: Vec<(i64, i64, i64)>,
    /// Producers whose marker is written and whose transaction ends once its abort entry
    /// is durable: no batch joins it meanwhile.
    closing: std::collections::HashSet<i64>,
}

impl Transactions {
    /// A transactional data batch of `producer_id` at `[base_offset, last_offset]`: opens
    /// its transaction here if it has none. Returns whether one was opened.
    pub fn on_data(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_offset: i64,
        last_offset: i64,
    ) -> bool {
        if let Some(open) = self.open.get_mut(&producer_id) {
            open.last_offset = open.last_offset.max(last_offset);
            open.epoch = open.epoch.max(epoch);
            return false;
        }
        if self.open.len() >= OPEN_TRANSACTIONS_MAX {
            tracing::warn!(
                producer_id,
                limit = OPEN_TRANSACTIONS_MAX,
                "too many open transactions in a partition; the oldest is left to its marker"
            );
        }
        self.open.insert(producer_id, OpenTxn { first_offset: base_offset, epoch, last_offset });
        true
    }

    /// The marker of `producer_id`'s transaction at `marker_offset`: the transaction ends
    /// here. Returns its first offset (`None`: it had no records here, or they are older
    /// than what this replica knows).
    pub fn on_marker(&mut self, producer_id: i64, marker_offset: i64) -> Option<i64> {
        self.closing.remove(&producer_id);
        let open = self.open.remove(&producer_id)?;
        self.completed.push((producer_id, open.first_offset, marker_offset));
        Some(open.first_offset)
    }

    /// The first offset that is not stable, given the high watermark (`None`: all is).
    /// Completed transactions whose marker is below `high_watermark` are forgotten.
    pub fn first_unstable(&mut self, high_watermark: i64) -> Option<i64> {
        self.completed.retain(|(_, _, marker)| *marker >= high_watermark);
        let open = self.open.values().map(|t| t.first_offset).min();
        let completed = self.completed.iter().map(|(_, first, _)| *first).min();
        match (open, completed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The smallest first offset of any transaction not yet stable, regardless of the high
    /// watermark; the log end if none (what a restart must scan from).
    pub fn scan_start(&self, log_end: i64) -> i64 {
        let open = self.open.values().map(|t| t.first_offset);
        let completed = self.completed.iter().map(|(_, first, _)| *first);
        open.chain(completed).min().unwrap_or(log_end).min(log_end)
    }

    /// After the log was cut at `offset`: transactions that started at or after it are gone,
    /// and those whose marker was cut are open again.
    pub fn truncate_from(&mut self, offset: i64) {
        self.open.retain(|_, t| t.first_offset < offset);
        let (reopened, kept): (Vec<_>, Vec<_>) =
            self.completed.drain(..).partition(|(_, _, marker)| *marker >= offset);
        self.completed = kept;
        // A transaction whose marker was cut is open again, until the leader's marker is
        // copied (a truncation is followed by the leader's records, markers included).
        for (producer_id, first, _) in reopened {
            if first < offset {
                let open = OpenTxn { first_offset: first, epoch: -1, last_offset: first };
                self.open.insert(producer_id, open);
            }
        }
    }

    /// The open transaction of `producer_id`, if any.
    pub fn open_of(&self, producer_id: i64) -> Option<OpenTxn> {
        self.open.get(&producer_id).copied()
    }

    /// The producer's marker is written: its transaction takes no more batches, though it
    /// counts as open until `on_marker`.
    pub fn closing(&mut self, producer_id: i64) {
        self.closing.insert(producer_id);
    }

    /// The transaction a batch of `producer_id` would join: its open one, unless closing.
    pub fn joinable(&self, producer_id: i64) -> Option<OpenTxn> {
        if self.closing.contains(&producer_id) {
            return None;
        }
        self.open_of(producer_id)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.completed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lso_waits_for_the_oldest_open_transaction_and_for_a_marker_to_be_replicated() {
        let mut txns = Transactions::default();
        assert_eq!(txns.first_unstable(10), None);
        assert!(txns.on_data(7, 0, 10, 12));
        assert!(!txns.on_data(7, 0, 13, 13), "one transaction per producer");
        assert!(txns.on_data(8, 0, 14, 14));
        assert_eq!(txns.first_unstable(15), Some(10));
        assert_eq!(txns.on_marker(7, 15), Some(10));
        // The marker is not below the high watermark yet: still unstable.
        assert_eq!(txns.first_unstable(15), Some(10));
        assert_eq!(txns.first_unstable(16), Some(14));
        assert_eq!(txns.on_marker(8, 16), Some(14));
        assert_eq!(txns.first_unstable(17), None);
        assert_eq!(txns.on_marker(9, 17), None, "a marker of a producer without records here");
    }

    #[test]
    fn a_cut_removes_transactions_that_started_after_it_and_reopens_cut_markers() {
        let mut txns = Transactions::default();
        txns.on_data(7, 0, 10, 10);
        txns.on_data(8, 0, 20, 20);
        txns.on_marker(7, 25);
        txns.truncate_from(20);
        assert_eq!(txns.open_of(8), None);
        assert_eq!(txns.open_of(7).map(|t| t.first_offset), Some(10), "reopened under its id");
        assert_eq!(txns.first_unstable(30), Some(10), "the cut marker's transaction is open again");
        assert_eq!(txns.scan_start(30), 10);
    }
}
