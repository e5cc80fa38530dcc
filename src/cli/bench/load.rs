//! One load run (`produce`, `consume` or `e2e`): the topic made sure of, the consumers'
//! start offsets fixed, then producers and consumers started on their shares of the
//! partitions, the progress drawn until they finish, and the summary printed (and reported).
//! In e2e the producers count into stats of their own: the run's records and latency are
//! the consumers'.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::args::{validate, LoadArgs};
use super::consume::consume_worker;
use super::produce::produce_worker;
use super::progress::{progress, Sample};
use super::report::{Report, Summary};
use super::stats::Stats;
use super::stop::Stop;
use super::topic::ensure_topic;
use crate::cli::client::{list_offsets_by_leader, Client};
use crate::cli::error::CliError;

/// A worker thread of the run.
type Worker = JoinHandle<Result<(), CliError>>;

pub(super) fn run(mode: &'static str, load: LoadArgs) -> Result<(), CliError> {
    validate(&load)?;
    let mut client = Client::connect(&load.bootstrap)?;
    let leaders = ensure_topic(&mut client, &load)?;
    let producing = mode != "consume";
    let consuming = mode != "produce";
    let e2e = mode == "e2e";
    let addresses = client.broker_addresses();
    let starts = if consuming {
        start_offsets(&mut client, &load.topic, &leaders, e2e)?
    } else {
        BTreeMap::new()
    };
    // The clock starts once the topic, its leaders and the start offsets are known.
    let stats = Stats::new();
    let stop = Stop::new(&load, stats.epoch());
    let producers_done = Arc::new(AtomicBool::new(!producing));
    let mut handles = Vec::new();
    if producing {
        let produce_stats = if e2e { Stats::new() } else { Arc::clone(&stats) };
        let producers = spawn_producers(&load, &leaders, &addresses, stop, e2e, &produce_stats);
        handles.push(join_producers(producers, Arc::clone(&producers_done)));
    }
    if consuming {
        let done = &producers_done;
        // In e2e the consumers drain what was produced before the deadline.
        let stop = if e2e { stop.untimed() } else { stop };
        let consumers =
            spawn_consumers(&load, &leaders, &addresses, &starts, stop, e2e, &stats, done);
        handles.extend(consumers);
    }
    let samples = progress(&stats, stop, load.json, &handles);
    let failure = join_all(handles);
    stats.mark_done();
    if let Some(error) = failure {
        return Err(error);
    }
    print_summary(mode, &load, &stats, samples)
}

/// Where the consumers start, fixed before any producer runs: at the end (e2e) or the
/// beginning, one ListOffsets per leader.
fn start_offsets(
    client: &mut Client,
    topic: &str,
    leaders: &BTreeMap<i32, i32>,
    e2e: bool,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let timestamp = if e2e { -1 } else { -2 };
    list_offsets_by_leader(
        client,
        topic,
        leaders.iter().map(|(&p, &leader)| (p, leader)),
        timestamp,
    )
}

/// One producer per connection, each with its own share of the partitions (dealt by
/// position, so none is empty) and its share of the records and the rate, all stopping at
/// the same deadline; with more
/// connections than partitions, several connections share each partition (fan-in).
fn spawn_producers(
    load: &LoadArgs,
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    stop: Stop,
    e2e: bool,
    stats: &Arc<Stats>,
) -> Vec<Worker> {
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let connections = load.connections;
    (0..connections)
        .map(|c| {
            let mine = producer_partitions(&partitions, connections, c);
            let share = stop.share(c, connections);
            let (load, leaders, addresses, stats) =
                (load.clone(), leaders.clone(), addresses.clone(), Arc::clone(stats));
            std::thread::spawn(move || {
                produce_worker(&load, &mine, &leaders, &addresses, share, e2e, &stats)
            })
        })
        .collect()
}

/// The partitions producer `c` of `connections` sends to.
fn producer_partitions(partitions: &[i32], connections: usize, c: usize) -> Vec<i32> {
    if connections <= partitions.len() {
        partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| i % connections == c)
            .map(|(_, p)| *p)
            .collect()
    } else {
        vec![partitions[c % partitions.len()]]
    }
}

/// A thread that joins the producers, then tells consumers that no more data is coming.
fn join_producers(producers: Vec<Worker>, done: Arc<AtomicBool>) -> Worker {
    std::thread::spawn(move || {
        let mut result = Ok(());
        for handle in producers {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(error),
                Err(_) => result = Err(CliError::failure("a producer thread panicked")),
            }
        }
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// One consumer per connection, up to one per partition, each with the partitions whose
/// index falls to it; they stop together, at `stop`.
#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    load: &LoadArgs,
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    starts: &BTreeMap<i32, i64>,
    stop: Stop,
    e2e: bool,
    stats: &Arc<Stats>,
    producers_done: &Arc<AtomicBool>,
) -> Vec<Worker> {
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let consumers = load.connections.min(partitions.len());
    (0..consumers)
        .map(|c| {
            let mine: Vec<i32> =
                partitions.iter().copied().filter(|p| (*p as usize) % consumers == c).collect();
            let (load, leaders, addresses, stats, done) = (
                load.clone(),
                leaders.clone(),
                addresses.clone(),
                Arc::clone(stats),
                Arc::clone(producers_done),
            );
            let starts: BTreeMap<i32, i64> = mine.iter().map(|p| (*p, starts[p])).collect();
            std::thread::spawn(move || {
                consume_worker(&load, starts, &leaders, &addresses, stop, e2e, &stats, &done)
            })
        })
        .collect()
}

/// Joins every worker; the last failure, if any.
fn join_all(handles: Vec<Worker>) -> Option<CliError> {
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error),
            Err(_) => failure = Some(CliError::failure("a bench thread panicked")),
        }
    }
    failure
}

/// Prints the run's summary (for people, or as JSON) and writes the report if asked.
fn print_summary(
    mode: &'static str,
    load: &LoadArgs,
    stats: &Stats,
    samples: Vec<Sample>,
) -> Result<(), CliError> {
    let summary = Summary::of(mode, load, stats);
    if load.json {
        println!("{}", summary.json());
    } else {
        summary.print();
    }
    if let Some(dir) = &load.report {
        super::plot::write_report(&Report::of(summary, samples, stats), dir, load.json)?;
    }
    Ok(())
}
