//! Property test: random sequences of operations on a real partition log, checked after each
//! one against a simple model (a `Vec` of stamped batches, the segment base offsets, the log
//! start and end offsets).
//!
//! Invariants checked: every read returns whole, contiguous batches starting with the one
//! holding the offset, byte for byte the model's, at least one unless at the log end, within
//! `max_bytes` unless only one, and as many as fit; segments (bases, sizes, next offsets, max
//! timestamps) match the model's roll, truncation and retention rules after every operation;
//! reopens (clean and unclean) lose nothing; `verify` passes after every reopen and at the end.
//!
//! A fixed set of seeds runs every time, then one more seed from `FJORD_SEED` or the time
//! (printed); `FJORD_SEED=<n>` runs that seed alone. A failure names the seed and the
//! operation index.

use std::cell::Cell;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::BytesMut;
use fjord_storage::batch::{self, BatchHeader};
use fjord_storage::io::block_on;
use fjord_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};

use crate::common::*;

/// Seeds run by default: 16 runs of `OPS_PER_SEED` operations stay within a few seconds in a
/// debug build.
const SEEDS: [u64; 16] = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    0x5eed,
    0xdead_beef,
    0xf00d,
    42,
    1_000_003,
    77_777,
    0x1234_5678_9abc,
    31_337,
];
/// Operations per seed: enough for several rolls, truncations, retentions and reopens.
const OPS_PER_SEED: usize = 150;
/// Timestamps start here so that going back in time never goes below zero.
const CLOCK_START_MS: i64 = 1_000_000;

#[derive(Debug, Clone)]
struct ModelBatch {
    base: i64,
    last: i64,
    /// Record `i` has timestamp `base_timestamp + i` (the builder's rule).
    base_timestamp: i64,
    /// The batch as the log must hold it: stamped with its base offset and leader epoch.
    bytes: Vec<u8>,
}

