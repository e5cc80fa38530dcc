//! OffsetDelete (API 47): deletes a group's committed offsets for given partitions, as
//! Kafka's `KafkaApis.handleOffsetDeleteRequest` answers it. Partitions of unknown topics,
//! and indexes past a topic's partitions, are UNKNOWN_TOPIC_OR_PARTITION here; the others go
//! to the coordinator (`group/offset_delete.rs`), and its answer is merged after those as
//! Kafka's `OffsetDeleteResponse.Builder.merge` merges it: a group error (INVALID_GROUP_ID,
//! NOT_COORDINATOR, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, a failed write) replaces the whole
//! answer.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::Broker;
use crate::group::OffsetDeletions;
use crate::handlers::errors::code;
use crate::protocol::{decode_body, Request};

/// Partitions one request may name: every partition of the largest topic
/// (`TOPIC_PARTITIONS_MAX`), which is what `kafka-consumer-groups --delete-offsets --topic`
/// asks for, bounding the tombstones one request appends in one batch.
const PARTITIONS_PER_REQUEST_MAX: usize = crate::config::TOPIC_PARTITIONS_MAX as usize;

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: OffsetDeleteRequest = decode_body(request)?;
    let count: usize = body.topics.iter().map(|t| t.partitions.len()).sum();
    super::reply::at_most("partitions", count, PARTITIONS_PER_REQUEST_MAX)?;
    let group_id = body.group_id.0.as_str();
    let mut unknown: OffsetDeletions = Vec::new();
    let mut known: Vec<(String, Vec<i32>)> = Vec::new();
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let indexes = topic.partitions.iter().map(|p| p.partition_index);
        let (found, missing): (Vec<i32>, Vec<i32>) =
            indexes.partition(|index| broker.partition_exists(&name, *index));
        if !missing.is_empty() {
            warn!(group = group_id, topic = %name, partitions = ?missing, "OffsetDelete of an unknown topic or partition");
            let refused =
                missing.into_iter().map(|p| (p, Some(ResponseError::UnknownTopicOrPartition)));
            entry(&mut unknown, &name).extend(refused);
        }
        if !found.is_empty() {
            known.push((name, found));
        }
    }
    let mut response = OffsetDeleteResponse::default();
    match broker.coordinator().delete_offsets(group_id, &known).await {
        Err(error) => {
            warn!(group = group_id, ?error, "OffsetDelete refused");
            response.error_code = error.code();
        }
        Ok(deleted) => {
            for (topic, partitions) in &deleted {
                let subscribed: Vec<i32> =
                    partitions.iter().filter(|(_, e)| e.is_some()).map(|(p, _)| *p).collect();
                if !subscribed.is_empty() {
                    warn!(group = group_id, %topic, partitions = ?subscribed, "OffsetDelete refused: the group is subscribed to the topic");
                }
            }
            response.topics = merged(unknown, deleted).into_iter().map(topic_answer).collect();
        }
    }
    frame(request, &response)
}

/// The partitions of `topic` in `answers`, the first entry of that name (added if none).
fn entry<'a>(
    answers: &'a mut OffsetDeletions,
    topic: &str,
) -> &'a mut Vec<(i32, Option<ResponseError>)> {
    let at = match answers.iter().position(|(name, _)| name == topic) {
        Some(at) => at,
        None => {
            answers.push((topic.to_string(), Vec::new()));
            answers.len() - 1
        }
    };
    &mut answers[at].1
}

/// The coordinator's answers after the ones given here, each topic's partitions added to
/// the first entry of its name (Kafka's `Builder.merge`; without answers given here, the
/// coordinator's as they are).
fn merged(mut unknown: OffsetDeletions, deleted: OffsetDeletions) -> OffsetDeletions {
    if unknown.is_empty() {
        return deleted;
    }
    for (topic, partitions) in deleted {
        entry(&mut unknown, &topic).extend(partitions);
    }
    unknown
}

fn topic_answer(
    (name, partitions): (String, Vec<(i32, Option<ResponseError>)>),
) -> OffsetDeleteResponseTopic {
    let mut topic = OffsetDeleteResponseTopic::default();
    topic.name = TopicName(name.into());
    topic.partitions = partitions
        .into_iter()
        .map(|(index, error)| {
            let mut partition = OffsetDeleteResponsePartition::default();
            partition.partition_index = index;
            partition.error_code = code(error);
            partition
        })
        .collect();
    topic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinators_answers_follow_the_unknown_partitions_as_kafka_merges_them() {
        let unknown = Some(ResponseError::UnknownTopicOrPartition);
        let subscribed = Some(ResponseError::GroupSubscribedToTopic);
        let deleted: OffsetDeletions =
            vec![("a".into(), vec![(0, None)]), ("b".into(), vec![(1, subscribed)])];
        assert_eq!(merged(Vec::new(), deleted.clone()), deleted);
        let refused: OffsetDeletions =
            vec![("x".into(), vec![(0, unknown)]), ("a".into(), vec![(9, unknown)])];
        assert_eq!(
            merged(refused, deleted),
            vec![
                ("x".to_string(), vec![(0, unknown)]),
                ("a".to_string(), vec![(9, unknown), (0, None)]),
                ("b".to_string(), vec![(1, subscribed)]),
            ]
        );
    }
}
