//! ListOffsets: earliest (-2), latest (-1), or the first offset at or after a timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::OffsetAnswer;
use crate::broker::Broker;
use crate::handlers::errors::{code, storage_error_code};
use crate::partition::Partition;
use crate::protocol::{decode_body, Request};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// The partition, if this shard hosts it and this broker leads it (after reading the state
/// once if it does not: `Broker::partition_for_leader`); else Kafka's refusal for a request
/// only the leader answers.
pub(crate) async fn led_here(
    broker: &Broker,
    topic: &str,
    index: i32,
) -> Result<Rc<Partition>, ResponseError> {
    match broker.partition_for_leader(topic, index).await {
        Some(partition) if partition.replica.is_leader() => Ok(partition),
        Some(_) => Err(ResponseError::NotLeaderOrFollower),
        None if broker.partition_exists(topic, index) => Err(ResponseError::NotLeaderOrFollower),
        None => Err(ResponseError::UnknownTopicOrPartition),
    }
}

/// One partition's answer, resolved on its owning shard.
pub(crate) async fn list_offset(
    broker: &Broker,
    topic: &str,
    index: i32,
    timestamp: i64,
    read_committed: bool,
) -> OffsetAnswer {
    // librdkafka's watermark query gives up on a refusal (`partition_for_leader`).
    let partition = match led_here(broker, topic, index).await {
        Ok(partition) => partition,
        Err(code) => return OffsetAnswer::refused(code),
    };
    let found = |timestamp: i64, offset: i64, leader_epoch: i32| OffsetAnswer {
        error: None,
        timestamp,
        offset,
        leader_epoch,
    };
    // What a consumer may read up to: the last stable offset for read_committed ones.
    let readable =
        if read_committed { partition.last_stable_offset() } else { partition.high_watermark() };
    match timestamp {
        LATEST => found(-1, readable, partition.replica.leader_epoch()),
        EARLIEST => {
            let start = partition.log_start_offset();
            found(-1, start, partition.replica.epoch_at(start))
        }
        timestamp if timestamp >= 0 => match partition.offset_for_timestamp(timestamp).await {
            Ok(Some((offset, at))) if offset < readable => {
                found(at, offset, partition.replica.epoch_at(offset))
            }
            Ok(_) => found(-1, -1, -1),
            Err(error) => OffsetAnswer::refused(storage_error_code(&error)),
        },
        other => {
            tracing::warn!(timestamp = other, "ListOffsets with an unsupported special timestamp");
            OffsetAnswer::refused(ResponseError::InvalidRequest)
        }
    }
}

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: ListOffsetsRequest = decode_body(request)?;
    let read_committed =
        request.version >= 2 && body.isolation_level == super::fetch::READ_COMMITTED;
    let mut response = ListOffsetsResponse::default();
    for topic in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        let name = topic.name.0.as_str();
        for wanted in &topic.partitions {
            let found = match broker.shards.owner_of(name, wanted.partition_index) {
                Some(shard) => {
                    broker
                        .shards
                        .list_offset(
                            shard,
                            name.to_string(),
                            wanted.partition_index,
                            wanted.timestamp,
                            read_committed,
                        )
                        .await
                }
                None => {
                    list_offset(
                        broker,
                        name,
                        wanted.partition_index,
                        wanted.timestamp,
                        read_committed,
                    )
                    .await
                }
            };
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = wanted.partition_index;
            answer.error_code = code(found.error);
            answer.timestamp = found.timestamp;
            answer.offset = found.offset;
            if request.version >= 4 {
                answer.leader_epoch = found.leader_epoch;
            }
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    frame(request, &response)
}