impl ModelBatch {
    fn count(&self) -> i64 {
        self.last - self.base + 1
    }
    fn max_timestamp(&self) -> i64 {
        self.base_timestamp + self.count() - 1
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// What the log should hold.
#[derive(Debug)]
struct Model {
    batches: Vec<ModelBatch>,
    /// Base offsets of the segments, the last one active.
    segments: Vec<i64>,
    start: i64,
    end: i64,
}

impl Model {
    fn new() -> Model {
        Model { batches: Vec::new(), segments: vec![0], start: 0, end: 0 }
    }

    /// Indexes into `batches` of segment `i`'s batches.
    fn segment_batches(&self, i: usize) -> std::ops::Range<usize> {
        let low = self.segments[i];
        let high = self.segments.get(i + 1).copied().unwrap_or(i64::MAX);
        self.batches.partition_point(|b| b.base < low)
            ..self.batches.partition_point(|b| b.base < high)
    }

    fn segment_size(&self, i: usize) -> u64 {
        self.batches[self.segment_batches(i)].iter().map(ModelBatch::size).sum()
    }

    fn segment_max_timestamp(&self, i: usize) -> i64 {
        self.batches[self.segment_batches(i)]
            .iter()
            .map(ModelBatch::max_timestamp)
            .max()
            .unwrap_or(batch::NO_TIMESTAMP)
    }

    fn segment_next_offset(&self, i: usize) -> i64 {
        self.segments.get(i + 1).copied().unwrap_or(self.end)
    }

    /// The index of the batch holding `offset` (offsets are dense, so the first whose last
    /// offset reaches it).
    fn batch_holding(&self, offset: i64) -> Option<usize> {
        let i = self.batches.partition_point(|b| b.last < offset);
        (i < self.batches.len()).then_some(i)
    }

    fn append(&mut self, batches: Vec<ModelBatch>, segment_bytes: u64) {
        let size: u64 = batches.iter().map(ModelBatch::size).sum();
        let active = self.segment_size(self.segments.len() - 1);
        if active > 0 && active + size > segment_bytes {
            self.segments.push(self.end);
        }
        for b in batches {
            assert_eq!(b.base, self.end, "model: batches are dense");
            self.end = b.last + 1;
            self.batches.push(b);
        }
    }

    fn roll(&mut self) {
        if self.segment_size(self.segments.len() - 1) > 0 {
            self.segments.push(self.end);
        }
    }

    /// `truncate_to`: drop the batch holding `offset` and all after; at or below the start,
    /// empty the log and restart it at `offset`.
    fn truncate_to(&mut self, offset: i64) {
        if offset >= self.end {
            return;
        }
        if offset <= self.start {
            self.batches.clear();
            self.segments = vec![offset];
            self.start = offset;
            self.end = offset;
            return;
        }
        let keep = self.batches.partition_point(|b| b.last < offset);
        self.end = self.batches[keep].base;
        self.batches.truncate(keep);
        while self.segments.len() > 1 && *self.segments.last().unwrap() >= offset {
            self.segments.pop();
        }
    }

    /// `apply_retention`: a prefix of closed segments, first by age, then by total size.
    /// Returns the base offsets deleted.
    fn apply_retention(
        &mut self,
        now_ms: i64,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Vec<i64> {
        let closed = self.segments.len() - 1;
        let mut delete = 0;
        if let Some(retention_ms) = retention_ms {
            let cutoff = now_ms.saturating_sub(retention_ms as i64);
            while delete < closed && self.segment_max_timestamp(delete) < cutoff {
                delete += 1;
            }
        }
        if let Some(retention_bytes) = retention_bytes {
            let total: u64 = (0..self.segments.len()).map(|i| self.segment_size(i)).sum();
            let already: u64 = (0..delete).map(|i| self.segment_size(i)).sum();
            let mut excess = total.saturating_sub(retention_bytes).saturating_sub(already);
            while delete < closed && excess >= self.segment_size(delete) && excess > 0 {
                excess -= self.segment_size(delete);
                delete += 1;
            }
        }
        if delete == 0 {
            return Vec::new();
        }
        let deleted: Vec<i64> = self.segments.drain(..delete).collect();
        self.start = self.segments[0].max(self.start);
        let start = self.start;
        self.batches.retain(|b| b.base >= start);
        deleted
    }

    /// The first record at or after `timestamp`, in offset order.
    fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        for b in &self.batches {
            for i in 0..b.count() {
                if b.base_timestamp + i >= timestamp {
                    return Some((b.base + i, b.base_timestamp + i));
                }
            }
        }
        None
    }
}

#[derive(Debug)]
enum Op {
    /// (record count, value bytes, base timestamp, leader epoch) per batch.
    Append(Vec<(usize, usize, i64)>, i32),
    Read {
        offset: i64,
        max_bytes: u64,
    },
    Roll,
    Flush,
    Retention {
        now_ms: i64,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    },
    Truncate(i64),
    ReopenClean,
    ReopenUnclean,
    OffsetForTimestamp(i64),
}

/// How often each interesting path ran, summed over seeds: the default seed set must reach
/// every one, so a change to the generator cannot quietly stop testing something.
#[derive(Debug, Default)]
struct Coverage {
    rolls_by_size: u64,
    explicit_rolls: u64,
    segments_deleted_by_retention: u64,
    truncations_dropping_segments: u64,
    truncations_below_start: u64,
    reads_across_segments: u64,
    reads_cut_by_max_bytes: u64,
    reads_out_of_range: u64,
    timestamp_hits: u64,
    timestamp_misses: u64,
    clean_reopens: u64,
    unclean_reopens_with_scans: u64,
    segments_with_index_entries: u64,
}

impl Coverage {
    fn add(&mut self, other: &Coverage) {
        self.rolls_by_size += other.rolls_by_size;
        self.explicit_rolls += other.explicit_rolls;
        self.segments_deleted_by_retention += other.segments_deleted_by_retention;
        self.truncations_dropping_segments += other.truncations_dropping_segments;
        self.truncations_below_start += other.truncations_below_start;
        self.reads_across_segments += other.reads_across_segments;
        self.reads_cut_by_max_bytes += other.reads_cut_by_max_bytes;
        self.reads_out_of_range += other.reads_out_of_range;
        self.timestamp_hits += other.timestamp_hits;
        self.timestamp_misses += other.timestamp_misses;
        self.clean_reopens += other.clean_reopens;
        self.unclean_reopens_with_scans += other.unclean_reopens_with_scans;
        self.segments_with_index_entries += other.segments_with_index_entries;
    }
}

/// Turns an error into a panic that says where it happened.
trait OrFail<T> {
    fn or_fail(self, ctx: &str, what: &str) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, ctx: &str, what: &str) -> T {
        match self {
            Ok(value) => value,
            Err(error) => panic!("{ctx}: {what} failed: {error}"),
        }
    }
}

/// The value size that makes a one-record batch exactly `size` bytes, if one does.
fn value_bytes_for_batch_size(size: usize) -> Option<usize> {
    // Header 61 bytes, then a record of at most 12 bytes of varints around its value.
    (size.saturating_sub(61 + 12)..=size.saturating_sub(61))
        .find(|&value_bytes| batch(1, value_bytes, 0, 0).len() == size)
}

/// Splits bytes into whole batches, failing (with `ctx`) on a torn one.
fn split_whole(mut bytes: &[u8], ctx: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = BatchHeader::view(bytes)
            .unwrap_or_else(|| panic!("{ctx}: read ends in a torn batch header"));
        let size = header.size() as usize;
        assert!(
            size <= bytes.len(),
            "{ctx}: read ends inside a batch of {size} bytes ({} left)",
            bytes.len()
        );
        out.push(bytes[..size].to_vec());
        bytes = &bytes[size..];
    }
    out
}

