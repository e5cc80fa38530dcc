//! The progress bar of a load run, redrawn on stderr every half second until the workers
//! finish, and the time series it samples on the way (throughput and p99 per interval), which
//! the report charts.

use std::io::Write;
use std::time::{Duration, Instant};

use super::stats::{Sample, Stats};
use crate::cli::error::CliError;

/// Draws the progress bar until the workers finish; returns the per-interval samples.
pub(super) fn progress(
    stats: &Stats,
    target: u64,
    started: Instant,
    quiet: bool,
    handles: &[std::thread::JoinHandle<Result<(), CliError>>],
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut last_records = 0u64;
    let mut last = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let finished = handles.iter().all(|h| h.is_finished());
        if last.elapsed() >= Duration::from_millis(500) || finished {
            let records = stats.records();
            let interval = last.elapsed().as_secs_f64();
            let rate = (records - last_records) as f64 / interval.max(1e-9);
            let p99 = stats.take_interval_p99();
            samples.push((started.elapsed().as_secs_f64(), rate, p99));
            if !quiet {
                let fraction = (records as f64 / target as f64).min(1.0);
                let filled = (fraction * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>3.0}% {:>10.0} records/s  p99 {:>7} µs ",
                    "=".repeat(filled),
                    " ".repeat(30 - filled),
                    fraction * 100.0,
                    rate,
                    p99
                );
                let _ = std::io::stderr().flush();
            }
            last_records = records;
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
