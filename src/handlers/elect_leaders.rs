//! ElectLeaders: preferred and unclean leader elections an operator asks for
//! (`kafka-leader-election`, `Admin.electLeaders`).
//!
//! In a cluster they are one update of the cluster state (`Cluster::elect`, rules in
//! `fjord_replication::controller`), which this broker applies before it answers and the
//! others at their next read. A lone broker leads every partition it has, its only
//! replica: no election is ever needed there.

use std::rc::Rc;

use fjord_replication::{ElectionKind, ElectionRefusal};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::cluster::{ElectionOutcome, TopicElections};
use crate::broker::Broker;
use crate::handlers::errors::topic_error_code;
use crate::protocol::{decode_body, Request};

/// Partitions one request may name.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: ElectLeadersRequest = decode_body(request)?;
    let named: Option<Vec<(String, Vec<i32>)>> = body.topic_partitions.as_ref().map(|topics| {
        topics.iter().map(|t| (t.topic.0.to_string(), t.partitions.clone())).collect()
    });
    let count: usize = named.iter().flatten().map(|(_, p)| p.len()).sum();
    super::reply::at_most("partitions", count, PARTITIONS_PER_REQUEST_MAX)?;
    // v0 has no election type: it asks for preferred leaders.
    let kind = match body.election_type {
        0 => ElectionKind::Preferred,
        1 => ElectionKind::Unclean,
        other => {
            warn!(election_type = other, "ElectLeaders with an unknown election type");
            let mut response = ElectLeadersResponse::default();
            response.error_code = ResponseError::InvalidRequest.code();
            return frame(request, &response);
        }
    };
    let mut response = ElectLeadersResponse::default();
    let outcomes = match &broker.cluster {
        Some(cluster) => match cluster.elect(kind, named).await {
            Ok((state, outcomes)) => {
                broker.apply_state(&state).await;
                outcomes
            }
            Err(error) => {
                warn!(%error, "ElectLeaders failed");
                response.error_code = topic_error_code(&error).code();
                return frame(request, &response);
            }
        },
        None => alone(broker, named),
    };
    for (topic, results) in outcomes {
        let mut entry = ReplicaElectionResult::default();
        entry.topic = TopicName(StrBytes::from_string(topic.clone()));
        for (index, outcome) in results {
            let mut result = PartitionResult::default();
            result.partition_id = index;
            result.error_message = None;
            if let Err(outcome) = outcome {
                let (code, message) = refusal(&topic, index, outcome);
                result.error_code = code.code();
                result.error_message = Some(StrBytes::from_string(message));
            }
            entry.partition_result.push(result);
        }
        response.replica_election_results.push(entry);
    }
    frame(request, &response)
}

/// The outcomes on a lone broker: every partition it has already has its one leader.
fn alone(broker: &Broker, named: Option<Vec<(String, Vec<i32>)>>) -> Vec<TopicElections> {
    match named {
        None => broker.topics().iter().map(|t| (t.name.to_string(), Vec::new())).collect(),
        Some(named) => named
            .into_iter()
            .map(|(topic, indexes)| {
                let results = indexes
                    .into_iter()
                    .map(|index| {
                        let outcome = if broker.partition_exists(&topic, index) {
                            ElectionOutcome::Refused(ElectionRefusal::NotNeeded)
                        } else {
                            ElectionOutcome::Unknown
                        };
                        (index, Err(outcome))
                    })
                    .collect();
                (topic, results)
            })
            .collect(),
    }
}

/// Kafka's error and message for a partition's election that did not happen.
fn refusal(topic: &str, index: i32, outcome: ElectionOutcome) -> (ResponseError, String) {
    let code = match outcome {
        ElectionOutcome::Unknown => {
            return (
                ResponseError::UnknownTopicOrPartition,
                format!("No such partition as {topic}-{index}"),
            )
        }
        ElectionOutcome::Refused(ElectionRefusal::NotNeeded) => ResponseError::ElectionNotNeeded,
        ElectionOutcome::Refused(ElectionRefusal::PreferredNotAvailable) => {
            ResponseError::PreferredLeaderNotAvailable
        }
        ElectionOutcome::Refused(ElectionRefusal::NoLiveReplica) => {
            ResponseError::EligibleLeadersNotAvailable
        }
    };
    // Kafka answers these with the error's own description.
    (code, code.to_string())
}
