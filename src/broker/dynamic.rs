//! Broker configs that change while brokers run (Kafka's dynamic broker configs), for the
//! defaults a broker gives its topics: `log.retention.ms`, `log.segment.bytes`,
//! `message.max.bytes`, `min.insync.replicas`, ... Each is the broker-wide default of one
//! topic config (its first synonym in Kafka's `ServerTopicConfigSynonyms`) and is checked by
//! that topic config's rules (`topic_configs`), so what a topic may set, a broker may default.
//!
//! Set cluster-wide (the resource named "") or per broker (named by its id; wins over the
//! cluster-wide value), kept in `<data_dir>/broker-configs.toml` on one broker and in the
//! cluster state in a cluster, and applied by every shard to every partition whose topic does
//! not override the config. Precedence, as in Kafka: topic override > per-broker dynamic >
//! cluster-wide dynamic > the broker's command line > the default.

use std::collections::BTreeMap;

use fjord_replication::DynamicBrokerConfigs;

use super::topic::ConfigChange;
use super::{throttle, topic_configs};

/// Kafka's DescribeConfigs sources of a broker value.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT: i8 = 3;

/// (broker config, the topic config it is the default of) for every broker config Fjord
/// changes while running: Kafka's `DynamicLogConfig.ReconfigurableConfigs`.
pub const DYNAMIC_LOG_CONFIGS: &[(&str, &str)] = &[
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.type", "compression.type"),
    ("compression.zstd.level", "compression.zstd.level"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.local.retention.bytes", "local.retention.bytes"),
    ("log.local.retention.ms", "local.retention.ms"),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.preallocate", "preallocate"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.retention.ms", "retention.ms"),
    ("log.roll.jitter.ms", "segment.jitter.ms"),
    ("log.roll.ms", "segment.ms"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.segment.delete.delay.ms", "file.delete.delay.ms"),
    ("max.decompressed.message.bytes", "max.decompressed.message.bytes"),
    ("message.max.bytes", "max.message.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
];

/// Broker configs Fjord changes while running that default no topic config: the
/// replication throttle rates (`throttle`), bytes per second, Kafka's LONG at least 0.
pub const DYNAMIC_BROKER_ONLY_CONFIGS: &[&str] = &[throttle::LEADER_RATE, throttle::FOLLOWER_RATE];

/// Configs one broker resource may hold.
pub const CONFIGS_PER_RESOURCE_MAX: usize = 1000;

/// The topic config a dynamic broker config is the default of.
pub fn topic_config_of(broker_name: &str) -> Option<&'static str> {
    DYNAMIC_LOG_CONFIGS.iter().find(|(b, _)| *b == broker_name).map(|(_, t)| *t)
}

/// The broker config that is the default of topic config `topic_name`, if dynamic.
pub fn broker_config_of(topic_name: &str) -> Option<&'static str> {
    DYNAMIC_LOG_CONFIGS.iter().find(|(_, t)| *t == topic_name).map(|(b, _)| *b)
}

/// Checks a broker resource's values after a change, as Kafka's
/// `DynamicBrokerConfig.validateConfigs` does: names that cannot change while the broker
/// runs first, then each value by its topic config's rules, in Kafka's words for the
/// broker config. `Err` is the message for INVALID_REQUEST.
pub fn check(values: &BTreeMap<String, String>) -> Result<(), String> {
    if values.len() > CONFIGS_PER_RESOURCE_MAX {
        return Err(format!(
            "a broker resource holds at most {CONFIGS_PER_RESOURCE_MAX} configs, not {}",
            values.len()
        ));
    }
    let fixed: Vec<&str> = values
        .keys()
        .map(String::as_str)
        .filter(|n| topic_config_of(n).is_none() && !DYNAMIC_BROKER_ONLY_CONFIGS.contains(n))
        .collect();
    if !fixed.is_empty() {
        return Err(format!("Cannot update these configs dynamically: [{}]", fixed.join(", ")));
    }
    for (name, value) in values {
        let Some(topic) = topic_config_of(name) else {
            check_rate(name, value)?;
            continue;
        };
        topic_configs::check(topic, value).map_err(|message| {
            message
                .replacen(&format!("configuration {topic}:"), &format!("configuration {name}:"), 1)
                .replacen(&format!("{topic}={value}"), &format!("{name}={value}"), 1)
        })?;
    }
    Ok(())
}

/// A throttle rate, as Kafka checks it: a LONG of at least 0.
fn check_rate(name: &str, value: &str) -> Result<(), String> {
    let invalid = |why: &str| format!("Invalid value {value} for configuration {name}: {why}");
    match value.trim().parse::<i64>() {
        Err(_) => Err(invalid("Not a number of type LONG")),
        Ok(rate) if rate < 0 => Err(invalid("Value must be at least 0")),
        Ok(_) => Ok(()),
    }
}

/// Whether APPEND and SUBTRACT may change `name`: a list config.
pub fn is_list(name: &str) -> bool {
    topic_config_of(name)
        .and_then(topic_configs::find)
        .is_some_and(|def| def.kind == topic_configs::Kind::List)
}

