//! DeleteRecords: moves partitions' log starts forward, on their leaders.
//!
//! Each partition is answered by the shard that owns it. The answer's low watermark is the
//! leader's new log start, given once the leader has moved it durably and deleted the
//! segments wholly below it; followers take it from their next fetch. (Kafka also waits for
//! the followers' log starts before it answers: `docs/compatibility.md`.)

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::{info, warn};

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::OffsetAnswer;
use crate::broker::Broker;
use crate::handlers::errors::{code, storage_error_code};
use crate::protocol::{decode_body, Request};

/// The offset that stands for the partition's high watermark (Kafka's
/// `DeleteRecordsRequest.HIGH_WATERMARK`).
const HIGH_WATERMARK: i64 = -1;
/// Partitions one request may name.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

/// One partition's answer, resolved on its owning shard: the new log start as `offset`.
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
            OffsetAnswer { error: None, timestamp: -1, offset: log_start, leader_epoch: -1 }
        }
        Err(error) => {
            warn!(partition = ?partition, offset, %error, "DeleteRecords refused");
            OffsetAnswer::refused(storage_error_code(&error))
        }
    }
}

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DeleteRecordsRequest = decode_body(request)?;
    let count: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    if count > PARTITIONS_PER_REQUEST_MAX {
        return Err(HandlerError::TooMany {
            what: "partitions",
            count,
            max: PARTITIONS_PER_REQUEST_MAX,
        });
    }
    let mut response = DeleteRecordsResponse::default();
    for topic in &body.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        let name = topic.name.0.as_str();
        for wanted in &topic.partitions {
            let (index, offset) = (wanted.partition_index, wanted.offset);
            let answer = match broker.shards.owner_of(name, index) {
                Some(shard) => {
                    broker.shards.delete_records(shard, name.to_string(), index, offset).await
                }
                None => delete_records_before(broker, name, index, offset).await,
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
