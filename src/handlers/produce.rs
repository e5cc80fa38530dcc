//! Produce: append record batches as received, then answer per partition. acks=0 gets no
//! answer at all; acks=all waits for fdatasync (unless configured off) and for the in-sync
//! replicas, and honours `min.insync.replicas`.
//!
//! Each partition's part runs as its own task, on the shard that owns the partition (see
//! `broker/shards.rs`; the parts for another shard travel there in one message): appends,
//! fdatasyncs and replication waits of one request overlap.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, Semaphore};
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::{AppendDone, PartitionOutcome};
use crate::broker::shards::{ByShard, ProducePart, Shards};
use crate::broker::{Broker, Topic};
use crate::handlers::errors::append_error_code;
use crate::partition::recompress;
use crate::partition::replica::ReplicationWait;
use crate::partition::Partition;
use crate::protocol::{decode_body, Request};
use crate::txn::TxnWrite;

/// Longest an acks=all produce waits for the in-sync replicas.
const PRODUCE_TIMEOUT_MS_MAX: i32 = 120_000;

/// Entries of an `AppendOrder` past which the finished ones are dropped.
const APPEND_ORDER_PRUNE_AT: usize = 1024;

/// The order of one connection's appends to each partition. A partition's append from a
/// later Produce of the connection starts only once the one from the earlier Produce is
/// over (appended, refused or abandoned). So the connection may start its next Produce as
/// soon as this one's appends have taken their turns, without waiting for them to be done:
/// a Produce whose partitions live on another shard no longer holds the connection for the
/// round trip to that shard, and yet no partition sees the connection's batches out of
/// order. Each turn is taken before the connection reads its next request.
#[derive(Default)]
pub(crate) struct AppendOrder {
    /// Per topic and partition, the end of the connection's last append to it.
    last: std::cell::RefCell<
        std::collections::HashMap<String, std::collections::HashMap<i32, oneshot::Receiver<()>>>,
    >,
    /// Entries in `last`.
    entries: std::cell::Cell<usize>,
    /// Size at which the finished entries are dropped next (grows with the live ones).
    prune_at: std::cell::Cell<usize>,
}

impl AppendOrder {
    /// Takes the next turn at `topic`-`index`: what to wait for first (the end of the
    /// connection's previous append there, if it may still run), and the signal that ends
    /// this one (given to `AppendDone`).
    pub(crate) fn turn(
        &self,
        topic: &str,
        index: i32,
    ) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (end, ended) = oneshot::channel();
        let mut last = self.last.borrow_mut();
        let partitions = match last.get_mut(topic) {
            Some(partitions) => partitions,
            None => last.entry(topic.to_string()).or_default(),
        };
        let before = partitions.insert(index, ended);
        if before.is_none() {
            self.entries.set(self.entries.get() + 1);
        }
        if self.entries.get() >= self.prune_at.get().max(APPEND_ORDER_PRUNE_AT) {
            last.retain(|_, partitions| {
                partitions.retain(|_, ended| {
                    matches!(ended.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                });
                !partitions.is_empty()
            });
            self.entries.set(last.values().map(|partitions| partitions.len()).sum());
            self.prune_at.set(2 * self.entries.get());
        }
        (before, end)
    }
}

/// What a Produce tells the connection that read it (`server/connection.rs`): `ordered` once every
/// partition's append has taken its turn (the connection may start its next request then,
/// if that is a Produce too), `appended` once every append is over (any other request waits
/// for that). An acks=0 Produce tells neither: the connection waits for its answer, as a
/// refusal must close the connection before the next request takes effect.
pub(crate) struct Pipeline {
    pub order: Rc<AppendOrder>,
    pub ordered: oneshot::Sender<()>,
    pub appended: oneshot::Sender<()>,
}

