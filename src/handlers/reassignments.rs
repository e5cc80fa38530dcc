//! AlterPartitionReassignments and ListPartitionReassignments: moving a partition's
//! replicas to other brokers (`kafka-reassign-partitions`, `fjord topic reassign`).
//!
//! A reassignment is a change of the cluster state (`Cluster::alter_reassignments`, rules in
//! `fjord_replication::controller`): the added replicas copy the log through the normal
//! follower fetch and join the in-sync set, then the controller completes it and the
//! removed replicas delete their data. A lone broker has no other broker to move to.

use std::rc::Rc;

use fjord_replication::ReassignmentRefusal;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::cluster::{ReassignmentError, ReassignmentOutcome};
use crate::broker::Broker;
use crate::handlers::errors::topic_error_code;
use crate::protocol::{decode_body, Request};

/// Partitions one request may name.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

pub(super) async fn alter(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: AlterPartitionReassignmentsRequest = decode_body(request)?;
    let wanted: Vec<(String, i32, Option<Vec<i32>>)> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                (t.name.0.to_string(), p.partition_index, target)
            })
        })
        .collect();
    super::reply::at_most("partitions", wanted.len(), PARTITIONS_PER_REQUEST_MAX)?;
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = body.allow_replication_factor_change;
    response.error_message = None;
    let outcomes = match &broker.cluster {
        Some(cluster) => {
            match cluster.alter_reassignments(wanted, body.allow_replication_factor_change).await {
                Ok((state, outcomes)) => {
                    broker.apply_state(&state).await;
                    outcomes
                }
                Err(error) => {
                    warn!(%error, "AlterPartitionReassignments failed");
                    response.error_code = topic_error_code(&error).code();
                    response.error_message = Some(StrBytes::from_string(error.to_string()));
                    return frame(request, &response);
                }
            }
        }
        None => wanted.iter().map(|(t, i, target)| alone(broker, t, *i, target)).collect(),
    };
    let mut outcomes = outcomes.into_iter();
    for topic in &body.topics {
        let mut entry = ReassignableTopicResponse::default();
        entry.name = topic.name.clone();
        for p in &topic.partitions {
            let mut result = ReassignablePartitionResponse::default();
            result.partition_index = p.partition_index;
            result.error_message = None;
            if let Some(Err(error)) = outcomes.next() {
                let (code, message) = refusal(&topic.name.0, p.partition_index, &error);
                result.error_code = code.code();
                result.error_message = message.map(StrBytes::from_string);
            }
            entry.partitions.push(result);
        }
        response.responses.push(entry);
    }
    frame(request, &response)
}

/// A lone broker's answer: it can only "move" a partition onto itself, where it is.
fn alone(
    broker: &Broker,
    topic: &str,
    index: i32,
    target: &Option<Vec<i32>>,
) -> ReassignmentOutcome {
    if !broker.partition_exists(topic, index) {
        return Err(ReassignmentError::Unknown);
    }
    let me = broker.config.broker_id;
    match target {
        None => Err(ReassignmentError::Refused(ReassignmentRefusal::NoneInProgress)),
        Some(target) => fjord_replication::check_replica_list(target, |id| id == me)
            .map_err(ReassignmentError::Refused),
    }
}

/// Kafka's error and message for a partition's refused reassignment (Kafka sends none for
/// a cancel with nothing to cancel).
fn refusal(topic: &str, index: i32, error: &ReassignmentError) -> (ResponseError, Option<String>) {
    match error {
        ReassignmentError::Unknown => (
            ResponseError::UnknownTopicOrPartition,
            Some(format!("Unable to find partition {topic}-{index}.")),
        ),
        ReassignmentError::Refused(ReassignmentRefusal::NoneInProgress) => {
            (ResponseError::NoReassignmentInProgress, None)
        }
        ReassignmentError::Refused(ReassignmentRefusal::InvalidAssignment(reason)) => {
            (ResponseError::InvalidReplicaAssignment, Some(reason.clone()))
        }
        ReassignmentError::ReplicationFactor { from, to } => (
            ResponseError::InvalidReplicationFactor,
            Some(format!(
                "The replication factor is changed from {from} to {to} but allowReplicationFactorChange is false"
            )),
        ),
    }
}

pub(super) async fn list(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: ListPartitionReassignmentsRequest = decode_body(request)?;
    let mut response = ListPartitionReassignmentsResponse::default();
    response.error_message = None;
    let Some(cluster) = &broker.cluster else { return frame(request, &response) };
    let state = match cluster.store.read().await {
        Ok(state) => state,
        Err(error) => {
            warn!(%error, "ListPartitionReassignments cannot read the cluster state");
            response.error_code = ResponseError::UnknownServerError.code();
            return frame(request, &response);
        }
    };
    let wanted: Vec<(String, Option<Vec<i32>>)> = match &body.topics {
        None => state.topics.keys().map(|name| (name.clone(), None)).collect(),
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes.clone())))
            .collect(),
    };
    let ids = |list: &[i32]| list.iter().copied().map(BrokerId).collect::<Vec<_>>();
    for (name, indexes) in wanted {
        let Some(topic) = state.topics.get(&name) else { continue };
        let mut entry = OngoingTopicReassignment::default();
        entry.name = kafka_protocol::messages::TopicName(StrBytes::from_string(name.clone()));
        for (index, p) in topic.partitions.iter().enumerate() {
            let asked = indexes.as_ref().is_none_or(|list| list.contains(&(index as i32)));
            if !asked || !p.reassigning() {
                continue;
            }
            let mut ongoing = OngoingPartitionReassignment::default();
            ongoing.partition_index = index as i32;
            ongoing.replicas = ids(&p.replicas);
            ongoing.adding_replicas = ids(&p.adding);
            ongoing.removing_replicas = ids(&p.removing);
            entry.partitions.push(ongoing);
        }
        if !entry.partitions.is_empty() {
            response.topics.push(entry);
        }
    }
    frame(request, &response)
}
