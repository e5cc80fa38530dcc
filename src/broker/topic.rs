//! Topics: names, per-topic configs, and the metadata file that persists them.
//!
//! A topic's metadata lives in `<data_dir>/topics/<name>.toml`, written atomically:
//! ```toml
//! id = "5f0c...e1"          # 32 hex digits, the topic id clients see in Metadata v10+
//! partitions = 4
//! [config]                 # only the overrides given at creation
//! "retention.ms" = "3600000"
//! ```
//! Partition data lives in `<data_dir>/<name>-<partition>/`, Kafka's layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{BrokerConfig, TOPIC_PARTITIONS_MAX};
use fjord_storage::LogConfig;

/// Kafka's limit on topic name length (249, so that `<name>-<partition>` fits in 255).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Checks a topic name the way Kafka does; `Err` says why it is refused.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is reserved"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is {} bytes, more than {TOPIC_NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if let Some(bad) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!("topic name {name:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// The topic configs Fjord applies, with how each is checked.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "min.insync.replicas",
    "index.interval.bytes",
    "message.timestamp.type",
    "preallocate",
];

/// Per-topic overrides, as given at creation (string values, as on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

fn parse_i64(name: &str, value: &str, min: i64) -> Result<i64, String> {
    let parsed: i64 =
        value.trim().parse().map_err(|_error| format!("{name} = {value:?} is not an integer"))?;
    if parsed < min {
        return Err(format!("{name} = {parsed} is below the minimum {min}"));
    }
    Ok(parsed)
}

/// A boolean config as Kafka reads one: `true` or `false`, any case.
fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{name} = {value:?} is not a boolean (true or false)")),
    }
}

impl TopicConfig {
    /// Checks one override; `Err` is the message for INVALID_CONFIG.
    pub fn check(name: &str, value: &str) -> Result<(), String> {
        match name {
            "cleanup.policy" => match value {
                "delete" => Ok(()),
                other => Err(format!("cleanup.policy = {other:?} is not supported; Fjord only deletes (no compaction)")),
            },
            "message.timestamp.type" => match value {
                "CreateTime" => Ok(()),
                other => Err(format!("message.timestamp.type = {other:?} is not supported; only CreateTime")),
            },
            "preallocate" => parse_bool(name, value).map(|_| ()),
            "retention.ms" | "retention.bytes" => parse_i64(name, value, -1).map(|_| ()),
            "segment.bytes" => parse_i64(name, value, fjord_storage::SEGMENT_BYTES_MIN as i64).and_then(|v| {
                if v as u64 > fjord_storage::SEGMENT_BYTES_MAX {
                    Err(format!("segment.bytes = {v} is above the maximum {}", fjord_storage::SEGMENT_BYTES_MAX))
                } else {
                    Ok(())
                }
            }),
            "segment.ms" | "min.insync.replicas" | "index.interval.bytes" => parse_i64(name, value, 1).map(|_| ()),
            "max.message.bytes" => parse_i64(name, value, fjord_storage::batch::BATCH_HEADER_BYTES as i64).and_then(|v| {
                if v as u64 > fjord_storage::BATCH_BYTES_LIMIT_MAX {
                    Err(format!("max.message.bytes = {v} is above the maximum {}", fjord_storage::BATCH_BYTES_LIMIT_MAX))
                } else {
                    Ok(())
                }
            }),
            other => Err(format!("unknown topic config {other:?}; supported: {}", TOPIC_CONFIG_NAMES.join(", "))),
        }
    }

