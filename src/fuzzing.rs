//! Entry points for the fuzz targets under `fuzz/`, compiled only with `--cfg fuzzing`
//! (cargo-fuzz sets it). They expose the broker's private decoders of untrusted bytes
//! without making them part of the crate's API: the `__consumer_offsets` record codecs
//! (offset commits and group metadata) and the saved high watermark. Each wrapper calls the real decoder, unchanged; request frames
//! and bodies need none (`protocol::parse_request` and `protocol::decode_body` are public).

use std::path::Path;

use crate::group::Committed;

/// The key and value pairs of an uncompressed `__consumer_offsets` batch, as the group
/// coordinator reads them when it replays the topic.
pub fn offsets_records(batch: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    crate::group::offsets_record::parse_records(batch)
}

/// An offset commit key: (group, topic, partition).
pub fn offsets_key(bytes: &[u8]) -> Option<(String, String, i32)> {
    crate::group::offsets_record::decode_key(bytes)
}

/// An offset commit value.
pub fn offsets_value(bytes: &[u8]) -> Option<Committed> {
    crate::group::offsets_record::decode_value(bytes)
}

/// A group metadata key (version 2): the group.
pub fn group_metadata_key(bytes: &[u8]) -> Option<String> {
    crate::group::metadata_record::decode_key(bytes)
}

/// A group metadata value (versions 0-4), decoded; if it decodes, encoded again at the
/// version it was read at and decoded back: `Some(true)` when that gives the same group.
pub fn group_metadata_value_round_trips(bytes: &[u8]) -> Option<bool> {
    use crate::group::metadata_record::{decode_value, encode_value_version};
    let group = decode_value(bytes)?;
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    let again = encode_value_version(&group, version).ok().and_then(|b| decode_value(&b));
    Some(again.as_ref() == Some(&group))
}

/// The name of the high-watermark file in a partition directory.
pub const HIGH_WATERMARK_FILE: &str = crate::partition::HIGH_WATERMARK_FILE;

/// The high watermark saved in partition directory `dir`, read as a partition opening reads
/// it (a file: the reader is async and runs on io_uring).
pub async fn high_watermark(dir: &Path) -> Option<i64> {
    crate::partition::read_high_watermark(dir).await
}

/// A stored compressed batch searched as a timestamp lookup does it: decompressed with its
/// bound, then its records walked in place.
pub fn compressed_record_at_or_after(
    batch: &[u8],
    timestamp: i64,
) -> anyhow::Result<Option<(i32, i64)>> {
    crate::partition::first_compressed_record_at_or_after(batch, timestamp)
}