/// Appends to a partition this shard owns and, for acks=all, waits until the records are
/// durable and on every in-sync replica. It starts on its turn in the connection's order,
/// and `done` is marked as soon as the append is over.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn produce_partition(
    broker: Rc<Broker>,
    topic: String,
    index: i32,
    records: Option<Bytes>,
    txn: Option<TxnWrite>,
    acks: i16,
    timeout_ms: i32,
    mut done: AppendDone,
) -> PartitionOutcome {
    done.turn().await;
    let (topic_state, partition) = match led_partition(&broker, &topic, index).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let in_sync = partition.replica.role().isr.len() as i32;
    let min_insync = broker.min_insync_replicas(&topic_state.config);
    if acks == -1 && in_sync < min_insync {
        return PartitionOutcome::refused(
            ResponseError::NotEnoughReplicas,
            format!("min.insync.replicas is {min_insync} but {in_sync} replicas are in sync"),
        );
    }
    let Some(records) = records else {
        return PartitionOutcome::refused(
            ResponseError::CorruptMessage,
            "null records".to_string(),
        );
    };
    if let Some(txn) = &txn {
        if let Some(refused) =
            super::txn::verify_transactional(&broker, &partition, txn, &records).await
        {
            return refused;
        }
    }
    if partition.compacted() {
        match recompress::keyless_records(&records) {
            Ok(keyless) if keyless.is_empty() => {}
            Ok(keyless) => {
                let why = format!("Compacted topic cannot accept message without key in topic partition {topic}-{index}");
                let errors = keyless.into_iter().map(|i| (i, why.clone())).collect();
                // Kafka answers a refusal of records with the partition's log start.
                return PartitionOutcome {
                    log_start_offset: partition.log_start_offset(),
                    ..PartitionOutcome::records_refused(errors)
                };
            }
            Err((code, message)) => return PartitionOutcome::refused(code, message),
        }
    }
    let records = match in_topic_codec(&broker, &topic_state, records).await {
        Ok(records) => records,
        Err((code, message)) => return PartitionOutcome::refused(code, message),
    };
    let appended = partition.append(records, partition.replica.leader_epoch().max(0)).await;
    done.now();
    let appended = match appended {
        Ok(appended) => appended,
        Err(error) => {
            return PartitionOutcome::refused(append_error_code(&error), format!("{error:?}"))
        }
    };
    if !appended.duplicate {
        broker.data_arrived.notify_waiters();
    }
    if acks == -1 {
        let end = appended.last_offset + 1;
        if let Err(refused) = acks_all(&broker, &partition, end, timeout_ms, min_insync).await {
            return refused;
        }
    }
    PartitionOutcome {
        error: None,
        base_offset: appended.base_offset,
        log_start_offset: partition.log_start_offset(),
        log_append_time: appended.log_append_time,
        record_errors: Vec::new(),
    }
}

/// `records` in the topic's codec where its `compression.type` names one (Kafka's leader
/// recompresses such batches); large appends are recompressed off the shard thread.
async fn in_topic_codec(
    broker: &Broker,
    topic: &Topic,
    records: Bytes,
) -> Result<Bytes, recompress::Refusal> {
    let value = |name: &str| broker.topic_config_value(&topic.config, name);
    let Some(name) = value("compression.type") else { return Ok(records) };
    let level = |name: &str| value(name).and_then(|v| v.trim().parse().ok());
    let Some(target) = recompress::Target::of(name.trim(), level) else { return Ok(records) };
    let changed = if records.len() < recompress::INLINE_BYTES_MAX {
        recompress::recompress(&records, target)?
    } else {
        let sent = records.clone();
        tokio::task::spawn_blocking(move || recompress::recompress(&sent, target)).await.map_err(
            |e| (ResponseError::UnknownServerError, format!("recompression failed: {e}")),
        )??
    };
    Ok(changed.unwrap_or(records))
}

