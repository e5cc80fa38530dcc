//! `fjord bench`: a load generator that speaks the Kafka protocol, for Fjord or any other
//! Kafka-compatible broker, and `fjord bench baseline`, which measures what this machine can
//! do without a broker (a loopback TCP stream, sequential file writes with and without
//! fdatasync), so results can be reported as ratios measured in one run.
//!
//! Load runs use plain threads and blocking sockets: each connection keeps up to
//! `--inflight` requests outstanding (pipelining, as Kafka clients do), and latency is
//! measured per request, from send to response (produce) or from send to delivery (e2e, where
//! each record carries its send time).
//!
//! The files, top down: `load` runs one load (it makes sure of the `topic`, starts the
//! `produce` and `consume` workers until the run's `stop`, draws the `progress` and writes
//! the `report` and its `chart`s); the workers talk over a `wire` of their own (a producer
//! keeps its window of requests `inflight`), send the `batch`es it builds and count into the
//! run's `stats`. `plot` overlays the reports of several runs. `baseline` measures the
//! machine, streaming over `loopback`. `args` holds a load's flags and their limits.

use crate::cli::error::CliError;

mod args;
mod baseline;
mod batch;
mod chart;
mod consume;
mod inflight;
mod load;
mod loopback;
mod plot;
mod produce;
mod progress;
mod report;
mod stats;
mod stop;
mod topic;
mod wire;

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    #[command(subcommand)]
    mode: BenchMode,
}

#[derive(Debug, clap::Subcommand)]
enum BenchMode {
    /// Produce records as fast as possible (or at --rate).
    Produce(args::LoadArgs),
    /// Consume records from the beginning of the topic.
    Consume(args::LoadArgs),
    /// Produce and consume at once; latency is from send to delivery.
    E2e(args::LoadArgs),
    /// Measure this machine without a broker: loopback TCP and sequential file writes.
    Baseline(baseline::BaselineArgs),
    /// Overlay the reports of several runs (`--report DIR`'s JSON) in one chart of each kind.
    Plot(plot::PlotArgs),
}

pub(super) fn run(args: BenchArgs) -> Result<(), CliError> {
    match args.mode {
        BenchMode::Produce(load) => load::run("produce", load),
        BenchMode::Consume(load) => load::run("consume", load),
        BenchMode::E2e(load) => load::run("e2e", load),
        BenchMode::Baseline(baseline) => baseline::run(baseline),
        BenchMode::Plot(plot) => plot::run(plot),
    }
}
