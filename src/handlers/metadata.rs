//! Metadata: brokers, topics, partitions, leaders. Unknown topics are created on request
//! when auto-creation is on (the broker default, and the request allows it).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{frame, Reply};
use crate::broker::{Broker, Topic};
use crate::protocol::{decode_body, Request};
use crate::topic::TopicConfig;

pub async fn handle(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: MetadataRequest = decode_body(request)?;
    let config = &broker.config;
    let mut response = MetadataResponse::default();
    let mut node = MetadataResponseBroker::default();
    node.node_id = BrokerId(config.broker_id);
    node.host = config.advertised_host.clone().into();
    node.port = i32::from(config.advertised_port);
    response.brokers = vec![node];
    if request.version >= 2 {
        response.cluster_id = Some("fjord".into());
    }
    response.controller_id = BrokerId(config.broker_id);
    response.cluster_authorized_operations = i32::MIN;

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<String>> = match &body.topics {
        None => None,
        Some(topics) if topics.is_empty() && request.version == 0 => None,
        Some(topics) => Some(topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect()),
    };
    let auto_create = config.auto_create_topics && (request.version < 4 || body.allow_auto_topic_creation);
    match requested {
        None => {
            for topic in broker.topics() {
                response.topics.push(describe(broker, &topic, request.version));
            }
        }
        Some(names) => {
            for name in names {
                let topic = match broker.topic(&name) {
                    Some(topic) => Ok(topic),
                    None if auto_create => broker
                        .create_topic(&name, config.num_partitions, 1, TopicConfig::default(), false)
                        .await
                        .map_err(|e| e.code),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                };
                match topic {
                    Ok(topic) => response.topics.push(describe(broker, &topic, request.version)),
                    Err(code) => {
                        // A racing creation of the same topic is fine: describe what exists.
                        if let (ResponseError::TopicAlreadyExists, Some(topic)) = (code, broker.topic(&name)) {
                            response.topics.push(describe(broker, &topic, request.version));
                            continue;
                        }
                        let mut entry = MetadataResponseTopic::default();
                        entry.name = Some(TopicName(name.into()));
                        entry.error_code = code.code();
                        entry.topic_authorized_operations = i32::MIN;
                        response.topics.push(entry);
                    }
                }
            }
        }
    }
    frame(request, &response)
}

/// Kafka's codecs refuse non-default values in fields a version lacks, so each versioned
/// field is set only where it exists.
fn describe(broker: &Broker, topic: &Topic, version: i16) -> MetadataResponseTopic {
    let id = BrokerId(broker.config.broker_id);
    let mut entry = MetadataResponseTopic::default();
    entry.name = Some(TopicName(topic.name.to_string().into()));
    if version >= 10 {
        entry.topic_id = uuid::Uuid::from_bytes(topic.id);
    }
    entry.is_internal = version >= 1 && topic.name.starts_with("__");
    entry.topic_authorized_operations = i32::MIN;
    entry.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = p.index;
            partition.leader_id = id;
            partition.leader_epoch = if version >= 7 { 0 } else { -1 };
            partition.replica_nodes = vec![id];
            partition.isr_nodes = vec![id];
            partition
        })
        .collect();
    entry
}
