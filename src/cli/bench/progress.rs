//! The progress bar of a load run, redrawn on stderr every half second until the workers
//! finish, and the time series it samples on the way (throughput and latency quantiles per
//! interval), which the report keeps and charts.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stats::{Quantiles, Stats};
use super::stop::Stop;
use crate::cli::error::CliError;

/// How often the bar is redrawn and a sample taken.
const INTERVAL: Duration = Duration::from_millis(500);

/// One interval of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Sample {
    /// Seconds since the run's clock started, at the end of the interval.
    pub(super) seconds: f64,
    pub(super) records_per_sec: f64,
    pub(super) mb_per_sec: f64,
    /// The latency of what completed in the interval, µs; none if nothing did.
    pub(super) latency_us: Option<Quantiles>,
}

/// Draws the progress bar until the workers finish; returns the per-interval samples.
pub(super) fn progress(
    stats: &Stats,
    stop: Stop,
    quiet: bool,
    handles: &[std::thread::JoinHandle<Result<(), CliError>>],
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let (mut last_records, mut last_bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let finished = handles.iter().all(|h| h.is_finished());
        if last.elapsed() >= INTERVAL || finished {
            let (records, bytes) = (stats.records(), stats.bytes());
            let interval = last.elapsed().as_secs_f64().max(1e-9);
            let sample = Sample {
                seconds: stats.epoch().elapsed().as_secs_f64(),
                records_per_sec: (records - last_records) as f64 / interval,
                mb_per_sec: (bytes - last_bytes) as f64 / interval / 1e6,
                latency_us: stats.take_interval(),
            };
            if !quiet {
                draw(&sample, stop.fraction(records, Instant::now()));
            }
            samples.push(sample);
            (last_records, last_bytes) = (records, bytes);
            last = Instant::now();
        }
        if finished {
            if !quiet {
                eprintln!();
            }
            return samples;
        }
    }
}

fn draw(sample: &Sample, fraction: f64) {
    let filled = (fraction * 30.0) as usize;
    let (p99, max) = sample.latency_us.map_or((0, 0), |q| (q.p99, q.max));
    eprint!(
        "\r[{}{}] {:>3.0}% {:>10.0} records/s  p99 {:>7} µs  max {:>8} µs ",
        "=".repeat(filled),
        " ".repeat(30 - filled),
        fraction * 100.0,
        sample.records_per_sec,
        p99,
        max
    );
    let _ = std::io::stderr().flush();
}
