//! The flags of a load run (`produce`, `consume`, `e2e`) and their limits, checked by
//! `validate` before anything connects; everything downstream relies on them.

use std::path::PathBuf;

use crate::cli::error::CliError;

/// Requests outstanding per connection at most.
const INFLIGHT_MAX: usize = 64;
/// Connections at most.
const CONNECTIONS_MAX: usize = 256;
/// Largest record the bench builds.
const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest timed run, s: a day; anything longer is a soak test for a script, and its
/// per-interval samples (two a second) would make a report of hundreds of MB.
pub(super) const DURATION_SECONDS_MAX: u64 = 24 * 60 * 60;

#[derive(Debug, Clone, clap::Args)]
pub(super) struct LoadArgs {
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    pub(super) bootstrap: String,
    #[arg(long, short = 't', default_value = "fjord-bench")]
    pub(super) topic: String,
    /// Partitions of the topic (created with this many if it does not exist).
    #[arg(long, default_value_t = 8)]
    pub(super) partitions: i32,
    #[arg(long, default_value_t = 100)]
    pub(super) record_bytes: usize,
    /// Records in total [default: 1000000, or no limit with --duration].
    #[arg(long)]
    pub(super) records: Option<u64>,
    /// Run for this many seconds; with --records as well, the run ends at whichever comes
    /// first.
    #[arg(long, value_name = "SECONDS")]
    pub(super) duration: Option<u64>,
    /// Records per batch (one batch per partition per request).
    #[arg(long, default_value_t = 1000)]
    pub(super) batch_records: usize,
    /// -1, 0 or 1.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub(super) acks: i16,
    #[arg(long, default_value_t = 1)]
    pub(super) connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub(super) inflight: usize,
    /// Records per second in total (default: as fast as possible).
    #[arg(long)]
    pub(super) rate: Option<u64>,
    /// Produce (and e2e) as an idempotent producer: a producer id per connection from
    /// InitProducerId, sequence numbers per partition, as Kafka's Java client does by default.
    #[arg(long)]
    pub(super) idempotent: bool,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub(super) json: bool,
    /// Write into DIR the JSON (with the per-interval samples and the latency percentile
    /// spectrum) and two SVG charts: over time, and the percentile distribution.
    #[arg(long, value_name = "DIR")]
    pub(super) report: Option<PathBuf>,
}

pub(super) fn validate(load: &LoadArgs) -> Result<(), CliError> {
    if !(1..=CONNECTIONS_MAX).contains(&load.connections) {
        return Err(CliError::usage(format!(
            "--connections must be between 1 and {CONNECTIONS_MAX}"
        )));
    }
    if !(1..=INFLIGHT_MAX).contains(&load.inflight) {
        return Err(CliError::usage(format!("--inflight must be between 1 and {INFLIGHT_MAX}")));
    }
    if load.record_bytes < 8 || load.record_bytes > RECORD_BYTES_MAX {
        return Err(CliError::usage(format!(
            "--record-bytes must be between 8 and {RECORD_BYTES_MAX}"
        )));
    }
    if !matches!(load.acks, -1..=1) {
        return Err(CliError::usage("--acks must be -1, 0 or 1"));
    }
    if load.duration.is_some_and(|d| !(1..=DURATION_SECONDS_MAX).contains(&d)) {
        return Err(CliError::usage(format!(
            "--duration must be between 1 and {DURATION_SECONDS_MAX} seconds"
        )));
    }
    if load.partitions < 1 || load.batch_records == 0 || load.records == Some(0) {
        return Err(CliError::usage(
            "--partitions, --batch-records and --records must be at least 1",
        ));
    }
    Ok(())
}