    /// Builds a config from (name, value) pairs, checking each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, String> {
        let mut config = TopicConfig::default();
        for (name, value) in pairs {
            TopicConfig::check(name, value)?;
            config.overrides.insert(name.to_string(), value.to_string());
        }
        Ok(config)
    }

    /// The overrides after `changes` (IncrementalAlterConfigs), each result checked; `Err`
    /// is the message for INVALID_CONFIG. Appending to or subtracting from a config is
    /// allowed only for lists (`cleanup.policy`), starting from its default when the
    /// topic does not override it, as Kafka does.
    pub fn altered(&self, changes: &[ConfigChange]) -> Result<TopicConfig, String> {
        let mut config = self.clone();
        for change in changes {
            match change {
                ConfigChange::Set { name, value } => {
                    config.overrides.insert(name.clone(), value.clone());
                }
                ConfigChange::Delete { name } => {
                    config.overrides.remove(name);
                }
                ConfigChange::Append { name, value } | ConfigChange::Subtract { name, value } => {
                    let Some(default) = list_default(name) else {
                        let what = if matches!(change, ConfigChange::Append { .. }) {
                            "append"
                        } else {
                            "subtract"
                        };
                        return Err(format!(
                            "Config value {what} is not allowed for config key: {name}"
                        ));
                    };
                    let current = config.overrides.get(name).map_or(default, String::as_str);
                    let mut items: Vec<&str> =
                        current.split(',').filter(|item| !item.is_empty()).collect();
                    let given = value.split(',');
                    if matches!(change, ConfigChange::Append { .. }) {
                        for item in given {
                            if !items.contains(&item) {
                                items.push(item);
                            }
                        }
                    } else {
                        let removed: Vec<&str> = given.collect();
                        items.retain(|item| !removed.contains(item));
                    }
                    let joined = items.join(",");
                    config.overrides.insert(name.clone(), joined);
                }
            }
        }
        for (name, value) in &config.overrides {
            TopicConfig::check(name, value)?;
        }
        Ok(config)
    }

    fn get_i64(&self, name: &str) -> Option<i64> {
        self.overrides.get(name).and_then(|v| v.trim().parse().ok())
    }

    /// The storage settings for this topic's partitions.
    pub fn log_config(&self, broker: &BrokerConfig) -> LogConfig {
        let mut config = broker.default_log_config();
        let limit = |v: i64| if v < 0 { None } else { Some(v as u64) };
        if let Some(v) = self.get_i64("retention.ms") {
            config.retention_ms = limit(v);
        }
        if let Some(v) = self.get_i64("retention.bytes") {
            config.retention_bytes = limit(v);
        }
        if let Some(v) = self.get_i64("segment.bytes") {
            config.segment_bytes = v as u64;
        }
        if let Some(v) = self.get_i64("segment.ms") {
            config.segment_ms = v as u64;
        }
        if let Some(v) = self.get_i64("max.message.bytes") {
            config.batch_bytes_max = v as u64;
        }
        if let Some(v) = self.get_i64("index.interval.bytes") {
            config.index_interval_bytes = v as u64;
        }
        if let Some(v) = self.overrides.get("preallocate") {
            config.preallocate = parse_bool("preallocate", v).unwrap_or(config.preallocate);
        }
        // An index entry per segment at most is still a valid (if useless) index.
        config.index_interval_bytes = config.index_interval_bytes.min(config.segment_bytes);
        config
    }

    pub fn min_insync_replicas(&self, broker: &BrokerConfig) -> i32 {
        self.get_i64("min.insync.replicas").map_or(broker.min_insync_replicas, |v| v as i32)
    }

    /// Every config of the topic with its effective value and whether it is an override:
    /// (name, value, is_default).
    pub fn describe(&self, broker: &BrokerConfig) -> Vec<(String, String, bool)> {
        let log = self.log_config(broker);
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let effective: Vec<(&str, String)> = vec![
            ("cleanup.policy", "delete".to_string()),
            ("retention.ms", opt(log.retention_ms)),
            ("retention.bytes", opt(log.retention_bytes)),
            ("segment.bytes", log.segment_bytes.to_string()),
            ("segment.ms", log.segment_ms.to_string()),
            ("max.message.bytes", log.batch_bytes_max.to_string()),
            ("min.insync.replicas", self.min_insync_replicas(broker).to_string()),
            ("index.interval.bytes", log.index_interval_bytes.to_string()),
            ("message.timestamp.type", "CreateTime".to_string()),
            ("preallocate", log.preallocate.to_string()),
        ];
        effective
            .into_iter()
            .map(|(name, value)| (name.to_string(), value, !self.overrides.contains_key(name)))
            .collect()
    }
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set {
        name: String,
        value: String,
    },
    Delete {
        name: String,
    },
    /// Adds the comma-separated items not yet in a list config.
    Append {
        name: String,
        value: String,
    },
    /// Removes the comma-separated items from a list config.
    Subtract {
        name: String,
        value: String,
    },
}

