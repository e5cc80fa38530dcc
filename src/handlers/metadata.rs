//! Metadata: brokers, topics, partitions, leaders. Unknown topics are created on request
//! when auto-creation is on (the broker default, and the request allows it).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::authorized;
use super::brokers;
use super::reply::{frame, HandlerError, Reply};
use crate::broker::topic::{validate_name, TopicConfig};
use crate::broker::{Broker, Topic};
use crate::handlers::errors::topic_error_code;
use crate::protocol::{decode_body, Request};

/// The newest Metadata version served: every versioned field set.
pub(super) const NEWEST_VERSION: i16 = 13;

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: MetadataRequest = decode_body(request)?;
    let config = &broker.config;
    let mut response = MetadataResponse::default();
    response.brokers = live_brokers(broker);
    // One view of who is alive for the whole answer: a leader is named only if it is in
    // the brokers list, so a client never looks for a node it was not told about.
    let alive: Alive = response.brokers.iter().map(|b| b.node_id.0).collect();
    if request.version >= 2 {
        response.cluster_id = Some("fjord".into());
    }
    response.controller_id = BrokerId(brokers::controller_id(broker));
    response.cluster_authorized_operations = authorized::if_asked(
        request.version >= 8 && body.include_cluster_authorized_operations,
        authorized::CLUSTER,
    );
    let topic_operations = authorized::if_asked(
        request.version >= 8 && body.include_topic_authorized_operations,
        authorized::TOPIC,
    );
    if let Some(topics) = topics_by_id(broker, &alive, &body, request.version, topic_operations) {
        response.topics = topics;
        return frame(request, &response);
    }
    let auto_create =
        config.auto_create_topics && (request.version < 4 || body.allow_auto_topic_creation);
    match requested_names(&body, request.version) {
        None => {
            for topic in broker.topics() {
                response.topics.push(describe(broker, &alive, &topic, request.version));
            }
        }
        Some(names) => {
            for name in names {
                let entry = topic_by_name(broker, &alive, name, auto_create, request.version).await;
                response.topics.push(entry);
            }
        }
    }
    // By name, every topic of the answer carries the operations, found or not, as in Kafka.
    for topic in &mut response.topics {
        topic.topic_authorized_operations = topic_operations;
    }
    frame(request, &response)
}

/// The ids of the brokers an answer lists.
pub(super) type Alive = std::collections::BTreeSet<i32>;

/// The brokers to answer: this one alone, or the cluster's live brokers.
pub(super) fn live_brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    brokers::live_brokers(broker)
        .into_iter()
        .map(|b| {
            let mut node = MetadataResponseBroker::default();
            node.node_id = BrokerId(b.id);
            node.host = b.host.into();
            node.port = b.port;
            node
        })
        .collect()
}

/// v12+ may name topics by id: then, as Kafka, the ids decide and the names are ignored.
/// Each id once, as Kafka takes them as a set (a request repeating one cannot make the
/// answer grow); unknown ids (UNKNOWN_TOPIC_ID) first, as Kafka orders them, and only
/// the topics found carry their operations. `None` when the request names no id.
fn topics_by_id(
    broker: &Broker,
    alive: &Alive,
    body: &MetadataRequest,
    version: i16,
    topic_operations: i32,
) -> Option<Vec<MetadataResponseTopic>> {
    if version < 12 {
        return None;
    }
    let mut ids: Vec<uuid::Uuid> =
        body.topics.iter().flatten().map(|t| t.topic_id).filter(|id| !id.is_nil()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return None;
    }
    let by_id: std::collections::HashMap<uuid::Uuid, _> =
        broker.topics().into_iter().map(|t| (uuid::Uuid::from_bytes(t.id), t)).collect();
    let mut topics = Vec::new();
    for id in ids.iter().filter(|id| !by_id.contains_key(id)) {
        let mut entry = MetadataResponseTopic::default();
        entry.name = None;
        entry.topic_id = *id;
        entry.error_code = ResponseError::UnknownTopicId.code();
        entry.topic_authorized_operations = authorized::OMITTED;
        topics.push(entry);
    }
    for id in ids.iter().filter(|id| by_id.contains_key(id)) {
        let mut entry = describe(broker, alive, &by_id[id], version);
        entry.topic_authorized_operations = topic_operations;
        topics.push(entry);
    }
    Some(topics)
}