/// A broker resource's values after `changes` (AlterConfigs' `replace` starts from none),
/// each resulting value then checked (`check`). APPEND and SUBTRACT edit a list from its
/// current value, or its default when unset.
pub fn altered(
    current: &BTreeMap<String, String>,
    changes: &[ConfigChange],
    replace: bool,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = if replace { BTreeMap::new() } else { current.clone() };
    for change in changes {
        match change {
            ConfigChange::Set { name, value } => {
                values.insert(name.clone(), value.clone());
            }
            ConfigChange::Delete { name } => {
                values.remove(name);
            }
            ConfigChange::Append { name, value } | ConfigChange::Subtract { name, value } => {
                let default = topic_config_of(name)
                    .and_then(topic_configs::find)
                    .map_or("", |def| def.default);
                let now = values.get(name).map_or(default, String::as_str).to_string();
                let mut items: Vec<&str> = topic_configs::list_items(&now);
                let given = topic_configs::list_items(value);
                if matches!(change, ConfigChange::Append { .. }) {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                let joined = items.join(",");
                values.insert(name.clone(), joined);
            }
        }
    }
    check(&values)?;
    Ok(values)
}

/// The topic-config defaults broker `id` applies: the cluster-wide values, then its own,
/// under topic config names.
pub fn topic_defaults(configs: &DynamicBrokerConfigs, id: i32) -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::new();
    for values in [configs.of(None), configs.of(Some(id))] {
        for (name, value) in values {
            if let Some(topic) = topic_config_of(&name) {
                defaults.insert(topic.to_string(), value);
            }
        }
    }
    defaults
}

/// The broker config under which Kafka describes topic config `topic`'s built-in default
/// (the DEFAULT_CONFIG synonym), with that default: the broker config it defaults, except
/// where Kafka's default sits on a coarser unit (`log.retention.hours`) or on none.
pub fn default_synonym(topic: &str) -> Option<(&'static str, String)> {
    match topic {
        "retention.ms" => Some(("log.retention.hours", "168".to_string())),
        // Kafka defines these defaults on no synonym (`log.roll.hours` is not read through
        // the topic config's synonyms, `log.flush.interval.ms` has none), and lists none.
        "segment.ms" | "segment.jitter.ms" | "flush.ms" => None,
        // Tiered-storage defaults Kafka lists though they cannot change while it runs.
        "remote.copy.lag.bytes" => Some(("log.remote.copy.lag.bytes", "-1".to_string())),
        "remote.copy.lag.ms" => Some(("log.remote.copy.lag.ms", "0".to_string())),
        _ => {
            let broker = broker_config_of(topic)?;
            Some((broker, topic_configs::find(topic)?.default.to_string()))
        }
    }
}

/// Where broker `id`'s dynamic value of broker config `name` comes from: its own value
/// (DYNAMIC_BROKER_CONFIG) or the cluster-wide one (DYNAMIC_DEFAULT_BROKER_CONFIG).
pub fn dynamic_value(configs: &DynamicBrokerConfigs, id: i32, name: &str) -> Option<(String, i8)> {
    if let Some(value) = configs.per_broker.get(&id.to_string()).and_then(|v| v.get(name)) {
        return Some((value.clone(), SOURCE_DYNAMIC_BROKER));
    }
    configs.cluster_default.get(name).map(|value| (value.clone(), SOURCE_DYNAMIC_DEFAULT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_dynamic_config_defaults_a_topic_config_and_its_default_passes() {
        for (broker, topic) in DYNAMIC_LOG_CONFIGS {
            let def = topic_configs::find(topic).unwrap_or_else(|| panic!("{topic}"));
            assert_eq!(check(&values(&[(broker, def.default)])), Ok(()), "{broker}");
            assert_eq!(broker_config_of(topic), Some(*broker));
        }
    }

    #[test]
    fn refusals_name_the_broker_config_in_kafkas_words() {
        assert_eq!(
            check(&values(&[("num.partitions", "3"), ("auto.create.topics.enable", "false")])),
            Err("Cannot update these configs dynamically: [auto.create.topics.enable, num.partitions]"
                .to_string())
        );
        assert_eq!(
            check(&values(&[("log.retention.ms", "abc")])),
            Err("Invalid value abc for configuration log.retention.ms: Not a number of type LONG"
                .to_string())
        );
        assert_eq!(
            check(&values(&[("min.insync.replicas", "0")])),
            Err("Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
                .to_string())
        );
        assert_eq!(check(&values(&[(throttle::LEADER_RATE, "1000000")])), Ok(()));
        assert_eq!(
            check(&values(&[(throttle::FOLLOWER_RATE, "-1")])),
            Err("Invalid value -1 for configuration follower.replication.throttled.rate: Value must be at least 0"
                .to_string())
        );
        assert_eq!(check(&values(&[("log.cleanup.policy", "compact")])), Ok(()));
    }

    #[test]
    fn a_brokers_own_values_win_over_the_cluster_wide_ones() {
        let mut configs = DynamicBrokerConfigs::default();
        configs.set(None, values(&[("log.retention.ms", "1000"), ("log.segment.bytes", "2048")]));
        configs.set(Some(2), values(&[("log.retention.ms", "5000")]));
        let on_2 = topic_defaults(&configs, 2);
        assert_eq!(on_2, values(&[("retention.ms", "5000"), ("segment.bytes", "2048")]));
        assert_eq!(topic_defaults(&configs, 1)["retention.ms"], "1000");
        assert_eq!(
            dynamic_value(&configs, 2, "log.retention.ms"),
            Some(("5000".to_string(), SOURCE_DYNAMIC_BROKER))
        );
        assert_eq!(
            dynamic_value(&configs, 1, "log.retention.ms"),
            Some(("1000".to_string(), SOURCE_DYNAMIC_DEFAULT))
        );
        configs.set(Some(2), BTreeMap::new());
        assert!(configs.per_broker.is_empty(), "an emptied broker leaves no entry");
    }
}
