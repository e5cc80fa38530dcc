//! Simulation: the partition log on a simulated disk and clock (`fjord_storage::sim`),
//! driven through many seeded schedules of appends (all four paths), rolls, flushes (direct
//! and group commit), truncations, retention, log-start moves, reads, clean reopens and
//! crashes at any point, with EIO, ENOSPC, torn, scattered and misdirected writes injected.
//!
//! Invariants checked:
//! - everything acknowledged as durable (below `durable_offset` when the crash came)
//!   survives it;
//! - recovery accepts no corrupt byte: every batch read back after a reopen passes its CRC,
//!   offsets are contiguous, and each equals, byte for byte, what was appended (or what a
//!   failed append tried to write: unacknowledged, it may or may not be there);
//! - reopening twice (a second crash right after recovery) gives the same log;
//! - an I/O failure latches: after one, the log refuses every call;
//! - reads at any time return exactly the appended batches; `verify` passes after reopens.
//!
//! One seed for everything: `FJORD_SEED` (printed at the start). Schedule `i` runs on seed
//! `FJORD_SEED + i`, so `FJORD_SEED=<that> FJORD_SIM_SCHEDULES=1` replays one schedule
//! alone. `FJORD_SIM_SCHEDULES` sets how many schedules run; `FJORD_SIM_TRACE=1` prints each
//! operation with the log and model state.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use fjord_storage::batch::{self, build, Origin};
use fjord_storage::sim::{
    schedules, seed, Faults, Rng, SimClock, SimDisk, SimStats, SCHEDULES_VARIABLE,
};
use fjord_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError, BATCH_BYTES_LIMIT_MAX};

type SimLog = PartitionLog<SimDisk, SimClock>;

/// Schedules per run by default: thousands, within a few seconds of a debug build.
const SCHEDULES_DEFAULT: u64 = 2_000;
/// Operations in one schedule, at most: enough for several rolls, crashes and retentions.
const OPS_PER_SCHEDULE_MAX: u64 = 80;
/// Reopen attempts after a crash before the disk is made quiet (faults off) to let it
/// recover: a disk failing every few calls could otherwise fail every open.
const REOPEN_ATTEMPTS_MAX: u32 = 8;
/// Where the simulated partition lives (a path in the simulated disk only).
const DIR: &str = "/sim/topic-0";
/// A failed step whose I/O error came from outside the log (a region read), which the log
/// cannot latch.
const OUTSIDE_THE_LOG: &str = "region read";
/// The leader epoch stamped on client appends.
const EPOCH: i32 = 3;

/// One batch as the log must hold it (stamped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    base: i64,
    last: i64,
    bytes: Vec<u8>,
}

/// What the log must hold, and what it may.
#[derive(Debug, Default)]
struct Model {
    /// Acknowledged batches, contiguous, from the first one at or below `start`.
    batches: Vec<Stored>,
    /// The offset the next batch gets.
    end: i64,
    /// The log start offset, as last acknowledged; `start_max` is the highest one asked for.
    start: i64,
    start_max: i64,
    /// Offsets below this survive any crash.
    durable: i64,
    /// Batches of an append that failed after writing may have begun: after a crash they may
    /// be in the log (whole and valid) or not.
    uncertain: Vec<Stored>,
}

impl Model {
    fn from_log(log: &SimLog, batches: Vec<Stored>) -> Model {
        Model {
            batches,
            end: log.log_end_offset(),
            start: log.log_start_offset(),
            start_max: log.log_start_offset(),
            durable: log.durable_offset(),
            uncertain: Vec::new(),
        }
    }

    /// Records batches the log acknowledged.
    fn push(&mut self, stored: Vec<Stored>) {
        for batch in stored {
            assert_eq!(batch.base, self.end, "acknowledged offsets are contiguous");
            self.end = batch.last + 1;
            self.batches.push(batch);
        }
    }

