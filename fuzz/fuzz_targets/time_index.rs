//! A segment's `.timeindex` file, as recovery loads it (`TimeIndex::decode`), then the
//! lookups the log makes on what it loaded. The first 8 bytes choose the segment's base
//! offset; the rest is the file.

#![no_main]

use fjord_storage::TimeIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((params, file)) = input.split_first_chunk::<8>() else { return };
    // A segment's base offset comes from its file name: 20 digits, not negative.
    let base_offset = i64::from_be_bytes(*params) & i64::MAX;
    let Ok(mut index) = TimeIndex::decode(base_offset, file, i64::MAX) else { return };
    for entry in index.entries().to_vec() {
        let _ = index.lookup_before(entry.timestamp);
        let _ = index.lookup_before(entry.timestamp.saturating_add(1));
    }
    let _ = index.lookup_before(i64::MIN);
    let _ = index.lookup_before(i64::MAX);
    if let Some(last) = index.last() {
        index.truncate_from(last.offset);
        let _ = index.take_unpersisted();
    }
});
