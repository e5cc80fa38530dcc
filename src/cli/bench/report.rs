//! What a load run reports: a summary (records, bytes, seconds, latency quantiles, errors,
//! the run's configuration) printed for people or as one JSON object; and with
//! `--report DIR` the whole report, the summary with the per-interval samples and the
//! latency percentile spectrum, written as `<mode>.json` beside its two charts
//! (`<mode>-time.svg`, `<mode>-percentiles.svg`). `fjord bench plot` redraws the charts from
//! such JSON files alone, so everything a chart shows is in the JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::args::LoadArgs;
use super::progress::Sample;
use super::stats::{spectrum, Percentile, Quantiles, Stats};
use crate::cli::error::CliError;

/// A load run's flags, as the report keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Config {
    pub(super) bootstrap: String,
    pub(super) topic: String,
    pub(super) partitions: i32,
    pub(super) record_bytes: usize,
    /// `--records` as given (none: the default, or no limit with a duration).
    pub(super) records: Option<u64>,
    pub(super) duration_seconds: Option<u64>,
    pub(super) batch_records: usize,
    pub(super) acks: i16,
    pub(super) connections: usize,
    pub(super) inflight: usize,
    pub(super) rate: Option<u64>,
    pub(super) idempotent: bool,
}

impl Config {
    fn of(load: &LoadArgs) -> Config {
        Config {
            bootstrap: load.bootstrap.clone(),
            topic: load.topic.clone(),
            partitions: load.partitions,
            record_bytes: load.record_bytes,
            records: load.records,
            duration_seconds: load.duration,
            batch_records: load.batch_records,
            acks: load.acks,
            connections: load.connections,
            inflight: load.inflight,
            rate: load.rate,
            idempotent: load.idempotent,
        }
    }

    /// One line for a chart's title or legend.
    pub(super) fn describe(&self, mode: &str) -> String {
        let rate = self.rate.map_or("max rate".to_string(), |r| format!("{r} records/s"));
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{mode}, {} B records, {} partition{}, {}-record batches, acks {}, {} connection{}, \
             {} in flight, {rate}{}",
            self.record_bytes,
            self.partitions,
            plural(self.partitions as usize),
            self.batch_records,
            self.acks,
            self.connections,
            plural(self.connections),
            self.inflight,
            if self.idempotent { ", idempotent" } else { "" },
        )
    }
}

/// The summary of a finished run: the `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Summary {
    pub(super) mode: String,
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) seconds: f64,
    pub(super) records_per_sec: f64,
    pub(super) bytes_per_sec: f64,
    pub(super) latency_us: Quantiles,
    pub(super) errors: u64,
    pub(super) config: Config,
}

impl Summary {
    /// The summary of a finished run.
    pub(super) fn of(mode: &str, load: &LoadArgs, stats: &Stats) -> Summary {
        let (records, bytes, seconds) = (stats.records(), stats.bytes(), stats.seconds());
        Summary {
            mode: mode.to_string(),
            records,
            bytes,
            seconds: (seconds * 1e3).round() / 1e3,
            records_per_sec: (records as f64 / seconds).round(),
            bytes_per_sec: (bytes as f64 / seconds).round(),
            latency_us: Quantiles::of(&stats.latency()),
            errors: stats.errors(),
            config: Config::of(load),
        }
    }

    pub(super) fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary serializes")
    }

    pub(super) fn print(&self) {
        println!(
            "{}: {} records of {} bytes in {:.2} s: {:.0} records/s, {:.1} MB/s",
            self.mode,
            self.records,
            self.config.record_bytes,
            self.seconds,
            self.records_per_sec,
            self.bytes_per_sec / 1e6
        );
        let what = if self.mode == "e2e" { "produce-to-consume" } else { "request" };
        let q = &self.latency_us;
        println!(
            "{what} latency (µs): p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            q.p50, q.p90, q.p99, q.p999, q.p9999, q.max
        );
        if self.errors > 0 {
            println!("errors: {}", self.errors);
        }
    }
}

/// The whole report of a run: its summary, samples and percentile spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Report {
    #[serde(flatten)]
    pub(super) summary: Summary,
    pub(super) samples: Vec<Sample>,
    pub(super) percentiles: Vec<Percentile>,
}

impl Report {
    pub(super) fn of(summary: Summary, samples: Vec<Sample>, stats: &Stats) -> Report {
        Report { summary, samples, percentiles: spectrum(&stats.latency()) }
    }

    /// Reads a report that `--report` wrote.
    pub(super) fn read(path: &Path) -> Result<Report, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            CliError::failure(format!(
                "{} is not a report of `fjord bench --report`: {e}",
                path.display()
            ))
        })
    }
}

/// Writes `text` to `path`, naming the file if it fails.
pub(super) fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text)
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let q = Quantiles { p50: 100, p90: 200, p99: 900, p999: 4_000, p9999: 9_000, max: 350_000 };
        Report {
            summary: Summary {
                mode: "produce".to_string(),
                records: 2_000_000,
                bytes: 200_000_000,
                seconds: 1.25,
                records_per_sec: 1_600_000.0,
                bytes_per_sec: 160_000_000.0,
                latency_us: q,
                errors: 0,
                config: Config {
                    bootstrap: "127.0.0.1:9092".to_string(),
                    topic: "t".to_string(),
                    partitions: 8,
                    record_bytes: 100,
                    records: None,
                    duration_seconds: Some(10),
                    batch_records: 1000,
                    acks: 1,
                    connections: 1,
                    inflight: 1,
                    rate: None,
                    idempotent: false,
                },
            },
            samples: vec![
                Sample {
                    seconds: 0.5,
                    records_per_sec: 1.5e6,
                    mb_per_sec: 150.0,
                    latency_us: Some(q),
                },
                Sample { seconds: 1.0, records_per_sec: 0.0, mb_per_sec: 0.0, latency_us: None },
            ],
            percentiles: vec![
                Percentile { percentile: 0.0, value_us: 40, count: 1 },
                Percentile { percentile: 100.0, value_us: 350_000, count: 2_000 },
            ],
        }
    }

    #[test]
    fn a_report_reads_back_as_written() {
        let report = report();
        let json = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_summary_keeps_the_keys_scripts_read() {
        let json = report().summary.json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["records_per_sec"], 1_600_000.0);
        for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(value["latency_us"][key].is_u64(), "{key} in {json}");
        }
        assert_eq!(value["config"]["duration_seconds"], 10);
        assert!(value.get("samples").is_none(), "the --json line is the summary only");
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("fjord-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("other.json");
        std::fs::write(&path, "{\"mode\":\"produce\"}").unwrap();
        let error = Report::read(&path).unwrap_err().message;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("other.json") && error.contains("not a report"), "{error}");
    }
}