    /// The model's batch at `base`, acknowledged or uncertain.
    fn batch_at(&self, base: i64) -> Option<&Stored> {
        let i = self.batches.partition_point(|b| b.base < base);
        self.batches
            .get(i)
            .filter(|b| b.base == base)
            .or_else(|| self.uncertain.iter().find(|b| b.base == base))
    }
}

/// A failure with the context that replays it.
macro_rules! fail {
    ($ctx:expr, $($arg:tt)*) => {
        panic!("{}: {}", $ctx, format!($($arg)*))
    };
}

/// One schedule: its generator, disk, clock, log and model.
struct Schedule {
    rng: Rng,
    disk: SimDisk,
    clock: SimClock,
    config: LogConfig,
    ctx: String,
    /// Counters for the final report.
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    schedules: u64,
    ops: u64,
    appends_acked: u64,
    crashes: u64,
    io_failures: u64,
    reopens_clean: u64,
    truncations: u64,
    retentions_deleting: u64,
    recovered_uncertain: u64,
    disk: SimStats,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.schedules += other.schedules;
        self.ops += other.ops;
        self.appends_acked += other.appends_acked;
        self.crashes += other.crashes;
        self.io_failures += other.io_failures;
        self.reopens_clean += other.reopens_clean;
        self.truncations += other.truncations;
        self.retentions_deleting += other.retentions_deleting;
        self.recovered_uncertain += other.recovered_uncertain;
        self.disk += other.disk;
    }
}

fn random_config(rng: &mut Rng) -> LogConfig {
    let segment_bytes = 1024 + rng.below(4096);
    LogConfig {
        segment_bytes,
        segment_ms: 1_000 + rng.below(100_000),
        index_interval_bytes: 64 + rng.below(segment_bytes / 2),
        retention_ms: if rng.coin() { Some(10_000 + rng.below(200_000)) } else { None },
        retention_bytes: if rng.coin() { Some(2_048 + rng.below(16_384)) } else { None },
        flush: match rng.below(3) {
            0 => FlushPolicy::EveryAppend,
            1 => FlushPolicy::IntervalMs(1 + rng.below(5_000)),
            _ => FlushPolicy::Never,
        },
        preallocate: rng.coin(),
        ..LogConfig::default()
    }
}

/// An I/O failure (directly or through poisoning), as opposed to a refusal.
fn is_io(error: &StorageError) -> bool {
    error.io_kind().is_some()
}

/// Stamps copies of `batches` (concatenated, unstamped) from offset `next`.
fn stamped(batches: &[u8], mut next: i64, epoch: Option<i32>) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < batches.len() {
        let header = batch::BatchHeader::view(&batches[at..]).expect("a whole header");
        let size = header.size() as usize;
        let mut bytes = batches[at..at + size].to_vec();
        if let Some(epoch) = epoch {
            batch::stamp(&mut bytes, next, epoch);
        }
        let delta =
            i64::from(batch::BatchHeader::view(&bytes).expect("header").last_offset_delta.get());
        out.push(Stored { base: next, last: next + delta, bytes });
        next += delta + 1;
        at += size;
    }
    out
}

impl Schedule {
    fn new(seed: u64, faults: bool) -> Schedule {
        let mut rng = Rng::new(seed);
        let faults = if faults { Faults::random(&mut rng) } else { Faults::crashes_only(&mut rng) };
        let disk = SimDisk::new(rng.next_u64(), faults);
        let config = random_config(&mut rng);
        let ctx = format!("schedule seed {seed} (rerun: FJORD_SEED={seed} {SCHEDULES_VARIABLE}=1), faults {faults:?}, config {config:?}");
        Schedule {
            rng,
            disk,
            clock: SimClock::new(1_000_000),
            config,
            ctx,
            counts: Counts { schedules: 1, ..Counts::default() },
        }
    }

