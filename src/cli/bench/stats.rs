//! The measurements of one load run, shared by its workers: records and bytes completed,
//! errors, and request (or send-to-delivery) latency in two histograms, one for the whole
//! run and one per progress interval, which the progress bar reads and resets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest latency recorded, µs (a minute: beyond that a run has stalled).
const LATENCY_US_MAX: u64 = 60_000_000;

/// One point of the time series: (seconds since start, records/s, p99 µs in the interval).
pub(super) type Sample = (f64, f64, u64);

/// Shared measurements of a run.
pub(super) struct Stats {
    /// Microseconds after `epoch` at which the last record was completed.
    finished_us: AtomicU64,
    epoch: Instant,
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// (whole run, current progress interval).
    latency: Mutex<(Histogram<u64>, Histogram<u64>)>,
    done: AtomicBool,
}

impl Stats {
    pub(super) fn new() -> Arc<Stats> {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        Arc::new(Stats {
            finished_us: AtomicU64::new(0),
            epoch: Instant::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new((histogram(), histogram())),
            done: AtomicBool::new(false),
        })
    }

    /// When the run's clock started.
    pub(super) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Counts completed records and notes when.
    pub(super) fn complete(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.finished_us.fetch_max(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    pub(super) fn record_latency(&self, micros: u64, count: u64) {
        let mut latency = self.latency.lock().expect("latency lock");
        let value = micros.clamp(1, LATENCY_US_MAX);
        let _ = latency.0.record_n(value, count);
        let _ = latency.1.record_n(value, count);
    }

    pub(super) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(super) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The time to the last completed record, not to when a thread noticed.
    pub(super) fn seconds(&self) -> f64 {
        (self.finished_us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-6)
    }

    /// The latency of the whole run.
    pub(super) fn latency(&self) -> Histogram<u64> {
        self.latency.lock().expect("latency lock").0.clone()
    }

    /// The p99 latency since the last call, starting a new interval.
    pub(super) fn take_interval_p99(&self) -> u64 {
        let mut latency = self.latency.lock().expect("latency lock");
        let p99 = latency.1.value_at_quantile(0.99);
        latency.1.reset();
        p99
    }

    pub(super) fn mark_done(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}