/// The default of a list-typed topic config; `None` for configs that are not lists.
fn list_default(name: &str) -> Option<&'static str> {
    match name {
        "cleanup.policy" => Some("delete"),
        _ => None,
    }
}

/// The on-disk form of a topic's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicFile {
    pub id: String,
    pub partitions: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Why a topic could not be created or deleted. Its Kafka code is chosen in
/// `handlers::errors::topic_error_code`.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// A name Kafka refuses (`validate_name`).
    #[error("{reason}")]
    InvalidName { reason: String },
    /// A name reserved for internal topics, or an internal topic that cannot be deleted.
    #[error("{reason}")]
    Internal { reason: String },
    #[error("partitions must be between 1 and {max}, got {partitions}")]
    InvalidPartitions { partitions: i32, max: i32 },
    #[error(
        "replication factor {replication_factor} needs that many live brokers; {live} are live"
    )]
    InvalidReplicationFactor { replication_factor: i16, live: usize },
    #[error("Topic already has {current} partition(s).")]
    SamePartitionCount { current: i32 },
    #[error(
        "The topic {name} currently has {current} partition(s); {asked} would not be an increase."
    )]
    FewerPartitions { name: String, current: i32, asked: i32 },
    /// A CreatePartitions replica assignment Kafka would refuse.
    #[error("{reason}")]
    InvalidReplicaAssignment { reason: String },
    /// A config value or change Fjord refuses (INVALID_CONFIG).
    #[error("{reason}")]
    InvalidConfig { reason: String },
    #[error("topic {name} already exists")]
    AlreadyExists { name: String },
    #[error("topic {name} does not exist")]
    Unknown { name: String },
    #[error("the broker already holds {max} topics")]
    TooMany { max: usize },
    /// A file of the topic, or the cluster state, could not be read or written.
    #[error("{what}: {reason}")]
    Storage { what: String, reason: String },
    /// The cluster state changed under the operation (a topic vanished after creation, an
    /// update that could not apply).
    #[error("{reason}")]
    State { reason: String },
}

impl TopicError {
    /// A storage failure of `what` (a path or the cluster state).
    pub(crate) fn storage(what: impl Into<String>, error: impl std::fmt::Display) -> TopicError {
        TopicError::Storage { what: what.into(), reason: error.to_string() }
    }
}

/// Checks that `count` partitions are more than the `current` ones, and within the limit,
/// with Kafka's messages.
pub fn check_partition_increase(name: &str, current: i32, count: i32) -> Result<(), TopicError> {
    if count == current {
        return Err(TopicError::SamePartitionCount { current });
    }
    if count < current {
        return Err(TopicError::FewerPartitions { name: name.to_string(), current, asked: count });
    }
    if count > TOPIC_PARTITIONS_MAX {
        return Err(TopicError::InvalidPartitions { partitions: count, max: TOPIC_PARTITIONS_MAX });
    }
    Ok(())
}

