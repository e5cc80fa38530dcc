//! Group metadata records of `__consumer_offsets` as the group coordinator replays them
//! (`metadata_record::decode_key`, `decode_value`, versions 0-4): the input is used as a
//! lone key, as a lone value, and as an uncompressed batch whose records' keys and values
//! are decoded. A value that decodes must encode again at its version and decode to the
//! same group.

#![no_main]

use fjord::fuzzing::{group_metadata_key, group_metadata_value_round_trips, offsets_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = group_metadata_key(bytes);
    assert_ne!(group_metadata_value_round_trips(bytes), Some(false), "a value does not round-trip");
    for (key, value) in offsets_records(bytes) {
        let _ = group_metadata_key(&key);
        if let Some(value) = value {
            assert_ne!(group_metadata_value_round_trips(&value), Some(false), "a value does not round-trip");
        }
    }
});
