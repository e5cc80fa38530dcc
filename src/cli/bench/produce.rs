//! The produce side of a load run: one worker per connection sends its share of the records
//! to its partitions' leaders (one socket per leader, requests round-robin), keeping up to
//! `--inflight` requests outstanding per socket; a reader thread per socket completes them in
//! order as the responses arrive. With `--idempotent`, each socket is a producer of its own
//! (an id from InitProducerId, a sequence per partition).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_storage::batch::build;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, ProducerId,
};

use super::args::LoadArgs;
use super::batch::{batch_for, now_micros, stamped};
use super::stats::Stats;
use super::wire::{Wire, PRODUCE_TIMEOUT_MS, PRODUCE_VERSION};
use crate::cli::error::{error_name, CliError};

/// Largest produce batch built (per partition per request).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
const INIT_PRODUCER_ID_VERSION: i16 = 1;

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

/// Requests in flight on one connection: the writer waits while there are `inflight` of
/// them; the reader thread completes them in order as responses arrive.
struct InFlight {
    queue: Mutex<VecDeque<(Instant, u64)>>,
    space: std::sync::Condvar,
}

/// Sends `records` records to `partitions`, as one connection's share of the run.
pub(super) fn produce_worker(
    load: &LoadArgs,
    partitions: &[i32],
    leaders: &BTreeMap<i32, i32>,
    addresses: &BTreeMap<i32, String>,
    records: u64,
    e2e: bool,
    stats: &Arc<Stats>,
) -> Result<(), CliError> {
    let batch_records = load.batch_records.min((BATCH_BYTES_MAX / (load.record_bytes + 16)).max(1));
    // Partitions grouped by leader: one socket per leader, requests round-robin.
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        by_leader.entry(leaders[p]).or_default().push(*p);
    }
    let mut wires = Vec::new();
    let mut readers = Vec::new();
    for (leader, parts) in by_leader {
        let address = addresses
            .get(&leader)
            .ok_or_else(|| CliError::failure(format!("no address for broker {leader}")))?;
        let mut wire = Wire::connect(address)?;
        // (producer id, epoch) of this connection, asked before the reader thread starts
        // taking the responses; the next sequence per partition is kept beside the wire.
        let producer = if load.idempotent { Some(init_producer_id(&mut wire)?) } else { None };
        let inflight = Arc::new(InFlight {
            queue: Mutex::new(VecDeque::new()),
            space: std::sync::Condvar::new(),
        });
        if load.acks != 0 {
            let mut reader = wire.reader()?;
            let (inflight, stats, record_bytes) =
                (Arc::clone(&inflight), Arc::clone(stats), load.record_bytes as u64);
            readers.push(std::thread::spawn(move || -> Result<(), CliError> {
                loop {
                    let response: ProduceResponse =
                        match reader.receive(ApiKey::Produce, PRODUCE_VERSION) {
                            Ok(response) => response,
                            // The writer shuts the socket down once everything was answered.
                            Err(_) if inflight.queue.lock().expect("inflight lock").is_empty() => {
                                return Ok(())
                            }
                            Err(error) => return Err(error),
                        };
                    let (at, count) = {
                        let mut queue = inflight.queue.lock().expect("inflight lock");
                        let front = queue
                            .pop_front()
                            .ok_or_else(|| CliError::failure("a response nobody asked for"))?;
                        inflight.space.notify_all();
                        front
                    };
                    if let Some(p) = response
                        .responses
                        .iter()
                        .flat_map(|t| &t.partition_responses)
                        .find(|p| p.error_code != 0)
                    {
                        stats.count_error();
                        return Err(CliError::failure(format!(
                            "produce to partition {} failed: {}",
                            p.index,
                            error_name(p.error_code)
                        )));
                    }
                    if !e2e {
                        stats.record_latency(at.elapsed().as_micros() as u64, 1);
                    }
                    stats.complete(count, count * record_bytes);
                }
            }));
        }
        wires.push((wire, parts, inflight, producer, BTreeMap::<i32, i32>::new()));
    }
    let template = batch_for(batch_records, load.record_bytes, None);
    let rate_per_thread = load.rate.map(|r| (r as f64 / load.connections as f64).max(1.0));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while sent < records {
        if let Some(rate) = rate_per_thread {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let index = turn % wires.len();
        turn += 1;
        let (wire, parts, inflight, producer, sequences) = &mut wires[index];
        let count = ((batch_records * parts.len()) as u64).min(records - sent);
        // Wait for room in the window before building the request, so that an e2e stamp
        // (and the produce latency, stamped at the push below) starts at the send.
        if load.acks != 0 {
            let mut queue = inflight.queue.lock().expect("inflight lock");
            while queue.len() >= load.inflight {
                let (next, timeout) = inflight
                    .space
                    .wait_timeout(queue, Duration::from_secs(60))
                    .expect("inflight lock");
                queue = next;
                if timeout.timed_out() {
                    return Err(CliError::failure(format!(
                        "no produce response from {} in 60 s",
                        wire.address()
                    )));
                }
            }
        }
        let per_partition = (count as usize).div_ceil(parts.len());
        let mut request_parts: Vec<(i32, Bytes)> = Vec::with_capacity(parts.len());
        let mut left = count as usize;
        for p in parts.iter() {
            if left == 0 {
                break;
            }
            let n = per_partition.min(left);
            left -= n;
            let mut records = if n != batch_records {
                batch_for(n, load.record_bytes, e2e.then(now_micros))
            } else if e2e {
                stamped(&template, now_micros())
            } else {
                template.clone()
            };
            if let Some((producer_id, epoch)) = *producer {
                let sequence = sequences.entry(*p).or_insert(0);
                let mut owned = records.to_vec();
                build::set_producer(&mut owned, producer_id, epoch, *sequence);
                *sequence = sequence.wrapping_add(n as i32) & i32::MAX;
                records = Bytes::from(owned);
            }
            request_parts.push((*p, records));
        }
        if load.acks != 0 {
            // This thread alone adds to the queue, so the space stays until the push below.
            inflight.queue.lock().expect("inflight lock").push_back((Instant::now(), count));
        }
        wire.send_produce(load.acks, PRODUCE_TIMEOUT_MS, &load.topic, &request_parts)?;
        sent += count;
        if load.acks == 0 {
            stats.complete(count, count * load.record_bytes as u64);
        }
    }
    // Wait for the last answers, then unblock the readers.
    for (wire, _, inflight, _, _) in &wires {
        let mut queue = inflight.queue.lock().expect("inflight lock");
        while !queue.is_empty() {
            let (next, timeout) =
                inflight.space.wait_timeout(queue, Duration::from_secs(60)).expect("inflight lock");
            queue = next;
            if timeout.timed_out() {
                break;
            }
        }
        wire.shutdown_read();
    }
    for reader in readers {
        reader.join().map_err(|_| CliError::failure("a reader thread panicked"))??;
    }
    Ok(())
}
