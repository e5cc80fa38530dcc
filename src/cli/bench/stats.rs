//! The measurements of one load run, shared by its workers: records and bytes completed,
//! errors, and request (or send-to-delivery) latency in two histograms, one for the whole
//! run and one per progress interval, which the progress bar reads and resets; and what is
//! read out of a histogram: its quantiles and its percentile spectrum.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded, µs (a minute: beyond that a run has stalled).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Steps of the percentile spectrum per halving of the distance to 100%: HdrHistogram's
/// usual percentile-distribution output uses 5 (about 100 points for a million values).
const SPECTRUM_TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The latency quantiles reported for a run or one interval of it, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Quantiles {
    pub(super) p50: u64,
    pub(super) p90: u64,
    pub(super) p99: u64,
    pub(super) p999: u64,
    pub(super) p9999: u64,
    pub(super) max: u64,
}

impl Quantiles {
    pub(super) fn of(histogram: &Histogram<u64>) -> Quantiles {
        Quantiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            p9999: histogram.value_at_quantile(0.9999),
            max: histogram.max(),
        }
    }
}

/// One point of the percentile spectrum: `percentile`% of the values are at most `value_us`
/// (with `count` values at or below it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Percentile {
    pub(super) percentile: f64,
    pub(super) value_us: u64,
    pub(super) count: u64,
}

/// The percentile spectrum of `histogram`, HdrHistogram's percentile-distribution iteration:
/// steps that halve the distance to 100% `SPECTRUM_TICKS_PER_HALF_DISTANCE` at a time, the
/// last at 100% (the maximum). Empty for an empty histogram.
pub(super) fn spectrum(histogram: &Histogram<u64>) -> Vec<Percentile> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<Percentile> = Vec::new();
    let mut count = 0u64;
    for step in histogram.iter_quantiles(SPECTRUM_TICKS_PER_HALF_DISTANCE) {
        count += step.count_since_last_iteration();
        let point = Percentile {
            percentile: step.quantile_iterated_to() * 100.0,
            value_us: histogram.highest_equivalent(step.value_iterated_to()),
            count,
        };
        // The iteration repeats a value for several steps within one bucket.
        if points.last().is_none_or(|last| last.percentile < point.percentile) {
            points.push(point);
        }
    }
    points
}

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

    /// The latency quantiles since the last call (none if nothing completed), starting a new
    /// interval.
    pub(super) fn take_interval(&self) -> Option<Quantiles> {
        let mut latency = self.latency.lock().expect("latency lock");
        let quantiles = (!latency.1.is_empty()).then(|| Quantiles::of(&latency.1));
        latency.1.reset();
        quantiles
    }

    pub(super) fn mark_done(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).unwrap();
        for v in values {
            histogram.record(v).unwrap();
        }
        histogram
    }

    #[test]
    fn spectrum_climbs_to_the_maximum_at_100_percent() {
        // 1..=10000 µs, each once: the p-th percentile is about p*100 µs.
        let histogram = histogram_of(1..=10_000);
        let points = spectrum(&histogram);
        assert!(points.len() > 20, "{} points", points.len());
        for pair in points.windows(2) {
            assert!(pair[0].percentile < pair[1].percentile, "{pair:?}");
            assert!(pair[0].value_us <= pair[1].value_us, "{pair:?}");
            assert!(pair[0].count <= pair[1].count, "{pair:?}");
        }
        let last = points.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert_eq!(last.value_us, histogram.max());
        assert_eq!(last.count, 10_000);
        let at_90 = points.iter().find(|p| p.percentile >= 90.0).unwrap();
        assert!((8_950..=9_100).contains(&at_90.value_us), "{at_90:?}");
        let past_99_9 = points.iter().find(|p| p.percentile >= 99.9).unwrap();
        assert!(past_99_9.value_us >= 9_980, "{past_99_9:?}");
    }

    #[test]
    fn spectrum_of_nothing_is_empty() {
        assert!(spectrum(&histogram_of([])).is_empty());
    }

    #[test]
    fn quantiles_tell_the_tail_apart() {
        // 99,980 fast values and 20 slow ones: p99.9 is fast, p99.99 and max slow.
        let histogram = histogram_of((0..99_980).map(|_| 100).chain((0..20).map(|_| 500_000)));
        let q = Quantiles::of(&histogram);
        assert_eq!((q.p50, q.p90, q.p99, q.p999), (100, 100, 100, 100));
        assert!(q.p9999 >= 499_000 && q.max >= 499_000, "{q:?}");
    }

    #[test]
    fn an_interval_without_completions_has_no_quantiles() {
        let stats = Stats::new();
        assert_eq!(stats.take_interval(), None);
        stats.record_latency(250, 3);
        assert_eq!(stats.take_interval().map(|q| q.p50), Some(250));
        assert_eq!(stats.take_interval(), None, "the interval restarts");
        assert_eq!(stats.latency().len(), 3, "the whole run keeps them");
    }
}
