//! OffsetDelete: a group's committed offsets deleted for given partitions, as Kafka's
//! `OffsetMetadataManager.deleteOffsets` and `ClassicGroup.validateOffsetDelete` do it.
//!
//! A group with members may lose offsets only if it is a consumer group (protocol type
//! `consumer`), and only of topics none of its members subscribes to
//! (GROUP_SUBSCRIBED_TO_TOPIC for each partition of the others); any other group with
//! members is NON_EMPTY_GROUP. An empty group loses them all. The subscribed topics are
//! those of the members' subscriptions for the group's protocol, read (as Kafka reads them,
//! with the consumer protocol's version 0, the prefix of every version) when a generation
//! starts and when the group is loaded; a subscription that does not parse leaves them
//! unknown, and a consumer group then counts as subscribed to every topic.
//!
//! The deletions are tombstones in `__consumer_offsets` (the records DeleteGroups writes),
//! appended, fdatasync'd and replicated like a commit before the offsets go from memory, so
//! they are gone after a restart and on the coordinator that takes the group over.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::offsets_record::encode_key;
use super::{Coordinator, Group, GroupState};

/// The protocol type of Kafka's consumers (`ConsumerProtocol.PROTOCOL_TYPE`).
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Each partition of an OffsetDelete's topics, answered: `None` when its offset is deleted
/// (or there was none), else why not.
pub type OffsetDeletions = Vec<(String, Vec<(i32, Option<ResponseError>)>)>;

impl Coordinator {
    /// Deletes the committed offsets of `group_id` for `wanted` (topic, partitions), every one
    /// of which exists. The error is the group's, for the whole request.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        wanted: &[(String, Vec<i32>)],
    ) -> Result<OffsetDeletions, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let (answers, tombstones) = {
            let groups = self.groups.borrow();
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            check_offset_delete(group)?;
            decide(group, wanted)
        };
        if tombstones.is_empty() {
            return Ok(answers);
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = tombstones
            .iter()
            .map(|(topic, partition)| (encode_key(group_id, topic, *partition), None))
            .collect();
        self.append_records(group_id, &records).await?;
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            for key in &tombstones {
                group.offsets.remove(key);
            }
        }
        info!(group = group_id, partitions = tombstones.len(), "committed offsets deleted");
        Ok(answers)
    }
}

/// Kafka's `ClassicGroup.validateOffsetDelete`: a group with members keeps its offsets
/// unless it is a consumer group.
fn check_offset_delete(group: &Group) -> Result<(), ResponseError> {
    let active = group.state != GroupState::Empty;
    if active && group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
        return Err(ResponseError::NonEmptyGroup);
    }
    Ok(())
}

/// Each wanted partition's answer, and the committed ones to delete.
fn decide(group: &Group, wanted: &[(String, Vec<i32>)]) -> (OffsetDeletions, Vec<(String, i32)>) {
    let mut tombstones = Vec::new();
    let answers = wanted
        .iter()
        .map(|(topic, partitions)| {
            let subscribed = is_subscribed(group, topic);
            let answers = partitions
                .iter()
                .map(|&partition| {
                    if subscribed {
                        return (partition, Some(ResponseError::GroupSubscribedToTopic));
                    }
                    let key = (topic.clone(), partition);
                    if group.offsets.contains_key(&key) && !tombstones.contains(&key) {
                        tombstones.push(key);
                    }
                    (partition, None)
                })
                .collect();
            (topic.clone(), answers)
        })
        .collect();
    (answers, tombstones)
}

/// Kafka's `ClassicGroup.isSubscribedToTopic`: with the subscriptions unknown, a consumer
/// group counts as subscribed to every topic.
fn is_subscribed(group: &Group, topic: &str) -> bool {
    match &group.subscribed {
        Some(topics) => topics.contains(topic),
        None => group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE),
    }
}

/// Kafka's `ClassicGroup.computeSubscribedTopics`: for a consumer group, the topics its
/// members subscribe to with the group's protocol (none without members); `None` for any
/// other group, one without a protocol, or a subscription that does not parse.
pub(super) fn subscribed_topics(group: &Group) -> Option<BTreeSet<String>> {
    if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
        return None;
    }
    if group.members.is_empty() {
        return Some(BTreeSet::new());
    }
    let protocol = group.protocol.as_ref()?;
    let mut topics = BTreeSet::new();
    for (member_id, member) in &group.members {
        let metadata = member.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m);
        match metadata.and_then(subscription_topics) {
            Some(subscribed) => topics.extend(subscribed),
            None => {
                warn!(member = %member_id, protocol = %protocol, "a consumer subscription that does not parse: the group counts as subscribed to every topic");
                return None;
            }
        }
    }
    Some(topics)
}

/// The topics of a consumer protocol subscription, read as its version 0 after the version
/// field (every later version extends it); `None` if it does not parse.
fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut bytes = metadata.clone();
    if bytes.len() < 2 {
        return None;
    }
    let _version = i16::from_be_bytes([bytes[0], bytes[1]]);
    bytes = bytes.slice(2..);
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, 0).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConsumerProtocolSubscription of `version` (its v0 body, plus owned partitions for
    /// v1+) to `topics`.
    fn subscription(version: i16, topics: &[&str]) -> Bytes {
        let mut b = version.to_be_bytes().to_vec();
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for topic in topics {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        if version >= 1 {
            b.extend_from_slice(&0i32.to_be_bytes());
        }
        Bytes::from(b)
    }

    #[test]
    fn subscriptions_are_read_as_version_0_whatever_their_version() {
        assert_eq!(
            subscription_topics(&subscription(0, &["a", "b"])),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(subscription_topics(&subscription(3, &["c"])), Some(vec!["c".into()]));
        assert_eq!(subscription_topics(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])), None);
        assert_eq!(subscription_topics(&Bytes::from_static(&[0])), None);
    }

    #[test]
    fn an_empty_group_loses_any_offset_and_an_active_one_only_of_topics_it_does_not_read() {
        let mut group = Group::new();
        group.offsets.insert(
            ("t".into(), 0),
            super::super::Committed {
                offset: 5,
                leader_epoch: -1,
                metadata: None,
                commit_time_ms: 0,
            },
        );
        assert_eq!(check_offset_delete(&group), Ok(()));
        let (answers, tombstones) = decide(&group, &[("t".into(), vec![0, 1, 0])]);
        assert_eq!(answers, vec![("t".to_string(), vec![(0, None), (1, None), (0, None)])]);
        assert_eq!(tombstones, vec![("t".to_string(), 0)]);

        group.state = GroupState::Stable;
        assert_eq!(check_offset_delete(&group), Err(ResponseError::NonEmptyGroup));
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.into());
        assert_eq!(check_offset_delete(&group), Ok(()));
        // Subscriptions unknown: every topic counts as subscribed.
        let (answers, tombstones) = decide(&group, &[("t".into(), vec![0])]);
        assert_eq!(
            answers,
            vec![("t".to_string(), vec![(0, Some(ResponseError::GroupSubscribedToTopic))])]
        );
        assert!(tombstones.is_empty());
        group.subscribed = Some(["u".to_string()].into_iter().collect());
        let (answers, tombstones) = decide(&group, &[("u".into(), vec![0]), ("t".into(), vec![0])]);
        assert_eq!(
            answers,
            vec![
                ("u".to_string(), vec![(0, Some(ResponseError::GroupSubscribedToTopic))]),
                ("t".to_string(), vec![(0, None)]),
            ]
        );
        assert_eq!(tombstones, vec![("t".to_string(), 0)]);
    }
}