/// The topic and the partition `topic`-`index` if this broker leads it; the refusal if not.
async fn led_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Result<(Rc<Topic>, Rc<Partition>), PartitionOutcome> {
    // Refusing because this broker has not read the state that made it the leader yet would
    // send an idempotent producer's next request (already in flight) here with a sequence
    // gap, which librdkafka answers by renumbering every unacknowledged message under a new
    // epoch, duplicating those the old leader had written (`partition_for_leader`).
    let found = broker
        .partition_for_leader(topic, index)
        .await
        .and_then(|p| Some((broker.topic(topic)?, p)));
    let Some((topic_state, partition)) = found else {
        return Err(if broker.partition_exists(topic, index) {
            PartitionOutcome::refused(
                ResponseError::NotLeaderOrFollower,
                format!("broker {} holds no replica of {topic}-{index}", broker.config.broker_id),
            )
        } else {
            PartitionOutcome::refused(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )
        });
    };
    if !partition.replica.is_leader() {
        return Err(PartitionOutcome::refused(
            ResponseError::NotLeaderOrFollower,
            format!("broker {} does not lead {topic}-{index}", broker.config.broker_id),
        ));
    }
    Ok((topic_state, partition))
}

/// What acks=all waits for once the records up to `end` are appended: their fdatasync
/// (unless configured off), then the in-sync replicas, at least `min_insync` of them.
async fn acks_all(
    broker: &Broker,
    partition: &Partition,
    end: i64,
    timeout_ms: i32,
    min_insync: i32,
) -> Result<(), PartitionOutcome> {
    if broker.config.fsync_acks_all {
        if let Err(error) = partition.flush_to(end).await {
            return Err(PartitionOutcome::refused(
                crate::handlers::errors::storage_error_code(&error),
                error.to_string(),
            ));
        }
    }
    let timeout =
        std::time::Duration::from_millis(timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX) as u64);
    match partition.wait_replicated(end, timeout, min_insync).await {
        Ok(()) => Ok(()),
        Err(ReplicationWait::NotLeader) => Err(PartitionOutcome::refused(
            ResponseError::NotLeaderOrFollower,
            "leadership moved before the records were replicated".to_string(),
        )),
        Err(ReplicationWait::TimedOut) => Err(PartitionOutcome::refused(
            ResponseError::RequestTimedOut,
            "the in-sync replicas did not confirm in time".to_string(),
        )),
        Err(ReplicationWait::NotEnoughReplicas) => Err(PartitionOutcome::refused(
            ResponseError::NotEnoughReplicasAfterAppend,
            format!("the in-sync set shrank below min.insync.replicas ({min_insync}) while the records waited"),
        )),
    }
}

/// Kafka's check of a partition's records in Produce v3+ (`ProduceRequest.validateRecords`):
/// exactly one record batch, of magic 2. Kafka refuses anything else with INVALID_RECORD
/// before looking further; so does Fjord. Only the headers are read: the batch itself is
/// validated when it is appended. Null records are left to the append, which refuses them.
fn one_batch(records: Option<&[u8]>) -> Result<(), String> {
    /// Base offset (8) and batch length (4): where a batch's length counts from.
    const LOG_OVERHEAD: usize = 12;
    /// Where the magic byte of a batch is: after the overhead and the partition leader epoch.
    const MAGIC_AT: usize = 16;
    let Some(records) = records else { return Ok(()) };
    if records.is_empty() {
        return Err(
            "a Produce v3+ must carry one record batch per partition; this one carries none"
                .to_string(),
        );
    }
    if let Some(&magic) = records.get(MAGIC_AT) {
        if magic != 2 {
            return Err(format!("record batch magic {magic}: Produce v3+ takes magic 2 only"));
        }
    }
    if let Some(length) = records.get(8..LOG_OVERHEAD) {
        let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
        // A second batch counts only if it is whole, as Kafka's batch iterator reads them.
        let second = records.get(LOG_OVERHEAD + length.max(0) as usize..).unwrap_or_default();
        let second_length =
            second.get(8..LOG_OVERHEAD).map(|l| i32::from_be_bytes(l.try_into().expect("4 bytes")));
        if length >= 0
            && second_length.is_some_and(|l| l >= 0 && second.len() >= LOG_OVERHEAD + l as usize)
        {
            return Err("a Produce v3+ may carry only one record batch per partition".to_string());
        }
    }
    Ok(())
}

