//! DescribeTopicPartitions: topics and their partitions, paged, as the Java AdminClient's
//! `describeTopics` asks for them since Kafka 3.8 (KIP-966).
//!
//! Kafka's `DescribeTopicPartitionsRequestHandler`: the topics named (all when none is),
//! each once, from the cursor's topic on, in name order; at most `response_partition_limit`
//! partitions (and at most `DESCRIBE_PARTITIONS_MAX`) per answer, the rest named by the
//! next cursor. A named topic that does not exist is answered with its error; when all
//! topics are asked for, none is. A cursor outside the topics named, or with a negative
//! partition, refuses the whole request with INVALID_REQUEST, every named topic carrying it.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::authorized;
use super::metadata;
use super::reply::{frame, HandlerError, Reply};
use crate::broker::topic::validate_name;
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};

/// Most partitions one answer carries, whatever the request asks (Kafka's
/// `max.request.partition.size.limit` default).
pub(crate) const DESCRIBE_PARTITIONS_MAX: i32 = 2000;
/// Most topics one request may name.
const TOPICS_PER_REQUEST_MAX: usize = 10_000;

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DescribeTopicPartitionsRequest = decode_body(request)?;
    super::reply::at_most("topics", body.topics.len(), TOPICS_PER_REQUEST_MAX)?;
    let response = match describe(broker, &body) {
        Ok(response) => response,
        Err(reason) => {
            debug!(%reason, "DescribeTopicPartitions refused");
            refused(&body, ResponseError::InvalidRequest)
        }
    };
    frame(request, &response)
}

/// The answer, or why the request is invalid.
fn describe(
    broker: &Broker,
    body: &DescribeTopicPartitionsRequest,
) -> Result<DescribeTopicPartitionsResponse, String> {
    let all = body.topics.is_empty();
    let (cursor_topic, cursor_partition) = match &body.cursor {
        Some(cursor) => (cursor.topic_name.to_string(), cursor.partition_index),
        None => (String::new(), 0),
    };
    let asked: Vec<String> = if all {
        broker.topics().iter().map(|t| t.name.to_string()).collect()
    } else {
        body.topics.iter().map(|t| t.name.to_string()).collect()
    };
    let names: BTreeSet<String> = asked.into_iter().filter(|name| *name >= cursor_topic).collect();
    if body.cursor.is_some() && !all && !names.contains(&cursor_topic) {
        return Err(format!(
            "DescribeTopicPartitionsRequest topic list should contain the cursor topic: {cursor_topic}"
        ));
    }
    if cursor_partition < 0 {
        return Err(format!(
            "DescribeTopicPartitionsRequest cursor partition must be valid: {cursor_partition}"
        ));
    }
    let mut remaining = body.response_partition_limit.clamp(1, DESCRIBE_PARTITIONS_MAX);
    let alive: metadata::Alive =
        metadata::live_brokers(broker).iter().map(|b| b.node_id.0).collect();
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            response.next_cursor = Some(cursor(&name, 0));
            break;
        }
        let Some(topic) = broker.topic(&name) else {
            if !all {
                response.topics.push(missing(&name));
            }
            continue;
        };
        let first = if name == cursor_topic { cursor_partition } else { 0 };
        let described = metadata::describe(broker, &alive, &topic, metadata::NEWEST_VERSION);
        let count = described.partitions.len() as i32;
        let end = count.min(first.saturating_add(remaining));
        let mut entry = DescribeTopicPartitionsResponseTopic::default();
        entry.name = Some(TopicName(name.clone().into()));
        entry.topic_id = described.topic_id;
        entry.is_internal = described.is_internal;
        entry.topic_authorized_operations = authorized::TOPIC;
        entry.partitions = described
            .partitions
            .into_iter()
            .filter(|p| (first..end).contains(&p.partition_index))
            .map(|p| {
                let mut partition = DescribeTopicPartitionsResponsePartition::default();
                partition.partition_index = p.partition_index;
                partition.leader_id = p.leader_id;
                partition.leader_epoch = p.leader_epoch;
                partition.replica_nodes = p.replica_nodes;
                partition.isr_nodes = p.isr_nodes;
                partition.offline_replicas = p.offline_replicas;
                // No eligible leader replicas (KIP-966): empty lists, as Kafka answers
                // with the feature off.
                partition.eligible_leader_replicas = Some(Vec::new());
                partition.last_known_elr = Some(Vec::new());
                partition
            })
            .collect();
        remaining -= entry.partitions.len() as i32;
        response.topics.push(entry);
        if end < count {
            response.next_cursor = Some(cursor(&name, end));
            break;
        }
    }
    Ok(response)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    let mut cursor = Cursor::default();
    cursor.topic_name = TopicName(topic.to_string().into());
    cursor.partition_index = partition;
    cursor
}

/// A named topic that does not exist: INVALID_TOPIC_EXCEPTION for a name no topic could
/// have, UNKNOWN_TOPIC_OR_PARTITION otherwise.
fn missing(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let mut entry = DescribeTopicPartitionsResponseTopic::default();
    entry.name = Some(TopicName(name.to_string().into()));
    entry.error_code = if validate_name(name).is_err() {
        ResponseError::InvalidTopicException.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    };
    entry.is_internal = name == "__consumer_offsets" || name == "__transaction_state";
    entry.topic_authorized_operations = authorized::TOPIC;
    entry
}

/// Kafka's error answer for a request it refuses whole: each named topic with the error.
fn refused(
    body: &DescribeTopicPartitionsRequest,
    error: ResponseError,
) -> DescribeTopicPartitionsResponse {
    let mut response = DescribeTopicPartitionsResponse::default();
    for topic in &body.topics {
        let mut entry = DescribeTopicPartitionsResponseTopic::default();
        entry.name = Some(topic.name.clone());
        entry.error_code = error.code();
        response.topics.push(entry);
    }
    response
}
