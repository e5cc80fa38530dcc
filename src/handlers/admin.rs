//! Topic administration: CreateTopics, DeleteTopics, DescribeConfigs.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{frame, Reply};
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};
use crate::topic::TopicConfig;

/// Topics one CreateTopics or DeleteTopics request may name.
const ADMIN_TOPICS_PER_REQUEST_MAX: usize = 1000;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub async fn create_topics(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: CreateTopicsRequest = decode_body(request)?;
    if body.topics.len() > ADMIN_TOPICS_PER_REQUEST_MAX {
        anyhow::bail!("CreateTopics names {} topics, more than {ADMIN_TOPICS_PER_REQUEST_MAX}", body.topics.len());
    }
    let mut response = CreateTopicsResponse::default();
    for wanted in &body.topics {
        let name = wanted.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = wanted.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        // The codec's default is an empty message; Kafka sends null unless there is an error.
        result.error_message = None;
        let partitions = if !wanted.assignments.is_empty() {
            wanted.assignments.len() as i32
        } else if wanted.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            wanted.num_partitions
        };
        let replication = wanted.replication_factor;
        let config = TopicConfig::from_pairs(wanted.configs.iter().filter_map(|c| Some((c.name.as_str(), c.value.as_ref()?.as_str()))));
        let outcome = match config {
            Err(message) => Err((ResponseError::InvalidConfig, message)),
            Ok(config) => {
                let bad_assignment = wanted.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != broker.config.broker_id));
                if bad_assignment {
                    Err((ResponseError::InvalidReplicaAssignment, format!("replica assignment names brokers other than {}", broker.config.broker_id)))
                } else {
                    broker.create_topic(&name, partitions, replication, config, body.validate_only).await.map_err(|e| (e.code, e.message))
                }
            }
        };
        match outcome {
            Ok(topic) => {
                if request.version < 5 {
                    response.topics.push(result);
                    continue;
                }
                result.num_partitions = partitions;
                result.replication_factor = match &broker.cluster {
                    Some(cluster) => cluster.state.borrow().topics.get(&name).and_then(|t| t.partitions.first()).map_or(replication, |p| p.replicas.len() as i16),
                    None => 1,
                };
                result.configs = Some(
                    topic
                        .config
                        .describe(&broker.config)
                        .into_iter()
                        .map(|(name, value, is_default)| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = name.into();
                            c.value = Some(value.into());
                            c.config_source = if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC_CONFIG };
                            c
                        })
                        .collect(),
                );
            }
            Err((code, message)) => {
                warn!(topic = %name, %message, "CreateTopics refused");
                result.error_code = code.code();
                result.error_message = Some(message.into());
            }
        }
        response.topics.push(result);
    }
    frame(request, &response)
}

pub async fn delete_topics(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: DeleteTopicsRequest = decode_body(request)?;
    if body.topic_names.len() > ADMIN_TOPICS_PER_REQUEST_MAX {
        anyhow::bail!("DeleteTopics names {} topics, more than {ADMIN_TOPICS_PER_REQUEST_MAX}", body.topic_names.len());
    }
    let mut response = DeleteTopicsResponse::default();
    for name in &body.topic_names {
        let mut result = DeletableTopicResult::default();
        result.name = Some(name.clone());
        if let Err(error) = broker.delete_topic(name.0.as_str()).await {
            warn!(topic = %name.0.as_str(), message = %error.message, "DeleteTopics refused");
            result.error_code = error.code.code();
            if request.version >= 5 {
                result.error_message = Some(error.message.into());
            }
        }
        response.responses.push(result);
    }
    frame(request, &response)
}

