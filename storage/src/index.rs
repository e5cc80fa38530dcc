//! The sparse indexes of a segment: offset -> position, and timestamp -> offset.
//!
//! ```text
//! .index      entry = relative offset u32 BE | position u32 BE            (8 bytes)
//! .timeindex  entry = max timestamp i64 BE   | relative offset u32 BE     (12 bytes)
//! ```
//! The relative offset is `offset - segment base offset`. An offset entry points at the
//! first byte of the batch whose *base* offset it names. A time entry says: every batch up to
//! and including the one at that offset has timestamps at most that max timestamp.
//!
//! One entry of each is added when at least `index_interval_bytes` of log were written since
//! the previous one, so lookups scan at most about that many bytes. Both lists are kept in
//! memory in full (8 and 12 bytes per 4 KiB of log) and written to their files in order;
//! the files are never the source of truth for data, only a cache rebuilt from the log when
//! they are missing, short, or fail the checks in `decode`.
//!
//! Invariants (checked by `decode`, kept by `push`): offsets and positions strictly
//! increase, no entry points at position 0 (the segment start needs none), every position is
//! inside the log file, every offset is below the segment's next offset.

/// Bytes of one `.index` entry.
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

/// An offset index entry, in absolute terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub offset: i64,
    pub position: u64,
}

/// A time index entry, in absolute terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub offset: i64,
}

