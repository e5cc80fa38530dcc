//! Storage engine benchmarks: what `PartitionLog` costs on top of the io_uring calls it makes.
//!
//! Every Fjord case runs next to a baseline that moves the same bytes with plain
//! `fjord_storage::io::File` calls, in the same temp directory, in the same criterion group
//! and run. The machine is shared and noisy, so absolute numbers drift between runs; the
//! ratio of a case to its baseline, measured minutes apart, is what these benches are for.
//! `benches/ratios.py` turns `target/criterion` into the table in `docs/benchmarks.md`.
//!
//! - `append_never/{fjord,baseline}/<batch>` and `append_fdatasync/...`: one append call
//!   carries `GROUP_BYTES` of batches of the given size (one batch for 1 MiB). The baseline
//!   is one `write_all_at` of the same bytes at the next position (plus `sync_data` per call
//!   in the fdatasync variant).
//! - `read/{fjord,baseline,fjord_regions_only}/<batch>`: sequential fetches of up to
//!   `READ_BYTES_MAX` from a prefilled log in the page cache: `read` + `read_bytes`, a plain
//!   `read_at` of the same byte ranges, and `read` alone (resolving regions, no copy).
//! - `index/lookup/250k_entries` and `validate/batch/<batch>`: the CPU-only parts.
//!
//! Timing: each sample runs its whole loop inside one `block_on` (one tokio-uring runtime per
//! sample, built outside the timed part) and `iter_custom` gets only the time spent in the
//! measured calls, taken with `Instant`. Buffer copies (append consumes its buffer), log
//! opens and file rotation are not timed. Files live under `std::env::temp_dir()` (the real
//! disk, not tmpfs) and are rotated every `FILE_BYTES_MAX`, so no segment ever rolls inside
//! a measurement and no file grows without bound.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fjord_storage::batch::{self, build, Origin};
use fjord_storage::io::{self, block_on, File};
use fjord_storage::{file_name, FlushPolicy, LogConfig, OffsetIndex, PartitionLog};

/// Bytes carried by one append call: a Produce request's worth of batches for one partition.
const GROUP_BYTES: usize = 1024 * 1024;
/// Segment size of every bench log: large enough that rotation (below) always comes first.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
/// A log (or baseline file) is replaced by a fresh one before it passes this many bytes, so
/// no roll (with its fdatasync of the whole segment) lands inside a measurement.
const FILE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// Bytes prefilled into each read log: many fetches' worth, small enough to stay cached.
const READ_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// `max_bytes` of one read: Kafka's default `max.partition.fetch.bytes`.
const READ_BYTES_MAX: u64 = 1024 * 1024;
/// Value bytes of every record: small records, so per-record validation work is not hidden.
const VALUE_BYTES: usize = 100;
/// Entries in the lookup benchmark's offset index: a 1 GiB segment at a 4 KiB interval.
const INDEX_ENTRIES: usize = 250_000;
/// Distinct lookup targets, cycled through; a power of two so the cycle is a mask.
const LOOKUP_TARGETS: usize = 4096;
/// Seed of the lookup targets, fixed so runs are comparable.
const LOOKUP_SEED: u64 = 0x5EED_F70D;
const TIMESTAMP: i64 = 1_700_000_000_000;
const LEADER_EPOCH: i32 = 7;

/// The batch sizes under test: (label, upper bound of the batch size in bytes).
const BATCH_SIZES: [(&str, usize); 3] =
    [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)];

/// The largest batch built with `VALUE_BYTES` records that is at most `size_max` bytes.
fn batch_near(size_max: usize) -> Vec<u8> {
    let (mut low, mut high) = (1usize, size_max / VALUE_BYTES + 1);
    // Invariant: a batch of `low` records fits, one of `high` does not.
    assert!(build::batch_of(low, VALUE_BYTES, TIMESTAMP, 1).len() <= size_max);
    assert!(build::batch_of(high, VALUE_BYTES, TIMESTAMP, 1).len() > size_max);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if build::batch_of(mid, VALUE_BYTES, TIMESTAMP, 1).len() <= size_max {
            low = mid;
        } else {
            high = mid;
        }
    }
    build::batch_of(low, VALUE_BYTES, TIMESTAMP, 1)
}

/// As many copies of `batch` as fit in `GROUP_BYTES` (at least one), concatenated.
fn group_of(batch: &[u8]) -> Vec<u8> {
    let count = (GROUP_BYTES / batch.len()).max(1);
    let group = batch.repeat(count);
    assert!(group.len() <= GROUP_BYTES);
    group
}

fn log_config(flush: FlushPolicy) -> LogConfig {
    LogConfig { segment_bytes: SEGMENT_BYTES, flush, ..LogConfig::default() }
}

/// The bench's directory under the system temp dir, removed when dropped.
struct BenchDir {
    root: PathBuf,
    next: u64,
}

