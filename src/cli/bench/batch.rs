//! The record batches the bench sends, and the e2e stamp: a producer builds one batch as a
//! template and reuses it; for e2e each copy carries its send time in the first record's
//! value (at least 8 bytes, which `validate` guarantees), which the consumer reads back.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fjord_storage::batch::build;

/// Microseconds since the Unix epoch: the e2e stamp, comparable across threads.
pub(super) fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A batch of `records` records of `record_bytes` bytes each, the first `stamp`ed if given.
pub(super) fn batch_for(records: usize, record_bytes: usize, stamp: Option<u64>) -> Bytes {
    let mut value = vec![0x5au8; record_bytes];
    if let Some(micros) = stamp {
        value[..8].copy_from_slice(&micros.to_be_bytes());
    }
    let list: Vec<build::Record<'_>> = (0..records)
        .map(|_| build::Record { key: None, value: Some(&value), timestamp_delta: 0 })
        .collect();
    Bytes::from(build::batch(&list, (now_micros() / 1000) as i64))
}

/// A copy of `template` (from `batch_for`) for e2e: the send time `micros` in its first
/// record's value, the batch timestamps now, and the CRC recomputed. The consumer reads the
/// stamp of the first record only, so a stamped batch costs one copy and one CRC instead of
/// a batch built record by record (which, at a few million records per second, took a fifth
/// of this 2-core machine from the broker being measured).
pub(super) fn stamped(template: &[u8], micros: u64) -> Bytes {
    let mut bytes = template.to_vec();
    // `validate` keeps --record-bytes at 8 or more.
    let at = first_value_at(&bytes).expect("bench batches have values of at least 8 bytes");
    bytes[at..at + 8].copy_from_slice(&micros.to_be_bytes());
    let millis = (micros / 1000) as i64;
    build::set_timestamps(&mut bytes, millis, millis);
    build::reseal(&mut bytes);
    Bytes::from(bytes)
}

/// The send time in the first record's value of an uncompressed batch (e2e records).
pub(super) fn first_value_stamp(batch: &[u8]) -> Option<u64> {
    let at = first_value_at(batch)?;
    Some(u64::from_be_bytes(batch.get(at..at + 8)?.try_into().ok()?))
}

/// Where the first record's value starts in an uncompressed batch, if it has at least the 8
/// bytes of an e2e stamp.
fn first_value_at(batch: &[u8]) -> Option<usize> {
    use fjord_storage::batch::{read_varint, read_varlong, BATCH_HEADER_BYTES};
    let body = batch.get(BATCH_HEADER_BYTES..)?;
    let (_length, mut p) = read_varint(body)?;
    p += 1; // attributes
    p += read_varlong(body.get(p..)?)?.1; // timestamp delta
    p += read_varint(body.get(p..)?)?.1; // offset delta
    let (key_len, n) = read_varint(body.get(p..)?)?;
    p += n + usize::try_from(key_len.max(0)).ok()?;
    let (value_len, n) = read_varint(body.get(p..)?)?;
    p += n;
    if value_len < 8 || body.len() < p + 8 {
        return None;
    }
    Some(BATCH_HEADER_BYTES + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_template_is_a_valid_batch_with_the_stamp_first() {
        use fjord_storage::batch::{validate, BatchHeader, Origin};
        let template = batch_for(100, 100, None);
        let micros = 1_790_000_000_123_456u64;
        let stamped = stamped(&template, micros);
        assert_eq!(stamped.len(), template.len());
        let info = validate(&stamped, 1 << 20, Origin::Client)
            .expect("a stamped batch passes the broker's checks");
        assert_eq!(info.record_count, 100);
        assert_eq!(first_value_stamp(&stamped), Some(micros));
        let header = BatchHeader::view(&stamped).unwrap();
        assert_eq!(
            (header.base_timestamp.get(), header.max_timestamp.get()),
            ((micros / 1000) as i64, (micros / 1000) as i64)
        );
        // The template itself is untouched, and a value too short for a stamp has none.
        assert_eq!(first_value_stamp(&template), Some(u64::from_be_bytes([0x5a; 8])));
        assert_eq!(first_value_at(&batch_for(1, 7, None)), None);
    }
}
