//! OffsetForLeaderEpoch: where a leader epoch ended on this leader, so a returning
//! follower can cut its divergent tail before it follows.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::EpochEnd;
use crate::broker::Broker;
use crate::handlers::errors::code;
use crate::protocol::{decode_body, Request};

pub(crate) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: OffsetForLeaderEpochRequest = decode_body(request)?;
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in &body.topics {
        let mut result = OffsetForLeaderTopicResult::default();
        result.topic = topic.topic.clone();
        let name = topic.topic.0.as_str();
        for wanted in &topic.partitions {
            // A partition another shard owns is answered by that shard.
            let end = match broker.shards.owner_of(name, wanted.partition) {
                Some(shard) => {
                    broker
                        .shards
                        .epoch_end(
                            shard,
                            name.to_string(),
                            wanted.partition,
                            wanted.current_leader_epoch,
                            wanted.leader_epoch,
                        )
                        .await
                }
                None => epoch_end(
                    broker,
                    name,
                    wanted.partition,
                    wanted.current_leader_epoch,
                    wanted.leader_epoch,
                ),
            };
            let mut answer = EpochEndOffset::default();
            answer.partition = wanted.partition;
            answer.error_code = code(end.error);
            answer.leader_epoch = end.epoch;
            answer.end_offset = end.end_offset;
            result.partitions.push(answer);
        }
        response.topics.push(result);
    }
    frame(request, &response)
}

/// Where `leader_epoch` ended in this shard's partition, if it leads in
/// `current_leader_epoch` (-1: any); -1 for both epoch and offset on error.
pub(crate) fn epoch_end(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> EpochEnd {
    let refused = EpochEnd::refused;
    match broker.partition(topic, index) {
        None => refused(ResponseError::UnknownTopicOrPartition),
        Some(partition) if !partition.replica.is_leader() => {
            refused(ResponseError::NotLeaderOrFollower)
        }
        Some(partition) => {
            let current = partition.replica.leader_epoch();
            if current_leader_epoch >= 0 && current_leader_epoch != current {
                refused(if current_leader_epoch < current {
                    ResponseError::FencedLeaderEpoch
                } else {
                    ResponseError::UnknownLeaderEpoch
                })
            } else {
                let log_end = partition.log_end_offset();
                let (epoch, end) = if partition.replica.latest_epoch().is_none() {
                    // A partition that never changed leader (a broker alone) keeps no epoch
                    // entries; Kafka's cache would hold its one epoch from the log start.
                    fjord_replication::end_offset_in(
                        &[(current, partition.log_start_offset())],
                        leader_epoch,
                        log_end,
                    )
                } else {
                    partition.replica.end_offset_for(leader_epoch, log_end)
                };
                EpochEnd { error: None, epoch, end_offset: end }
            }
        }
    }
}
