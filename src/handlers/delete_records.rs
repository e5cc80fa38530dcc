//! DeleteRecords: moves partitions' log starts forward, on their leaders.
//!
//! Each partition is answered by the shard that owns it. The leader moves its log start
//! durably and deletes the segments wholly below it; followers take the new start from their
//! next fetch and report theirs in the one after. As Kafka's delayed DeleteRecords does, the
//! answer waits until the low watermark (the smallest log start of the leader and its
//! in-sync followers) reaches the offset, and gives it; past the request's timeout (at most
//! `DELETE_TIMEOUT_MS_MAX`) the partition is answered REQUEST_TIMED_OUT with the low
//! watermark reached so far. The deletion itself stands either way.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::OffsetAnswer;
use crate::broker::Broker;
use crate::handlers::errors::{code, storage_error_code};
use crate::partition::LowWatermarkWait;
use crate::protocol::{decode_body, Request};

/// The offset that stands for the partition's high watermark (Kafka's
/// `DeleteRecordsRequest.HIGH_WATERMARK`).
const HIGH_WATERMARK: i64 = -1;
/// Partitions one request may name.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;
/// The longest a request waits for the followers' log starts, whatever its timeout says.
const DELETE_TIMEOUT_MS_MAX: i32 = 5 * 60 * 1000;

/// Phase one, on the partition's owning shard: moves its log start (durably, the segments
/// wholly below it deleted). The answer's `offset` is the offset the low watermark must
/// reach (the high watermark where -1 asked for it).
pub(crate) async fn delete_records_before(
    broker: &Broker,
    topic: &str,
    index: i32,
    offset: i64,
) -> OffsetAnswer {
    let partition = match super::list_offsets::led_here(broker, topic, index).await {
        Ok(partition) => partition,
        Err(code) => return OffsetAnswer::refused(code),
    };
    let offset = if offset == HIGH_WATERMARK { partition.high_watermark() } else { offset };
    match partition.delete_records_before(offset).await {
        Ok(log_start) => {
            info!(partition = ?partition, log_start, "records deleted");
            OffsetAnswer { error: None, timestamp: -1, offset, leader_epoch: -1 }
        }
        Err(error) => {
            warn!(partition = ?partition, offset, %error, "DeleteRecords refused");
            OffsetAnswer::refused(storage_error_code(&error))
        }
    }
}

/// Phase two, on the owning shard: waits until the partition's low watermark reaches
/// `offset` or `deadline` passes; the answer's `offset` is the low watermark.
pub(crate) async fn low_watermark_reaching(
    broker: &Broker,
    topic: &str,
    index: i32,
    offset: i64,
    deadline: tokio::time::Instant,
) -> OffsetAnswer {
    let partition = match super::list_offsets::led_here(broker, topic, index).await {
        Ok(partition) => partition,
        Err(code) => return OffsetAnswer::refused(code),
    };
    let answer = |error, low_watermark| OffsetAnswer {
        error,
        timestamp: -1,
        offset: low_watermark,
        leader_epoch: -1,
    };
    match partition.wait_low_watermark(offset, deadline).await {
        Ok(low_watermark) => answer(None, low_watermark),
        Err(LowWatermarkWait::TimedOut(low_watermark)) => {
            warn!(partition = ?partition, offset, low_watermark, "DeleteRecords timed out waiting for the in-sync followers' log starts");
            answer(Some(ResponseError::RequestTimedOut), low_watermark)
        }
        Err(LowWatermarkWait::NotLeader) => {
            OffsetAnswer::refused(ResponseError::NotLeaderOrFollower)
        }
    }
}

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DeleteRecordsRequest = decode_body(request)?;
    let count: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    super::reply::at_most("partitions", count, PARTITIONS_PER_REQUEST_MAX)?;
    let timeout_ms = body.timeout_ms.clamp(0, DELETE_TIMEOUT_MS_MAX) as u64;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    // Every partition's deletion first, then one wait for them all (Kafka's delayed
    // DeleteRecords): the followers take every new log start meanwhile, so the waits, taken
    // one after another, end together, within the one deadline.
    let mut deleted: Vec<Vec<OffsetAnswer>> = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let name = topic.name.0.as_str();
        let mut answers = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let (index, offset) = (wanted.partition_index, wanted.offset);
            answers.push(match broker.shards.owner_of(name, index) {
                Some(shard) => {
                    broker.shards.delete_records(shard, name.to_string(), index, offset).await
                }
                None => delete_records_before(broker, name, index, offset).await,
            });
        }
        deleted.push(answers);
    }
    let mut response = DeleteRecordsResponse::default();
    for (topic, answers) in body.topics.iter().zip(deleted) {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        let name = topic.name.0.as_str();
        for (wanted, answer) in topic.partitions.iter().zip(answers) {
            let index = wanted.partition_index;
            let answer = match (answer.error, broker.shards.owner_of(name, index)) {
                (Some(_), _) => answer,
                (None, Some(shard)) => {
                    let name = name.to_string();
                    broker.shards.low_watermark(shard, name, index, answer.offset, deadline).await
                }
                (None, None) => {
                    low_watermark_reaching(broker, name, index, answer.offset, deadline).await
                }
            };
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = index;
            result.error_code = code(answer.error);
            result.low_watermark = answer.offset;
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    frame(request, &response)
}
