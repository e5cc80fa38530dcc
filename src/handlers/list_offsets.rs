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

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: ListOffsetsRequest = decode_body(request)?;
    let mut response = ListOffsetsResponse::default();
    for topic in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        for wanted in &topic.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = wanted.partition_index;
            answer.timestamp = -1;
            answer.offset = -1;
            answer.leader_epoch = if request.version >= 4 { 0 } else { -1 };
            match broker.partition(topic.name.0.as_str(), wanted.partition_index) {
                None if broker.cluster.is_some() && broker.topic(topic.name.0.as_str()).is_some() => {
                    answer.error_code = ResponseError::NotLeaderOrFollower.code()
                }
                None => answer.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(partition) if !partition.replica.is_leader() => answer.error_code = ResponseError::NotLeaderOrFollower.code(),
                Some(partition) => match wanted.timestamp {
                    LATEST => answer.offset = partition.high_watermark(),
                    EARLIEST => answer.offset = partition.log_start_offset(),
                    timestamp if timestamp >= 0 => match partition.offset_for_timestamp(timestamp).await {
                        Ok(Some((offset, found))) if offset < partition.high_watermark() => {
                            answer.offset = offset;
                            answer.timestamp = found;
                        }
                        Ok(_) => {}
                        Err(error) => answer.error_code = storage_error_code(&error).code(),
                    },
                    other => {
                        tracing::warn!(timestamp = other, "ListOffsets with an unsupported special timestamp");
                        answer.error_code = ResponseError::InvalidRequest.code();
                    }
                },
            }
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    frame(request, &response)
}
