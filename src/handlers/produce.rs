//! Produce: append record batches as received, then answer per partition. acks=0 gets no
//! answer at all; acks=all waits for fdatasync (unless configured off) and honours
//! `min.insync.replicas`.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{frame, Reply};
use crate::broker::Broker;
use crate::errors::append_error_code;
use crate::protocol::{decode_body, Request};
use crate::replica::ReplicationWait;

/// Longest an acks=all produce waits for the in-sync replicas.
const PRODUCE_TIMEOUT_MS_MAX: i32 = 120_000;

fn partition_response(version: i16, index: i32, code: Option<ResponseError>, message: Option<String>) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    response.error_code = code.map_or(0, |c| c.code());
    response.base_offset = -1;
    response.log_append_time_ms = -1;
    response.log_start_offset = -1;
    if version >= 8 {
        response.error_message = message.map(Into::into);
    }
    response
}

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: ProduceRequest = decode_body(request)?;
    let acks = body.acks;
    let mut response = ProduceResponse::default();
    let mut appended_any = false;
    // acks=all: (topic slot, partition slot, partition, offset to be durable and replicated).
    let mut waits: Vec<(usize, usize, Rc<crate::partition::Partition>, i64)> = Vec::new();
    for topic_data in &body.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = broker.topic(&name);
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name.clone();
        for data in &topic_data.partition_data {
            let refuse = |code: ResponseError, message: String| {
                warn!(topic = %name, partition = data.index, client = ?request.header.client_id, %message, "produce refused");
                partition_response(request.version, data.index, Some(code), Some(message))
            };
            if !matches!(acks, -1 | 0 | 1) {
                topic_response.partition_responses.push(refuse(ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, got {acks}")));
                continue;
            }
            if body.transactional_id.is_some() {
                topic_response.partition_responses.push(refuse(ResponseError::TransactionalIdAuthorizationFailed, "transactions are not supported by Fjord".to_string()));
                continue;
            }
            let Some((topic, partition)) = topic.as_ref().and_then(|t| Some((t, broker.partition(&name, data.index)?))) else {
                let exists = topic.as_ref().is_some_and(|t| data.index >= 0 && (data.index as usize) < t.partitions.len());
                let (code, message) = if exists {
                    (ResponseError::NotLeaderOrFollower, format!("broker {} holds no replica of {name}-{}", broker.config.broker_id, data.index))
                } else {
                    (ResponseError::UnknownTopicOrPartition, format!("{name}-{} does not exist", data.index))
                };
                topic_response.partition_responses.push(refuse(code, message));
                continue;
            };
            if !partition.replica.is_leader() {
                topic_response.partition_responses.push(refuse(ResponseError::NotLeaderOrFollower, format!("broker {} does not lead {name}-{}", broker.config.broker_id, data.index)));
                continue;
            }
            let in_sync = partition.replica.role().isr.len() as i32;
            let min_insync = topic.config.min_insync_replicas(&broker.config);
            if acks == -1 && in_sync < min_insync {
                topic_response.partition_responses.push(refuse(ResponseError::NotEnoughReplicas, format!("min.insync.replicas is {min_insync} but {in_sync} replicas are in sync")));
                continue;
            }
            let Some(records) = data.records.clone() else {
                topic_response.partition_responses.push(refuse(ResponseError::CorruptMessage, "null records".to_string()));
                continue;
            };
            match partition.append(records, partition.replica.leader_epoch().max(0)).await {
                Ok(appended) => {
                    appended_any |= !appended.duplicate;
                    let mut ok = partition_response(request.version, data.index, None, None);
                    ok.base_offset = appended.base_offset;
                    if request.version >= 5 {
                        ok.log_start_offset = partition.log_start_offset();
                    }
                    if acks == -1 {
                        // Durability and replication are awaited for all partitions at once below.
                        waits.push((response.responses.len(), topic_response.partition_responses.len(), Rc::clone(&partition), appended.last_offset + 1));
                    }
                    topic_response.partition_responses.push(ok);
                }
                Err(error) => {
                    let code = append_error_code(&error);
                    topic_response.partition_responses.push(refuse(code, format!("{error:?}")));
                }
            }
        }
        response.responses.push(topic_response);
    }
    if appended_any {
        broker.data_arrived.notify_waiters();
    }
    if !waits.is_empty() {
        // One task per partition: their fdatasyncs and replication waits overlap instead of
        // running one after the other.
        let timeout = std::time::Duration::from_millis(body.timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX) as u64);
        let fsync = broker.config.fsync_acks_all;
        let tasks: Vec<_> = waits
            .iter()
            .map(|(_, _, partition, end)| {
                let (partition, end) = (Rc::clone(partition), *end);
                fjord_storage::io::spawn(async move {
                    if fsync {
                        partition.flush_to(end).await.map_err(|error| (crate::errors::storage_error_code(&error), error.to_string()))?;
                    }
                    partition.wait_replicated(end, timeout).await.map_err(|wait| match wait {
                        ReplicationWait::NotLeader => (ResponseError::NotLeaderOrFollower, "leadership moved before the records were replicated".to_string()),
                        ReplicationWait::TimedOut => (ResponseError::RequestTimedOut, "the in-sync replicas did not confirm in time".to_string()),
                    })
                })
            })
            .collect();
        for ((topic_slot, partition_slot, partition, _), task) in waits.iter().zip(tasks) {
            let outcome = task.await.unwrap_or_else(|join_error| Err((ResponseError::UnknownServerError, format!("acks=all wait failed: {join_error}"))));
            if let Err((code, message)) = outcome {
                warn!(partition = ?partition, %message, "produce not acknowledged");
                let entry = &mut response.responses[*topic_slot].partition_responses[*partition_slot];
                entry.error_code = code.code();
                entry.base_offset = -1;
                if request.version >= 8 {
                    entry.error_message = Some(message.into());
                }
            }
        }
    }
    if acks == 0 {
        return Ok(Reply::Nothing);
    }
    frame(request, &response)
}
