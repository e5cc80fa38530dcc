//! Inputs the fuzz targets under `fuzz/` crashed on, kept in `fuzz/regressions/<target>/`
//! and replayed here through the decoder's public entry point: each test is named after the
//! bug its input found and asserts a clean error instead of a panic.

use std::path::Path;

use fjord_storage::{OffsetIndex, TimeIndex};

/// A saved input of `target`, as the fuzz target received it.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The 64-bit big-endian value at `at` of a fuzz input's parameter prefix.
fn be64(input: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(input[at..at + 8].try_into().expect("8 bytes"))
}

/// `fuzz/fuzz_targets/index.rs`: a segment whose base offset (from its file name) is near
/// `i64::MAX` made `base + relative offset` overflow, a panic in debug builds and a wrapped,
/// negative offset accepted into the index in release builds.
#[test]
fn an_index_entry_past_i64_max_is_refused_not_overflowed() {
    let input = regression("index", "base-offset-near-i64-max-overflows-an-entry-offset");
    let base_offset = be64(&input, 0) as i64 & i64::MAX;
    let log_size = be64(&input, 8) % (fjord_storage::SEGMENT_BYTES_MAX + 1);
    let error = OffsetIndex::decode(base_offset, &input[16..], log_size, i64::MAX)
        .expect_err("an entry whose offset overflows");
    assert!(error.contains("overflows"), "{error}");
}

/// `fuzz/fuzz_targets/time_index.rs`: the same overflow in the time index.
#[test]
fn a_time_index_entry_past_i64_max_is_refused_not_overflowed() {
    let input = regression("time_index", "base-offset-near-i64-max-overflows-an-entry-offset");
    let base_offset = be64(&input, 0) as i64 & i64::MAX;
    let error = TimeIndex::decode(base_offset, &input[8..], i64::MAX)
        .expect_err("an entry whose offset overflows");
    assert!(error.contains("overflows"), "{error}");
}
