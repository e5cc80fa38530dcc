//! DescribeConfigs: a topic's configs, this broker's, or the cluster-wide broker defaults,
//! each value with its source and, when asked, its synonyms, as Kafka's `ConfigHelper`
//! answers them.
//!
//! A value's synonyms are every place it could come from, most specific first: the topic's
//! override (TOPIC_CONFIG), this broker's dynamic value (DYNAMIC_BROKER_CONFIG), the
//! cluster-wide dynamic value (DYNAMIC_DEFAULT_BROKER_CONFIG), the broker's command line
//! (STATIC_BROKER_CONFIG) and the built-in default (DEFAULT_CONFIG), those that hold a value.
//! The value described is the first synonym's, and its source is the first synonym's source.

use std::collections::BTreeMap;
use std::rc::Rc;

use fjord_replication::DynamicBrokerConfigs;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::{dynamic, throttle, topic_configs, Broker, Topic};
use crate::protocol::{decode_body, Request};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` values (DescribeConfigs v1+).
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub(super) async fn describe_configs(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: DescribeConfigsRequest = decode_body(request)?;
    let mut response = DescribeConfigsResponse::default();
    for resource in &body.resources {
        response.results.push(describe_resource(broker, resource, body.include_synonyms));
    }
    frame(request, &response)
}

/// One place a config's value could come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Synonym {
    name: String,
    value: String,
    source: i8,
}

impl Synonym {
    fn new(name: &str, value: impl Into<String>, source: i8) -> Synonym {
        Synonym { name: name.to_string(), value: value.into(), source }
    }
}

/// A config as DescribeConfigs answers it.
pub(super) struct ConfigEntry {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) source: i8,
    read_only: bool,
    synonyms: Vec<Synonym>,
}

impl ConfigEntry {
    /// An entry whose value and source are its first synonym's (`fallback` where it has
    /// none: a value Kafka lists under no synonym).
    fn from_synonyms(
        name: &str,
        synonyms: Vec<Synonym>,
        fallback: String,
        read_only: bool,
    ) -> ConfigEntry {
        let (value, source) = match synonyms.first() {
            Some(first) => (first.value.clone(), first.source),
            None => (fallback, SOURCE_DEFAULT),
        };
        ConfigEntry { name: name.to_string(), value, source, read_only, synonyms }
    }
}

/// The synonyms of broker config `broker_name` (the broker-side default of topic config
/// `topic`) on broker `id`: its dynamic values, its command-line value, its default.
fn broker_synonyms(
    dynamic: &DynamicBrokerConfigs,
    id: i32,
    statics: &BTreeMap<String, String>,
    broker_name: &str,
    topic: &str,
) -> Vec<Synonym> {
    let mut synonyms = dynamic_synonyms(dynamic, id, broker_name);
    let default = dynamic::default_synonym(topic);
    let builtin = topic_configs::find(topic).map(|def| def.default);
    // A command-line value is told from the default by differing from it (Fjord's flags
    // have Kafka's defaults); `-1` is Fjord's "not set" for the optional flush interval.
    if let Some(value) = statics.get(broker_name) {
        if Some(value.as_str()) != builtin && !(topic == "flush.ms" && value == "-1") {
            synonyms.push(Synonym::new(broker_name, value, SOURCE_STATIC_BROKER));
        }
    }
    if let Some((name, value)) = default {
        synonyms.push(Synonym::new(name, value, SOURCE_DEFAULT));
    }
    synonyms
}

/// Broker config `name`'s dynamic values on broker `id`: its own, then the cluster-wide one.
fn dynamic_synonyms(dynamic: &DynamicBrokerConfigs, id: i32, name: &str) -> Vec<Synonym> {
    let mut synonyms = Vec::new();
    if let Some(value) = dynamic.of(Some(id)).get(name) {
        synonyms.push(Synonym::new(name, value, dynamic::SOURCE_DYNAMIC_BROKER));
    }
    if let Some(value) = dynamic.of(None).get(name) {
        synonyms.push(Synonym::new(name, value, dynamic::SOURCE_DYNAMIC_DEFAULT));
    }
    synonyms
}

/// Every config of a topic, with its effective value, where it comes from and its synonyms:
/// the topic's override, the broker's dynamic default (per broker or cluster-wide), the
/// broker's command line, or the default.
pub(super) fn topic_entries(broker: &Broker, topic: &Topic) -> Vec<ConfigEntry> {
    let dynamic = broker.dynamic_configs();
    let id = broker.config.broker_id;
    let statics: BTreeMap<String, String> = broker_configs(broker).into_iter().collect();
    broker
        .with_dynamic_defaults(&topic.config)
        .describe(&broker.config)
        .into_iter()
        .map(|(name, value, _)| {
            let mut synonyms = Vec::new();
            if topic.config.overrides.contains_key(&name) {
                synonyms.push(Synonym::new(&name, value.clone(), SOURCE_TOPIC_CONFIG));
            }
            if let Some(broker_name) = dynamic::broker_config_of(&name) {
                synonyms.extend(broker_synonyms(&dynamic, id, &statics, broker_name, &name));
            }
            let mut entry = ConfigEntry::from_synonyms(&name, synonyms, value.clone(), false);
            // The value in force is the topic's (a synonym may be in a coarser unit).
            entry.value = value;
            entry
        })
        .collect()
}

/// One resource's configs, those its request names (all if it names none), or why not.
fn describe_resource(
    broker: &Broker,
    resource: &DescribeConfigsResource,
    include_synonyms: bool,
) -> DescribeConfigsResult {
    let mut result = DescribeConfigsResult::default();
    result.resource_type = resource.resource_type;
    result.resource_name = resource.resource_name.clone();
    let entries = match resource_configs(broker, resource) {
        Ok(entries) => entries,
        Err((code, message)) => {
            result.error_code = code.code();
            result.error_message = Some(message.into());
            Vec::new()
        }
    };
    let wanted = |name: &str| {
        resource
            .configuration_keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
    };
    result.configs = entries
        .into_iter()
        .filter(|config| wanted(&config.name))
        .map(|config| {
            let mut entry = DescribeConfigsResourceResult::default();
            entry.config_type = config_type(&config.name);
            entry.name = config.name.into();
            entry.value = Some(config.value.into());
            entry.config_source = config.source;
            entry.read_only = config.read_only;
            if include_synonyms {
                entry.synonyms = config
                    .synonyms
                    .into_iter()
                    .map(|synonym| {
                        let mut s = DescribeConfigsSynonym::default();
                        s.name = synonym.name.into();
                        s.value = Some(synonym.value.into());
                        s.source = synonym.source;
                        s
                    })
                    .collect();
            }
            // Kafka sends documentation only when asked for it (and Fjord has none).
            entry.documentation = None;
            entry
        })
        .collect();
    result
}

/// Every config of a topic or of this broker; or the error to answer for a resource that is
/// not there.
fn resource_configs(
    broker: &Broker,
    resource: &DescribeConfigsResource,
) -> Result<Vec<ConfigEntry>, (ResponseError, String)> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => match broker.topic(name) {
            Some(topic) => Ok(topic_entries(broker, &topic)),
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
        },
        // The cluster-wide default: only what is set there, as Kafka lists it.
        RESOURCE_BROKER if name.is_empty() => Ok(broker
            .dynamic_configs()
            .cluster_default
            .into_iter()
            .map(|(name, value)| {
                let synonym = Synonym::new(&name, value.clone(), dynamic::SOURCE_DYNAMIC_DEFAULT);
                let read_only = dynamic::topic_config_of(&name).is_none();
                ConfigEntry::from_synonyms(&name, vec![synonym], value, read_only)
            })
            .collect()),
        RESOURCE_BROKER if name == broker.config.broker_id.to_string() => {
            Ok(this_broker_entries(broker))
        }
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            format!("this is broker {}, not {name}", broker.config.broker_id),
        )),
        other => {
            Err((ResponseError::InvalidRequest, format!("resource type {other} is not supported")))
        }
    }
}

/// Kafka's `ConfigType` of a config Fjord describes (DescribeConfigs v3+), as Kafka's own
/// definitions declare it: BOOLEAN 1, STRING 2, INT 3, LONG 5, LIST 7.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    let def = topic_configs::find(name)
        .or_else(|| dynamic::topic_config_of(name).and_then(topic_configs::find));
    if let Some(def) = def {
        return def.kind as i8;
    }
    match name {
        "auto.create.topics.enable" => BOOLEAN,
        "log.dirs" => LIST,
        "log.retention.check.interval.ms"
        | "log.cleaner.dedupe.buffer.size"
        | "offsets.retention.check.interval.ms" => LONG,
        "log.cleaner.io.max.bytes.per.second" => DOUBLE,
        throttle::LEADER_RATE | throttle::FOLLOWER_RATE => LONG,
        "broker.id"
        | "num.partitions"
        | "socket.request.max.bytes"
        | "max.connections"
        | "log.cleaner.threads"
        | "offsets.topic.num.partitions"
        | "offsets.retention.minutes" => INT,
        _ => STRING,
    }
}

/// This broker's configs: its settings, and every config it changes while running, each
/// with the value in force, where it comes from (dynamic per broker, dynamic cluster-wide,
/// the command line, the default) and its synonyms; only the dynamic ones are writable.
fn this_broker_entries(broker: &Broker) -> Vec<ConfigEntry> {
    let dynamic = broker.dynamic_configs();
    let id = broker.config.broker_id;
    let statics: BTreeMap<String, String> = broker_configs(broker).into_iter().collect();
    let mut entries: BTreeMap<String, ConfigEntry> = BTreeMap::new();
    for (name, value) in &statics {
        let synonym = Synonym::new(name, value.clone(), SOURCE_STATIC_BROKER);
        let entry = ConfigEntry::from_synonyms(name, vec![synonym], value.clone(), true);
        entries.insert(name.clone(), entry);
    }
    for (name, topic) in dynamic::DYNAMIC_LOG_CONFIGS {
        let synonyms = broker_synonyms(&dynamic, id, &statics, name, topic);
        // Unset and without a default synonym: the value in force, Fjord's own.
        let fallback = statics
            .get(*name)
            .cloned()
            .or_else(|| topic_configs::find(topic).map(|def| def.default.to_string()))
            .unwrap_or_default();
        let mut entry = ConfigEntry::from_synonyms(name, synonyms, fallback.clone(), false);
        if entry.source == SOURCE_DEFAULT {
            // The default in this config's own unit (`log.retention.hours=168` is a synonym).
            entry.value = fallback;
        }
        entries.insert(name.to_string(), entry);
    }
    // The throttle rates are no broker settings of Kafka's, only dynamic values: listed
    // where set, with those values as their synonyms, as Kafka lists them.
    for name in dynamic::DYNAMIC_BROKER_ONLY_CONFIGS {
        let synonyms = dynamic_synonyms(&dynamic, id, name);
        if !synonyms.is_empty() {
            let entry = ConfigEntry::from_synonyms(name, synonyms, String::new(), false);
            entries.insert(name.to_string(), entry);
        }
    }
    entries.into_values().collect()
}

/// The broker settings Fjord uses, under Kafka's names where one exists.
fn broker_configs(broker: &Broker) -> Vec<(String, String)> {
    let c = &broker.config;
    let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    vec![
        ("broker.id".to_string(), c.broker_id.to_string()),
        ("listeners".to_string(), format!("PLAINTEXT://{}", c.listen)),
        (
            "advertised.listeners".to_string(),
            format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port),
        ),
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
        ("log.cleaner.threads".to_string(), c.log_cleaner_threads.to_string()),
        (
            "log.cleaner.io.max.bytes.per.second".to_string(),
            // Kafka's default is Double.MAX_VALUE, shown as Java prints it.
            c.log_cleaner_io_max_bytes_per_second
                .map_or("1.7976931348623157E308".to_string(), |v| format!("{:?}", v as f64)),
        ),
        (
            "log.cleaner.dedupe.buffer.size".to_string(),
            c.log_cleaner_dedupe_buffer_size.to_string(),
        ),
        ("offsets.topic.num.partitions".to_string(), c.offsets_topic_partitions.to_string()),
        ("offsets.retention.minutes".to_string(), c.offsets_retention_minutes.to_string()),
        (
            "offsets.retention.check.interval.ms".to_string(),
            c.offsets_retention_check_interval_ms.to_string(),
        ),
    ]
}
