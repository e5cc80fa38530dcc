//! The records of `__transaction_state`, Kafka's `TransactionLogKey` and
//! `TransactionLogValue`:
//!
//! ```text
//! key   = version i16 (0) | transactional id (i16-length string)
//! value = version i16 (0) | producer id i64 | producer epoch i16 | timeout ms i32
//!         | status i8 | partitions i32-count array (-1 = null) of
//!           { topic (i16-length string) | i32-count array of partition i32 }
//!         | last update ms i64 | start ms i64
//! v1 (flexible) lays out the same fields with compact lengths and tagged fields: tag 0
//! the previous producer id, tag 1 the next producer id, tag 2 the client's transaction
//! version. A null value (tombstone) is a transactional id that expired.
//! ```
//! Fjord writes v0 while those three have their defaults (a transaction of protocol v1),
//! which every Kafka reads, and v1 otherwise (transactions v2, KIP-890 part 2). Decoding refuses, without panicking, anything
//! cut short or left over, and more than `PARTITIONS_PER_TXN_MAX` partitions.

use std::collections::BTreeSet;

use super::{TxnState, PARTITIONS_PER_TXN_MAX};

/// A transactional id's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// The producer id before an epoch overflow gave a new one (-1 if none): a retried
    /// EndTxn of the old id is recognized.
    pub previous_producer_id: i64,
    /// The producer id the transaction's end hands out when the epoch overflows (-1 if
    /// none).
    pub next_producer_id: i64,
    /// The client's transaction protocol: 2 (KIP-890 part 2: the epoch goes up at every
    /// end) or 0.
    pub client_version: i16,
}

impl TxnRecord {
    /// A transaction of protocol v2.
    pub fn is_v2(&self) -> bool {
        self.client_version >= 2
    }

    /// Whether (`producer_id`, `epoch`) is what an overflowing end hands out, used before
    /// that end is complete (the producer answers CONCURRENT_TRANSACTIONS meanwhile).
    pub fn hands_out(&self, producer_id: i64, epoch: i16) -> bool {
        self.next_producer_id >= 0 && self.next_producer_id == producer_id && epoch == 0
    }
}

const KEY_VERSION: i16 = 0;

fn put_string(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as i16).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// The key of `transactional_id` (`None` if it is too long for an i16-length string).
pub fn encode_key(transactional_id: &str) -> Option<Vec<u8>> {
    if transactional_id.len() > i16::MAX as usize {
        return None;
    }
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id);
    Some(out)
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A string of the value's version: i16 length in v0, compact (length + 1) in v1.
fn put_versioned_string(out: &mut Vec<u8>, value: &str, flexible: bool) {
    if flexible {
        put_uvarint(out, value.len() as u64 + 1);
        out.extend_from_slice(value.as_bytes());
    } else {
        put_string(out, value);
    }
}

/// An array length of the value's version (`None` for null).
fn put_length(out: &mut Vec<u8>, len: Option<usize>, flexible: bool) {
    match (len, flexible) {
        (None, false) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        (None, true) => out.push(0),
        (Some(n), false) => out.extend_from_slice(&(n as i32).to_be_bytes()),
        (Some(n), true) => put_uvarint(out, n as u64 + 1),
    }
}