struct Run {
    rng: Rng,
    config: LogConfig,
    model: Model,
    clock_ms: i64,
    dir: TempDir,
    /// Whether the checkpoint may still say "clean": the last open was clean and nothing has
    /// changed since (an unchanged log keeps its clean flag).
    clean_on_disk: bool,
    coverage: Coverage,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = Rng::new(seed);
        let segment_bytes = 4096 + rng.below(12 * 1024 + 1);
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: 128 + rng.below(897),
            retention_ms: None,
            retention_bytes: None,
            flush: if rng.below(2) == 0 { FlushPolicy::Never } else { FlushPolicy::EveryAppend },
            ..LogConfig::default()
        };
        Run {
            rng,
            config,
            model: Model::new(),
            clock_ms: CLOCK_START_MS,
            dir: TempDir::new(&format!("property-{seed}")),
            clean_on_disk: false,
            coverage: Coverage::default(),
        }
    }

    fn next_op(&mut self) -> Op {
        let rng = &mut self.rng;
        let model = &self.model;
        match rng.below(100) {
            0..=4 => {
                // One batch that fills the active segment exactly, or overfills it by a byte:
                // the edge of the roll rule.
                let active = model.segment_size(model.segments.len() - 1);
                let target =
                    (self.config.segment_bytes.saturating_sub(active) + rng.below(2)) as usize;
                self.clock_ms += rng.below(50) as i64;
                match value_bytes_for_batch_size(target) {
                    Some(value_bytes) if active > 0 => {
                        Op::Append(vec![(1, value_bytes, self.clock_ms)], 0)
                    }
                    _ => Op::Roll,
                }
            }
            5..=34 => {
                let batches = (0..1 + rng.below(5))
                    .map(|_| {
                        let count = 1 + rng.below(8) as usize;
                        // Mostly small batches; one in eight large enough to roll on its own.
                        let value_bytes =
                            if rng.below(8) == 0 { 1000 + rng.below(5000) } else { rng.below(200) }
                                as usize;
                        // Time mostly moves forward; sometimes a producer's clock is behind.
                        self.clock_ms += rng.below(50) as i64;
                        let timestamp = if rng.below(10) == 0 {
                            self.clock_ms - rng.below(500) as i64
                        } else {
                            self.clock_ms
                        };
                        (count, value_bytes, timestamp)
                    })
                    .collect();
                Op::Append(batches, rng.below(5) as i32)
            }
            35..=59 => {
                let span = (model.end - model.start) as u64;
                let offset = match rng.below(20) {
                    0 => model.start - 1 - rng.below(3) as i64,
                    1 => model.end + 1 + rng.below(3) as i64,
                    2 => model.end,
                    _ => model.start + rng.below(span + 1) as i64,
                };
                let max_bytes = match rng.below(8) {
                    0 => rng.below(100),
                    1 => 1 << 20,
                    2 => u64::MAX,
                    // Exactly the size of the next few batches (or one byte less), where an
                    // off-by-one in the fit test would show.
                    3 | 4 => match model.batch_holding(offset) {
                        Some(first) => {
                            let k = 1 + rng.below(6) as usize;
                            let exact: u64 =
                                model.batches[first..].iter().take(k).map(ModelBatch::size).sum();
                            exact - rng.below(2)
                        }
                        None => rng.below(1000),
                    },
                    _ => rng.below(3 * self.config.segment_bytes),
                };
                Op::Read { offset, max_bytes }
            }
            60..=64 => Op::Roll,
            65..=67 => Op::Flush,
            68..=73 => {
                // Limits either anywhere, or exactly at (or one past) a segment boundary, where
                // an off-by-one in `<` versus `<=` would show.
                let now_ms = self.clock_ms;
                let k = rng.below(model.segments.len() as u64) as usize;
                let oldest =
                    model.batches.iter().map(ModelBatch::max_timestamp).min().unwrap_or(now_ms);
                let retention_ms = match rng.below(4) {
                    0 | 1 => None,
                    2 => Some(rng.below((now_ms - oldest).max(0) as u64 + 100)),
                    _ => {
                        let cutoff = model.segment_max_timestamp(k).max(0) + rng.below(2) as i64;
                        Some((now_ms - cutoff).max(0) as u64)
                    }
                };
                let total: u64 = model.batches.iter().map(ModelBatch::size).sum();
                let prefix: u64 = (0..k).map(|i| model.segment_size(i)).sum();
                let retention_bytes = match rng.below(4) {
                    0 if retention_ms.is_some() => None,
                    0 | 1 => Some(rng.below(total + 1)),
                    _ => Some(total.saturating_sub(prefix + rng.below(2))),
                };
                Op::Retention { now_ms, retention_ms, retention_bytes }
            }
            74..=79 => {
                let span = (model.end - model.start) as u64;
                let offset = match rng.below(10) {
                    0 => (model.start - rng.below(3) as i64).max(0),
                    1 => model.end + rng.below(2) as i64,
                    _ => model.start + rng.below(span + 1) as i64,
                };
                Op::Truncate(offset)
            }
            80..=84 => Op::ReopenClean,
            85..=89 => Op::ReopenUnclean,
            _ => {
                let oldest =
                    model.batches.iter().map(|b| b.base_timestamp).min().unwrap_or(CLOCK_START_MS);
                let span = (self.clock_ms - oldest).max(0) as u64 + 20;
                if rng.below(2) == 0 || model.batches.is_empty() {
                    Op::OffsetForTimestamp(oldest - 10 + rng.below(span) as i64)
                } else {
                    // A timestamp some batch has (or just misses), where index entries sit.
                    let b = &model.batches[rng.below(model.batches.len() as u64) as usize];
                    let timestamp = [
                        b.base_timestamp,
                        b.max_timestamp(),
                        b.max_timestamp() + 1,
                        b.base_timestamp - 1,
                    ][rng.below(4) as usize];
                    Op::OffsetForTimestamp(timestamp)
                }
            }
        }
    }

    async fn execute(&mut self, log: PartitionLog, op: &Op, ctx: &str) -> PartitionLog {
        let mut log = log;
        let before = (self.model.start, self.model.end, self.model.segments.clone());
        let model = &mut self.model;
        match op {
            Op::Append(specs, epoch) => {
                let mut bytes = BytesMut::new();
                let mut batches = Vec::new();
                let mut next = model.end;
                for &(count, value_bytes, timestamp) in specs {
                    let raw = batch(count, value_bytes, timestamp, self.rng.next_u64());
                    bytes.extend_from_slice(&raw);
                    let mut stamped = raw;
                    batch::stamp(&mut stamped, next, *epoch);
                    batches.push(ModelBatch {
                        base: next,
                        last: next + count as i64 - 1,
                        base_timestamp: timestamp,
                        bytes: stamped,
                    });
                    next += count as i64;
                }
                let info = log.append(bytes, *epoch).await.or_fail(ctx, "append");
                assert_eq!(info.base_offset, model.end, "{ctx}: append base offset");
                assert_eq!(info.last_offset, next - 1, "{ctx}: append last offset");
                assert_eq!(info.batch_count, specs.len(), "{ctx}: append batch count");
                let max_timestamp = batches.iter().map(ModelBatch::max_timestamp).max().unwrap();
                assert_eq!(info.max_timestamp, max_timestamp, "{ctx}: append max timestamp");
                let segments = model.segments.len();
                model.append(batches, self.config.segment_bytes);
                self.coverage.rolls_by_size += (model.segments.len() - segments) as u64;
                if self.config.flush == FlushPolicy::EveryAppend {
                    assert_eq!(
                        log.durable_offset(),
                        model.end,
                        "{ctx}: EveryAppend must make the append durable"
                    );
                }
            }
            Op::Read { offset, max_bytes } => {
                check_read(&mut log, model, *offset, *max_bytes, ctx, &mut self.coverage).await
            }
            Op::Roll => {
                log.roll().await.or_fail(ctx, "roll");
                let segments = model.segments.len();
                model.roll();
                self.coverage.explicit_rolls += (model.segments.len() - segments) as u64;
            }
            Op::Flush => {
                log.flush().await.or_fail(ctx, "flush");
                assert_eq!(
                    log.durable_offset(),
                    model.end,
                    "{ctx}: flush makes everything durable"
                );
            }
            Op::Retention { now_ms, retention_ms, retention_bytes } => {
                self.config.retention_ms = *retention_ms;
                self.config.retention_bytes = *retention_bytes;
                log.set_config(self.config.clone()).or_fail(ctx, "set_config");
                let outcome = log.apply_retention(*now_ms).await.or_fail(ctx, "apply_retention");
                let deleted = model.apply_retention(*now_ms, *retention_ms, *retention_bytes);
                assert_eq!(
                    outcome.deleted_segments, deleted,
                    "{ctx}: retention deleted other segments than the model"
                );
                assert_eq!(outcome.log_start_offset, model.start, "{ctx}: retention log start");
                self.coverage.segments_deleted_by_retention += deleted.len() as u64;
            }
            Op::Truncate(offset) => {
                let end = log.truncate_to(*offset).await.or_fail(ctx, "truncate_to");
                let segments = model.segments.len();
                if *offset < model.end && *offset <= model.start {
                    self.coverage.truncations_below_start += 1;
                }
                model.truncate_to(*offset);
                if model.segments.len() < segments {
                    self.coverage.truncations_dropping_segments += 1;
                }
                assert_eq!(end, model.end, "{ctx}: truncate_to returns the new log end");
                log.verify().await.or_fail(ctx, "verify after truncate_to");
            }
            Op::ReopenClean => {
                log.close().await.or_fail(ctx, "close");
                log = PartitionLog::open(self.dir.path(), self.config.clone())
                    .await
                    .or_fail(ctx, "clean reopen");
                let report = log.open_report();
                assert!(
                    report.clean_shutdown,
                    "{ctx}: close() must leave a clean checkpoint: {report:?}"
                );
                assert!(report.scanned.is_empty(), "{ctx}: a clean open scans nothing: {report:?}");
                assert!(
                    report.removed_segments.is_empty(),
                    "{ctx}: a clean open removes nothing: {report:?}"
                );
                self.clean_on_disk = true;
                self.coverage.clean_reopens += 1;
                log.verify().await.or_fail(ctx, "verify after clean reopen");
            }
            Op::ReopenUnclean => {
                drop(log);
                log = PartitionLog::open(self.dir.path(), self.config.clone())
                    .await
                    .or_fail(ctx, "unclean reopen");
                let report = log.open_report();
                assert_eq!(report.clean_shutdown, self.clean_on_disk, "{ctx}: a dropped log is a clean shutdown only if unchanged since a clean open: {report:?}");
                self.clean_on_disk = report.clean_shutdown;
                self.coverage.unclean_reopens_with_scans += u64::from(!report.scanned.is_empty());
                // Nothing was really lost (the page cache holds every write), so a scan
                // finds no damage and removes nothing.
                assert!(
                    report.scanned.iter().all(|(_, outcome)| outcome.invalid_bytes == 0),
                    "{ctx}: scan found damage: {report:?}"
                );
                assert!(
                    report.removed_segments.is_empty(),
                    "{ctx}: unclean open removed segments: {report:?}"
                );
                log.verify().await.or_fail(ctx, "verify after unclean reopen");
            }
            Op::OffsetForTimestamp(timestamp) => {
                let found =
                    log.offset_for_timestamp(*timestamp).await.or_fail(ctx, "offset_for_timestamp");
                assert_eq!(
                    found,
                    model.offset_for_timestamp(*timestamp),
                    "{ctx}: offset_for_timestamp"
                );
                if found.is_some() {
                    self.coverage.timestamp_hits += 1;
                } else {
                    self.coverage.timestamp_misses += 1;
                }
            }
        }
        if before != (self.model.start, self.model.end, self.model.segments.clone()) {
            self.clean_on_disk = false;
        }
        check_shape(&log, &self.model, ctx);
        log
    }
}