/// The topic names asked for; `None` for all topics. v0: an empty list means all topics;
/// v1+: null means all, empty means none. Each name once, as Kafka takes them as a set:
/// repeating one cannot grow the answer.
fn requested_names(body: &MetadataRequest, version: i16) -> Option<Vec<String>> {
    match &body.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => {
            let mut seen = std::collections::HashSet::new();
            Some(
                topics
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .filter(|n| seen.insert(n.clone()))
                    .collect(),
            )
        }
    }
}

/// The answer for one topic asked for by name, created first if it is unknown and
/// `auto_create` is on.
async fn topic_by_name(
    broker: &Rc<Broker>,
    alive: &Alive,
    name: String,
    auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let config = &broker.config;
    let topic = match broker.topic(&name) {
        Some(topic) => Ok(topic),
        None if auto_create => broker
            .create_topic(&name, config.num_partitions, -1, TopicConfig::default(), false)
            .await
            .map_err(|e| topic_error_code(&e)),
        // As Kafka: a name no topic could have is INVALID_TOPIC_EXCEPTION.
        None if validate_name(&name).is_err() => Err(ResponseError::InvalidTopicException),
        None => Err(ResponseError::UnknownTopicOrPartition),
    };
    let code = match topic {
        Ok(topic) => return describe(broker, alive, &topic, version),
        Err(code) => code,
    };
    // A racing creation of the same topic is fine: describe what exists.
    if let (ResponseError::TopicAlreadyExists, Some(topic)) = (code, broker.topic(&name)) {
        return describe(broker, alive, &topic, version);
    }
    let mut entry = MetadataResponseTopic::default();
    entry.name = Some(TopicName(name.into()));
    entry.error_code = code.code();
    entry
}

/// Kafka's codecs refuse non-default values in fields a version lacks, so each versioned
/// field is set only where it exists. A leader missing from `alive` (the brokers list of
/// the same answer) is answered as Kafka does: leader -1 and LEADER_NOT_AVAILABLE, its
/// epoch, replicas and in-sync set kept, so the client retries instead of delegating the
/// partition to a broker it has no address for.
pub(super) fn describe(
    broker: &Broker,
    alive: &Alive,
    topic: &Topic,
    version: i16,
) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default();
    entry.name = Some(TopicName(topic.name.to_string().into()));
    if version >= 10 {
        entry.topic_id = uuid::Uuid::from_bytes(topic.id);
    }
    entry.is_internal = version >= 1 && topic.name.starts_with("__");
    let ids = |list: &[i32]| list.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partition =
        |index: i32, leader: i32, epoch: i32, replicas: &[i32], isr: &[i32], offline: &[i32]| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = index;
            p.leader_id = BrokerId(leader);
            if leader < 0 {
                p.error_code = ResponseError::LeaderNotAvailable.code();
            }
            p.leader_epoch = if version >= 7 { epoch } else { -1 };
            p.replica_nodes = ids(replicas);
            p.isr_nodes = ids(isr);
            if version >= 5 {
                p.offline_replicas = ids(offline);
            }
            p
        };
    match &broker.cluster {
        None => {
            let id = broker.config.broker_id;
            entry.partitions = (0..topic.partitions.len() as i32)
                .map(|i| partition(i, id, 0, &[id], &[id], &[]))
                .collect();
        }
        Some(cluster) => {
            let state = cluster.state.borrow();
            if let Some(t) = state.topics.get(&*topic.name) {
                entry.partitions = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let offline: Vec<i32> =
                            p.replicas.iter().copied().filter(|r| !alive.contains(r)).collect();
                        let leader = if alive.contains(&p.leader) { p.leader } else { -1 };
                        partition(i as i32, leader, p.leader_epoch, &p.replicas, &p.isr, &offline)
                    })
                    .collect();
            }
        }
    }
    entry
}
