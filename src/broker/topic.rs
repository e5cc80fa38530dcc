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

use super::topic_configs;
use crate::config::{BrokerConfig, TOPIC_PARTITIONS_MAX};
use fjord_storage::{FlushPolicy, LogConfig};

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

/// Per-topic overrides, as given at creation (string values, as on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Checks one override; `Err` is the message for INVALID_CONFIG.
    pub fn check(name: &str, value: &str) -> Result<(), String> {
        topic_configs::check(name, value)
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
        config.check_together()?;
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
        config.check_together()?;
        Ok(config)
    }

    /// Kafka's checks across configs, on the overrides and the defaults of the rest.
    fn check_together(&self) -> Result<(), String> {
        topic_configs::check_together(|name| self.get_i64(name))
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
        if let Some(v) = self.get_i64("segment.jitter.ms") {
            config.segment_jitter_ms = v as u64;
        }
        if let Some(v) = self.get_i64("max.message.bytes") {
            config.batch_bytes_max = v as u64;
        }
        if let Some(v) = self.get_i64("index.interval.bytes") {
            // 0, which Kafka allows, indexes every batch: as an interval of one byte does.
            config.index_interval_bytes = v.max(1) as u64;
        }
        if let Some(v) = self.overrides.get("preallocate") {
            config.preallocate =
                topic_configs::parse_bool("preallocate", v).unwrap_or(config.preallocate);
        }
        if let Some(v) = self.get_i64("flush.ms") {
            config.flush = match v {
                i64::MAX => FlushPolicy::Never,
                0 => FlushPolicy::EveryAppend,
                ms => FlushPolicy::IntervalMs(ms as u64),
            };
        }
        if let Some(v) = self.get_i64("flush.messages") {
            config.flush_messages = (v != i64::MAX).then_some(v as u64);
        }
        let window = |v: i64| (v != i64::MAX).then_some(v as u64);
        if let Some(v) = self.get_i64("message.timestamp.before.max.ms") {
            config.timestamp_before_max_ms = window(v);
        }
        if let Some(v) = self.get_i64("message.timestamp.after.max.ms") {
            config.timestamp_after_max_ms = window(v);
        }
        if let Some(v) = self.overrides.get("message.timestamp.type") {
            config.log_append_time = v.trim() == "LogAppendTime";
        }
        let policy = self.overrides.get("cleanup.policy").map_or("delete", String::as_str);
        let policies = topic_configs::list_items(policy);
        if policies.contains(&"compact") {
            let mut compaction = fjord_storage::Compaction::default();
            if let Some(ratio) = self
                .overrides
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                compaction.min_cleanable_dirty_ppm = (ratio.clamp(0.0, 1.0) * 1e6) as u32;
            }
            let at_least_zero = |v: i64| v.max(0) as u64;
            if let Some(v) = self.get_i64("min.compaction.lag.ms") {
                compaction.min_compaction_lag_ms = at_least_zero(v);
            }
            if let Some(v) = self.get_i64("max.compaction.lag.ms") {
                compaction.max_compaction_lag_ms = at_least_zero(v);
            }
            if let Some(v) = self.get_i64("delete.retention.ms") {
                compaction.delete_retention_ms = at_least_zero(v);
            }
            config.compaction = Some(compaction);
        }
        if !policies.contains(&"delete") {
            // Only compacted: no segment goes for its age or the log's size (Kafka's
            // `LogConfig.delete` is off).
            config.retention_ms = None;
            config.retention_bytes = None;
        }
        // An index entry per segment at most is still a valid (if useless) index.
        config.index_interval_bytes = config.index_interval_bytes.min(config.segment_bytes);
        config
    }

    /// Whether `cleanup.policy` names `compact`.
    pub fn compacted(&self) -> bool {
        self.overrides
            .get("cleanup.policy")
            .is_some_and(|policy| topic_configs::list_items(policy).contains(&"compact"))
    }

    pub fn min_insync_replicas(&self, broker: &BrokerConfig) -> i32 {
        self.get_i64("min.insync.replicas").map_or(broker.min_insync_replicas, |v| v as i32)
    }

    /// Every topic config Kafka defines, with its effective value here and whether it is
    /// an override: (name, value, is_default). Overrides are described as given; the rest
    /// as the broker applies them (its defaults), or as Kafka's defaults for the configs
    /// Fjord does not act on.
    pub fn describe(&self, broker: &BrokerConfig) -> Vec<(String, String, bool)> {
        let log = broker.default_log_config();
        let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let unbounded = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        topic_configs::TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let name = def.name;
                if let Some(value) = self.overrides.get(name) {
                    return (name.to_string(), value.clone(), false);
                }
                let value = match name {
                    "retention.ms" => opt(log.retention_ms),
                    "retention.bytes" => opt(log.retention_bytes),
                    "segment.bytes" => log.segment_bytes.to_string(),
                    "segment.ms" => log.segment_ms.to_string(),
                    "max.message.bytes" => log.batch_bytes_max.to_string(),
                    "min.insync.replicas" => broker.min_insync_replicas.to_string(),
                    "preallocate" => log.preallocate.to_string(),
                    "flush.ms" => match log.flush {
                        FlushPolicy::IntervalMs(ms) => ms.to_string(),
                        FlushPolicy::EveryAppend => "0".to_string(),
                        FlushPolicy::Never => i64::MAX.to_string(),
                    },
                    "message.timestamp.before.max.ms" => unbounded(log.timestamp_before_max_ms),
                    "message.timestamp.after.max.ms" => unbounded(log.timestamp_after_max_ms),
                    _ => def.default.to_string(),
                };
                (name.to_string(), value, true)
            })
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
    topic_configs::find(name)
        .filter(|def| def.kind == topic_configs::Kind::List)
        .map(|def| def.default)
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
        assert!(TopicConfig::from_pairs([("cleanup.policy", "compact")]).is_ok());
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
        // As in Kafka 4.4 (the differential suite compares it): an empty cleanup.policy is
        // accepted, and then neither deletes nor compacts.
        let emptied = start.altered(&[subtract]).expect("an empty cleanup.policy");
        let broker = crate::config::ServeArgs::default().resolve().expect("defaults resolve");
        let log = emptied.log_config(&broker);
        assert!(
            log.compaction.is_none() && log.retention_ms.is_none() && log.retention_bytes.is_none()
        );
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
