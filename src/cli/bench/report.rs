//! What a load run reports: a summary (records, bytes, seconds, latency quantiles, errors)
//! printed for people or as one JSON object with the run's configuration, and with
//! `--report DIR` that JSON and the SVG chart written as `<mode>.json` and `<mode>.svg`.

use std::path::Path;

use super::args::LoadArgs;
use super::stats::{Sample, Stats};
use super::svg::svg_chart;
use crate::cli::error::CliError;

pub(super) struct Summary {
    mode: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    errors: u64,
}

impl Summary {
    /// The summary of a finished run.
    pub(super) fn of(mode: &'static str, stats: &Stats) -> Summary {
        let histogram = stats.latency();
        Summary {
            mode,
            records: stats.records(),
            bytes: stats.bytes(),
            seconds: stats.seconds(),
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            errors: stats.errors(),
        }
    }

    pub(super) fn json(&self, load: &LoadArgs) -> String {
        format!(
            "{{\"mode\":\"{}\",\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"records_per_sec\":{:.0},\"bytes_per_sec\":{:.0},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"errors\":{},\"config\":{{\"bootstrap\":\"{}\",\"topic\":\"{}\",\"partitions\":{},\"record_bytes\":{},\"batch_records\":{},\"acks\":{},\"connections\":{},\"inflight\":{},\"rate\":{},\"idempotent\":{}}}}}",
            self.mode,
            self.records,
            self.bytes,
            self.seconds,
            self.records as f64 / self.seconds.max(1e-9),
            self.bytes as f64 / self.seconds.max(1e-9),
            self.p50,
            self.p99,
            self.p999,
            self.max,
            self.errors,
            load.bootstrap,
            load.topic,
            load.partitions,
            load.record_bytes,
            load.batch_records,
            load.acks,
            load.connections,
            load.inflight,
            load.rate.map_or("null".to_string(), |r| r.to_string()),
            load.idempotent,
        )
    }

    pub(super) fn print(&self, load: &LoadArgs) {
        let rps = self.records as f64 / self.seconds.max(1e-9);
        let mbps = self.bytes as f64 / self.seconds.max(1e-9) / 1e6;
        println!(
            "{}: {} records of {} bytes in {:.2} s: {:.0} records/s, {:.1} MB/s",
            self.mode, self.records, load.record_bytes, self.seconds, rps, mbps
        );
        let what = if self.mode == "e2e" { "produce-to-consume" } else { "request" };
        println!(
            "{what} latency (µs): p50 {}  p99 {}  p99.9 {}  max {}",
            self.p50, self.p99, self.p999, self.max
        );
        if self.errors > 0 {
            println!("errors: {}", self.errors);
        }
    }
}

/// Writes the report of `mode` into `dir`: its JSON summary and its chart.
pub(super) fn write(
    dir: &Path,
    mode: &str,
    json: &str,
    samples: &[Sample],
    quiet: bool,
) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::write(dir.join(format!("{mode}.json")), format!("{json}\n"))
        .map_err(|e| CliError::failure(format!("cannot write report: {e}")))?;
    std::fs::write(dir.join(format!("{mode}.svg")), svg_chart(mode, samples))
        .map_err(|e| CliError::failure(format!("cannot write report: {e}")))?;
    if !quiet {
        eprintln!("report written to {}", dir.display());
    }
    Ok(())
}
