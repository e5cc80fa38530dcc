//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups. The state machine is
//! in `group/`; this file translates requests and responses, version by version.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::authorized;
use super::reply::{frame, HandlerError, Reply};
use crate::broker::Broker;
use crate::group::{Committed, JoinRequest, OFFSET_METADATA_BYTES_MAX};
use crate::handlers::errors::code;
use crate::protocol::{decode_body, Request};
use crate::txn::TXN_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// The first OffsetFetch version that names several groups (`groups`, not `group_id`).
const OFFSET_FETCH_GROUPS_FROM_VERSION: i16 = 8;
/// Groups one OffsetFetch may name: every group the coordinator can hold (an admin client
/// describing all groups asks for them in one request), and no more.
const OFFSET_FETCH_GROUPS_MAX: usize = crate::group::GROUPS_MAX;

pub(super) async fn find_coordinator(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: FindCoordinatorRequest = decode_body(request)?;
    let config = &broker.config;
    let mut response = FindCoordinatorResponse::default();
    let coordinator = broker.coordinator();
    let key_type = if request.version >= 1 { body.key_type } else { KEY_TYPE_GROUP };
    // A transactional id's coordinator: this broker once its transaction coordinator runs
    // (started, and `__transaction_state` created, by the first such request).
    let transactions = if key_type == KEY_TYPE_TRANSACTION {
        Some(super::txn::find_transaction_coordinator(broker).await)
    } else {
        None
    };
    // The coordinator of a group is the leader of its offsets partition.
    let answer = |key_type: i8, key: &str| -> (i16, i32, String, i32) {
        if key_type == KEY_TYPE_TRANSACTION {
            return match (transactions, &broker.cluster) {
                (Some(Ok(())), None) => (
                    0,
                    config.broker_id,
                    config.advertised_host.clone(),
                    i32::from(config.advertised_port),
                ),
                // In a cluster: the leader of the id's `__transaction_state` partition.
                (Some(Ok(())), Some(cluster)) => {
                    let state = cluster.state.borrow();
                    let count = state.topics.get(TXN_TOPIC).map_or(0, |t| t.partitions.len());
                    let index = crate::txn::txn_partition_index(key, count) as i32;
                    let leader = state.partition(TXN_TOPIC, index).map_or(-1, |p| p.leader);
                    drop(state);
                    let address = cluster
                        .address_of(leader)
                        .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
                    match address {
                        Some(address) if count > 0 && cluster.is_alive(leader) => {
                            (0, leader, address.ip().to_string(), i32::from(address.port()))
                        }
                        _ => (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1),
                    }
                }
                (Some(Err(error)), _) => (error.code(), -1, String::new(), -1),
                (None, _) => (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1),
            };
        }
        if key_type != KEY_TYPE_GROUP {
            // Kafka: INVALID_REQUEST for a key type it does not know (not GROUP, TRANSACTION
            // or SHARE). (SHARE is INVALID_REQUEST below FindCoordinator v6, which covers all
            // Fjord serves.)
            return (ResponseError::InvalidRequest.code(), -1, String::new(), -1);
        }
        let Some(cluster) = &broker.cluster else {
            return (
                0,
                config.broker_id,
                config.advertised_host.clone(),
                i32::from(config.advertised_port),
            );
        };
        let index = coordinator.partition_of(key) as i32;
        let leader = cluster
            .state
            .borrow()
            .partition(crate::group::OFFSETS_TOPIC, index)
            .map_or(-1, |p| p.leader);
        match cluster.address_of(leader).and_then(|a| a.parse::<std::net::SocketAddr>().ok()) {
            Some(address) if cluster.is_alive(leader) => {
                (0, leader, address.ip().to_string(), i32::from(address.port()))
            }
            _ => (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1),
        }
    };
    if request.version >= 4 {
        for key in &body.coordinator_keys {
            let (error, node, host, port) = answer(body.key_type, key.as_str());
            let mut entry = CoordinatorEntry::default();
            entry.key = key.clone();
            entry.error_code = error;
            entry.node_id = BrokerId(node);
            entry.host = host.into();
            entry.port = port;
            response.coordinators.push(entry);
        }
    } else {
        let (error, node, host, port) = answer(
            if request.version >= 1 { body.key_type } else { KEY_TYPE_GROUP },
            body.key.as_str(),
        );
        response.error_code = error;
        response.node_id = BrokerId(node);
        response.host = host.into();
        response.port = port;
    }
    frame(request, &response)
}