    /// Concatenated, unstamped batches: one to three of one to four records.
    fn batches(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let count = 1 + self.rng.below(4) as usize;
            let value_bytes = self.rng.below(200) as usize;
            let timestamp = self.clock_now() - self.rng.below(1_000) as i64;
            out.extend(build::batch_of(count, value_bytes, timestamp, self.rng.next_u64()));
        }
        out
    }

    fn clock_now(&self) -> i64 {
        use fjord_storage::Clock;
        self.clock.now_ms()
    }

    /// Opens the log after a crash, crashing again while the open fails on an I/O error.
    async fn open(&mut self) -> SimLog {
        let armed = self.disk.armed();
        for attempt in 0.. {
            if attempt == REOPEN_ATTEMPTS_MAX {
                self.disk.set_armed(false);
            }
            match SimLog::open_on(
                self.disk.clone(),
                self.clock.clone(),
                Path::new(DIR),
                self.config.clone(),
            )
            .await
            {
                Ok(log) => {
                    self.disk.set_armed(armed);
                    return log;
                }
                Err(error) if is_io(&error) => {
                    self.counts.io_failures += 1;
                    self.disk.crash();
                }
                Err(error) => fail!(self.ctx, "open refused: {error}"),
            }
        }
        unreachable!()
    }

    /// Crashes, reopens and checks the recovered log against the model; then crashes
    /// right after the recovery and checks that a second open finds the same log.
    async fn crash_and_recover(&mut self, model: &mut Model) -> SimLog {
        self.counts.crashes += 1;
        self.disk.crash();
        let mut log = self.open().await;
        // The checks read on a quiet disk: a read failing here is not the log's doing.
        self.disk.set_armed(false);
        let recovered = self.check_recovered(&mut log, model).await;
        self.disk.crash();
        let mut again = self.open().await;
        self.disk.set_armed(false);
        let second = self.read_all(&mut again).await;
        if (again.log_start_offset(), again.log_end_offset(), &second)
            != (log.log_start_offset(), log.log_end_offset(), &recovered)
        {
            fail!(
                self.ctx,
                "a second open after recovery found another log: start {} end {} ({} batches), first open: start {} end {} ({} batches)",
                again.log_start_offset(),
                again.log_end_offset(),
                second.len(),
                log.log_start_offset(),
                log.log_end_offset(),
                recovered.len()
            );
        }
        *model = Model::from_log(&again, recovered);
        self.disk.set_armed(true);
        again
    }

    /// Every batch from the log start, each checked: CRC, contiguous offsets.
    async fn read_all(&mut self, log: &mut SimLog) -> Vec<Stored> {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        if start == end {
            return Vec::new();
        }
        let read = match log.read(start, u64::MAX).await {
            Ok(read) => read,
            Err(error) => fail!(self.ctx, "read of the whole log after recovery: {error}"),
        };
        let bytes = match read.read_bytes().await {
            Ok(bytes) => bytes,
            Err(error) => fail!(self.ctx, "read_bytes after recovery: {error}"),
        };
        let mut out = Vec::new();
        let mut at = 0;
        let mut expected: Option<i64> = None;
        while at < bytes.len() {
            let info = match batch::validate(&bytes[at..], BATCH_BYTES_LIMIT_MAX, Origin::Replica) {
                Ok(info) => info,
                Err(error) => fail!(
                    self.ctx,
                    "recovery accepted a bad batch at byte {at} of the log: {error}"
                ),
            };
            if let Some(next) = expected {
                if info.base_offset != next {
                    fail!(
                        self.ctx,
                        "offsets not contiguous after recovery: {} after {next}",
                        info.base_offset
                    );
                }
            } else if !(info.base_offset <= start && start <= info.last_offset()) {
                fail!(
                    self.ctx,
                    "the first batch read ({}..={}) does not hold the log start {start}",
                    info.base_offset,
                    info.last_offset()
                );
            }
            let size = info.size as usize;
            out.push(Stored {
                base: info.base_offset,
                last: info.last_offset(),
                bytes: bytes[at..at + size].to_vec(),
            });
            expected = Some(info.last_offset() + 1);
            at += size;
        }
        if expected != Some(end) {
            fail!(self.ctx, "the batches read end at {expected:?}, the log end offset is {end}");
        }
        out
    }

    /// The recovered log holds what was durable, nothing that was not appended, and only
    /// valid batches.
    async fn check_recovered(&mut self, log: &mut SimLog, model: &Model) -> Vec<Stored> {
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        if end < model.durable {
            fail!(self.ctx, "acknowledged durable offsets lost: the log ends at {end} after recovery, {} were durable", model.durable);
        }
        if start > model.start_max || start < model.start.min(end) {
            fail!(
                self.ctx,
                "log start {start} after recovery, expected between {} and {}",
                model.start.min(end),
                model.start_max
            );
        }
        let recovered = self.read_all(log).await;
        for batch in &recovered {
            match model.batch_at(batch.base) {
                Some(expected) if expected == batch => {}
                Some(expected) => fail!(
                    self.ctx,
                    "batch at offset {} differs from the one appended ({} vs {} bytes)",
                    batch.base,
                    batch.bytes.len(),
                    expected.bytes.len()
                ),
                None => fail!(
                    self.ctx,
                    "batch at offset {} after recovery was never appended",
                    batch.base
                ),
            }
            if batch.base >= model.end {
                self.counts.recovered_uncertain += 1;
            }
        }
        if let Err(error) = log.verify().await {
            fail!(self.ctx, "verify after recovery: {error}");
        }
        recovered
    }

    /// After an I/O failure: the log must refuse everything from now on (but for running
    /// out of space).
    async fn check_latched(&mut self, log: &mut SimLog, what: &str) {
        self.counts.io_failures += 1;
        if log.is_full() {
            // ENOSPC makes the log full, not poisoned: reads go on and writes resume once
            // space returns, which `space.rs` checks (this disk has space again at once).
            return;
        }
        if log.poisoned().is_none() {
            fail!(self.ctx, "{what} failed on I/O but the log is not poisoned");
        }
        let start = log.log_start_offset();
        let refused = [
            log.flush().await.is_err(),
            log.read(start, 1).await.is_err(),
            log.append(BytesMut::from(&build::batch_of(1, 1, 0, 0)[..]), EPOCH).await.is_err(),
            log.roll().await.is_err(),
        ];
        if refused.contains(&false) {
            fail!(self.ctx, "after {what} failed on I/O the log still accepted calls: {refused:?}");
        }
    }

    async fn run(self, ops: u64) -> Counts {
        self.run_ops(None, ops, |schedule| schedule.rng.below(100)).await
    }

    /// Runs `ops` operations, each chosen by `choose` (a number below 100, see `step`); with
    /// `power_off_at_sync`, the power goes off at that sync after the first open.
    async fn run_ops(
        mut self,
        power_off_at_sync: Option<u64>,
        ops: u64,
        mut choose: impl FnMut(&mut Schedule) -> u64,
    ) -> Counts {
        self.disk.set_armed(false);
        let mut log = self.open().await;
        self.disk.set_armed(true);
        if let Some(k) = power_off_at_sync {
            self.disk.power_off_at_sync(k);
        }
        let mut model = Model::from_log(&log, Vec::new());
        for op in 0..ops {
            self.counts.ops += 1;
            let what = choose(&mut self);
            if std::env::var_os("FJORD_SIM_TRACE").is_some() {
                eprintln!(
                    "op {op}: {what} start {} end {} durable {} log {}..{} durable {}",
                    model.start,
                    model.end,
                    model.durable,
                    log.log_start_offset(),
                    log.log_end_offset(),
                    log.durable_offset()
                );
                eprintln!(
                    "   segments {:?}",
                    log.segments()
                        .iter()
                        .map(|s| (s.base_offset, s.next_offset, s.size))
                        .collect::<Vec<_>>()
                );
            }
            let outcome = self.step(&mut log, &mut model, what).await;
            if let Err(name) = outcome {
                if name != OUTSIDE_THE_LOG {
                    self.check_latched(&mut log, &format!("op {op} ({name})")).await;
                }
                drop(log);
                log = self.crash_and_recover(&mut model).await;
            }
        }
        // A clean close and reopen keeps everything, durable or not.
        self.disk.cancel_power_off();
        if self.disk.powered_off() {
            drop(log);
            log = self.crash_and_recover(&mut model).await;
        }
        self.disk.set_armed(false);
        log.close().await.unwrap_or_else(|error| fail!(self.ctx, "final close: {error}"));
        let mut log = self.open().await;
        let all = self.read_all(&mut log).await;
        let expected: Vec<Stored> =
            model.batches.iter().filter(|b| b.last >= model.start).cloned().collect();
        if all != expected {
            fail!(
                self.ctx,
                "after a clean close the log holds {} batches, {} were appended",
                all.len(),
                expected.len()
            );
        }
        self.counts.disk = self.disk.stats();
        self.counts
    }

    /// Runs one operation; `Err(name)` when it failed on I/O.
    async fn step(
        &mut self,
        log: &mut SimLog,
        model: &mut Model,
        what: u64,
    ) -> Result<(), &'static str> {
        let ctx = self.ctx.clone();
        let io = |name: &'static str, error: StorageError| -> Result<(), &'static str> {
            if is_io(&error) {
                Err(name)
            } else {
                fail!(ctx, "{name} refused: {error}")
            }
        };
        match what {
            0..=34 => self.append(log, model).await,
            35..=39 => match log.roll().await {
                Ok(()) => {
                    model.durable = log.durable_offset();
                    Ok(())
                }
                Err(error) => io("roll", error),
            },
            40..=47 => match log.flush().await {
                Ok(()) => {
                    model.durable = log.durable_offset();
                    Ok(())
                }
                Err(error) => io("flush", error),
            },
            48..=51 => {
                // Group commit: the sync runs outside the log, as the broker does it.
                let target = match log.flush_target() {
                    Ok(target) => target,
                    Err(error) => return io("flush_target", error),
                };
                let Some(target) = target else { return Ok(()) };
                let synced = target.sync().await;
                if let Err(error) = log.complete_flush(&target, synced) {
                    return io("complete_flush", error);
                }
                model.durable = log.durable_offset();
                // The upkeep's step after it flushed what a roll sealed.
                match log.checkpoint_recovery_offset().await {
                    Ok(()) => Ok(()),
                    Err(error) => io("checkpoint_recovery_offset", error),
                }
            }
            52..=55 => {
                // Offsets are never negative (the broker's truncation points are offsets).
                let offset = (model.start - 2
                    + self.rng.below((model.end - model.start + 5) as u64) as i64)
                    .max(0);
                self.counts.truncations += 1;
                if std::env::var_os("FJORD_SIM_TRACE").is_some() {
                    eprintln!("   truncate_to({offset})");
                }
                let full = offset <= model.start;
                let (keep, expected_end) = if full {
                    (0, model.start.min(offset))
                } else {
                    match model.batches.iter().position(|b| b.last >= offset) {
                        Some(i) => (i, model.batches[i].base),
                        None => (model.batches.len(), model.end),
                    }
                };
                let removed = model.batches.split_off(keep);
                // Whatever happens, nothing past the cut is promised any more; what was
                // there may survive a crash until the cut is durable.
                model.durable = model.durable.min(expected_end);
                model.end = expected_end;
                if full {
                    model.start = model.start.min(offset);
                }
                match log.truncate_to(offset).await {
                    Ok(end) => {
                        if end != expected_end {
                            fail!(self.ctx, "truncate_to({offset}) left the end at {end}, expected {expected_end}");
                        }
                        if log.log_start_offset() > end {
                            fail!(
                                self.ctx,
                                "truncate_to({offset}) left the log start {} past the end {end}",
                                log.log_start_offset()
                            );
                        }
                        model.start = log.log_start_offset();
                        model.durable = log.durable_offset();
                        Ok(())
                    }
                    Err(error) => {
                        model.uncertain = removed;
                        if full {
                            // An interrupted full truncation may leave any prefix of the
                            // old log (segments go newest first), or the new empty one.
                            model.durable = 0;
                        }
                        io("truncate_to", error)
                    }
                }
            }
            56..=60 => {
                self.clock.advance(self.rng.below(60_000));
                let now = self.clock_now();
                match log.apply_retention(now).await {
                    Ok(outcome) => {
                        if !outcome.deleted_segments.is_empty() {
                            self.counts.retentions_deleting += 1;
                        }
                        model.start = outcome.log_start_offset;
                        model.start_max = model.start_max.max(model.start);
                        model.batches.retain(|b| b.last >= outcome.log_start_offset);
                        Ok(())
                    }
                    Err(error) => {
                        // The start may have moved up to the active segment's base.
                        model.start_max =
                            model.start_max.max(log.log_start_offset()).max(model.end);
                        io("apply_retention", error)
                    }
                }
            }
            61..=63 => {
                let offset =
                    model.start + self.rng.below((model.end - model.start + 1) as u64) as i64;
                model.start_max = model.start_max.max(offset);
                match log.advance_log_start(offset).await {
                    Ok(()) => {
                        model.start = model.start.max(offset);
                        Ok(())
                    }
                    Err(error) => io("advance_log_start", error),
                }
            }
            64..=78 => self.read(log, model).await,
            79..=83 => {
                self.clock.advance(self.rng.below(20_000));
                let due = log.flush_if_due().await;
                let rolled = match due {
                    Ok(()) => log.roll_if_due().await,
                    Err(error) => Err(error),
                };
                match rolled {
                    Ok(()) => {
                        model.durable = log.durable_offset();
                        Ok(())
                    }
                    Err(error) => io("flush_if_due/roll_if_due", error),
                }
            }
            84..=86 => match log.tail_batches(self.rng.below(4096)).await {
                Ok(_) => Ok(()),
                Err(error) => io("tail_batches", error),
            },
            87..=88 => match log
                .offset_for_timestamp(self.clock_now() - self.rng.below(5_000) as i64)
                .await
            {
                Ok(_) => Ok(()),
                Err(error) => io("offset_for_timestamp", error),
            },
            89..=91 => {
                // A clean close and reopen.
                match log.close().await {
                    Ok(()) => {
                        self.counts.reopens_clean += 1;
                        let mut reopened = self.open().await;
                        self.disk.set_armed(false);
                        let all = self.read_all(&mut reopened).await;
                        self.disk.set_armed(true);
                        let expected: Vec<Stored> = model
                            .batches
                            .iter()
                            .filter(|b| b.last >= reopened.log_start_offset())
                            .cloned()
                            .collect();
                        if all != expected {
                            fail!(
                                self.ctx,
                                "a clean reopen holds {} batches, the model {}",
                                all.len(),
                                expected.len()
                            );
                        }
                        *log = reopened;
                        model.durable = log.durable_offset();
                        Ok(())
                    }
                    Err(error) => io("close", error),
                }
            }
            92..=96 => {
                // A crash between two calls.
                let mut taken = self.open_placeholder().await;
                std::mem::swap(log, &mut taken);
                drop(taken);
                *log = self.crash_and_recover(model).await;
                Ok(())
            }
            _ => {
                // The power goes off within the next few calls, wherever they are.
                self.disk.power_off_at_call(self.rng.below(12));
                Ok(())
            }
        }
    }

    /// A log to stand in while the real one is dropped before a crash (opened on a disk of
    /// its own so it touches nothing of the schedule's).
    async fn open_placeholder(&mut self) -> SimLog {
        let disk = SimDisk::new(0, Faults::none());
        SimLog::open_on(disk, self.clock.clone(), Path::new("/placeholder"), LogConfig::default())
            .await
            .expect("a quiet disk opens")
    }

    async fn append(&mut self, log: &mut SimLog, model: &mut Model) -> Result<(), &'static str> {
        let path = self.rng.below(4);
        let bytes = self.batches();
        let second = if path == 3 { self.batches() } else { Vec::new() };
        let result = match path {
            0 => log
                .append(BytesMut::from(&bytes[..]), EPOCH)
                .await
                .map(|info| vec![(info.base_offset, bytes.clone())]),
            1 => log
                .append_shared(Bytes::from(bytes.clone()), EPOCH)
                .await
                .map(|info| vec![(info.base_offset, bytes.clone())]),
            2 => {
                let replicated = stamped(&bytes, model.end, Some(EPOCH - 1));
                let concatenated: Vec<u8> =
                    replicated.iter().flat_map(|b| b.bytes.clone()).collect();
                log.append_replicated(BytesMut::from(&concatenated[..]))
                    .await
                    .map(|info| vec![(info.base_offset, concatenated)])
            }
            _ => {
                let sets = vec![Bytes::from(bytes.clone()), Bytes::from(second.clone())];
                let results = log.append_shared_group(sets, EPOCH, |_, _, _| true).await;
                let mut out = Vec::new();
                let mut failed = None;
                for (result, set) in results.into_iter().zip([bytes.clone(), second.clone()]) {
                    match result.expect("every set admitted") {
                        Ok(info) => out.push((info.base_offset, set)),
                        Err(error) => failed = Some(error),
                    }
                }
                match failed {
                    Some(error) => Err(error),
                    None => Ok(out),
                }
            }
        };
        match result {
            Ok(sets) => {
                for (base, set) in sets {
                    let epoch = if path == 2 { None } else { Some(EPOCH) };
                    let stored = stamped(&set, base, epoch);
                    model.push(stored);
                }
                self.counts.appends_acked += 1;
                model.durable = log.durable_offset();
                if model.durable > model.end {
                    fail!(self.ctx, "durable offset {} past the end {}", model.durable, model.end);
                }
                Ok(())
            }
            Err(error) if is_io(&error) => {
                // Whatever it wrote may survive a crash; it would sit at the log end.
                let epoch = if path == 2 { EPOCH - 1 } else { EPOCH };
                // A group append's sets get consecutive offsets, the first set first.
                let all: Vec<u8> = [bytes, second].concat();
                model.uncertain = stamped(&all, model.end, Some(epoch));
                Err("append")
            }
            Err(error) => fail!(self.ctx, "append refused: {error}"),
        }
    }

    /// A read anywhere in the log returns exactly the model's batches from the one holding
    /// the offset.
    async fn read(&mut self, log: &mut SimLog, model: &Model) -> Result<(), &'static str> {
        let offset = model.start + self.rng.below((model.end - model.start + 1) as u64) as i64;
        let max_bytes = self.rng.below(3_000);
        let read = match log.read(offset, max_bytes).await {
            Ok(read) => read,
            Err(error) if is_io(&error) => return Err("read"),
            Err(error) => fail!(self.ctx, "read({offset}) refused: {error}"),
        };
        let bytes = match read.read_bytes().await {
            // Outside the log (a region's own read): nothing to poison; crash and go on.
            Err(error) if is_io(&error) => return Err(OUTSIDE_THE_LOG),
            Err(error) => fail!(self.ctx, "read_bytes at {offset}: {error}"),
            Ok(bytes) => bytes,
        };
        let mut at = 0;
        let mut first = true;
        while at < bytes.len() {
            let header = batch::BatchHeader::view(&bytes[at..])
                .unwrap_or_else(|| fail!(self.ctx, "read({offset}) returned a partial header"));
            let base = header.base_offset.get();
            let size = header.size() as usize;
            if first && !(base <= offset && offset <= header.last_offset()) {
                fail!(self.ctx, "read({offset}) starts with the batch at {base}");
            }
            first = false;
            match model.batches.iter().find(|b| b.base == base) {
                Some(expected) if expected.bytes == bytes[at..at + size] => {}
                _ => fail!(
                    self.ctx,
                    "read({offset}) returned a batch at {base} that differs from the one appended"
                ),
            }
            at += size;
        }
        if bytes.is_empty() && offset < model.end {
            fail!(self.ctx, "read({offset}) returned nothing below the end {}", model.end);
        }
        Ok(())
    }
}