/// The offset index of one segment.
#[derive(Debug, Clone)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<OffsetEntry>,
    /// How many leading entries are already in the file.
    persisted: usize,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> OffsetIndex {
        OffsetIndex { base_offset, entries: Vec::new(), persisted: 0 }
    }

    /// Decodes a `.index` file's bytes, checking every invariant against the segment's log
    /// size and next offset. `Err` names the first violation.
    pub fn decode(
        base_offset: i64,
        bytes: &[u8],
        log_size: u64,
        next_offset: i64,
    ) -> Result<OffsetIndex, String> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(format!(
                "length {} is not a multiple of {OFFSET_ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::new(base_offset);
        for (n, chunk) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let relative = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let position = u64::from(u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes")));
            // The base offset comes from the file name: near i64::MAX, an entry overflows.
            let Some(offset) = base_offset.checked_add(i64::from(relative)) else {
                return Err(format!("entry {n}: offset {base_offset} + {relative} overflows"));
            };
            let entry = OffsetEntry { offset, position };
            if entry.position == 0 || entry.position >= log_size || entry.offset >= next_offset {
                return Err(format!("entry {n} ({entry:?}) is outside the log (size {log_size}, next offset {next_offset})"));
            }
            if let Some(last) = index.entries.last() {
                if entry.offset <= last.offset || entry.position <= last.position {
                    return Err(format!("entry {n} ({entry:?}) does not increase past {last:?}"));
                }
            }
            index.entries.push(entry);
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    /// Adds an entry for the batch at `position` with base offset `offset`.
    pub fn push(&mut self, offset: i64, position: u64) {
        assert!(
            offset >= self.base_offset && offset - self.base_offset <= i64::from(u32::MAX),
            "index offset {offset} outside segment {}",
            self.base_offset
        );
        assert!(
            position > 0 && position <= u64::from(u32::MAX),
            "index position {position} not representable"
        );
        if let Some(last) = self.entries.last() {
            assert!(
                offset > last.offset && position > last.position,
                "index entry ({offset}, {position}) after {last:?}"
            );
        }
        self.entries.push(OffsetEntry { offset, position });
    }

    /// The last entry at or below `offset`, or the segment start.
    pub fn lookup(&self, offset: i64) -> OffsetEntry {
        let n = self.entries.partition_point(|entry| entry.offset <= offset);
        if n == 0 {
            OffsetEntry { offset: self.base_offset, position: 0 }
        } else {
            self.entries[n - 1]
        }
    }

    /// The last entry whose position is at or below `position`, or the segment start.
    pub fn lookup_position(&self, position: u64) -> OffsetEntry {
        let n = self.entries.partition_point(|entry| entry.position <= position);
        if n == 0 {
            OffsetEntry { offset: self.base_offset, position: 0 }
        } else {
            self.entries[n - 1]
        }
    }

    /// Drops every entry for offsets at or above `offset`; returns the file length to keep.
    pub fn truncate_from(&mut self, offset: i64) -> u64 {
        let keep = self.entries.partition_point(|entry| entry.offset < offset);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(keep);
        (self.persisted * OFFSET_ENTRY_BYTES) as u64
    }

    /// The entries not yet in the file: (file position, encoded bytes). Marks them written;
    /// the caller writes them or poisons the log.
    pub fn take_unpersisted(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.persisted == self.entries.len() {
            return None;
        }
        let position = (self.persisted * OFFSET_ENTRY_BYTES) as u64;
        let mut bytes =
            Vec::with_capacity((self.entries.len() - self.persisted) * OFFSET_ENTRY_BYTES);
        for entry in &self.entries[self.persisted..] {
            bytes.extend_from_slice(&((entry.offset - self.base_offset) as u32).to_be_bytes());
            bytes.extend_from_slice(&(entry.position as u32).to_be_bytes());
        }
        self.persisted = self.entries.len();
        Some((position, bytes))
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }
}

/// The time index of one segment.
#[derive(Debug, Clone)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<TimeEntry>,
    persisted: usize,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> TimeIndex {
        TimeIndex { base_offset, entries: Vec::new(), persisted: 0 }
    }

    /// Decodes a `.timeindex` file's bytes; `Err` names the first violation.
    pub fn decode(base_offset: i64, bytes: &[u8], next_offset: i64) -> Result<TimeIndex, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(format!("length {} is not a multiple of {TIME_ENTRY_BYTES}", bytes.len()));
        }
        let mut index = TimeIndex::new(base_offset);
        for (n, chunk) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let relative = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            let Some(offset) = base_offset.checked_add(i64::from(relative)) else {
                return Err(format!("entry {n}: offset {base_offset} + {relative} overflows"));
            };
            let entry = TimeEntry { timestamp, offset };
            if entry.offset >= next_offset {
                return Err(format!("entry {n} ({entry:?}) is past the next offset {next_offset}"));
            }
            if let Some(last) = index.entries.last() {
                if entry.timestamp <= last.timestamp || entry.offset < last.offset {
                    return Err(format!("entry {n} ({entry:?}) does not increase past {last:?}"));
                }
            }
            index.entries.push(entry);
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    /// Records that batches up to the one at `offset` have timestamps at most `timestamp`.
    /// Only a timestamp above the last entry's is worth an entry.
    pub fn push(&mut self, timestamp: i64, offset: i64) {
        assert!(
            offset >= self.base_offset && offset - self.base_offset <= i64::from(u32::MAX),
            "time index offset {offset} outside segment {}",
            self.base_offset
        );
        if let Some(last) = self.entries.last() {
            if timestamp <= last.timestamp {
                return;
            }
            assert!(offset >= last.offset, "time index offset {offset} before {last:?}");
        }
        self.entries.push(TimeEntry { timestamp, offset });
    }

    /// The last entry whose timestamp is below `timestamp`: every batch up to it is older than
    /// `timestamp`, so a search for the first batch at or after `timestamp` can start there.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|entry| entry.timestamp < timestamp);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries for offsets at or above `offset`; returns the file length to keep.
    pub fn truncate_from(&mut self, offset: i64) -> u64 {
        let keep = self.entries.partition_point(|entry| entry.offset < offset);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(keep);
        (self.persisted * TIME_ENTRY_BYTES) as u64
    }

    pub fn take_unpersisted(&mut self) -> Option<(u64, Vec<u8>)> {
        if self.persisted == self.entries.len() {
            return None;
        }
        let position = (self.persisted * TIME_ENTRY_BYTES) as u64;
        let mut bytes =
            Vec::with_capacity((self.entries.len() - self.persisted) * TIME_ENTRY_BYTES);
        for entry in &self.entries[self.persisted..] {
            bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
            bytes.extend_from_slice(&((entry.offset - self.base_offset) as u32).to_be_bytes());
        }
        self.persisted = self.entries.len();
        Some((position, bytes))
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_the_floor_entry() {
        let mut index = OffsetIndex::new(100);
        index.push(110, 4100);
        index.push(125, 8300);
        assert_eq!(index.lookup(100), OffsetEntry { offset: 100, position: 0 });
        assert_eq!(index.lookup(109), OffsetEntry { offset: 100, position: 0 });
        assert_eq!(index.lookup(110), OffsetEntry { offset: 110, position: 4100 });
        assert_eq!(index.lookup(124), OffsetEntry { offset: 110, position: 4100 });
        assert_eq!(index.lookup(1000), OffsetEntry { offset: 125, position: 8300 });
        assert_eq!(index.lookup_position(8299), OffsetEntry { offset: 110, position: 4100 });
    }

    #[test]
    fn offset_index_round_trips_and_rejects_garbage() {
        let mut index = OffsetIndex::new(1 << 40);
        index.push((1 << 40) + 3, 4096);
        index.push((1 << 40) + 9, 9000);
        let (position, bytes) = index.take_unpersisted().unwrap();
        assert_eq!(position, 0);
        assert!(index.take_unpersisted().is_none());
        let decoded = OffsetIndex::decode(1 << 40, &bytes, 10_000, (1 << 40) + 10).unwrap();
        assert_eq!(decoded.entries(), index.entries());
        // Past the log, non-increasing, ragged length, past the next offset.
        assert!(OffsetIndex::decode(1 << 40, &bytes, 9000, (1 << 40) + 10).is_err());
        let mut swapped = bytes.clone();
        swapped.rotate_left(8);
        assert!(OffsetIndex::decode(1 << 40, &swapped, 10_000, (1 << 40) + 10).is_err());
        assert!(OffsetIndex::decode(1 << 40, &bytes[..7], 10_000, (1 << 40) + 10).is_err());
        assert!(OffsetIndex::decode(1 << 40, &bytes, 10_000, (1 << 40) + 9).is_err());
        assert!(OffsetIndex::decode(1 << 40, &[0u8; 16], 10_000, (1 << 40) + 10).is_err());
    }

    #[test]
    fn truncation_keeps_entries_below_the_offset() {
        let mut index = OffsetIndex::new(0);
        index.push(10, 100);
        index.push(20, 200);
        index.push(30, 300);
        let _ = index.take_unpersisted();
        assert_eq!(index.truncate_from(20), 8);
        assert_eq!(index.entries().len(), 1);
        index.push(25, 250);
        assert_eq!(index.take_unpersisted().unwrap().0, 8);
    }

    #[test]
    fn time_lookup_finds_the_last_older_entry() {
        let mut index = TimeIndex::new(0);
        index.push(1_000, 0);
        index.push(900, 5); // not newer: ignored
        index.push(2_000, 10);
        index.push(3_000, 20);
        assert_eq!(index.entries().len(), 3);
        assert_eq!(index.lookup_before(1_000), None);
        assert_eq!(index.lookup_before(1_001), Some(TimeEntry { timestamp: 1_000, offset: 0 }));
        assert_eq!(index.lookup_before(2_500), Some(TimeEntry { timestamp: 2_000, offset: 10 }));
        let (_, bytes) = index.take_unpersisted().unwrap();
        let decoded = TimeIndex::decode(0, &bytes, 21).unwrap();
        assert_eq!(decoded.entries(), index.entries());
        assert!(TimeIndex::decode(0, &bytes, 20).is_err());
    }
}