pub(super) async fn join_group(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: JoinGroupRequest = decode_body(request)?;
    let coordinator = broker.coordinator();
    let join = JoinRequest {
        group_id: body.group_id.0.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: request.header.client_id.as_ref().map_or(String::new(), |s| s.to_string()),
        client_host: request.peer.map_or(String::new(), |p| format!("/{}", p.ip())),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if request.version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: request.version >= 4,
    };
    let result = match coordinator.join(join) {
        Ok(receiver) => receiver.await.unwrap_or_else(|_closed| crate::group::JoinResult {
            error: Some(ResponseError::RebalanceInProgress),
            generation: -1,
            member_id: body.member_id.to_string(),
            ..Default::default()
        }),
        Err(immediate) => immediate,
    };
    let mut response = JoinGroupResponse::default();
    response.error_code = code(result.error);
    response.generation_id = result.generation;
    if request.version >= 7 {
        response.protocol_type = result.protocol_type.map(Into::into);
        response.protocol_name = result.protocol_name.map(Into::into);
    } else {
        response.protocol_name = Some(result.protocol_name.unwrap_or_default().into());
    }
    response.leader = result.leader.into();
    response.member_id = result.member_id.into();
    response.members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = id.into();
            if request.version >= 5 {
                m.group_instance_id = instance.map(Into::into);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    frame(request, &response)
}

pub(super) async fn sync_group(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: SyncGroupRequest = decode_body(request)?;
    let assignments =
        body.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let result = match broker.coordinator().sync(
        body.group_id.0.as_str(),
        body.generation_id,
        body.member_id.as_str(),
        assignments,
    ) {
        Ok(receiver) => receiver.await.unwrap_or_else(|_closed| crate::group::SyncResult {
            error: Some(ResponseError::RebalanceInProgress),
            ..Default::default()
        }),
        Err(immediate) => immediate,
    };
    let mut response = SyncGroupResponse::default();
    response.error_code = code(result.error);
    if request.version >= 5 {
        response.protocol_type = result.protocol_type.map(Into::into);
        response.protocol_name = result.protocol_name.map(Into::into);
    }
    response.assignment = result.assignment;
    frame(request, &response)
}

pub(super) async fn heartbeat(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: HeartbeatRequest = decode_body(request)?;
    let error = broker.coordinator().heartbeat(
        body.group_id.0.as_str(),
        body.generation_id,
        body.member_id.as_str(),
        body.group_instance_id.as_deref(),
    );
    let mut response = HeartbeatResponse::default();
    response.error_code = code(error);
    frame(request, &response)
}

pub(super) async fn leave_group(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: LeaveGroupRequest = decode_body(request)?;
    let members: Vec<(String, Option<String>)> = if request.version >= 3 {
        body.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    match broker.coordinator().leave(body.group_id.0.as_str(), &members) {
        Err(error) => response.error_code = error.code(),
        Ok(results) => {
            if request.version >= 3 {
                response.members = members
                    .iter()
                    .zip(&results)
                    .map(|((id, instance), error)| {
                        let mut m = MemberResponse::default();
                        m.member_id = id.clone().into();
                        m.group_instance_id = instance.clone().map(Into::into);
                        m.error_code = code(*error);
                        m
                    })
                    .collect();
            } else {
                response.error_code = code(results.first().copied().flatten());
            }
        }
    }
    frame(request, &response)
}

pub(super) async fn offset_commit(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: OffsetCommitRequest = decode_body(request)?;
    let group_id = body.group_id.0.to_string();
    let coordinator = broker.coordinator();
    let group_error = coordinator.check_commit(
        &group_id,
        body.generation_id_or_member_epoch,
        body.member_id.as_str(),
    );
    let now = crate::clock::now_ms();
    let mut response = OffsetCommitResponse::default();
    let mut accepted = Vec::new();
    // (topic index, partition index in response) of accepted commits, to fill in their result.
    let mut slots = Vec::new();
    for topic in &body.topics {
        let mut topic_response = OffsetCommitResponseTopic::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut p = OffsetCommitResponsePartition::default();
            p.partition_index = partition.partition_index;
            let error = if let Some(error) = group_error {
                Some(error)
            } else if !broker.partition_exists(topic.name.0.as_str(), partition.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if partition
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                None
            };
            if error.is_none() {
                accepted.push((
                    topic.name.0.to_string(),
                    partition.partition_index,
                    Committed {
                        offset: partition.committed_offset,
                        leader_epoch: if request.version >= 6 {
                            partition.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_time_ms: now,
                    },
                ));
                slots.push((response.topics.len(), topic_response.partitions.len()));
            } else {
                warn!(group = %group_id, topic = %topic.name.0.as_str(), partition = partition.partition_index, ?error, "offset commit refused");
            }
            p.error_code = code(error);
            topic_response.partitions.push(p);
        }
        response.topics.push(topic_response);
    }
    if let Err(error) = coordinator.commit(&group_id, accepted).await {
        for (t, p) in slots {
            response.topics[t].partitions[p].error_code = error.code();
        }
    }
    frame(request, &response)
}

pub(super) async fn offset_fetch(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: OffsetFetchRequest = decode_body(request)?;
    if request.version >= OFFSET_FETCH_GROUPS_FROM_VERSION {
        return offset_fetch_groups(broker, request, &body);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = body.topics.as_ref().map(|topics| {
        topics.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
    });
    let mut response = OffsetFetchResponse::default();
    let found =
        match broker.coordinator().fetch_offsets(body.group_id.0.as_str(), wanted.as_deref()) {
            Ok(found) => found,
            Err(error) => {
                // v2+ has a group-level error; v1 reports it per requested partition.
                if request.version >= 2 {
                    response.error_code = error.code();
                    return frame(request, &response);
                }
                wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, partitions)| {
                        (topic, partitions.into_iter().map(|p| (p, None)).collect())
                    })
                    .collect::<Vec<(String, Vec<(i32, Option<Committed>)>)>>()
            }
        };
    for (topic, partitions) in found {
        let mut t = OffsetFetchResponseTopic::default();
        t.name = TopicName(topic.into());
        for (index, committed) in partitions {
            let mut p = OffsetFetchResponsePartition::default();
            p.partition_index = index;
            p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
            if request.version >= 5 {
                p.committed_leader_epoch = committed.as_ref().map_or(-1, |c| c.leader_epoch);
            }
            p.metadata = Some(committed.and_then(|c| c.metadata).unwrap_or_default().into());
            if request.version >= 7
                && body.require_stable
                && broker.coordinator().has_txn_offset(&body.group_id.0, t.name.0.as_str(), index)
            {
                // KIP-447: an offset a transaction has not ended yet; the client retries.
                p.error_code = ResponseError::UnstableOffsetCommit.code();
                p.committed_offset = -1;
            }
            t.partitions.push(p);
        }
        response.topics.push(t);
    }
    frame(request, &response)
}

/// OffsetFetch v8+: several groups in one request, each answered on its own with its own
/// error, as Kafka's `KafkaApis.handleOffsetFetchRequestFromCoordinator` answers them.
///
/// v9's member id and epoch identify a member of a KIP-848 consumer group, whose offsets
/// only a current member may read; Kafka's classic groups ignore them
/// (`ClassicGroup.validateOffsetFetch`), and every Fjord group is a classic one.
fn offset_fetch_groups(
    broker: &Rc<Broker>,
    request: &Request,
    body: &OffsetFetchRequest,
) -> Result<Reply, HandlerError> {
    super::reply::at_most("groups", body.groups.len(), OFFSET_FETCH_GROUPS_MAX)?;
    let coordinator = broker.coordinator();
    let mut response = OffsetFetchResponse::default();
    for group in &body.groups {
        let wanted: Option<Vec<(String, Vec<i32>)>> = group.topics.as_ref().map(|topics| {
            topics.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
        });
        let mut answer = OffsetFetchResponseGroup::default();
        answer.group_id = group.group_id.clone();
        match coordinator.fetch_offsets(group.group_id.0.as_str(), wanted.as_deref()) {
            Err(error) => answer.error_code = error.code(),
            Ok(found) => {
                answer.topics = found
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = TopicName(topic.clone().into());
                        t.partitions = partitions
                            .into_iter()
                            .map(|(index, committed)| {
                                let mut p = OffsetFetchResponsePartitions::default();
                                p.partition_index = index;
                                p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                                p.committed_leader_epoch =
                                    committed.as_ref().map_or(-1, |c| c.leader_epoch);
                                p.metadata = Some(
                                    committed.and_then(|c| c.metadata).unwrap_or_default().into(),
                                );
                                if body.require_stable
                                    && coordinator.has_txn_offset(&group.group_id.0, &topic, index)
                                {
                                    p.error_code = ResponseError::UnstableOffsetCommit.code();
                                    p.committed_offset = -1;
                                }
                                p
                            })
                            .collect();
                        t
                    })
                    .collect();
            }
        }
        response.groups.push(answer);
    }
    frame(request, &response)
}