impl BenchDir {
    fn new() -> BenchDir {
        let root = std::env::temp_dir().join(format!("fjord-bench-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("bench: create temp dir");
        BenchDir { root, next: 0 }
    }

    /// A new, empty subdirectory.
    fn fresh(&mut self, name: &str) -> PathBuf {
        self.next += 1;
        let dir = self.root.join(format!("{name}-{}", self.next));
        std::fs::create_dir_all(&dir).expect("bench: create subdir");
        dir
    }

    /// Removes `dir` and commits the removal (ext4 with `discard` frees the blocks at the
    /// journal commit), so that work is not charged to the next timed fdatasync.
    fn remove(&self, dir: &Path) {
        std::fs::remove_dir_all(dir).expect("bench: remove subdir");
        std::fs::File::open(&self.root)
            .and_then(|root| root.sync_all())
            .expect("bench: sync temp dir");
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `iters` appends of `group` through `PartitionLog::append`; only the append calls are timed.
fn append_fjord(dirs: &mut BenchDir, group: &[u8], flush: FlushPolicy, iters: u64) -> Duration {
    block_on(async {
        let mut elapsed = Duration::ZERO;
        let mut current: Option<(PartitionLog, PathBuf)> = None;
        let mut written = 0u64;
        for _ in 0..iters {
            if current.is_none() || written + group.len() as u64 > FILE_BYTES_MAX {
                if let Some((log, dir)) = current.take() {
                    drop(log);
                    dirs.remove(&dir);
                }
                let dir = dirs.fresh("append-fjord");
                let log =
                    PartitionLog::open(&dir, log_config(flush)).await.expect("bench: open log");
                current = Some((log, dir));
                written = 0;
            }
            let log = &mut current.as_mut().expect("opened above").0;
            let buf = BytesMut::from(group);
            let start = Instant::now();
            log.append(buf, LEADER_EPOCH).await.expect("bench: append");
            elapsed += start.elapsed();
            written += group.len() as u64;
        }
        if let Some((log, dir)) = current.take() {
            drop(log);
            dirs.remove(&dir);
        }
        elapsed
    })
}

/// The baseline of `append_fjord`: the same bytes with `write_all_at` at increasing
/// positions of one file (and `sync_data` after each write when `sync`).
fn append_baseline(dirs: &mut BenchDir, group: &[u8], sync: bool, iters: u64) -> Duration {
    block_on(async {
        let mut elapsed = Duration::ZERO;
        let mut current: Option<(File, PathBuf)> = None;
        let mut position = 0u64;
        for _ in 0..iters {
            if current.is_none() || position + group.len() as u64 > FILE_BYTES_MAX {
                if let Some((file, dir)) = current.take() {
                    file.close().await.expect("bench: close");
                    dirs.remove(&dir);
                }
                let dir = dirs.fresh("append-baseline");
                let file = File::open_rw(&dir.join(file_name(0, "log")), true)
                    .await
                    .expect("bench: open file");
                // As `PartitionLog::open` does for a new segment: the new name is durable.
                io::sync_dir(&dir).await.expect("bench: sync dir");
                current = Some((file, dir));
                position = 0;
            }
            let file = &current.as_ref().expect("opened above").0;
            let buf = BytesMut::from(group);
            let start = Instant::now();
            let (result, buf) = file.write_all_at(buf, position).await;
            result.expect("bench: write");
            if sync {
                file.sync_data().await.expect("bench: fdatasync");
            }
            // `append` drops its buffer inside the call; so does the baseline.
            drop(buf);
            elapsed += start.elapsed();
            position += group.len() as u64;
        }
        if let Some((file, dir)) = current.take() {
            file.close().await.expect("bench: close");
            dirs.remove(&dir);
        }
        elapsed
    })
}

fn bench_append(c: &mut Criterion) {
    let mut dirs = BenchDir::new();
    for (group_name, flush, sync) in [
        ("append_never", FlushPolicy::Never, false),
        ("append_fdatasync", FlushPolicy::EveryAppend, true),
    ] {
        let mut group = c.benchmark_group(group_name);
        for (label, size_max) in BATCH_SIZES {
            let bytes = group_of(&batch_near(size_max));
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(BenchmarkId::new("fjord", label), |b| {
                b.iter_custom(|iters| append_fjord(&mut dirs, &bytes, flush, iters))
            });
            group.bench_function(BenchmarkId::new("baseline", label), |b| {
                b.iter_custom(|iters| append_baseline(&mut dirs, &bytes, sync, iters))
            });
        }
        group.finish();
    }
}

/// One fetch of the read plan: where it starts as an offset, and the bytes it returns.
#[derive(Debug, Clone, Copy)]
struct ReadStep {
    offset: i64,
    position: u64,
    len: u64,
}

/// Fills a log with `READ_LOG_BYTES` of `group`s, closes it cleanly (so reopening it per
/// sample is cheap) and returns the sequential fetches that cover it.
fn prefill_read_log(dir: &Path, group: &[u8]) -> Vec<ReadStep> {
    block_on(async {
        let mut log =
            PartitionLog::open(dir, log_config(FlushPolicy::Never)).await.expect("bench: open log");
        while log.size_bytes() + (group.len() as u64) <= READ_LOG_BYTES {
            log.append(BytesMut::from(group), LEADER_EPOCH).await.expect("bench: prefill append");
        }
        let mut plan = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let result = log.read(offset, READ_BYTES_MAX).await.expect("bench: plan read");
            // One segment, so one region per read.
            assert_eq!(result.regions.len(), 1, "a read plan step spans segments");
            let region = &result.regions[0];
            plan.push(ReadStep { offset, position: region.position, len: region.len });
            offset = region.next_offset;
        }
        assert_eq!(log.segments().len(), 1, "the read log rolled; raise SEGMENT_BYTES");
        log.close().await.expect("bench: close log");
        plan
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// `read` and then `read_bytes` of every region: a fetch that copies to user space.
    Fjord,
    /// `read` alone: the cost of resolving offsets to file regions (a splice fetch).
    FjordRegionsOnly,
    /// `read_at` of the same byte ranges on the segment file.
    Baseline,
}

fn read_sample(dir: &Path, plan: &[ReadStep], mode: ReadMode, iters: u64) -> Duration {
    block_on(async {
        let mut log =
            PartitionLog::open(dir, log_config(FlushPolicy::Never)).await.expect("bench: open log");
        let file =
            File::open_read(&dir.join(file_name(0, "log"))).await.expect("bench: open segment");
        let steps = plan.iter().cycle().take(iters as usize);
        let start = Instant::now();
        match mode {
            ReadMode::Fjord => {
                for step in steps {
                    let result = log.read(step.offset, READ_BYTES_MAX).await.expect("bench: read");
                    for region in &result.regions {
                        black_box(region.read_bytes().await.expect("bench: read bytes"));
                    }
                }
            }
            ReadMode::FjordRegionsOnly => {
                for step in steps {
                    black_box(log.read(step.offset, READ_BYTES_MAX).await.expect("bench: read"));
                }
            }
            ReadMode::Baseline => {
                for step in steps {
                    black_box(
                        file.read_at(step.position, step.len as usize)
                            .await
                            .expect("bench: read_at"),
                    );
                }
            }
        }
        let elapsed = start.elapsed();
        file.close().await.expect("bench: close segment");
        drop(log);
        elapsed
    })
}

fn bench_read(c: &mut Criterion) {
    let mut dirs = BenchDir::new();
    let mut group = c.benchmark_group("read");
    for (label, size_max) in BATCH_SIZES {
        let bytes = group_of(&batch_near(size_max));
        let dir = dirs.fresh("read");
        let plan = prefill_read_log(&dir, &bytes);
        let plan_bytes: u64 = plan.iter().map(|step| step.len).sum();
        group.throughput(Throughput::Bytes(plan_bytes / plan.len() as u64));
        for (name, mode) in [
            ("fjord", ReadMode::Fjord),
            ("baseline", ReadMode::Baseline),
            ("fjord_regions_only", ReadMode::FjordRegionsOnly),
        ] {
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| read_sample(&dir, &plan, mode, iters))
            });
        }
        dirs.remove(&dir);
    }
    group.finish();
}

/// SplitMix64, for the lookup targets.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bench_index_and_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    // About 40 offsets per 4 KiB interval (records of ~100 bytes), one entry per interval.
    let offsets_per_entry = 37i64;
    let mut index = OffsetIndex::new(0);
    for n in 1..=INDEX_ENTRIES {
        index.push(n as i64 * offsets_per_entry, n as u64 * 4096);
    }
    let offset_end = (INDEX_ENTRIES as i64 + 1) * offsets_per_entry;
    let mut state = LOOKUP_SEED;
    let targets: Vec<i64> =
        (0..LOOKUP_TARGETS).map(|_| (splitmix(&mut state) % offset_end as u64) as i64).collect();
    group.bench_function(BenchmarkId::new("lookup", "250k_entries"), |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = (n + 1) & (LOOKUP_TARGETS - 1);
            index.lookup(black_box(targets[n]))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("validate");
    let batch_bytes_max = LogConfig::default().batch_bytes_max;
    for (label, size_max) in BATCH_SIZES {
        let bytes = batch_near(size_max);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("batch", label), |b| {
            b.iter(|| {
                batch::validate(black_box(&bytes), batch_bytes_max, Origin::Client)
                    .expect("bench: valid batch")
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // A few minutes for the whole suite on a two-core machine.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_append, bench_read, bench_index_and_validate
}
criterion_main!(benches);
