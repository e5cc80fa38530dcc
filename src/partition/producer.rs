//! Idempotent producers: per partition, the last batches of each producer id, so that a
//! retried batch is acknowledged without a second append and a gap in sequence numbers is
//! refused (Kafka's `ProducerStateManager`, without transactions).
//!
//! Invariants: for each producer id, `batches` holds at most `PRODUCER_BATCHES_MAX` entries
//! in append order, with consecutive sequence ranges; `epoch` is the newest epoch seen.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer: Kafka clients keep at most 5 requests in flight per
/// partition with idempotence on, so a retry is always among the last 5.
pub const PRODUCER_BATCHES_MAX: usize = 5;
/// Producer ids remembered per partition: bounds memory; the least recently used is evicted.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The largest timestamp of the set's last batch (Kafka's `lastTimestamp`).
    pub max_timestamp: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<SequencedBatch>,
    last_used: u64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already in the log: acknowledge with this base offset, append nothing. Its largest
    /// timestamp as appended is what Kafka answers as the duplicate's `log_append_time_ms`.
    Duplicate { base_offset: i64, max_timestamp: i64 },
    /// The producer's epoch is older than one already seen (INVALID_PRODUCER_EPOCH).
    StaleEpoch { current: i16 },
    /// The sequence does not follow the last one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder { expected: i32, got: i32 },
}

/// What DescribeProducers tells of one producer (Kafka's `ProducerStateEntry`, without
/// transactions): its epoch, and the last sequence and largest timestamp of its newest batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of its transaction open in the partition (-1: none); filled in by
    /// the partition (`txn.rs`), not the table.
    pub txn_start_offset: i64,
}

