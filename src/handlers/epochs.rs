//! OffsetForLeaderEpoch: where a leader epoch ended on this leader, so a returning
//! follower can cut its divergent tail before it follows.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::{frame, Reply};
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: OffsetForLeaderEpochRequest = decode_body(request)?;
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in &body.topics {
        let mut result = OffsetForLeaderTopicResult::default();
        result.topic = topic.topic.clone();
        for wanted in &topic.partitions {
            let mut answer = EpochEndOffset::default();
            answer.partition = wanted.partition;
            answer.leader_epoch = -1;
            answer.end_offset = -1;
            match broker.partition(topic.topic.0.as_str(), wanted.partition) {
                None => answer.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(partition) if !partition.replica.is_leader() => answer.error_code = ResponseError::NotLeaderOrFollower.code(),
                Some(partition) => {
                    let current = partition.replica.leader_epoch();
                    if wanted.current_leader_epoch >= 0 && wanted.current_leader_epoch != current {
                        answer.error_code = if wanted.current_leader_epoch < current { ResponseError::FencedLeaderEpoch } else { ResponseError::UnknownLeaderEpoch }.code();
                    } else {
                        let (epoch, end) = partition.replica.end_offset_for(wanted.leader_epoch, partition.log_end_offset());
                        answer.leader_epoch = epoch;
                        answer.end_offset = end;
                    }
                }
            }
            result.partitions.push(answer);
        }
        response.topics.push(result);
    }
    frame(request, &response)
}
