//! Crash tests: damage the files the way an unclean stop, a torn write or a bad disk would,
//! reopen, and check that the log is exactly a prefix of what was written, that its indexes
//! (in memory and on disk) are valid, and that appends continue at the right offset.
//!
//! Each case starts from a copy of the same directory, so cases do not leak into each other.

use std::path::Path;

use fjord_storage::batch::BatchHeader;
use fjord_storage::io::block_on;
use fjord_storage::{file_name, FlushPolicy, LogConfig, PartitionLog, SegmentInfo};

use crate::common::*;

/// Bytes of one `.index` entry (relative offset u32 BE, position u32 BE).
const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry (timestamp i64 BE, relative offset u32 BE).
const TIME_ENTRY_BYTES: usize = 12;
/// Where the partition leader epoch sits in a batch header: stamped by the broker and, as in
/// Kafka, not covered by the CRC.
const EPOCH_FIELD: std::ops::Range<u64> = 12..16;

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, retention_ms: None, flush, ..LogConfig::default() }
}

/// One batch as the log holds it.
#[derive(Debug, Clone)]
struct Stored {
    base: i64,
    last: i64,
    max_timestamp: i64,
    bytes: Vec<u8>,
}

fn parse(bytes: &[u8]) -> Vec<Stored> {
    split_batches(bytes)
        .into_iter()
        .map(|(base, _count, bytes)| {
            let header = BatchHeader::view(&bytes).expect("whole header");
            Stored { base, last: header.last_offset(), max_timestamp: header.max_timestamp.get(), bytes }
        })
        .collect()
}

/// How the last segment looks when the crash hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastSegment {
    /// Several batches and index entries: the damaged batch follows others in its segment.
    Several,
    /// The damaged batch is the segment's only one.
    One,
}

/// Writes a multi-segment log and stops it uncleanly (drop without close). Returns what it
/// holds. The last batch is small, so that every byte of it can be a crash case.
async fn write_log(dir: &Path, config: &LogConfig, shape: LastSegment) -> (Vec<Stored>, Vec<SegmentInfo>) {
    let mut log = PartitionLog::open(dir, config.clone()).await.unwrap();
    for i in 0..40u64 {
        let count = 1 + (i % 4) as usize;
        let value_bytes = 20 + (i * 37 % 100) as usize;
        log.append(buf(&batch(count, value_bytes, 1_000 + 10 * i as i64, i)), 2).await.unwrap();
    }
    if shape == LastSegment::One {
        log.roll().await.unwrap();
    }
    log.append(buf(&batch(2, 8, 2_000, 99)), 3).await.unwrap();
    let all = parse(&log.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap());
    let segments = log.segments();
    assert!(segments.len() >= 3, "the crash cases need several segments: {segments:?}");
    let last_segment_batches = all.iter().filter(|b| b.base >= segments.last().unwrap().base_offset).count();
    match shape {
        LastSegment::Several => assert!(last_segment_batches > 1 && segments.last().unwrap().index_entries > 0, "{segments:?}"),
        LastSegment::One => assert_eq!(last_segment_batches, 1),
    }
    drop(log);
    (all, segments)
}

/// Replaces `to`'s contents with a copy of `from`'s files.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn concat(batches: &[Stored]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.bytes.iter().copied()).collect()
}

/// Checks the `.index` and `.timeindex` files of every segment against the batches the log
/// should hold: every offset entry names a batch start and that batch's base offset, every
/// time entry names a batch whose predecessors (and itself) are no newer than its timestamp,
/// and the files hold exactly the entries the log reports.
fn check_index_files(dir: &Path, segments: &[SegmentInfo], batches: &[Stored], ctx: &str) {
    for segment in segments {
        let mut starts = Vec::new(); // (position, base offset, running max timestamp)
        let mut position = 0u64;
        let mut running_max = -1;
        for b in batches.iter().filter(|b| b.base >= segment.base_offset && b.base < segment.next_offset) {
            running_max = running_max.max(b.max_timestamp);
            starts.push((position, b.base, running_max));
            position += b.bytes.len() as u64;
        }
        assert_eq!(position, segment.size, "{ctx}: segment {} size", segment.base_offset);
        let index = std::fs::read(dir.join(file_name(segment.base_offset, "index"))).unwrap_or_else(|e| panic!("{ctx}: .index of {}: {e}", segment.base_offset));
        assert_eq!(index.len(), segment.index_entries * OFFSET_ENTRY_BYTES, "{ctx}: .index file of segment {} vs {segment:?}", segment.base_offset);
        for entry in index.chunks_exact(OFFSET_ENTRY_BYTES) {
            let offset = segment.base_offset + i64::from(u32::from_be_bytes(entry[0..4].try_into().unwrap()));
            let position = u64::from(u32::from_be_bytes(entry[4..8].try_into().unwrap()));
            assert!(
                starts.iter().any(|&(p, base, _)| p == position && base == offset),
                "{ctx}: .index entry (offset {offset}, position {position}) of segment {} names no batch start",
                segment.base_offset
            );
        }
        let time_index = std::fs::read(dir.join(file_name(segment.base_offset, "timeindex"))).unwrap_or_else(|e| panic!("{ctx}: .timeindex of {}: {e}", segment.base_offset));
        assert_eq!(time_index.len(), segment.time_index_entries * TIME_ENTRY_BYTES, "{ctx}: .timeindex file of segment {} vs {segment:?}", segment.base_offset);
        for entry in time_index.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(entry[0..8].try_into().unwrap());
            let offset = segment.base_offset + i64::from(u32::from_be_bytes(entry[8..12].try_into().unwrap()));
            let Some(&(_, _, max_before)) = starts.iter().find(|&&(_, base, _)| base == offset) else {
                panic!("{ctx}: .timeindex entry (timestamp {timestamp}, offset {offset}) of segment {} names no batch", segment.base_offset);
            };
            assert!(max_before <= timestamp, "{ctx}: .timeindex entry (timestamp {timestamp}, offset {offset}) is false: batches up to it reach {max_before}");
        }
    }
}

