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
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: None,
        flush,
        ..LogConfig::default()
    }
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
            Stored {
                base,
                last: header.last_offset(),
                max_timestamp: header.max_timestamp.get(),
                bytes,
            }
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
async fn write_log(
    dir: &Path,
    config: &LogConfig,
    shape: LastSegment,
) -> (Vec<Stored>, Vec<SegmentInfo>) {
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
    let last_segment_batches =
        all.iter().filter(|b| b.base >= segments.last().unwrap().base_offset).count();
    match shape {
        LastSegment::Several => assert!(
            last_segment_batches > 1 && segments.last().unwrap().index_entries > 0,
            "{segments:?}"
        ),
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
        for b in
            batches.iter().filter(|b| b.base >= segment.base_offset && b.base < segment.next_offset)
        {
            running_max = running_max.max(b.max_timestamp);
            starts.push((position, b.base, running_max));
            position += b.bytes.len() as u64;
        }
        assert_eq!(position, segment.size, "{ctx}: segment {} size", segment.base_offset);
        let index = std::fs::read(dir.join(file_name(segment.base_offset, "index")))
            .unwrap_or_else(|e| panic!("{ctx}: .index of {}: {e}", segment.base_offset));
        assert_eq!(
            index.len(),
            segment.index_entries * OFFSET_ENTRY_BYTES,
            "{ctx}: .index file of segment {} vs {segment:?}",
            segment.base_offset
        );
        for entry in index.chunks_exact(OFFSET_ENTRY_BYTES) {
            let offset = segment.base_offset
                + i64::from(u32::from_be_bytes(entry[0..4].try_into().unwrap()));
            let position = u64::from(u32::from_be_bytes(entry[4..8].try_into().unwrap()));
            assert!(
                starts.iter().any(|&(p, base, _)| p == position && base == offset),
                "{ctx}: .index entry (offset {offset}, position {position}) of segment {} names no batch start",
                segment.base_offset
            );
        }
        let time_index = std::fs::read(dir.join(file_name(segment.base_offset, "timeindex")))
            .unwrap_or_else(|e| panic!("{ctx}: .timeindex of {}: {e}", segment.base_offset));
        assert_eq!(
            time_index.len(),
            segment.time_index_entries * TIME_ENTRY_BYTES,
            "{ctx}: .timeindex file of segment {} vs {segment:?}",
            segment.base_offset
        );
        for entry in time_index.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(entry[0..8].try_into().unwrap());
            let offset = segment.base_offset
                + i64::from(u32::from_be_bytes(entry[8..12].try_into().unwrap()));
            let Some(&(_, _, max_before)) = starts.iter().find(|&&(_, base, _)| base == offset)
            else {
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
    let bytes = log
        .read(0, u64::MAX)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: read: {e}"))
        .read_bytes()
        .await
        .unwrap();
    if bytes != concat(expected) {
        let got: Vec<i64> = parse(&bytes).iter().map(|b| b.base).collect();
        panic!(
            "{ctx}: the log holds batches {got:?}, expected {:?}",
            expected.iter().map(|b| b.base).collect::<Vec<_>>()
        );
    }
    log.verify().await.unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    check_index_files(dir, &log.segments(), expected, ctx);
    let info = log
        .append(buf(&batch(1, 5, 3_000, 7)), 4)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: append: {e}"));
    assert_eq!(
        info.base_offset, end,
        "{ctx}: the next append continues after the last surviving batch"
    );
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
                    Damage::Cut => std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(position)
                        .unwrap(),
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
                let mut log = PartitionLog::open(scratch.path(), config.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
                let report = log.open_report().clone();
                assert!(!report.clean_shutdown, "{ctx}: {report:?}");
                assert!(report.removed_segments.is_empty(), "{ctx}: {report:?}");
                let scanned =
                    report.scanned.iter().find(|(base, _)| *base == last_segment.base_offset);
                let (_, outcome) = scanned.unwrap_or_else(|| {
                    panic!("{ctx}: the last segment must be scanned: {report:?}")
                });
                let valid =
                    if expected.len() == written.len() { last_segment.size } else { batch_start };
                assert_eq!(outcome.valid_bytes, valid, "{ctx}: {outcome:?}");
                assert_eq!(
                    std::fs::metadata(&path).unwrap().len(),
                    valid,
                    "{ctx}: the damaged tail is cut from the file"
                );
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

/// Regression: recovery accepted a batch whose base offset (not covered by the CRC) was
/// flipped upwards, leaving a gap in the offsets and moving the log end past what was written.
#[test]
fn flipped_base_offset_of_the_tail_batch_is_not_accepted_as_a_gap() {
    let dir = TempDir::new("crash-base-offset");
    block_on(async {
        let config = config(FlushPolicy::Never);
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        for i in 0..3 {
            log.append(buf(&batch(2, 10, i, i as u64)), 0).await.unwrap();
        }
        let all = parse(&log.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap());
        drop(log);
        let path = dir.path().join(file_name(0, "log"));
        let mut bytes = std::fs::read(&path).unwrap();
        let tail = bytes.len() - all[2].bytes.len();
        bytes[tail + 7] = 0x40; // base offset 4 -> 64: still increasing, still in the segment
        std::fs::write(&path, bytes).unwrap();
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.log_end_offset(), 4, "{:?}", log.open_report());
        check_recovered(&mut log, dir.path(), &all[..2], "flipped base offset").await;
    });
}

/// Writes a multi-segment log and stops it cleanly or not; returns its batches and segments.
async fn written_log(dir: &Path, clean: bool) -> (Vec<Stored>, Vec<SegmentInfo>) {
    let config = config(FlushPolicy::Never);
    let (all, _) = write_log(dir, &config, LastSegment::Several).await;
    let mut log = PartitionLog::open(dir, config).await.unwrap();
    let segments = log.segments();
    assert!(segments.iter().filter(|s| s.index_entries > 0).count() >= 2, "{segments:?}");
    if clean {
        log.close().await.unwrap();
    } else {
        drop(log);
    }
    (all, segments)
}

fn index_paths(dir: &Path, segments: &[SegmentInfo]) -> Vec<std::path::PathBuf> {
    segments
        .iter()
        .flat_map(|s| {
            [
                dir.join(file_name(s.base_offset, "index")),
                dir.join(file_name(s.base_offset, "timeindex")),
            ]
        })
        .collect()
}

/// Reads from every batch's base offset with a few sizes, each from a fresh copy of `source`
/// (so each read is the first thing that touches the indexes), and checks the bytes and the
/// next offset. Then looks up every batch's timestamps.
async fn check_reads_from_fresh_opens(
    source: &Path,
    scratch: &Path,
    expected: &[Stored],
    ctx: &str,
) {
    let config = config(FlushPolicy::Never);
    for (i, first) in expected.iter().enumerate() {
        for max_bytes in [1u64, 300, 700, 1500, 5000] {
            copy_dir(source, scratch);
            let mut log = PartitionLog::open(scratch, config.clone())
                .await
                .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
            let ctx = format!("{ctx}: read({}, {max_bytes})", first.base);
            let result =
                log.read(first.base, max_bytes).await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let got = parse(&result.read_bytes().await.unwrap());
            assert!(!got.is_empty(), "{ctx}: nothing returned");
            for (k, b) in got.iter().enumerate() {
                assert_eq!(b.bytes, expected[i + k].bytes, "{ctx}: batch #{k} differs");
            }
            assert_eq!(
                result.next_offset(),
                Some(got.last().unwrap().last + 1),
                "{ctx}: next offset disagrees with the bytes: {:?}",
                result.regions
            );
            let mut next = first.base;
            for region in &result.regions {
                assert_eq!(region.first_offset, next, "{ctx}: regions {:?}", result.regions);
                next = region.next_offset;
            }
            drop(log);
        }
        copy_dir(source, scratch);
        let mut log = PartitionLog::open(scratch, config.clone()).await.unwrap();
        // Timestamps increase with offsets here, so a batch's base timestamp finds its base.
        let header = BatchHeader::view(&first.bytes).unwrap();
        let found = log
            .offset_for_timestamp(header.base_timestamp.get())
            .await
            .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp: {e}"));
        assert_eq!(
            found,
            Some((first.base, header.base_timestamp.get())),
            "{ctx}: offset_for_timestamp of batch {}",
            first.base
        );
    }
}

#[test]
fn deleted_index_files_are_rebuilt() {
    for clean in [true, false] {
        let dir = TempDir::new("crash-no-index");
        block_on(async {
            let ctx = format!("deleted indexes, clean stop {clean}");
            let (all, before) = written_log(dir.path(), clean).await;
            for path in index_paths(dir.path(), &before) {
                std::fs::remove_file(&path).unwrap();
            }
            let mut log = PartitionLog::open(dir.path(), config(FlushPolicy::Never)).await.unwrap();
            let report = log.open_report().clone();
            assert_eq!(report.clean_shutdown, clean, "{ctx}");
            let after = log.segments();
            for (old, new) in before.iter().zip(&after) {
                assert_eq!(
                    old.index_entries, new.index_entries,
                    "{ctx}: rebuilt index of segment {}",
                    old.base_offset
                );
                if old.index_entries > 0 {
                    assert!(
                        report.scanned.iter().any(|(base, _)| *base == old.base_offset),
                        "{ctx}: segment {} needs a rebuild: {report:?}",
                        old.base_offset
                    );
                    for extension in ["index", "timeindex"] {
                        let len = std::fs::metadata(
                            dir.path().join(file_name(old.base_offset, extension)),
                        )
                        .unwrap()
                        .len();
                        assert!(
                            len > 0,
                            "{ctx}: .{extension} of segment {} recreated empty",
                            old.base_offset
                        );
                    }
                }
            }
            assert_eq!(before.len(), after.len(), "{ctx}");
            check_recovered(&mut log, dir.path(), &all, &ctx).await;
        });
    }
}

#[test]
fn random_bytes_in_index_files_are_rebuilt() {
    let dir = TempDir::new("crash-garbled-index");
    block_on(async {
        let (all, segments) = written_log(dir.path(), true).await;
        let mut rng = Rng::new(0x1dec5);
        for path in index_paths(dir.path(), &segments) {
            let len = std::fs::metadata(&path).unwrap().len().max(8);
            // Same length (a plausible file size), or a ragged one.
            let len = if rng.below(2) == 0 { len } else { 1 + rng.below(3 * len) };
            std::fs::write(&path, (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>())
                .unwrap();
        }
        let mut log = PartitionLog::open(dir.path(), config(FlushPolicy::Never)).await.unwrap();
        let report = log.open_report().clone();
        assert!(report.clean_shutdown);
        for segment in &segments {
            assert!(
                report.scanned.iter().any(|(base, _)| *base == segment.base_offset),
                "garbage index of segment {} went unnoticed: {report:?}",
                segment.base_offset
            );
        }
        check_recovered(&mut log, dir.path(), &all, "random index bytes").await;
    });
}

/// Rewrites a segment's `.index` with `change` applied to its entries (offset, position).
fn rewrite_index(
    path: &Path,
    base_offset: i64,
    mut change: impl FnMut(usize, i64, u64) -> (i64, u64),
) {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    for (n, entry) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
        let offset = base_offset + i64::from(u32::from_be_bytes(entry[0..4].try_into().unwrap()));
        let position = u64::from(u32::from_be_bytes(entry[4..8].try_into().unwrap()));
        let (offset, position) = change(n, offset, position);
        out.extend_from_slice(&((offset - base_offset) as u32).to_be_bytes());
        out.extend_from_slice(&(position as u32).to_be_bytes());
    }
    std::fs::write(path, out).unwrap();
}

/// Every position shifted by one byte: still increasing and inside the log, so the file
/// decodes, but its last entry no longer sits on a batch. The open notices and rebuilds.
#[test]
fn index_with_shifted_positions_is_rebuilt_on_open() {
    let dir = TempDir::new("crash-shifted-index");
    block_on(async {
        let (all, segments) = written_log(dir.path(), true).await;
        for segment in segments.iter().filter(|s| s.index_entries > 0) {
            rewrite_index(
                &dir.path().join(file_name(segment.base_offset, "index")),
                segment.base_offset,
                |_, offset, position| (offset, position + 1),
            );
        }
        let mut log = PartitionLog::open(dir.path(), config(FlushPolicy::Never)).await.unwrap();
        let report = log.open_report().clone();
        for segment in segments.iter().filter(|s| s.index_entries > 0) {
            assert!(
                report.scanned.iter().any(|(base, _)| *base == segment.base_offset),
                "shifted index of segment {} went unnoticed: {report:?}",
                segment.base_offset
            );
        }
        check_recovered(&mut log, dir.path(), &all, "shifted index").await;
    });
}

/// Moves every `.index` entry but the last `ahead` batches forward (as far as the entries
/// stay increasing): plausible, and invisible to an open that checks only the last entry.
/// Returns how many entries now lie.
fn point_entries_ahead(
    dir: &Path,
    segments: &[SegmentInfo],
    all: &[Stored],
    ahead: usize,
) -> usize {
    let mut changed = 0;
    for segment in segments.iter().filter(|s| s.index_entries > 1) {
        let mut starts = Vec::new(); // batch start positions of this segment
        let mut position = 0u64;
        for b in
            all.iter().filter(|b| b.base >= segment.base_offset && b.base < segment.next_offset)
        {
            starts.push(position);
            position += b.bytes.len() as u64;
        }
        let path = dir.join(file_name(segment.base_offset, "index"));
        let old: Vec<u64> = std::fs::read(&path)
            .unwrap()
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|e| u64::from(u32::from_be_bytes(e[4..8].try_into().unwrap())))
            .collect();
        let mut new = old.clone();
        for n in (0..old.len() - 1).rev() {
            let i = starts.iter().position(|&p| p == old[n]).expect("entry on a batch start");
            if let Some(k) =
                (1..=ahead).rev().find(|&k| starts.get(i + k).is_some_and(|&p| p < new[n + 1]))
            {
                new[n] = starts[i + k];
                changed += 1;
            }
        }
        rewrite_index(&path, segment.base_offset, |n, offset, _| (offset, new[n]));
    }
    changed
}

/// An `.index` whose middle entries point one or two batches too far. Reads and timestamp
/// lookups must still give the right answers, and `verify` must notice the index.
#[test]
fn index_with_wrong_middle_entries_is_detected_by_reads_and_verify() {
    for ahead in [1, 2] {
        let source = TempDir::new("crash-wrong-index");
        let scratch = TempDir::new("crash-wrong-index-case");
        block_on(async {
            let ctx = format!("middle index entries {ahead} batches ahead");
            let (all, segments) = written_log(source.path(), true).await;
            let changed = point_entries_ahead(source.path(), &segments, &all, ahead);
            assert!(changed >= 2, "{ctx}: the test needs wrong entries: {segments:?}");

            // Detected: a fresh open either rebuilt the index or `verify` reports it.
            copy_dir(source.path(), scratch.path());
            let mut log =
                PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            let rebuilt_on_open = segments
                .iter()
                .filter(|s| s.index_entries > 1)
                .all(|s| log.open_report().scanned.iter().any(|(base, _)| *base == s.base_offset));
            match log.verify().await {
                Ok(()) => assert!(
                    rebuilt_on_open,
                    "{ctx}: verify accepted a wrong index: {:?}",
                    log.open_report()
                ),
                Err(error) => assert!(
                    matches!(error, fjord_storage::StorageError::Corrupt { .. }),
                    "{ctx}: {error}"
                ),
            }
            drop(log);

            check_reads_from_fresh_opens(source.path(), scratch.path(), &all, &ctx).await;

            // Every record's timestamp, looked up on a log that has not read anything yet.
            copy_dir(source.path(), scratch.path());
            let mut log =
                PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            for b in &all {
                let header = BatchHeader::view(&b.bytes).unwrap();
                for delta in 0..=(b.last - b.base) {
                    let timestamp = header.base_timestamp.get() + delta;
                    let found = log.offset_for_timestamp(timestamp).await.unwrap_or_else(|e| {
                        panic!("{ctx}: offset_for_timestamp({timestamp}): {e}")
                    });
                    assert_eq!(
                        found,
                        Some((b.base + delta, timestamp)),
                        "{ctx}: offset_for_timestamp({timestamp})"
                    );
                }
            }
            drop(log);

            // Reads that hit the wrong entries rebuild the index in memory; afterwards the log
            // verifies.
            copy_dir(source.path(), scratch.path());
            let mut log =
                PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            for b in &all {
                let got = parse(&log.read(b.base, 1).await.unwrap().read_bytes().await.unwrap());
                assert_eq!(got[0].bytes, b.bytes, "{ctx}");
            }
            log.verify().await.unwrap_or_else(|e| panic!("{ctx}: verify after reads: {e}"));
        });
    }
}

#[test]
fn garbage_checkpoint_means_full_recovery() {
    let source = TempDir::new("crash-checkpoint");
    let scratch = TempDir::new("crash-checkpoint-case");
    block_on(async {
        let (all, segments) = written_log(source.path(), true).await;
        let mut rng = Rng::new(0xc4ec);
        let random =
            |rng: &mut Rng, len: usize| (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>();
        let valid = std::fs::read(source.path().join("checkpoint")).unwrap();
        let mut flipped = valid.clone();
        flipped[9] ^= 0x10; // the recovery offset, under the CRC
        let mut bad_magic = b"FJCX".to_vec();
        bad_magic.extend_from_slice(&valid[4..]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("random 28 bytes", random(&mut rng, 28)),
            ("random 100 bytes", random(&mut rng, 100)),
            ("empty", Vec::new()),
            ("torn", valid[..13].to_vec()),
            ("flipped bit", flipped),
            ("bad magic", bad_magic),
        ];
        for (name, bytes) in cases {
            let ctx = format!("checkpoint {name}");
            copy_dir(source.path(), scratch.path());
            std::fs::write(scratch.path().join("checkpoint"), &bytes).unwrap();
            // A leftover temp file from a checkpoint write that never finished.
            std::fs::write(scratch.path().join("checkpoint.tmp"), random(&mut rng, 28)).unwrap();
            let mut log = PartitionLog::open(scratch.path(), config(FlushPolicy::Never))
                .await
                .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
            let report = log.open_report().clone();
            assert!(
                !report.clean_shutdown,
                "{ctx}: a damaged checkpoint is not trusted: {report:?}"
            );
            let scanned: Vec<i64> = report.scanned.iter().map(|(base, _)| *base).collect();
            let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
            assert_eq!(scanned, bases, "{ctx}: every segment is scanned");
            assert!(report.scanned.iter().all(|(_, o)| o.invalid_bytes == 0), "{ctx}: {report:?}");
            assert!(
                !scratch.path().join("checkpoint.tmp").exists(),
                "{ctx}: the temp file is removed"
            );
            check_recovered(&mut log, scratch.path(), &all, &ctx).await;
            // And the checkpoint is good again: a clean close is trusted.
            log.close().await.unwrap();
            let log = PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            assert!(
                log.open_report().clean_shutdown && log.open_report().scanned.is_empty(),
                "{ctx}: {:?}",
                log.open_report()
            );
        }
    });
}

/// Retention writes the new log start to the checkpoint before deleting files. A crash in
/// between leaves segments wholly below the log start, which the next open removes.
#[test]
fn crash_between_retention_checkpoint_and_file_deletion() {
    let before = TempDir::new("crash-retention-before");
    let after = TempDir::new("crash-retention-after");
    block_on(async {
        let (all, segments) = written_log(before.path(), true).await;
        copy_dir(before.path(), after.path());
        let config = LogConfig { retention_bytes: Some(1), ..config(FlushPolicy::Never) };
        let mut log = PartitionLog::open(after.path(), config.clone()).await.unwrap();
        let outcome = log.apply_retention(0).await.unwrap();
        assert!(outcome.deleted_segments.len() >= 2, "{outcome:?}");
        drop(log);
        // The crash: the new checkpoint is on disk, the old segments are not yet deleted.
        std::fs::copy(after.path().join("checkpoint"), before.path().join("checkpoint")).unwrap();
        let mut log = PartitionLog::open(before.path(), config).await.unwrap();
        assert_eq!(log.log_start_offset(), outcome.log_start_offset);
        assert_eq!(log.open_report().removed_segments, outcome.deleted_segments);
        for base in &outcome.deleted_segments {
            assert!(
                !before.path().join(file_name(*base, "log")).exists(),
                "segment {base} below the log start is deleted"
            );
        }
        assert!(matches!(
            log.read(0, 100).await,
            Err(fjord_storage::StorageError::OffsetOutOfRange { .. })
        ));
        let kept: Vec<Stored> =
            all.iter().filter(|b| b.base >= outcome.log_start_offset).cloned().collect();
        let bytes =
            log.read(outcome.log_start_offset, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        assert_eq!(bytes, concat(&kept));
        log.verify().await.unwrap();
        assert_eq!(log.segments().len(), segments.len() - outcome.deleted_segments.len());
    });
}

/// A `.timeindex` whose timestamps are lowered (still increasing, so it decodes): either all
/// of them, which the open sees in the last entry and rebuilds, or all but the last, which
/// only a lookup that walks past a false entry sees. Reads do not use the time index;
/// timestamp lookups and `verify` must not be fooled.
#[test]
fn time_index_with_understated_timestamps_is_rebuilt_or_detected() {
    for all_entries in [true, false] {
        let source = TempDir::new("crash-wrong-timeindex");
        let scratch = TempDir::new("crash-wrong-timeindex-case");
        block_on(async {
            let ctx = format!("time index lowered, all entries {all_entries}");
            let (all, segments) = written_log(source.path(), true).await;
            let mut changed = 0;
            for segment in segments.iter().filter(|s| s.time_index_entries > 1) {
                let path = source.path().join(file_name(segment.base_offset, "timeindex"));
                let mut bytes = std::fs::read(&path).unwrap();
                let entries = bytes.len() / TIME_ENTRY_BYTES;
                for (n, entry) in bytes.chunks_exact_mut(TIME_ENTRY_BYTES).enumerate() {
                    if all_entries || n + 1 < entries {
                        let timestamp = i64::from_be_bytes(entry[0..8].try_into().unwrap());
                        // Batches are 10 ms apart here: 25 ms makes a lookup skip the batches
                        // just before an entry's own.
                        let lowered = if all_entries { timestamp - 500 } else { timestamp - 25 };
                        entry[0..8].copy_from_slice(&lowered.to_be_bytes());
                        changed += 1;
                    }
                }
                std::fs::write(&path, bytes).unwrap();
            }
            assert!(changed >= 2, "{ctx}: {segments:?}");

            copy_dir(source.path(), scratch.path());
            let mut log =
                PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            let report = log.open_report().clone();
            if all_entries {
                for segment in segments.iter().filter(|s| s.time_index_entries > 1) {
                    assert!(
                        report.scanned.iter().any(|(base, _)| *base == segment.base_offset),
                        "{ctx}: segment {} not rebuilt: {report:?}",
                        segment.base_offset
                    );
                }
                log.verify().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
            } else {
                let error = log.verify().await.unwrap_err();
                assert!(
                    matches!(error, fjord_storage::StorageError::Corrupt { .. }),
                    "{ctx}: {error}"
                );
            }
            assert_eq!(log.segments(), segments, "{ctx}: max timestamps come out right");
            drop(log);

            copy_dir(source.path(), scratch.path());
            let mut log =
                PartitionLog::open(scratch.path(), config(FlushPolicy::Never)).await.unwrap();
            for b in &all {
                let header = BatchHeader::view(&b.bytes).unwrap();
                for delta in 0..=(b.last - b.base) {
                    let timestamp = header.base_timestamp.get() + delta;
                    let found = log.offset_for_timestamp(timestamp).await.unwrap_or_else(|e| {
                        panic!("{ctx}: offset_for_timestamp({timestamp}): {e}")
                    });
                    assert_eq!(
                        found,
                        Some((b.base + delta, timestamp)),
                        "{ctx}: offset_for_timestamp({timestamp})"
                    );
                }
            }
            let bytes = log.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
            assert_eq!(bytes, concat(&all), "{ctx}");
        });
    }
}

/// Regression: a trusted open rescanned, at every clean open, a segment larger than
/// `index_interval_bytes` with no offset index entry (a small batch followed by a large one:
/// no batch starts past the interval), and a closed segment with no time index entry (rebuilt
/// by an earlier scan, which writes no seal entry). Neither index is short; nothing needs a
/// scan.
#[test]
fn clean_open_does_not_rescan_segments_without_index_entries() {
    let dir = TempDir::new("crash-no-rescan");
    block_on(async {
        let config = LogConfig { segment_bytes: 16 * 1024, ..config(FlushPolicy::Never) };
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        log.append(buf(&batch(1, 100, 1_000, 1)), 0).await.unwrap();
        log.append(buf(&batch(1, 5_000, 1_001, 2)), 0).await.unwrap();
        assert_eq!(
            log.segments()[0].index_entries,
            0,
            "the large batch starts before the interval"
        );
        log.roll().await.unwrap();
        log.append(buf(&batch(1, 10, 1_002, 3)), 0).await.unwrap();
        log.close().await.unwrap();
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        assert!(log.open_report().scanned.is_empty(), "{:?}", log.open_report());
        // Without a checkpoint every segment is scanned; the closed one's rebuilt time index
        // is empty (a scan writes no seal entry) and stays so.
        log.append(buf(&batch(1, 10, 1_003, 4)), 0).await.unwrap();
        drop(log);
        std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        assert_eq!(log.open_report().scanned.len(), 2, "{:?}", log.open_report());
        assert_eq!(log.segments()[0].time_index_entries, 0);
        log.close().await.unwrap();
        for _ in 0..2 {
            let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
            assert!(log.open_report().scanned.is_empty(), "{:?}", log.open_report());
            assert_eq!(
                log.segments().iter().map(|s| s.max_timestamp).collect::<Vec<_>>(),
                vec![1_001, 1_003]
            );
            log.verify().await.unwrap();
            log.close().await.unwrap();
        }
    });
}
