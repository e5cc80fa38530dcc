//! DescribeProducers (API 61): the idempotent producers a partition remembers, as Kafka's
//! `KafkaApis.handleDescribeProducersRequest` answers them.
//!
//! Any replica this broker hosts answers from its own producer state (followers record
//! the producers of the batches they copy), as Kafka's `ReplicaManager.activeProducerState`
//! does; admin clients ask the leader. Per producer: its id and epoch, the last sequence
//! and largest timestamp of its newest batch, coordinator epoch -1, and the first offset of
//! its transaction open in the partition (-1: none), which `kafka-transactions
//! find-hanging` reads. Refusals, per partition, as Kafka's: a topic name no
//! topic could have is INVALID_TOPIC_EXCEPTION and an unknown topic UNKNOWN_TOPIC_OR_PARTITION,
//! both with a message; an index past the topic's partitions is UNKNOWN_TOPIC_OR_PARTITION
//! and a partition this broker holds no replica of NOT_LEADER_OR_FOLLOWER, both without.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::ProducersAnswer;
use crate::broker::topic::validate_name;
use crate::broker::Broker;
use crate::handlers::errors::code;
use crate::protocol::{decode_body, Request};

/// Partitions one request may name (each answer holds up to
/// `PRODUCERS_PER_PARTITION_MAX` producers).
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;
/// What Kafka answers for a producer without a coordinator epoch recorded.
const NO_COORDINATOR_EPOCH: i32 = -1;
/// Kafka's `ApiError` without a message of its own carries the error's default one.
const UNKNOWN_TOPIC_MESSAGE: &str = "This server does not host this topic-partition.";

/// One partition's producers, on the shard that owns it.
pub(crate) fn partition_producers(broker: &Broker, topic: &str, index: i32) -> ProducersAnswer {
    match broker.partition(topic, index) {
        Some(partition) => {
            let mut producers = partition.producers.borrow().active();
            let txns = partition.txns.borrow();
            for producer in &mut producers {
                if let Some(open) = txns.open_of(producer.producer_id) {
                    producer.txn_start_offset = open.first_offset;
                }
            }
            ProducersAnswer { error: None, producers }
        }
        None if broker.partition_exists(topic, index) => {
            ProducersAnswer::refused(ResponseError::NotLeaderOrFollower)
        }
        None => ProducersAnswer::refused(ResponseError::UnknownTopicOrPartition),
    }
}

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DescribeProducersRequest = decode_body(request)?;
    let count: usize = body.topics.iter().map(|t| t.partition_indexes.len()).sum();
    super::reply::at_most("partitions", count, PARTITIONS_PER_REQUEST_MAX)?;
    let mut response = DescribeProducersResponse::default();
    for wanted in &body.topics {
        let name = wanted.name.0.as_str();
        let refusal = topic_refusal(broker, name);
        if let Some((error, message)) = &refusal {
            warn!(topic = %name, ?error, %message, "DescribeProducers refused");
        }
        let mut topic = TopicResponse::default();
        topic.name = wanted.name.clone();
        for &index in &wanted.partition_indexes {
            let mut answer = PartitionResponse::default();
            answer.partition_index = index;
            answer.error_message = None;
            if let Some((error, message)) = &refusal {
                answer.error_code = error.code();
                answer.error_message = Some(message.clone().into());
            } else {
                let found = match broker.shards.owner_of(name, index) {
                    Some(shard) => broker.shards.producers(shard, name.to_string(), index).await,
                    None => partition_producers(broker, name, index),
                };
                if let Some(error) = found.error {
                    warn!(topic = %name, partition = index, ?error, "DescribeProducers refused");
                }
                answer.error_code = code(found.error);
                answer.active_producers = found.producers.iter().map(producer_state).collect();
            }
            topic.partitions.push(answer);
        }
        response.topics.push(topic);
    }
    frame(request, &response)
}

/// Why every partition of topic `name` is refused, with Kafka's message, if it is.
fn topic_refusal(broker: &Broker, name: &str) -> Option<(ResponseError, String)> {
    if let Err(message) = validate_name(name) {
        return Some((ResponseError::InvalidTopicException, message));
    }
    broker
        .topic(name)
        .is_none()
        .then(|| (ResponseError::UnknownTopicOrPartition, UNKNOWN_TOPIC_MESSAGE.to_string()))
}

fn producer_state(active: &crate::partition::producer::ActiveProducer) -> ProducerState {
    let mut state = ProducerState::default();
    state.producer_id = ProducerId(active.producer_id);
    state.producer_epoch = i32::from(active.epoch);
    state.last_sequence = active.last_sequence;
    state.last_timestamp = active.last_timestamp;
    state.coordinator_epoch = NO_COORDINATOR_EPOCH;
    state.current_txn_start_offset = active.txn_start_offset;
    state
}
