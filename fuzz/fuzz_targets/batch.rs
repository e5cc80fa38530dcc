//! Record batches as they arrive from producers and followers and as recovery reads them
//! back from disk: `batch::validate` (and its two halves, `validate_structure` and
//! `verify_contents`), the walk from one batch to the next, the record walk of
//! `first_record_at_or_after`, the varint readers, and the decompression that a timestamp
//! lookup does on a stored compressed batch.
//!
//! The input is used twice: as it is, and with its first batch's CRC recomputed, so that
//! the fuzzer reaches the checks behind the CRC (a CRC is what a fuzzer cannot guess).

#![no_main]

use fjord_storage::batch::{self, BatchHeader, Origin};
use fjord_storage::BATCH_BYTES_LIMIT_MAX;
use libfuzzer_sys::fuzz_target;

// The broker's own allocator (src/main.rs installs it): the `kafka-protocol` decoders
// reserve an array's announced count before reading it, which this allocator maps without
// committing memory (src/alloc.rs). Memory actually used is still bounded by -rss_limit_mb.
#[global_allocator]
static ALLOCATOR: fjord::alloc::Allocator = fjord::alloc::Allocator;

fuzz_target!(|bytes: &[u8]| {
    walk(bytes);
    let _ = batch::read_varint(bytes);
    let _ = batch::read_varlong(bytes);
    if let Some(header) = BatchHeader::view(bytes) {
        let size = header.size();
        if size >= batch::BATCH_HEADER_BYTES as u64 && size <= bytes.len() as u64 {
            let mut sealed = bytes.to_vec();
            batch::build::reseal(&mut sealed);
            walk(&sealed);
        }
    }
});

/// The batches at the start of `bytes`, one after another while each one validates, the
/// way recovery scans a segment; then each batch's records.
fn walk(bytes: &[u8]) {
    let mut position = 0usize;
    while position < bytes.len() {
        let rest = &bytes[position..];
        for origin in [Origin::Client, Origin::Replica] {
            if let Ok(info) = batch::validate_structure(rest, BATCH_BYTES_LIMIT_MAX, origin) {
                let _ = batch::verify_contents(&rest[..info.size as usize]);
            }
        }
        let _ = batch::validate(rest, BATCH_BYTES_LIMIT_MAX, Origin::Client);
        let Ok(info) = batch::validate(rest, BATCH_BYTES_LIMIT_MAX, Origin::Replica) else {
            return;
        };
        let one = &rest[..info.size as usize];
        records(one);
        position += info.size as usize;
    }
}

/// What the broker reads inside a batch that passed validation.
fn records(batch: &[u8]) {
    let header = BatchHeader::view(batch).expect("a validated batch has a header");
    for timestamp in [i64::MIN, 0, header.base_timestamp.get(), header.max_timestamp.get()] {
        let _ = batch::first_record_at_or_after(batch, timestamp);
    }
    // `Partition::offset_for_timestamp` decompresses a stored compressed batch, bounded.
    if header.compression_codec() != 0 {
        let _ = fjord::fuzzing::compressed_record_at_or_after(batch, header.base_timestamp.get());
    }
}
