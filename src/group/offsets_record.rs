//! The records of `__consumer_offsets` as Kafka writes them (so Kafka's tools can read
//! Fjord's topic): the key (version 1: group, topic, partition) and value (version 3:
//! offset, leader epoch, metadata, commit time) of an offset commit, and the walk over the
//! records of an uncompressed batch that replays them. Decoding takes untrusted bytes (a
//! damaged log) and answers `None` or skips, never panics.

use bytes::BufMut;
use fjord_storage::batch::{self, BATCH_HEADER_BYTES};

/// An offset a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_time_ms: i64,
}

fn put_short_string(out: &mut Vec<u8>, text: &str) {
    out.put_u16(text.len().min(u16::MAX as usize) as u16);
    out.put_slice(&text.as_bytes()[..text.len().min(u16::MAX as usize)]);
}

pub(crate) fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + group.len() + topic.len());
    out.put_u16(1);
    put_short_string(&mut out, group);
    put_short_string(&mut out, topic);
    out.put_i32(partition);
    out
}

pub(crate) fn encode_value(committed: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(30 + committed.metadata.as_ref().map_or(0, String::len));
    out.put_u16(1);
    out.put_i64(committed.offset);
    out.put_i32(committed.leader_epoch);
    out.put_i64(committed.commit_time_ms);
    match &committed.metadata {
        Some(m) => {
            out.put_i32(m.len() as i32);
            out.put_slice(m.as_bytes());
        }
        None => out.put_i32(-1),
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn short_string(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        self.take(n).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

pub(crate) fn decode_key(bytes: &[u8]) -> Option<(String, String, i32)> {
    let mut r = Reader(bytes);
    if r.u16()? != 1 {
        return None;
    }
    Some((r.short_string()?, r.short_string()?, r.i32()?))
}

pub(crate) fn decode_value(bytes: &[u8]) -> Option<Committed> {
    let mut r = Reader(bytes);
    if r.u16()? != 1 {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = r.i32()?;
    let commit_time_ms = r.i64()?;
    let metadata = match r.i32()? {
        -1 => None,
        n if n >= 0 => Some(String::from_utf8_lossy(r.take(n as usize)?).into_owned()),
        _ => return None,
    };
    Some(Committed { offset, leader_epoch, metadata, commit_time_ms })
}

/// The (key, value) pairs of an uncompressed batch's records.
pub(crate) fn parse_records(batch_bytes: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let Some(body) = batch_bytes.get(BATCH_HEADER_BYTES..) else { return out };
    let mut at = 0usize;
    while at < body.len() {
        let Some((length, used)) = batch::read_varint(&body[at..]) else { break };
        let start = at + used;
        let Some(record) = usize::try_from(length).ok().and_then(|l| body.get(start..start + l))
        else {
            break;
        };
        at = start + record.len();
        // attributes i8 | timestampDelta varlong | offsetDelta varint | key | value | headers
        let mut p = 1usize;
        let Some((_, n)) = record.get(p..).and_then(batch::read_varlong) else { continue };
        p += n;
        let Some((_, n)) = record.get(p..).and_then(batch::read_varint) else { continue };
        p += n;
        let Some((key_len, n)) = record.get(p..).and_then(batch::read_varint) else { continue };
        p += n;
        let Some(key) = usize::try_from(key_len).ok().and_then(|l| record.get(p..p + l)) else {
            continue;
        };
        p += key.len();
        let Some((value_len, n)) = record.get(p..).and_then(batch::read_varint) else { continue };
        p += n;
        let value = if value_len < 0 {
            None
        } else {
            match usize::try_from(value_len).ok().and_then(|l| record.get(p..p + l)) {
                Some(v) => Some(v.to_vec()),
                None => continue,
            }
        };
        out.push((key.to_vec(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_storage::batch::build;

    #[test]
    fn keys_and_values_round_trip() {
        let key = encode_key("group-a", "orders", 7);
        assert_eq!(decode_key(&key), Some(("group-a".to_string(), "orders".to_string(), 7)));
        let committed = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: Some("m".to_string()),
            commit_time_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_value(&encode_value(&committed)), Some(committed));
        let none = Committed { offset: 1, leader_epoch: -1, metadata: None, commit_time_ms: 0 };
        assert_eq!(decode_value(&encode_value(&none)), Some(none));
        assert_eq!(decode_value(&[0, 2]), None);
    }

    #[test]
    fn records_of_a_built_batch_parse_back() {
        let records = [
            build::Record { key: Some(b"k1"), value: Some(b"v1"), timestamp_delta: 0 },
            build::Record { key: Some(b"k2"), value: None, timestamp_delta: 1 },
        ];
        let bytes = build::batch(&records, 5);
        assert_eq!(
            parse_records(&bytes),
            vec![(b"k1".to_vec(), Some(b"v1".to_vec())), (b"k2".to_vec(), None)]
        );
    }
}
