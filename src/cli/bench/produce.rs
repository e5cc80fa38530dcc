//! The produce side of a load run: one worker per connection sends its share of the records
//! to its partitions' leaders (one socket per leader, requests round-robin), keeping up to
//! `--inflight` requests outstanding per socket; a reader thread per socket completes them in
//! order as the responses arrive. With `--idempotent`, each socket is a producer of its own
//! (an id from InitProducerId, a sequence per partition).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_storage::batch::build;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, ProducerId,
};

use super::args::LoadArgs;
use super::batch::{batch_for, now_micros, stamped};
use super::inflight::InFlight;
use super::stats::Stats;
use super::stop::Stop;
use super::wire::{Wire, PRODUCE_TIMEOUT_MS, PRODUCE_VERSION};
use crate::cli::error::{error_name, CliError};

/// Largest produce batch built (per partition per request).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
const INIT_PRODUCER_ID_VERSION: i16 = 1;

/// One socket to a leader and what the writer keeps beside it.
struct Connection {
    wire: Wire,
    /// The partitions of this leader that the worker sends to.
    partitions: Vec<i32>,
    inflight: Arc<InFlight>,
    /// (producer id, epoch) with `--idempotent`, asked before the reader thread starts
    /// taking the responses.
    producer: Option<(i64, i16)>,
    /// The next sequence per partition (idempotent).
    sequences: BTreeMap<i32, i32>,
}

/// Sends records to `partitions` until its share of the run is `stop`ped.
pub(super) fn produce_worker(
    load: &LoadArgs,
    partitions: &[i32],
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    stop: Stop,
    e2e: bool,
    stats: &Arc<Stats>,
) -> Result<(), CliError> {
    let mut connections = Vec::new();
    let mut readers = Vec::new();
    for (leader, partitions) in by_leader(partitions, leaders) {
        let connection = connect(load, leader, partitions, addresses)?;
        if load.acks != 0 {
            readers.push(spawn_reader(&connection, e2e, stats, load.record_bytes as u64)?);
        }
        connections.push(connection);
    }
    send_all(load, &mut connections, stop, e2e, stats)?;
    // Wait for the last answers, then unblock the readers.
    for connection in &connections {
        connection.inflight.wait_until_empty();
        connection.wire.shutdown_read();
    }
    for reader in readers {
        reader.join().map_err(|_| CliError::failure("a reader thread panicked"))??;
    }
    Ok(())
}

/// Records per batch: `--batch-records`, fewer if a batch would pass `BATCH_BYTES_MAX`.
fn batch_records(load: &LoadArgs) -> usize {
    load.batch_records.min((BATCH_BYTES_MAX / (load.record_bytes + 16)).max(1))
}

/// Partitions grouped by leader: one socket per leader, requests round-robin.
fn by_leader(partitions: &[i32], leaders: &BTreeMap<i32, i32>) -> BTreeMap<i32, Vec<i32>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        by_leader.entry(leaders[p]).or_default().push(*p);
    }
    by_leader
}

/// Connects to `leader` (as a producer of its own with `--idempotent`).
fn connect(
    load: &LoadArgs,
    leader: i32,
    partitions: Vec<i32>,
    addresses: &BTreeMap<i32, String>,
) -> Result<Connection, CliError> {
    let address = addresses
        .get(&leader)
        .ok_or_else(|| CliError::failure(format!("no address for broker {leader}")))?;
    let mut wire = Wire::connect(address)?;
    let producer = if load.idempotent { Some(init_producer_id(&mut wire)?) } else { None };
    Ok(Connection {
        wire,
        partitions,
        inflight: Arc::new(InFlight::new()),
        producer,
        sequences: BTreeMap::new(),
    })
}