/// Offsets, sizes and segments agree with the model.
fn check_shape(log: &PartitionLog, model: &Model, ctx: &str) {
    assert_eq!(
        model.segments[0], model.start,
        "{ctx}: model invariant: the first segment starts at the log start"
    );
    assert_eq!(log.log_start_offset(), model.start, "{ctx}: log start offset");
    assert_eq!(log.log_end_offset(), model.end, "{ctx}: log end offset");
    assert!(log.durable_offset() <= log.log_end_offset(), "{ctx}: durable offset past the log end");
    let segments = log.segments();
    let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
    assert_eq!(bases, model.segments, "{ctx}: segment base offsets");
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(
            segment.size,
            model.segment_size(i),
            "{ctx}: size of segment {}",
            segment.base_offset
        );
        assert_eq!(
            segment.next_offset,
            model.segment_next_offset(i),
            "{ctx}: next offset of segment {}",
            segment.base_offset
        );
        assert_eq!(
            segment.max_timestamp,
            model.segment_max_timestamp(i),
            "{ctx}: max timestamp of segment {}",
            segment.base_offset
        );
    }
    assert_eq!(
        log.size_bytes(),
        model.batches.iter().map(ModelBatch::size).sum::<u64>(),
        "{ctx}: log size"
    );
}

async fn check_read(
    log: &mut PartitionLog,
    model: &Model,
    offset: i64,
    max_bytes: u64,
    ctx: &str,
    coverage: &mut Coverage,
) {
    let result = log.read(offset, max_bytes).await;
    if offset < model.start || offset > model.end {
        match result {
            Err(StorageError::OffsetOutOfRange {
                offset: o,
                log_start_offset,
                log_end_offset,
                ..
            }) => {
                assert_eq!(
                    (o, log_start_offset, log_end_offset),
                    (offset, model.start, model.end),
                    "{ctx}: out-of-range evidence"
                );
            }
            other => panic!(
                "{ctx}: read outside [{}, {}] must be OffsetOutOfRange, got {other:?}",
                model.start, model.end
            ),
        }
        coverage.reads_out_of_range += 1;
        return;
    }
    let result = result.or_fail(ctx, "read");
    if offset == model.end {
        assert!(
            result.regions.is_empty(),
            "{ctx}: a read at the log end returns nothing: {result:?}"
        );
        return;
    }
    let bytes = result.read_bytes().await.or_fail(ctx, "read_bytes");
    assert_eq!(bytes.len() as u64, result.bytes(), "{ctx}: region lengths");
    let got = split_whole(&bytes, ctx);
    assert!(!got.is_empty(), "{ctx}: a read below the log end returns at least one batch");
    let first = model
        .batch_holding(offset)
        .unwrap_or_else(|| panic!("{ctx}: model has no batch for {offset}"));
    assert!(
        first + got.len() <= model.batches.len(),
        "{ctx}: read returned {} batches, the model has {} from {first}",
        got.len(),
        model.batches.len() - first
    );
    for (k, batch_bytes) in got.iter().enumerate() {
        let expected = &model.batches[first + k];
        if *batch_bytes != expected.bytes {
            panic!(
                "{ctx}: batch #{k} of the read differs from the model's batch at offset {} ({} vs {} bytes)",
                expected.base,
                batch_bytes.len(),
                expected.bytes.len()
            );
        }
    }
    let total = bytes.len() as u64;
    if got.len() > 1 {
        assert!(
            total <= max_bytes,
            "{ctx}: {} batches of {total} bytes exceed max_bytes {max_bytes}",
            got.len()
        );
    }
    if let Some(next) = model.batches.get(first + got.len()) {
        assert!(total + next.size() > max_bytes, "{ctx}: read stopped at {total} bytes although the next batch ({} bytes) fits in {max_bytes}", next.size());
        coverage.reads_cut_by_max_bytes += 1;
    }
    coverage.reads_across_segments += u64::from(result.regions.len() > 1);
    let last = &model.batches[first + got.len() - 1];
    assert_eq!(result.next_offset(), Some(last.last + 1), "{ctx}: next offset of the read");
    let mut expected_first = model.batches[first].base;
    for region in &result.regions {
        assert!(region.len > 0, "{ctx}: empty region {region:?}");
        assert_eq!(
            region.first_offset, expected_first,
            "{ctx}: regions are contiguous: {:?}",
            result.regions
        );
        assert!(region.next_offset > region.first_offset, "{ctx}: region {region:?}");
        expected_first = region.next_offset;
    }
}

