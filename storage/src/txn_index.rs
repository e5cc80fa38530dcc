//! Aborted transactions: Kafka's `.txnindex`, one file per segment, named like the segment
//! (`<base offset>.txnindex`), holding an entry for every transaction aborted by a marker in
//! that segment, in marker order. A read_committed fetch answers the entries that overlap
//! what it reads, and the client drops those transactions' records.
//!
//! Entry layout (Kafka's `AbortedTxn`, 34 bytes, big-endian):
//! ```text
//! 0   2  version i16 (0)
//! 2   8  producer id i64
//! 10  8  first offset i64        the transaction's first record in this partition
//! 18  8  last offset i64         its abort marker
//! 26  8  last stable offset i64  the partition's LSO when the marker was written
//! ```

/// Bytes of one entry.
pub const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

/// A transaction aborted in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// One entry; `None` unless `bytes` is one whole entry of version 0.
    pub fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let bytes: &[u8; ENTRY_BYTES] = bytes.try_into().ok()?;
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        (i16::from_be_bytes([bytes[0], bytes[1]]) == VERSION).then(|| AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// The entries of a file's bytes, up to the first that does not decode (a torn last write,
/// or damage: what follows it is not trusted); and whether all bytes were whole entries.
pub(crate) fn decode_file(bytes: &[u8]) -> (Vec<AbortedTxn>, bool) {
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
    for chunk in bytes.chunks(ENTRY_BYTES) {
        match AbortedTxn::decode(chunk) {
            Some(entry) => entries.push(entry),
            None => return (entries, false),
        }
    }
    (entries, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_34_bytes_in_kafkas_order_and_a_torn_one_ends_the_file() {
        let entry = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 10,
        };
        let bytes = entry.encode();
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &20i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&bytes), Some(entry));
        let mut file = bytes.to_vec();
        file.extend_from_slice(&bytes[..20]);
        assert_eq!(decode_file(&file), (vec![entry], false));
        file.truncate(ENTRY_BYTES);
        assert_eq!(decode_file(&file), (vec![entry], true));
        let mut other_version = bytes;
        other_version[1] = 1;
        assert_eq!(AbortedTxn::decode(&other_version), None);
    }
}