fn run_all(name: &str, faults: bool) -> Counts {
    let seed = seed(name);
    let count = schedules(SCHEDULES_DEFAULT);
    let mut total = Counts::default();
    fjord_storage::io::block_on(async {
        for i in 0..count {
            let schedule_seed = seed.wrapping_add(i);
            let mut rng = Rng::new(schedule_seed ^ 0x5151);
            let ops = 1 + rng.below(OPS_PER_SCHEDULE_MAX);
            let counts = Schedule::new(schedule_seed, faults).run(ops).await;
            total.add(&counts);
        }
    });
    eprintln!("{name}: {total:?}");
    total
}

#[test]
fn seeded_schedules_with_crashes_keep_every_acknowledged_batch() {
    let total = run_all("simulation (crashes)", false);
    assert!(total.crashes > 0 && total.disk.files_torn > 0, "{total:?}");
}

#[test]
fn seeded_schedules_with_io_faults_latch_and_recover() {
    let total = run_all("simulation (I/O faults)", true);
    assert!(total.crashes > 0, "{total:?}");
}

/// A fixed workload for the crash-at-every-sync test: appends, flushes (direct and group
/// commit), rolls, a truncation, retention, a log start move and a clean reopen, as `step`
/// codes.
const WORKLOAD: [u64; 24] =
    [0, 0, 40, 0, 35, 0, 48, 0, 0, 35, 0, 40, 52, 0, 56, 0, 61, 0, 89, 0, 35, 0, 40, 0];

