//! `__consumer_offsets` as the group coordinator replays it: an uncompressed batch's records
//! (`parse_records`), then each record's key and value (`decode_key`, `decode_value`). The
//! input is used as a whole batch, and as a lone key and a lone value.

#![no_main]

use fjord::fuzzing::{offsets_key, offsets_records, offsets_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let records = offsets_records(bytes);
    assert!(records.len() <= bytes.len(), "more records than bytes");
    for (key, value) in &records {
        let _ = offsets_key(key);
        if let Some(value) = value {
            let _ = offsets_value(value);
        }
    }
    let _ = offsets_key(bytes);
    let _ = offsets_value(bytes);
});