/// After a reopen: the log holds exactly `expected`, passes `verify`, has valid index files,
/// and takes the next append at the offset after the last expected batch.
async fn check_recovered(log: &mut PartitionLog, dir: &Path, expected: &[Stored], ctx: &str) {
    let end = expected.last().map_or(0, |b| b.last + 1);
    assert_eq!(log.log_end_offset(), end, "{ctx}: log end offset");
    let bytes = log.read(0, u64::MAX).await.unwrap_or_else(|e| panic!("{ctx}: read: {e}")).read_bytes().await.unwrap();
    if bytes != concat(expected) {
        let got: Vec<i64> = parse(&bytes).iter().map(|b| b.base).collect();
        panic!("{ctx}: the log holds batches {got:?}, expected {:?}", expected.iter().map(|b| b.base).collect::<Vec<_>>());
    }
    log.verify().await.unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    check_index_files(dir, &log.segments(), expected, ctx);
    let info = log.append(buf(&batch(1, 5, 3_000, 7)), 4).await.unwrap_or_else(|e| panic!("{ctx}: append: {e}"));
    assert_eq!(info.base_offset, end, "{ctx}: the next append continues after the last surviving batch");
    let next = parse(&log.read(end, u64::MAX).await.unwrap().read_bytes().await.unwrap());
    assert_eq!(next.len(), 1, "{ctx}: the new batch reads back alone");
    assert_eq!(next[0].base, end, "{ctx}");
    log.verify().await.unwrap_or_else(|e| panic!("{ctx}: verify after append: {e}"));
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Cut,
    Flip,
}

/// Cuts, and separately flips, every byte of the last batch of the last segment.
fn torn_last_batch(flush: FlushPolicy, shape: LastSegment) {
    let source = TempDir::new("crash-source");
    let scratch = TempDir::new("crash-case");
    let config = config(flush);
    block_on(async {
        let (written, segments) = write_log(source.path(), &config, shape).await;
        let last = written.last().unwrap().clone();
        let before = &written[..written.len() - 1];
        let last_segment = segments.last().unwrap().clone();
        let log_name = file_name(last_segment.base_offset, "log");
        let batch_start = last_segment.size - last.bytes.len() as u64;
        for position in batch_start..last_segment.size {
            for damage in [Damage::Cut, Damage::Flip] {
                let ctx = format!("{flush:?} {shape:?}: {damage:?} at byte {} of the last batch (file position {position})", position - batch_start);
                copy_dir(source.path(), scratch.path());
                let path = scratch.path().join(&log_name);
                let mut expected = before.to_vec();
                match damage {
                    Damage::Cut => std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(position).unwrap(),
                    Damage::Flip => {
                        let mut bytes = std::fs::read(&path).unwrap();
                        bytes[position as usize] ^= 0xff;
                        if EPOCH_FIELD.contains(&(position - batch_start)) {
                            // Not covered by the CRC (as in Kafka): undetectable, the batch
                            // survives with the flipped epoch.
                            let mut damaged = last.clone();
                            damaged.bytes = bytes[batch_start as usize..].to_vec();
                            expected.push(damaged);
                        }
                        std::fs::write(&path, bytes).unwrap();
                    }
                }
                let mut log = PartitionLog::open(scratch.path(), config.clone()).await.unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
                let report = log.open_report().clone();
                assert!(!report.clean_shutdown, "{ctx}: {report:?}");
                assert!(report.removed_segments.is_empty(), "{ctx}: {report:?}");
                let scanned = report.scanned.iter().find(|(base, _)| *base == last_segment.base_offset);
                let (_, outcome) = scanned.unwrap_or_else(|| panic!("{ctx}: the last segment must be scanned: {report:?}"));
                let valid = if expected.len() == written.len() { last_segment.size } else { batch_start };
                assert_eq!(outcome.valid_bytes, valid, "{ctx}: {outcome:?}");
                assert_eq!(std::fs::metadata(&path).unwrap().len(), valid, "{ctx}: the damaged tail is cut from the file");
                check_recovered(&mut log, scratch.path(), &expected, &ctx).await;
            }
        }
    });
}

#[test]
fn torn_or_flipped_last_batch_flush_never() {
    torn_last_batch(FlushPolicy::Never, LastSegment::Several);
}

#[test]
fn torn_or_flipped_last_batch_flush_every_append() {
    torn_last_batch(FlushPolicy::EveryAppend, LastSegment::Several);
}

#[test]
fn torn_or_flipped_only_batch_of_the_last_segment() {
    torn_last_batch(FlushPolicy::Never, LastSegment::One);
}
