//! The `fjord` command line. Arguments are parsed in two phases: clap turns flags into raw
//! values, then each command validates them into its own config. Errors print as one
//! lowercase line prefixed with `fjord:`, with a hint where one is known.
//!
//! Exit codes: 0 success, 1 runtime failure (broker unreachable, request refused),
//! 2 usage error (bad flags or values).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
use error::CliError;
pub use error::{EXIT_FAILURE, EXIT_USAGE};

mod bench;
pub mod client;
mod cluster;
mod config;
mod consume;
mod error;
mod group;
mod produce;
mod topic;

#[derive(Debug, Parser)]
#[command(
    name = "fjord",
    version,
    about = "A log broker that speaks the Kafka protocol",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (defaults: 127.0.0.1:9092, ./fjord-data, broker id 0).
    Serve(Box<ServeArgs>),
    /// Create, list, describe or delete topics.
    Topic(topic::TopicArgs),
    /// Write lines from stdin to a topic.
    Produce(produce::ProduceArgs),
    /// Read records from a topic and print them.
    Consume(consume::ConsumeArgs),
    /// Describe or change a topic's or a broker's configs.
    Config(config::ConfigArgs),
    /// List, describe or reset consumer groups.
    Group(group::GroupArgs),
    /// Load-test any Kafka-compatible broker, or measure the machine's own limits.
    Bench(bench::BenchArgs),
    /// Run a cluster of local brokers in the background.
    Cluster(cluster::ClusterArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // A command piped into `head` should end quietly when the pipe closes, as Unix tools
        // do, rather than fail on the next write. (The broker keeps ignoring SIGPIPE: a
        // client going away is an error on one connection, not the end of the process.)
        // No thread has started yet.
        fjord_storage::io::restore_default_sigpipe();
    }
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Topic(args) => topic::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Config(args) => config::run(args),
        Command::Group(args) => group::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Cluster(args) => cluster::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = error.message.trim_end_matches('.').to_string();
            let first = message
                .chars()
                .next()
                .map(|c| c.to_lowercase().collect::<String>())
                .unwrap_or_default();
            eprintln!(
                "fjord: {first}{}",
                &message[message.chars().next().map_or(0, char::len_utf8)..]
            );
            if let Some(hint) = error.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(error.code)
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = args.resolve().map_err(|e| CliError::usage(format!("{e:#}")))?;
    let listen = config.listen;
    crate::server::serve(config).map_err(|e| {
        let message = format!("{e:#}");
        let error = CliError::failure(message.clone());
        if message.contains("Address already in use") {
            error.with_hint(format!(
                "another process listens on {listen}; pick another with --listen"
            ))
        } else {
            error
        }
    })
}