async fn run(seed: u64, op_index: &Cell<usize>) -> Coverage {
    let mut run = Run::new(seed);
    let mut log =
        PartitionLog::open(run.dir.path(), run.config.clone()).await.expect("open a new log");
    for i in 0..OPS_PER_SEED {
        op_index.set(i);
        let op = run.next_op();
        let ctx = format!("seed {seed} op {i} {op:?} (config {:?})", run.config);
        log = run.execute(log, &op, &ctx).await;
        run.coverage.segments_with_index_entries +=
            log.segments().iter().filter(|s| s.index_entries > 0).count() as u64;
    }
    let ctx = format!("seed {seed} end");
    // Everything the model holds, read back in one go.
    check_read(&mut log, &run.model, run.model.start, u64::MAX, &ctx, &mut run.coverage).await;
    log.verify().await.or_fail(&ctx, "verify");
    log.close().await.or_fail(&ctx, "close");
    let mut log =
        PartitionLog::open(run.dir.path(), run.config.clone()).await.or_fail(&ctx, "final reopen");
    check_shape(&log, &run.model, &ctx);
    log.verify().await.or_fail(&ctx, "verify after final reopen");
    run.coverage
}

fn run_seed(seed: u64) -> Coverage {
    let op_index = Cell::new(usize::MAX);
    let result = catch_unwind(AssertUnwindSafe(|| block_on(run(seed, &op_index))));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(non-string panic)");
        panic!("property test failed: seed {seed}, op index {} (rerun with FJORD_SEED={seed}): {message}", op_index.get())
    })
}