/// Checks the replica lists a CreatePartitions request gives for its `added` partitions:
/// one per new partition, `replication_factor` distinct brokers each, every one `known`.
pub fn check_assignments(
    assignments: &[Vec<i32>],
    added: i32,
    replication_factor: usize,
    known: impl Fn(i32) -> bool,
) -> Result<(), TopicError> {
    let refuse = |reason: String| Err(TopicError::InvalidReplicaAssignment { reason });
    if assignments.len() != added as usize {
        return refuse(format!(
            "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
            assignments.len()
        ));
    }
    for replicas in assignments {
        if replicas.is_empty() {
            return refuse(
                "The manual partition assignment includes an empty replica list.".to_string(),
            );
        }
        let distinct: std::collections::BTreeSet<i32> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return refuse(format!(
                "The manual partition assignment {replicas:?} contains duplicate replicas."
            ));
        }
        if replicas.len() != replication_factor {
            return refuse(format!(
                "The manual partition assignment {replicas:?} includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {replication_factor} replica(s).",
                replicas.len()
            ));
        }
        if let Some(unknown) = replicas.iter().find(|id| !known(**id)) {
            return refuse(format!(
                "The manual partition assignment includes broker {unknown}, but no such broker is registered."
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafkas_rules() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "tópico", "x/y", &"a".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"a".repeat(249)).is_ok());
    }

    #[test]
    fn configs_are_checked() {
        assert!(TopicConfig::from_pairs([("retention.ms", "1000"), ("segment.bytes", "1048576")])
            .is_ok());
        assert!(TopicConfig::from_pairs([("retention.ms", "-1")]).is_ok());
        assert!(TopicConfig::from_pairs([("retention.ms", "-2")]).is_err());
        assert!(TopicConfig::from_pairs([("retention.ms", "soon")]).is_err());
        assert!(TopicConfig::from_pairs([("cleanup.policy", "compact")]).is_err());
        assert!(TopicConfig::from_pairs([("segment.bytes", "10")]).is_err());
        assert!(TopicConfig::from_pairs([("no.such.config", "1")]).is_err());
        assert!(TopicConfig::from_pairs([("preallocate", "yes")]).is_err());
    }

    #[test]
    fn incremental_changes_set_delete_and_edit_lists_from_their_default() {
        let set =
            |name: &str, value: &str| ConfigChange::Set { name: name.into(), value: value.into() };
        let start = TopicConfig::from_pairs([("retention.ms", "1000")]).unwrap();
        let changed = start
            .altered(&[
                set("segment.ms", "5000"),
                ConfigChange::Delete { name: "retention.ms".into() },
            ])
            .unwrap();
        assert_eq!(changed, TopicConfig::from_pairs([("segment.ms", "5000")]).unwrap());
        let append = ConfigChange::Append { name: "cleanup.policy".into(), value: "delete".into() };
        let appended = start.altered(&[append]).unwrap();
        assert_eq!(appended.overrides["cleanup.policy"], "delete", "already in the default list");
        let subtract =
            ConfigChange::Subtract { name: "cleanup.policy".into(), value: "delete".into() };
        assert!(start.altered(&[subtract]).is_err(), "an empty cleanup.policy is refused");
        let append_long = ConfigChange::Append { name: "retention.ms".into(), value: "5".into() };
        assert_eq!(
            start.altered(&[append_long]).unwrap_err(),
            "Config value append is not allowed for config key: retention.ms"
        );
        assert!(start.altered(&[set("retention.ms", "soon")]).is_err());
        assert!(start.altered(&[set("no.such.config", "1")]).is_err());
    }

    #[test]
    fn preallocate_is_off_unless_the_topic_or_the_broker_turns_it_on() {
        let serve = crate::config::ServeArgs::default();
        let broker = serve.resolve().expect("defaults resolve");
        assert!(!TopicConfig::default().log_config(&broker).preallocate, "Kafka's default");
        let on = TopicConfig::from_pairs([("preallocate", "TRUE")]).unwrap();
        assert!(on.log_config(&broker).preallocate);
        let serve = crate::config::ServeArgs { log_preallocate: Some(true), ..serve };
        let broker = serve.resolve().expect("--log-preallocate true resolves");
        let off = TopicConfig::from_pairs([("preallocate", "false")]).unwrap();
        assert!(!off.log_config(&broker).preallocate, "the topic's override wins");
        assert!(TopicConfig::default().log_config(&broker).preallocate);
    }
}