/// A producer id and epoch for an idempotent producer, asked on `wire` before any produce.
fn init_producer_id(wire: &mut Wire) -> Result<(i64, i16), CliError> {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = -1;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    wire.send(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &request)?;
    let response: InitProducerIdResponse =
        wire.receive(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION)?;
    if response.error_code != 0 {
        return Err(CliError::failure(format!(
            "InitProducerId at {} failed: {}",
            wire.address(),
            error_name(response.error_code)
        )));
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

/// Starts the thread that takes `connection`'s responses in order, completing each request
/// in `stats` (its latency too, except in e2e where the consumer measures). It ends cleanly
/// when the writer shuts the socket down with nothing in flight.
fn spawn_reader(
    connection: &Connection,
    e2e: bool,
    stats: &Arc<Stats>,
    record_bytes: u64,
) -> Result<JoinHandle<Result<(), CliError>>, CliError> {
    let mut reader = connection.wire.reader()?;
    let (inflight, stats) = (Arc::clone(&connection.inflight), Arc::clone(stats));
    Ok(std::thread::spawn(move || -> Result<(), CliError> {
        loop {
            let response: ProduceResponse = match reader.receive(ApiKey::Produce, PRODUCE_VERSION) {
                Ok(response) => response,
                // The writer shuts the socket down once everything was answered.
                Err(_) if inflight.is_empty() => return Ok(()),
                Err(error) => return Err(error),
            };
            let (at, count) = inflight.pop()?;
            if let Some((partition, code)) = first_error(&response) {
                stats.count_error();
                return Err(CliError::failure(format!(
                    "produce to partition {partition} failed: {}",
                    error_name(code)
                )));
            }
            if !e2e {
                stats.record_latency(at.elapsed().as_micros() as u64, 1);
            }
            stats.complete(count, count * record_bytes);
        }
    }))
}

/// The first partition of `response` that failed, with its error code.
fn first_error(response: &ProduceResponse) -> Option<(i32, i16)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .find(|p| p.error_code != 0)
        .map(|p| (p.index, p.error_code))
}

/// The writer: records over `connections` in turn until `stop`, paced to `--rate`, each
/// request sent once its connection has room in its window.
fn send_all(
    load: &LoadArgs,
    connections: &mut [Connection],
    stop: Stop,
    e2e: bool,
    stats: &Stats,
) -> Result<(), CliError> {
    let batch_records = batch_records(load);
    let template = batch_for(batch_records, load.record_bytes, None);
    let rate_per_thread = load.rate.map(|r| (r as f64 / load.connections as f64).max(1.0));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while !stop.reached(sent, Instant::now()) {
        if let Some(rate) = rate_per_thread {
            wait_until_due(started, sent, rate);
        }
        let connection = &mut connections[turn % connections.len()];
        turn += 1;
        let count =
            ((batch_records * connection.partitions.len()) as u64).min(stop.records() - sent);
        // Wait for room in the window before building the request, so that an e2e stamp
        // (and the produce latency, stamped at the push below) starts at the send.
        if load.acks != 0 {
            connection.inflight.wait_for_room(load.inflight, connection.wire.address())?;
        }
        let parts = connection.request_parts(count, batch_records, &template, load, e2e);
        if load.acks != 0 {
            connection.inflight.push(count);
        }
        connection.wire.send_produce(load.acks, PRODUCE_TIMEOUT_MS, &load.topic, &parts)?;
        sent += count;
        if load.acks == 0 {
            stats.complete(count, count * load.record_bytes as u64);
        }
    }
    Ok(())
}

/// Sleeps until the `sent`th record is due at `rate` records per second from `started`.
fn wait_until_due(started: Instant, sent: u64, rate: f64) {
    let due = Duration::from_secs_f64(sent as f64 / rate);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

impl Connection {
    /// The (partition, records) of one request of `count` records, spread evenly over the
    /// connection's partitions: the template where a batch is whole (stamped for e2e), a
    /// batch built for the rest, each given its producer id and sequence when idempotent.
    fn request_parts(
        &mut self,
        count: u64,
        batch_records: usize,
        template: &Bytes,
        load: &LoadArgs,
        e2e: bool,
    ) -> Vec<(i32, Bytes)> {
        let per_partition = (count as usize).div_ceil(self.partitions.len());
        let mut parts: Vec<(i32, Bytes)> = Vec::with_capacity(self.partitions.len());
        let mut left = count as usize;
        for &p in &self.partitions {
            if left == 0 {
                break;
            }
            let n = per_partition.min(left);
            left -= n;
            let mut records = if n != batch_records {
                batch_for(n, load.record_bytes, e2e.then(now_micros))
            } else if e2e {
                stamped(template, now_micros())
            } else {
                template.clone()
            };
            if let Some((producer_id, epoch)) = self.producer {
                let sequence = self.sequences.entry(p).or_insert(0);
                let mut owned = records.to_vec();
                build::set_producer(&mut owned, producer_id, epoch, *sequence);
                *sequence = sequence.wrapping_add(n as i32) & i32::MAX;
                records = Bytes::from(owned);
            }
            parts.push((p, records));
        }
        parts
    }
}
