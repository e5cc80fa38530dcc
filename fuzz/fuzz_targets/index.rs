//! A segment's `.index` file, as recovery loads it (`OffsetIndex::decode`), then the
//! lookups the log makes on what it loaded. The first 16 bytes choose the segment's base
//! offset and log size (within what a segment can have); the rest is the file.

#![no_main]

use fjord_storage::OffsetIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((params, file)) = input.split_first_chunk::<16>() else { return };
    // A segment's base offset comes from its file name: 20 digits, not negative.
    let base_offset = i64::from_be_bytes(params[..8].try_into().expect("8 bytes")) & i64::MAX;
    let log_size = u64::from_be_bytes(params[8..].try_into().expect("8 bytes"))
        % (fjord_storage::SEGMENT_BYTES_MAX + 1);
    // Recovery passes no bound on the next offset: it is not known before the walk.
    let Ok(mut index) = OffsetIndex::decode(base_offset, file, log_size, i64::MAX) else {
        return;
    };
    for entry in index.entries().to_vec() {
        assert_eq!(index.lookup(entry.offset), entry);
        assert_eq!(index.lookup_position(entry.position), entry);
    }
    let _ = index.lookup(base_offset);
    let _ = index.lookup_position(0);
    if let Some(last) = index.last() {
        index.truncate_from(last.offset);
        let _ = index.take_unpersisted();
    }
});
