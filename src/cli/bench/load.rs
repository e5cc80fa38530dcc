//! One load run (`produce`, `consume` or `e2e`): the topic made sure of, the consumers'
//! start offsets fixed, then producers and consumers started on their shares of the
//! partitions, the progress drawn until they finish, and the summary printed (and reported).
//! In e2e the producers count into stats of their own: the run's records and latency are
//! the consumers'.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::args::{validate, LoadArgs};
use super::consume::consume_worker;
use super::produce::produce_worker;
use super::progress::progress;
use super::report::{self, Summary};
use super::stats::Stats;
use super::topic::ensure_topic;
use crate::cli::client::{list_offsets_by_leader, Client};
use crate::cli::error::CliError;

pub(super) fn run(mode: &'static str, load: LoadArgs) -> Result<(), CliError> {
    validate(&load)?;
    let mut client = Client::connect(&load.bootstrap)?;
    let leaders = ensure_topic(&mut client, &load)?;
    let target = load.records;
    let mut handles = Vec::new();
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let producing = mode != "consume";
    let consuming = mode != "produce";
    let e2e = mode == "e2e";
    let addresses = client.broker_addresses();
    // Consumers start at the end (e2e) or the beginning, fixed before any producer runs:
    // one ListOffsets per leader.
    let starts = if consuming {
        list_offsets_by_leader(
            &mut client,
            &load.topic,
            leaders.iter().map(|(&p, &leader)| (p, leader)),
            if e2e { -1 } else { -2 },
        )?
    } else {
        BTreeMap::new()
    };
    // The clock starts once the topic, its leaders and the start offsets are known.
    let stats = Stats::new();
    let started = stats.epoch();
    let producers_done = Arc::new(AtomicBool::new(!producing));
    let mut producer_handles = Vec::new();
    if producing {
        let produce_stats = if e2e { Stats::new() } else { Arc::clone(&stats) };
        // Each connection sends to its own share of the partitions (dealt by position, so
        // none is empty) and its share of the records and the rate; with more connections
        // than partitions, several connections share each partition (fan-in).
        let connections = load.connections;
        for c in 0..connections {
            let mine: Vec<i32> = if connections <= partitions.len() {
                partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % connections == c)
                    .map(|(_, p)| *p)
                    .collect()
            } else {
                vec![partitions[c % partitions.len()]]
            };
            let share =
                target / connections as u64 + u64::from((c as u64) < target % connections as u64);
            let mut load = load.clone();
            load.connections = connections;
            let (leaders, addresses, stats) =
                (leaders.clone(), addresses.clone(), Arc::clone(&produce_stats));
            producer_handles.push(std::thread::spawn(move || {
                produce_worker(&load, &mine, &leaders, &addresses, share, e2e, &stats)
            }));
        }
        // Joins the producers, then tells consumers that no more data is coming.
        let done = Arc::clone(&producers_done);
        handles.push(std::thread::spawn(move || {
            let mut result = Ok(());
            for handle in producer_handles {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => result = Err(error),
                    Err(_) => result = Err(CliError::failure("a producer thread panicked")),
                }
            }
            done.store(true, Ordering::Relaxed);
            result
        }));
    }
    if consuming {
        let consumers = load.connections.min(partitions.len());
        for c in 0..consumers {
            let mine: Vec<i32> =
                partitions.iter().copied().filter(|p| (*p as usize) % consumers == c).collect();
            let (load, leaders, addresses, stats, done) = (
                load.clone(),
                leaders.clone(),
                addresses.clone(),
                Arc::clone(&stats),
                Arc::clone(&producers_done),
            );
            let starts: BTreeMap<i32, i64> = mine.iter().map(|p| (*p, starts[p])).collect();
            handles.push(std::thread::spawn(move || {
                consume_worker(&load, starts, &leaders, &addresses, target, e2e, &stats, &done)
            }));
        }
    }
    let samples = progress(&stats, target, started, load.json, &handles);
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error),
            Err(_) => failure = Some(CliError::failure("a bench thread panicked")),
        }
    }
    stats.mark_done();
    if let Some(error) = failure {
        return Err(error);
    }
    let summary = Summary::of(mode, &stats);
    let json = summary.json(&load);
    if load.json {
        println!("{json}");
    } else {
        summary.print(&load);
    }
    if let Some(dir) = &load.report {
        report::write(dir, mode, &json, &samples, load.json)?;
    }
    Ok(())
}