pub fn encode_value(record: &TxnRecord) -> Vec<u8> {
    let flexible = record.client_version != 0
        || record.previous_producer_id != -1
        || record.next_producer_id != -1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&i16::from(flexible).to_be_bytes());
    out.extend_from_slice(&record.producer_id.to_be_bytes());
    out.extend_from_slice(&record.producer_epoch.to_be_bytes());
    out.extend_from_slice(&record.timeout_ms.to_be_bytes());
    out.push(record.state.code() as u8);
    if record.state == TxnState::Empty {
        put_length(&mut out, None, flexible);
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &record.partitions {
            match topics.last_mut() {
                Some((last, partitions)) if *last == topic => partitions.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        put_length(&mut out, Some(topics.len()), flexible);
        for (topic, partitions) in topics {
            put_versioned_string(&mut out, topic, flexible);
            put_length(&mut out, Some(partitions.len()), flexible);
            for partition in partitions {
                out.extend_from_slice(&partition.to_be_bytes());
            }
            if flexible {
                out.push(0);
            }
        }
    }
    out.extend_from_slice(&record.last_update_ms.to_be_bytes());
    out.extend_from_slice(&record.start_ms.to_be_bytes());
    if flexible {
        let tags: Vec<(u64, Vec<u8>)> = [
            (
                0,
                record.previous_producer_id != -1,
                record.previous_producer_id.to_be_bytes().to_vec(),
            ),
            (1, record.next_producer_id != -1, record.next_producer_id.to_be_bytes().to_vec()),
            (2, record.client_version != 0, record.client_version.to_be_bytes().to_vec()),
        ]
        .into_iter()
        .filter(|(_, present, _)| *present)
        .map(|(tag, _, bytes)| (tag, bytes))
        .collect();
        put_uvarint(&mut out, tags.len() as u64);
        for (tag, bytes) in tags {
            put_uvarint(&mut out, tag);
            put_uvarint(&mut out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// A cursor over a record's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    flexible: bool,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn i8(&mut self) -> Option<i8> {
        Some(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// An array or string length: `None` inside for null.
    fn length(&mut self, wide: bool) -> Option<Option<usize>> {
        if self.flexible {
            let n = self.uvarint()?;
            return Some(if n == 0 { None } else { Some(usize::try_from(n - 1).ok()?) });
        }
        let n = if wide { i64::from(self.i32()?) } else { i64::from(self.i16()?) };
        Some(if n < 0 { None } else { Some(n as usize) })
    }
    fn string(&mut self) -> Option<String> {
        let len = self.length(false)??;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn skip_tagged_fields(&mut self) -> Option<()> {
        if self.flexible {
            for _ in 0..self.uvarint()? {
                self.uvarint()?;
                let size = usize::try_from(self.uvarint()?).ok()?;
                self.take(size)?;
            }
        }
        Some(())
    }
}

/// The transactional id of a key; `None` for a key of another version or malformed.
pub fn decode_key(key: &[u8]) -> Option<String> {
    let mut reader = Reader { bytes: key, at: 0, flexible: false };
    if reader.i16()? != KEY_VERSION {
        return None;
    }
    let id = reader.string()?;
    (reader.at == key.len()).then_some(id)
}

/// A value of version 0 or 1; `None` if malformed.
pub fn decode_value(value: &[u8]) -> Option<TxnRecord> {
    let mut reader = Reader { bytes: value, at: 0, flexible: false };
    let version = reader.i16()?;
    if !(0..=1).contains(&version) {
        return None;
    }
    reader.flexible = version >= 1;
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let state = TxnState::from_code(reader.i8()?)?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = reader.length(true)? {
        for _ in 0..topics {
            let topic = reader.string()?;
            let count = reader.length(true)??;
            if partitions.len() + count > PARTITIONS_PER_TXN_MAX {
                return None;
            }
            for _ in 0..count {
                partitions.insert((topic.clone(), reader.i32()?));
            }
            reader.skip_tagged_fields()?;
        }
    }
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    let (mut previous_producer_id, mut next_producer_id, mut client_version) = (-1, -1, 0);
    if reader.flexible {
        for _ in 0..reader.uvarint()? {
            let tag = reader.uvarint()?;
            let size = usize::try_from(reader.uvarint()?).ok()?;
            let bytes = reader.take(size)?;
            match (tag, size) {
                (0, 8) => previous_producer_id = i64::from_be_bytes(bytes.try_into().ok()?),
                (1, 8) => next_producer_id = i64::from_be_bytes(bytes.try_into().ok()?),
                (2, 2) => client_version = i16::from_be_bytes(bytes.try_into().ok()?),
                (0..=2, _) => return None,
                _ => {}
            }
        }
    }
    if reader.at != value.len() {
        return None;
    }
    if state == TxnState::Empty {
        partitions.clear();
    }
    Some(TxnRecord {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        previous_producer_id,
        next_producer_id,
        client_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnRecord {
        TxnRecord {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 1), ("a".to_string(), 0), ("b".to_string(), 2)]
                .into_iter()
                .collect(),
            last_update_ms: 1_700_000_000_001,
            start_ms: 1_700_000_000_000,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
        }
    }

    #[test]
    fn a_value_round_trips_with_partitions_grouped_by_topic() {
        let value = encode_value(&ongoing());
        // version, pid, epoch, timeout, status 1, two topics.
        assert_eq!(&value[..2], &[0, 0]);
        assert_eq!(value[16], 1);
        assert_eq!(&value[17..21], &2i32.to_be_bytes());
        assert_eq!(decode_value(&value), Some(ongoing()));
        for cut in 0..value.len() {
            assert_eq!(decode_value(&value[..cut]), None, "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(decode_value(&longer), None);
    }

    #[test]
    fn an_empty_transaction_has_null_partitions_and_keys_name_the_id() {
        let mut empty = ongoing();
        empty.state = TxnState::Empty;
        empty.partitions.clear();
        let value = encode_value(&empty);
        assert_eq!(&value[17..21], &(-1i32).to_be_bytes());
        assert_eq!(decode_value(&value), Some(empty));
        let key = encode_key("tx-1").expect("short id");
        assert_eq!(key, vec![0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(&key).as_deref(), Some("tx-1"));
        assert_eq!(decode_key(&[0, 1, 0, 0]), None);
    }

    #[test]
    fn a_flexible_value_of_kafka_4_is_read_with_its_tagged_fields() {
        // v1: compact array of one topic "t" with partition 5, and tag 2 (client
        // transaction version 2) at the end.
        let mut value = vec![0, 1];
        value.extend_from_slice(&9i64.to_be_bytes());
        value.extend_from_slice(&1i16.to_be_bytes());
        value.extend_from_slice(&1000i32.to_be_bytes());
        value.push(2); // PrepareCommit
        value.extend_from_slice(&[2, 2, b't', 2]);
        value.extend_from_slice(&5i32.to_be_bytes());
        value.push(0); // the topic entry's tagged fields
        value.extend_from_slice(&7i64.to_be_bytes());
        value.extend_from_slice(&6i64.to_be_bytes());
        value.extend_from_slice(&[1, 2, 2, 0, 2]);
        let record = decode_value(&value).expect("v1 value");
        assert_eq!(record.state, TxnState::PrepareCommit);
        assert_eq!(
            record.partitions.iter().cloned().collect::<Vec<_>>(),
            vec![("t".to_string(), 5)]
        );
        assert_eq!((record.last_update_ms, record.start_ms), (7, 6));
        assert_eq!(record.client_version, 2);
        assert_eq!(encode_value(&record), value);
    }

    #[test]
    fn a_transaction_of_protocol_v2_is_written_as_v1_and_read_back() {
        let mut record = ongoing();
        record.client_version = 2;
        record.previous_producer_id = 3999;
        record.next_producer_id = 4001;
        let value = encode_value(&record);
        assert_eq!(&value[..2], &[0, 1]);
        assert_eq!(decode_value(&value), Some(record.clone()));
        for cut in 0..value.len() {
            assert_eq!(decode_value(&value[..cut]), None, "cut at {cut}");
        }
        record.state = TxnState::Empty;
        record.partitions.clear();
        assert_eq!(decode_value(&encode_value(&record)), Some(record));
    }
}
