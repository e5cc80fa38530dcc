//! ListOffsets: earliest (-2), latest (-1), or the first offset at or after a timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::{frame, Reply};
use crate::broker::Broker;
use crate::errors::storage_error_code;
use crate::protocol::{decode_body, Request};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// One partition's answer: (error code, timestamp, offset), resolved on its owning shard.
pub async fn list_offset(broker: &Broker, topic: &str, index: i32, timestamp: i64) -> (i16, i64, i64) {
    // librdkafka's watermark query gives up on a refusal (`partition_for_leader`).
    let Some(partition) = broker.partition_for_leader(topic, index).await else {
        let code = if broker.partition_exists(topic, index) { ResponseError::NotLeaderOrFollower } else { ResponseError::UnknownTopicOrPartition };
        return (code.code(), -1, -1);
    };
    if !partition.replica.is_leader() {
        return (ResponseError::NotLeaderOrFollower.code(), -1, -1);
    }
    match timestamp {
        LATEST => (0, -1, partition.high_watermark()),
        EARLIEST => (0, -1, partition.log_start_offset()),
        timestamp if timestamp >= 0 => match partition.offset_for_timestamp(timestamp).await {
            Ok(Some((offset, found))) if offset < partition.high_watermark() => (0, found, offset),
            Ok(_) => (0, -1, -1),
            Err(error) => (storage_error_code(&error).code(), -1, -1),
        },
        other => {
            tracing::warn!(timestamp = other, "ListOffsets with an unsupported special timestamp");
            (ResponseError::InvalidRequest.code(), -1, -1)
        }
    }
}

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: ListOffsetsRequest = decode_body(request)?;
    let mut response = ListOffsetsResponse::default();
    for topic in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        let name = topic.name.0.as_str();
        for wanted in &topic.partitions {
            let (error, timestamp, offset) = match broker.shards.owner_of(name, wanted.partition_index) {
                Some(shard) => broker.shards.list_offset(shard, name.to_string(), wanted.partition_index, wanted.timestamp).await,
                None => list_offset(broker, name, wanted.partition_index, wanted.timestamp).await,
            };
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = wanted.partition_index;
            answer.error_code = error;
            answer.timestamp = timestamp;
            answer.offset = offset;
            // No offset (an error, or no record at or after the timestamp): no epoch, as Kafka.
            answer.leader_epoch = if request.version >= 4 && error == 0 && offset >= 0 { 0 } else { -1 };
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    frame(request, &response)
}