/// Answers a Produce. With acks 1 or all, `pipeline` is told once every partition's append
/// has taken its turn in the connection's order (`ordered`: the connection may start its
/// next Produce, whose appends queue behind these and share their fdatasync and replication
/// wait, group commit) and again once all are over, before the acks=all waits (`appended`:
/// a request of any other kind may start).
pub(super) async fn handle(
    broker: &Rc<Broker>,
    request: &Request,
    pipeline: Option<Pipeline>,
) -> Result<Reply, HandlerError> {
    let body: ProduceRequest = decode_body(request)?;
    let acks = body.acks;
    // An acks=0 Produce takes its turns too (it must follow the connection's earlier
    // appends) but tells nothing: the connection waits for its end.
    let (order, signals) = match pipeline {
        Some(Pipeline { order, ordered, appended }) => {
            (Some(order), (acks != 0).then_some((ordered, appended)))
        }
        None => (None, None),
    };
    let appends = Arc::new(Semaphore::new(0));
    let parts = Parts::sort(broker, &body, request.version, order.as_deref(), &appends);
    let appending = parts.appending;
    let (names, outcomes, started) = parts.start(broker, acks, body.timeout_ms);
    if let Some((ordered, appended)) = signals {
        // Every turn is taken (above, before any await) and the other shards' parts are in
        // their inboxes behind this connection's earlier ones.
        let _ = ordered.send(());
        // Every AppendDone adds its permit when dropped, wherever it went, so this ends.
        if appends.acquire_many(appending).await.is_ok() {
            let _ = appended.send(());
        }
    }
    let outcomes = started.outcomes(outcomes).await;
    let (response, refused) = response(request, &body, names, outcomes);
    if acks == 0 {
        // No answer goes back to an acks=0 producer, so a refusal closes the connection, as
        // in Kafka: the client reconnects and refreshes its metadata.
        return Ok(match refused {
            Some(reason) => Reply::Close(format!("acks=0 produce refused ({reason})")),
            None => Reply::Nothing,
        });
    }
    frame(request, &response)
}

/// A partition this shard appends to: its slot, topic, index, records and append's end.
type LocalPart = (usize, String, i32, Option<Bytes>, Option<TxnWrite>, AppendDone);

/// A Produce's partitions sorted by where each goes: refused before any append, appended
/// here, or sent to the shard that owns it. A slot is a partition's place in the request.
#[derive(Default)]
struct Parts {
    /// Topic and partition index per slot.
    names: Vec<(String, i32)>,
    /// Outcome per slot; the refusals before any append are known at once.
    outcomes: Vec<Option<PartitionOutcome>>,
    local: Vec<LocalPart>,
    remote: ByShard<usize, ProducePart>,
    /// Appends to come; each adds a permit to the request's semaphore once over.
    appending: u32,
}