pub(super) async fn list_groups(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: ListGroupsRequest = decode_body(request)?;
    let mut response = ListGroupsResponse::default();
    for (id, protocol_type, state) in broker.coordinator().list() {
        if request.version >= 4
            && !body.states_filter.is_empty()
            && !body.states_filter.iter().any(|s| s.as_str().eq_ignore_ascii_case(state))
        {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(id.into());
        g.protocol_type = protocol_type.into();
        if request.version >= 4 {
            g.group_state = state.into();
        }
        response.groups.push(g);
    }
    frame(request, &response)
}

pub(super) async fn describe_groups(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: DescribeGroupsRequest = decode_body(request)?;
    let mut response = DescribeGroupsResponse::default();
    for group_id in &body.groups {
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        // As Kafka: only a group described without an error carries its operations.
        described.authorized_operations = authorized::if_asked(
            request.version >= 3 && body.include_authorized_operations,
            authorized::GROUP,
        );
        match broker.coordinator().describe(group_id.0.as_str()) {
            Err(error) => {
                described.error_code = error.code();
                described.authorized_operations = authorized::OMITTED;
            }
            Ok(None) => described.group_state = "Dead".into(),
            Ok(Some(group)) => {
                described.group_state = group.state.into();
                described.protocol_type = group.protocol_type.into();
                described.protocol_data = group.protocol.into();
                described.members = group
                    .members
                    .into_iter()
                    .map(|(id, instance, client_id, host, metadata, assignment)| {
                        let mut m = DescribedGroupMember::default();
                        m.member_id = id.into();
                        if request.version >= 4 {
                            m.group_instance_id = instance.map(Into::into);
                        }
                        m.client_id = client_id.into();
                        m.client_host = host.into();
                        m.member_metadata = metadata;
                        m.member_assignment = assignment;
                        m
                    })
                    .collect();
            }
        }
        response.groups.push(described);
    }
    frame(request, &response)
}

pub(super) async fn delete_groups(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: DeleteGroupsRequest = decode_body(request)?;
    let mut response = DeleteGroupsResponse::default();
    for group_id in &body.groups_names {
        let mut result = DeletableGroupResult::default();
        result.group_id = group_id.clone();
        result.error_code = code(broker.coordinator().delete_group(group_id.0.as_str()).await);
        response.results.push(result);
    }
    frame(request, &response)
}