#[test]
fn random_operations_match_the_model() {
    let chosen = std::env::var_os(fjord_storage::sim::SEED_VARIABLE).is_some();
    let seed = fjord_storage::sim::seed("property");
    if chosen {
        run_seed(seed);
        return;
    }
    // The fixed set (whose coverage is checked), then the printed seed of this run.
    let mut total = Coverage::default();
    for seed in SEEDS {
        total.add(&run_seed(seed));
    }
    eprintln!("property coverage over {} seeds: {total:?}", SEEDS.len());
    let all = format!("{total:?}");
    assert!(
        !all.contains(": 0,") && !all.contains(": 0 }"),
        "a path was never exercised by the seed set: {all}"
    );
    run_seed(seed);
}

/// Regression: `read` with `max_bytes = u64::MAX` from a batch inside a segment (position
/// > 0) overflowed `position + max_bytes` (a panic in debug builds, a one-batch answer in
/// >    release builds).
#[test]
fn read_with_u64_max_bytes_from_inside_a_segment() {
    let dir = TempDir::new("property-read-max");
    block_on(async {
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            retention_ms: None,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        for i in 0..10 {
            log.append(buf(&batch(2, 20, i, i as u64)), 0).await.unwrap();
        }
        let result = log.read(6, u64::MAX).await.unwrap();
        let batches = split_batches(&result.read_bytes().await.unwrap());
        assert_eq!(batches.iter().map(|b| b.0).collect::<Vec<_>>(), vec![6, 8, 10, 12, 14, 16, 18]);
        assert_eq!(result.next_offset(), Some(20));
    });
}