impl Parts {
    /// Sorts every partition of `body`, taking each append's turn in the connection's
    /// `order` (there is none for a request that is not pipelined).
    fn sort(
        broker: &Broker,
        body: &ProduceRequest,
        version: i16,
        order: Option<&AppendOrder>,
        appends: &Arc<Semaphore>,
    ) -> Parts {
        let mut parts = Parts::default();
        let txn = body.transactional_id.as_ref().map(|id| TxnWrite {
            transactional_id: Arc::from(id.0.as_str()),
            request_version: version,
        });
        for topic_data in &body.topic_data {
            let name = topic_data.name.0.to_string();
            for data in &topic_data.partition_data {
                let slot = parts.outcomes.len();
                parts.names.push((name.clone(), data.index));
                if let Some(refused) = refused_before_append(broker, body, &name, data) {
                    parts.outcomes.push(Some(refused));
                    continue;
                }
                parts.outcomes.push(None);
                parts.appending += 1;
                let turn = order.map(|order| order.turn(&name, data.index));
                let done = AppendDone::new(appends, turn);
                let records = data.records.clone();
                match broker.shards.owner_of(&name, data.index) {
                    Some(shard) => parts.remote.push(
                        shard,
                        slot,
                        ProducePart {
                            topic: name.clone(),
                            index: data.index,
                            records,
                            txn: txn.clone(),
                            done,
                        },
                    ),
                    None => parts.local.push((
                        slot,
                        name.clone(),
                        data.index,
                        records,
                        txn.clone(),
                        done,
                    )),
                }
            }
        }
        parts
    }

    /// Starts the appends: one message per other shard carrying all of its partitions, sent
    /// first so that shard appends while this one does; then one task per partition of this
    /// shard's. Gives back the names and outcomes known so far, and the appends under way.
    fn start(
        self,
        broker: &Rc<Broker>,
        acks: i16,
        timeout_ms: i32,
    ) -> (Vec<(String, i32)>, Vec<Option<PartitionOutcome>>, Started) {
        let remote = self
            .remote
            .into_groups()
            .map(|(shard, slots, parts)| {
                (slots, broker.shards.produce(shard, parts, acks, timeout_ms))
            })
            .collect();
        let local = self
            .local
            .into_iter()
            .map(|(slot, topic, index, records, txn, done)| {
                let broker = Rc::clone(broker);
                let task =
                    produce_partition(broker, topic, index, records, txn, acks, timeout_ms, done);
                (slot, fjord_storage::io::spawn(task))
            })
            .collect();
        (self.names, self.outcomes, Started { local, remote })
    }
}

/// Why a partition is refused before its append, if it is: acks out of range, or records
/// that fail Kafka's v3+ check.
fn refused_before_append(
    broker: &Broker,
    body: &ProduceRequest,
    name: &str,
    data: &PartitionProduceData,
) -> Option<PartitionOutcome> {
    let acks = body.acks;
    if !matches!(acks, -1..=1) {
        return Some(PartitionOutcome::refused(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, got {acks}"),
        ));
    }
    // As Kafka, a partition that does not exist is answered as such before its records
    // are looked at (the append answers UNKNOWN_TOPIC_OR_PARTITION); it is looked up
    // only for records that fail the check, off the common path.
    match one_batch(data.records.as_deref()) {
        Err(reason) if broker.partition_exists(name, data.index) => {
            Some(PartitionOutcome::refused(ResponseError::InvalidRecord, reason))
        }
        _ => None,
    }
}

/// Another shard's outcomes for its parts of a Produce, to come (`None` if it is gone).
type ShardAnswer = Option<oneshot::Receiver<Vec<PartitionOutcome>>>;

/// The appends of a Produce under way, by slot.
struct Started {
    local: Vec<(usize, tokio::task::JoinHandle<PartitionOutcome>)>,
    /// Per other shard, its slots and its answer to come.
    remote: Vec<(Vec<usize>, ShardAnswer)>,
}

impl Started {
    /// Waits for every append and fills in its slot of `outcomes`.
    async fn outcomes(
        self,
        mut outcomes: Vec<Option<PartitionOutcome>>,
    ) -> Vec<Option<PartitionOutcome>> {
        for (slot, task) in self.local {
            let outcome = task.await.unwrap_or_else(|join_error| {
                PartitionOutcome::refused(
                    ResponseError::UnknownServerError,
                    format!("produce task failed: {join_error}"),
                )
            });
            outcomes[slot] = Some(outcome);
        }
        for (slots, answer) in self.remote {
            let answers = Shards::produced(answer, slots.len()).await;
            for (slot, outcome) in slots.into_iter().zip(answers) {
                outcomes[slot] = Some(outcome);
            }
        }
        outcomes
    }
}