#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerTable {
    /// Decides about a batch `[first_sequence, first_sequence + count)` from (`producer_id`,
    /// `epoch`). Does not change the table; call `record` after a successful append.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        count: i32,
    ) -> SequenceCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or its state is older than what we remember): accept,
            // as Kafka does since KIP-360.
            return SequenceCheck::Append;
        };
        if epoch < entry.epoch {
            return SequenceCheck::StaleEpoch { current: entry.epoch };
        }
        if epoch > entry.epoch {
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0, got: first_sequence }
            };
        }
        let last_sequence = first_sequence.wrapping_add(count - 1);
        if let Some(batch) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate {
                base_offset: batch.base_offset,
                max_timestamp: batch.max_timestamp,
            };
        }
        let expected = entry.batches.back().map_or(0, |b| next_sequence(b.last_sequence));
        if first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected, got: first_sequence }
        }
    }

    /// Remembers an appended batch.
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: SequencedBatch) {
        self.clock += 1;
        let clock = self.clock;
        if !self.producers.contains_key(&producer_id)
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            if let Some((&oldest, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_used) {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_used: clock,
        });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_used = clock;
        if entry.batches.len() == PRODUCER_BATCHES_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
    }

    /// The newest epoch seen of `producer_id`, if it is remembered.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// A transaction marker of `producer_id` in `epoch`: a newer epoch (transactions v2 bump
    /// it at every end, a fenced producer's is bumped by its coordinator) starts the
    /// producer's sequences afresh, so a late write of the old epoch is refused.
    pub fn bump_epoch(&mut self, producer_id: i64, epoch: i16) {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            if epoch > entry.epoch {
                entry.epoch = epoch;
                entry.batches.clear();
            }
            return;
        }
        self.clock += 1;
        if self.producers.len() < PRODUCERS_PER_PARTITION_MAX {
            let entry = ProducerEntry { epoch, batches: VecDeque::new(), last_used: self.clock };
            self.producers.insert(producer_id, entry);
        }
    }

    /// The batch of `producer_id` at `base_offset` was stamped LogAppendTime when written
    /// (after it was recorded): `max_timestamp` is its largest timestamp now.
    pub fn restamp(&mut self, producer_id: i64, base_offset: i64, max_timestamp: i64) {
        let Some(entry) = self.producers.get_mut(&producer_id) else { return };
        if let Some(batch) = entry.batches.iter_mut().find(|b| b.base_offset == base_offset) {
            batch.max_timestamp = max_timestamp;
        }
    }

    /// Forgets everything at or after `offset` (after a log truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.base_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer remembered (at most `PRODUCERS_PER_PARTITION_MAX`), by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(&producer_id, entry)| {
                let newest = entry.batches.back()?;
                Some(ActiveProducer {
                    producer_id,
                    epoch: entry.epoch,
                    last_sequence: newest.last_sequence,
                    last_timestamp: newest.max_timestamp,
                    txn_start_offset: -1,
                })
            })
            .collect();
        active.sort_unstable_by_key(|p| p.producer_id);
        active
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, count: i32, base: i64) -> SequencedBatch {
        SequencedBatch {
            first_sequence: first,
            last_sequence: first + count - 1,
            base_offset: base,
            last_offset: base + i64::from(count) - 1,
            max_timestamp: 1_700_000_000_000 + base,
        }
    }

    /// A duplicate of the batch `batch` made at `base`.
    fn duplicate(base: i64) -> SequenceCheck {
        SequenceCheck::Duplicate { base_offset: base, max_timestamp: 1_700_000_000_000 + base }
    }

    #[test]
    fn active_producers_show_their_newest_batch_and_epoch() {
        let mut table = ProducerTable::default();
        assert!(table.active().is_empty());
        table.record(9, 0, batch(0, 3, 100));
        table.record(4, 2, batch(0, 1, 103));
        table.record(9, 0, batch(3, 2, 104));
        let active = table.active();
        let shown: Vec<(i64, i16, i32, i64)> = active
            .iter()
            .map(|p| (p.producer_id, p.epoch, p.last_sequence, p.last_timestamp))
            .collect();
        assert_eq!(shown, vec![(4, 2, 0, 1_700_000_000_103), (9, 0, 4, 1_700_000_000_104)]);
        // A cut of the log takes the producers whose batches it removed.
        table.truncate_from(103);
        assert_eq!(table.active().iter().map(|p| p.producer_id).collect::<Vec<_>>(), vec![9]);
        assert_eq!(table.active()[0].last_sequence, 2);
    }

    #[test]
    fn a_restamped_batch_is_answered_with_its_new_timestamp_when_retried() {
        let mut table = ProducerTable::default();
        table.record(7, 0, batch(0, 3, 100));
        table.restamp(7, 100, 42);
        table.restamp(7, 999, 43);
        table.restamp(8, 100, 44);
        let retried = SequenceCheck::Duplicate { base_offset: 100, max_timestamp: 42 };
        assert_eq!(table.check(7, 0, 0, 3), retried);
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut table = ProducerTable::default();
        assert_eq!(table.check(7, 0, 0, 3), SequenceCheck::Append);
        table.record(7, 0, batch(0, 3, 100));
        assert_eq!(table.check(7, 0, 0, 3), duplicate(100));
        assert_eq!(table.check(7, 0, 3, 2), SequenceCheck::Append);
        assert_eq!(table.check(7, 0, 4, 2), SequenceCheck::OutOfOrder { expected: 3, got: 4 });
        table.record(7, 0, batch(3, 2, 103));
        assert_eq!(table.check(7, 0, 0, 3), duplicate(100));
        assert_eq!(table.check(7, 1, 0, 1), SequenceCheck::Append);
        assert_eq!(table.check(7, 1, 5, 1), SequenceCheck::OutOfOrder { expected: 0, got: 5 });
        table.record(7, 1, batch(0, 1, 105));
        assert_eq!(table.check(7, 0, 5, 1), SequenceCheck::StaleEpoch { current: 1 });
        for i in 0..10 {
            table.record(7, 1, batch(1 + i, 1, 106 + i as i64));
        }
        // Only the last five are remembered.
        assert_eq!(table.check(7, 1, 1, 1), SequenceCheck::OutOfOrder { expected: 11, got: 1 });
        assert_eq!(table.check(7, 1, 10, 1), duplicate(115));
    }
}
