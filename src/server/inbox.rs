//! The inbox of a shard: what other shards send it, served on its own thread. Produce and
//! Fetch parts for partitions this shard owns, ListOffsets, DeleteRecords, DescribeProducers
//! and OffsetForLeaderEpoch per partition, the partitions it hosts for DescribeLogDirs, whole
//! requests forwarded to shard 0, topic and cluster state changes, and shutdown. Each message runs as its own task, as a local request would.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tracing::warn;

use crate::broker::outcome::PartitionOutcome;
use crate::broker::shards::{FetchPart, FrameReply, Message, ProducePart, RemoteRead};
use crate::broker::Broker;
use crate::handlers::{self, fetch, Reply};

/// Serves what other shards send, until the channel closes. `on_shutdown` is run for a
/// Shutdown message before it is acknowledged.
pub(super) async fn serve_inbox<F, Fut>(
    broker: Rc<Broker>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
    on_shutdown: F,
) where
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let on_shutdown = Rc::new(on_shutdown);
    while let Some(message) = inbox.recv().await {
        let broker = Rc::clone(&broker);
        let on_shutdown = Rc::clone(&on_shutdown);
        fjord_storage::io::spawn(
            async move { serve_message(&broker, message, &*on_shutdown).await },
        );
    }
}

/// Serves one message and sends its answer (a receiver that is gone is not an error).
async fn serve_message<F, Fut>(broker: &Rc<Broker>, message: Message, on_shutdown: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match message {
        Message::Produce { parts, acks, timeout_ms, reply } => {
            let _ = reply.send(produce_parts(broker, parts, acks, timeout_ms).await);
        }
        Message::Fetch { parts, replica, max_bytes, reply } => {
            let _ = reply.send(fetch_parts(broker, parts, replica, max_bytes).await);
        }
        Message::DeleteRecords { topic, index, offset, reply } => {
            let _ =
                reply.send(handlers::delete_records_before(broker, &topic, index, offset).await);
        }
        Message::WriteMarker {
            topic,
            index,
            producer_id,
            epoch,
            commit,
            coordinator_epoch,
            reply,
        } => {
            let written = handlers::txn::write_marker_here(
                broker,
                &topic,
                index,
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
            );
            let _ = reply.send(written.await);
        }
        Message::CheckTxn { check, topic, index, reply } => {
            let answer = handlers::txn::check_here(broker, &check, &topic, index);
            let _ = reply.send(answer.await);
        }
        Message::LowWatermark { topic, index, offset, deadline, reply } => {
            let answer = handlers::low_watermark_reaching(broker, &topic, index, offset, deadline);
            let _ = reply.send(answer.await);
        }
        Message::ListOffset { topic, index, timestamp, read_committed, reply } => {
            let answer = handlers::list_offset(broker, &topic, index, timestamp, read_committed);
            let _ = reply.send(answer.await);
        }
        Message::LogDirPartitions { wanted, reply } => {
            let _ = reply.send(handlers::log_dir_partitions(broker, wanted.as_deref()).await);
        }
        Message::Producers { topic, index, reply } => {
            let _ = reply.send(handlers::partition_producers(broker, &topic, index));
        }
        Message::Frame { payload, peer, reply } => {
            let _ = reply.send(forwarded_frame(broker, payload, peer).await);
        }
        Message::EpochEnd { topic, index, current_leader_epoch, leader_epoch, reply } => {
            let _ = reply.send(handlers::epochs::epoch_end(
                broker,
                &topic,
                index,
                current_leader_epoch,
                leader_epoch,
            ));
        }
        Message::TopicsChanged { changed, reply } => {
            if let Err(error) = broker.reload_topics(changed.as_deref()).await {
                warn!(%error, "cannot reload topics");
            }
            let _ = reply.send(());
        }
        Message::BrokerConfigsChanged { configs, reply } => {
            broker.apply_dynamic(configs).await;
            let _ = reply.send(());
        }
        Message::ApplyState { state, reply } => {
            broker.apply_state(&state).await;
            let _ = reply.send(());
        }
        Message::Shutdown { reply } => {
            on_shutdown().await;
            let _ = reply.send(());
        }
    }
}

/// A Produce's partitions of this shard: each appends as its own task, as for a local
/// request; the outcomes in the parts' order.
async fn produce_parts(
    broker: &Rc<Broker>,
    parts: Vec<ProducePart>,
    acks: i16,
    timeout_ms: i32,
) -> Vec<PartitionOutcome> {
    let tasks: Vec<_> = parts
        .into_iter()
        .map(|part| {
            fjord_storage::io::spawn(handlers::produce_partition(
                Rc::clone(broker),
                part.topic,
                part.index,
                part.records,
                part.txn,
                acks,
                timeout_ms,
                part.done,
            ))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| {
            PartitionOutcome::refused(
                ResponseError::UnknownServerError,
                format!("produce task failed: {e}"),
            )
        }));
    }
    outcomes
}

/// A Fetch's partitions of this shard, read in order within the budget, as the asking
/// shard does with its own.
async fn fetch_parts(
    broker: &Rc<Broker>,
    parts: Vec<FetchPart>,
    replica: i32,
    max_bytes: u64,
) -> Vec<RemoteRead> {
    let mut reads = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for part in parts {
        let limit = fetch::budget_limit(part.partition_max_bytes, max_bytes, total);
        let read = fetch::read_budgeted(
            broker,
            &part.topic,
            part.index,
            part.position,
            limit,
            total,
            replica,
            part.epoch,
            part.isolation,
        )
        .await;
        let bytes: u64 = read.regions.iter().map(|r| r.len).sum();
        if fetch::fits(bytes, limit, total) {
            total += bytes;
        }
        reads.push(RemoteRead::from_local(read));
    }
    reads
}

/// A whole request forwarded to this shard (shard 0), answered as a frame.
async fn forwarded_frame(
    broker: &Rc<Broker>,
    payload: Bytes,
    peer: Option<SocketAddr>,
) -> FrameReply {
    let mut request = match crate::protocol::parse_request(payload) {
        Ok(request) => request,
        Err(error) => return FrameReply::Close(error.to_string()),
    };
    // A Produce is split by partition, never forwarded whole: it must take its turns on its
    // own connection (`AppendOrder`).
    debug_assert_ne!(
        request.api_key,
        kafka_protocol::messages::ApiKey::Produce,
        "a Produce forwarded whole"
    );
    request.peer = peer;
    match handlers::dispatch(broker, request, None).await {
        Reply::Frame(bytes) => FrameReply::Frame(bytes),
        Reply::Nothing => FrameReply::Nothing,
        Reply::Close(reason) => FrameReply::Close(reason),
        Reply::Fetch(_) => FrameReply::Close("a Fetch cannot be forwarded whole".to_string()),
    }
}