/// redb's crash test, on the simulated disk: count the syncs of a workload, then for each
/// `k` run it again with the power going off at sync `k`, and check the recovered log
/// (what was acknowledged as durable is there, nothing else but whole appended batches,
/// a second open finds the same log).
#[test]
fn crash_at_every_sync_of_a_workload_keeps_what_was_durable() {
    let seed = seed("crash at every sync");
    let mut crashed = 0;
    fjord_storage::io::block_on(async {
        let mut dry = Schedule::new(seed, false);
        dry.config.flush = FlushPolicy::EveryAppend;
        let disk = dry.disk.clone();
        let mut ops = WORKLOAD.iter().copied();
        let syncs_before = disk.stats().syncs;
        dry.run_ops(None, WORKLOAD.len() as u64, move |_| {
            ops.next().expect("as many ops as codes")
        })
        .await;
        let syncs = disk.stats().syncs - syncs_before;
        assert!(syncs > 10, "the workload syncs {syncs} times");
        for k in 0..syncs {
            let mut schedule = Schedule::new(seed, false);
            schedule.config.flush = FlushPolicy::EveryAppend;
            schedule.ctx += &format!(", power off at sync {k}");
            let mut ops = WORKLOAD.iter().copied();
            let counts = schedule
                .run_ops(Some(k), WORKLOAD.len() as u64, move |_| {
                    ops.next().expect("as many ops as codes")
                })
                .await;
            crashed += counts.crashes;
        }
        eprintln!("crash at every sync: {syncs} syncs, {crashed} crashes recovered");
    });
    assert!(crashed > 0);
}