pub async fn describe_configs(broker: &Rc<Broker>, request: &Request) -> anyhow::Result<Reply> {
    let body: DescribeConfigsRequest = decode_body(request)?;
    let mut response = DescribeConfigsResponse::default();
    for resource in &body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let wanted = |name: &str| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
        let entries: Vec<(String, String, i8)> = match resource.resource_type {
            RESOURCE_TOPIC => match broker.topic(resource.resource_name.as_str()) {
                Some(topic) => topic
                    .config
                    .describe(&broker.config)
                    .into_iter()
                    .map(|(n, v, is_default)| (n, v, if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC_CONFIG }))
                    .collect(),
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    result.error_message = Some(format!("topic {} does not exist", resource.resource_name.as_str()).into());
                    Vec::new()
                }
            },
            RESOURCE_BROKER if resource.resource_name.is_empty() || resource.resource_name.as_str() == broker.config.broker_id.to_string() => {
                broker_configs(broker).into_iter().map(|(n, v)| (n, v, SOURCE_STATIC_BROKER)).collect()
            }
            RESOURCE_BROKER => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(format!("this is broker {}, not {}", broker.config.broker_id, resource.resource_name.as_str()).into());
                Vec::new()
            }
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(format!("resource type {other} is not supported").into());
                Vec::new()
            }
        };
        result.configs = entries
            .into_iter()
            .filter(|(name, _, _)| wanted(name))
            .map(|(name, value, source)| {
                let mut entry = DescribeConfigsResourceResult::default();
                entry.name = name.into();
                entry.value = Some(value.into());
                entry.config_source = source;
                entry.read_only = resource.resource_type == RESOURCE_BROKER;
                entry.config_type = config_type(&entry.name);
                // Kafka sends documentation only when asked for it (and Fjord has none).
                entry.documentation = None;
                entry
            })
            .collect();
        response.results.push(result);
    }
    frame(request, &response)
}

/// Kafka's `ConfigType` of a config Fjord describes (DescribeConfigs v3+), as Kafka's own
/// definitions declare it: BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match name {
        "auto.create.topics.enable" => BOOLEAN,
        "cleanup.policy" | "log.dirs" => LIST,
        "retention.ms" | "retention.bytes" | "segment.ms" | "log.roll.ms" | "log.retention.ms" | "log.retention.bytes"
        | "log.retention.check.interval.ms" | "log.flush.interval.ms" => LONG,
        "segment.bytes" | "max.message.bytes" | "min.insync.replicas" | "index.interval.bytes" | "broker.id" | "num.partitions"
        | "socket.request.max.bytes" | "max.connections" | "log.segment.bytes" | "message.max.bytes" => INT,
        _ => STRING,
    }
}

/// The broker settings Fjord uses, under Kafka's names where one exists.
fn broker_configs(broker: &Broker) -> Vec<(String, String)> {
    let c = &broker.config;
    let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    vec![
        ("broker.id".to_string(), c.broker_id.to_string()),
        ("listeners".to_string(), format!("PLAINTEXT://{}", c.listen)),
        ("advertised.listeners".to_string(), format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port)),
        ("log.dirs".to_string(), c.data_dir.display().to_string()),
        ("auto.create.topics.enable".to_string(), c.auto_create_topics.to_string()),
        ("num.partitions".to_string(), c.num_partitions.to_string()),
        ("socket.request.max.bytes".to_string(), c.request_bytes_max.to_string()),
        ("max.connections".to_string(), c.connections_max.to_string()),
        ("log.segment.bytes".to_string(), c.segment_bytes.to_string()),
        ("log.roll.ms".to_string(), c.segment_ms.to_string()),
        ("log.retention.ms".to_string(), opt(c.retention_ms)),
        ("log.retention.bytes".to_string(), opt(c.retention_bytes)),
        ("log.retention.check.interval.ms".to_string(), c.retention_check_interval_ms.to_string()),
        ("log.flush.interval.ms".to_string(), opt(c.flush_interval_ms)),
        ("message.max.bytes".to_string(), c.message_max_bytes.to_string()),
        ("min.insync.replicas".to_string(), c.min_insync_replicas.to_string()),
    ]
}
