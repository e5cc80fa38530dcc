//! The records of `__transaction_state`, Kafka's `TransactionLogKey` and
//! `TransactionLogValue`:
//!
//! ```text
//! key   = version i16 (0) | transactional id (i16-length string)
//! value = version i16 (0) | producer id i64 | producer epoch i16 | timeout ms i32
//!         | status i8 | partitions i32-count array (-1 = null) of
//!           { topic (i16-length string) | i32-count array of partition i32 }
//!         | last update ms i64 | start ms i64
//! v1 (flexible) lays out the same fields with compact lengths and tagged fields; read,
//! not written. A null value (tombstone) is a transactional id that expired.
//! ```
//! Fjord writes v0, which every Kafka reads. Decoding refuses, without panicking, anything
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

pub fn encode_value(record: &TxnRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&record.producer_id.to_be_bytes());
    out.extend_from_slice(&record.producer_epoch.to_be_bytes());
    out.extend_from_slice(&record.timeout_ms.to_be_bytes());
    out.push(record.state.code() as u8);
    if record.state == TxnState::Empty {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &record.partitions {
            match topics.last_mut() {
                Some((last, partitions)) if *last == topic => partitions.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            put_string(&mut out, topic);
            out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for partition in partitions {
                out.extend_from_slice(&partition.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&record.last_update_ms.to_be_bytes());
    out.extend_from_slice(&record.start_ms.to_be_bytes());
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
    reader.skip_tagged_fields()?;
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
        assert_eq!(record.partitions.into_iter().collect::<Vec<_>>(), vec![("t".to_string(), 5)]);
        assert_eq!((record.last_update_ms, record.start_ms), (7, 6));
    }
}
