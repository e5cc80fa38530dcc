//! Inputs the fuzz targets under `fuzz/` crashed on, kept in `fuzz/regressions/<target>/`
//! and replayed here through the decoder's public entry point: each test is named after the
//! bug its input found and asserts a clean error instead of a panic.

use std::path::Path;

use fjord_storage::io::block_on;
use fjord_storage::{
    file_name, Checkpoint, LogConfig, OffsetIndex, PartitionLog, RealDisk, TimeIndex,
};

use crate::common::TempDir;

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

/// Writes a `fuzz/fuzz_targets/segment.rs` input into `dir` as that target does: flags (bit 0
/// clean checkpoint, bit 1 base offset 2^40), `.index` and `.timeindex` lengths, the files.
fn write_segment(dir: &Path, input: &[u8]) {
    let flags = input[0];
    let index_len = usize::from(u16::from_be_bytes([input[1], input[2]]));
    let time_len = usize::from(u16::from_be_bytes([input[3], input[4]]));
    let (index, rest) = input[5..].split_at(index_len);
    let (time_index, log) = rest.split_at(time_len);
    let base_offset = if flags & 2 != 0 { 1 << 40 } else { 0 };
    for (extension, bytes) in [("log", log), ("index", index), ("timeindex", time_index)] {
        std::fs::write(dir.join(file_name(base_offset, extension)), bytes).expect("write");
    }
    if flags & 1 != 0 {
        let checkpoint = Checkpoint {
            clean_shutdown: true,
            recovery_offset: i64::MAX,
            log_start_offset: base_offset,
        };
        block_on(checkpoint.write(&RealDisk, dir)).expect("write checkpoint");
    }
}

/// `fuzz/fuzz_targets/segment.rs`: after a clean shutdown, a batch whose base offset (not
/// covered by its CRC) reads as `i64::MAX` makes the trusted open's tail walk compute its
/// next offset as `i64::MAX + 1`: a panic in debug builds, a wrapped next offset in release.
/// The batch is damage: the open should cut it (or refuse the log), not overflow.
#[test]
fn a_clean_segment_whose_batch_ends_at_i64_max_is_cut_not_overflowed() {
    let input =
        regression("segment", "clean-shutdown-batch-ending-at-i64-max-overflows-the-next-offset");
    let dir = TempDir::new("fuzz-segment-i64-max");
    write_segment(dir.path(), &input);
    let opened = block_on(PartitionLog::open(dir.path(), LogConfig::default()));
    if let Ok(log) = opened {
        assert_eq!(log.log_end_offset(), 0, "the damaged batch is not part of the log");
    }
}