/// The Produce response, in request order, and the first refusal (for acks=0, which has no
/// response to carry it).
fn response(
    request: &Request,
    body: &ProduceRequest,
    names: Vec<(String, i32)>,
    outcomes: Vec<Option<PartitionOutcome>>,
) -> (ProduceResponse, Option<String>) {
    let mut response = ProduceResponse::default();
    let mut refused = None;
    for topic_data in &body.topic_data {
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name.clone();
        response.responses.push(topic_response);
    }
    let mut slots = names.into_iter().zip(outcomes);
    for (topic_index, topic_data) in body.topic_data.iter().enumerate() {
        for _ in &topic_data.partition_data {
            let Some(((name, index), outcome)) = slots.next() else { break };
            let outcome = outcome.unwrap_or_else(|| {
                PartitionOutcome::refused(
                    ResponseError::UnknownServerError,
                    "no answer for the partition".to_string(),
                )
            });
            let entry = partition_response(request, &name, index, outcome, &mut refused);
            response.responses[topic_index].partition_responses.push(entry);
        }
    }
    (response, refused)
}

/// One partition's entry in the response; a refusal is logged, and kept in `refused` if it
/// is the first.
fn partition_response(
    request: &Request,
    name: &str,
    index: i32,
    outcome: PartitionOutcome,
    refused: &mut Option<String>,
) -> PartitionProduceResponse {
    let mut entry = PartitionProduceResponse::default();
    entry.index = index;
    entry.base_offset = outcome.base_offset;
    entry.log_append_time_ms = outcome.log_append_time;
    entry.log_start_offset = -1;
    if request.version >= 5 {
        // -1 for every refusal but one of records, which carries the log start.
        entry.log_start_offset = outcome.log_start_offset;
    }
    if let Some((code, message)) = outcome.error {
        warn!(topic = %name, partition = index, client = ?request.header.client_id, %message, "produce refused");
        refused.get_or_insert_with(|| format!("{name}-{index}: {message}"));
        entry.error_code = code.code();
        if request.version >= 8 {
            entry.error_message = Some(message.into());
            entry.record_errors = outcome
                .record_errors
                .into_iter()
                .map(|(index, message)| {
                    let mut error =
                        kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default();
                    error.batch_index = index;
                    error.batch_index_error_message = Some(message.into());
                    error
                })
                .collect();
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_append_to_a_partition_waits_for_the_connections_previous_one_there() {
        let order = AppendOrder::default();
        let (first_after, first_end) = order.turn("t", 0);
        assert!(first_after.is_none(), "nothing before the first append");
        let (other_after, _other_end) = order.turn("t", 1);
        assert!(other_after.is_none(), "another partition does not wait");
        let (second_after, _second_end) = order.turn("t", 0);
        let mut second_after = second_after.expect("the second append waits");
        assert!(
            matches!(second_after.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "not before the first is over"
        );
        drop(first_end); // an append that is abandoned ends its turn too
        assert!(second_after.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
    }

    #[test]
    fn finished_turns_are_forgotten_once_there_are_many() {
        let order = AppendOrder::default();
        let mut ends = Vec::new();
        for index in 0..APPEND_ORDER_PRUNE_AT as i32 - 1 {
            let (_, end) = order.turn("t", index);
            let _ = end.send(());
        }
        for index in 0..10 {
            let (_, end) = order.turn("u", index);
            ends.push(end);
        }
        assert!(
            order.entries.get() <= 10 + 1,
            "finished entries pruned, {} left",
            order.entries.get()
        );
        assert_eq!(
            order.entries.get(),
            order.last.borrow().values().map(|p| p.len()).sum::<usize>()
        );
        let (after, _) = order.turn("u", 3);
        assert!(after.is_some(), "a live entry kept");
    }
}
