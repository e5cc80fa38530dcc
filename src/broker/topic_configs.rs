//! Every topic config Apache Kafka 4.4 defines (`LogConfig`), with its type, default and
//! Kafka's validator, and what Fjord does with it.
//!
//! A value is checked as Kafka checks it (the same messages, "Invalid value V for
//! configuration N: ...", answered as INVALID_CONFIG), then against what Fjord can honour:
//! - `Honoured`: applied as Kafka applies it.
//! - `NoEffect`: accepted, kept and described; it changes nothing here, as it changes nothing
//!   in Kafka under the same conditions (tiered-storage settings without tiered storage).

use fjord_storage::{
    batch::BATCH_HEADER_BYTES, BATCH_BYTES_LIMIT_MAX, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};

/// Kafka's `ConfigDef.Type`, as DescribeConfigs v3+ numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "BOOLEAN",
            Kind::String => "STRING",
            Kind::Int => "INT",
            Kind::Long => "LONG",
            Kind::Double => "DOUBLE",
            Kind::List => "LIST",
        }
    }
}

/// Kafka's validator of a config.
#[derive(Debug, Clone, Copy)]
enum Valid {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    /// `compression.gzip.level`: 1 to 9, or -1.
    GzipLevel,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
    /// `*.replication.throttled.replicas`: `*` or `partition:broker,...`.
    Throttled,
    /// A double between 0 and 1.
    Ratio,
}

/// What Fjord does with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Honoured,
    /// Accepted and kept without effect, and why that is what Kafka would do here.
    NoEffect(&'static str),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    /// Kafka 4.4's default, as DescribeConfigs writes it.
    pub default: &'static str,
    valid: Valid,
    pub support: Support,
}

const LONG_MAX: &str = "9223372036854775807";
const NO_TIERED_STORAGE: &str =
    "tiered-storage settings; Kafka ignores them while remote storage is off, as it always is in Fjord";

macro_rules! def {
    ($name:expr, $kind:ident, $default:expr, $valid:expr, $support:expr) => {
        Def { name: $name, kind: Kind::$kind, default: $default, valid: $valid, support: $support }
    };
}

/// The configs, in name order (as Kafka's tools list them); one table row each.
#[rustfmt::skip]
pub const TOPIC_CONFIGS: &[Def] = &[
    def!("cleanup.policy", List, "delete", Valid::ListOf(&["compact", "delete"]),
        Support::Honoured),
    def!("compression.gzip.level", Int, "-1", Valid::GzipLevel,
        Support::Honoured),
    def!("compression.lz4.level", Int, "9", Valid::Between(1, 17),
        Support::Honoured),
    def!("compression.type", String, "producer",
        Valid::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        Support::Honoured),
    def!("compression.zstd.level", Int, "3", Valid::Between(-131_072, 22),
        Support::Honoured),
    def!("delete.retention.ms", Long, "86400000", Valid::AtLeast(0), Support::Honoured),
    def!("errors.deadletterqueue.group.enable", Boolean, "false", Valid::Any,
        Support::NoEffect("a setting of Kafka's share and streams groups, which Fjord does not serve")),
    def!("file.delete.delay.ms", Long, "60000", Valid::AtLeast(0),
        Support::NoEffect("Fjord unlinks a deleted segment at once; a reader that has it open keeps reading it")),
    def!("flush.messages", Long, LONG_MAX, Valid::AtLeast(1), Support::Honoured),
    def!("flush.ms", Long, LONG_MAX, Valid::AtLeast(0), Support::Honoured),
    def!("follower.replication.throttled.replicas", List, "", Valid::Throttled,
        Support::Honoured),
    def!("index.interval.bytes", Int, "4096", Valid::AtLeast(0), Support::Honoured),
    def!("leader.replication.throttled.replicas", List, "", Valid::Throttled,
        Support::Honoured),
    def!("local.retention.bytes", Long, "-2", Valid::AtLeast(-2), Support::NoEffect(NO_TIERED_STORAGE)),
    def!("local.retention.ms", Long, "-2", Valid::AtLeast(-2), Support::NoEffect(NO_TIERED_STORAGE)),
    def!("max.compaction.lag.ms", Long, LONG_MAX, Valid::AtLeast(1), Support::Honoured),
    def!("max.decompressed.message.bytes", Int, "2147483639", Valid::AtLeast(1),
        Support::NoEffect("Fjord decompresses a producer's batch only to recompress it (compression.type), at most 64 MiB of records")),
    def!("max.message.bytes", Int, "1048588",
        Valid::Between(BATCH_HEADER_BYTES as i64, BATCH_BYTES_LIMIT_MAX as i64), Support::Honoured),
    def!("message.timestamp.after.max.ms", Long, "3600000", Valid::AtLeast(0), Support::Honoured),
    def!("message.timestamp.before.max.ms", Long, LONG_MAX, Valid::AtLeast(0), Support::Honoured),
    def!("message.timestamp.type", String, "CreateTime", Valid::OneOf(&["CreateTime", "LogAppendTime"]),
        Support::Honoured),
    def!("min.cleanable.dirty.ratio", Double, "0.5", Valid::Ratio, Support::Honoured),
    def!("min.compaction.lag.ms", Long, "0", Valid::AtLeast(0), Support::Honoured),
    def!("min.insync.replicas", Int, "1", Valid::AtLeast(1), Support::Honoured),
    def!("preallocate", Boolean, "false", Valid::Any, Support::Honoured),
    def!("remote.copy.lag.bytes", Long, "-1", Valid::AtLeast(-1), Support::NoEffect(NO_TIERED_STORAGE)),
    def!("remote.copy.lag.ms", Long, "0", Valid::AtLeast(-1), Support::NoEffect(NO_TIERED_STORAGE)),
    def!("remote.log.copy.disable", Boolean, "false", Valid::Any, Support::NoEffect(NO_TIERED_STORAGE)),
    def!("remote.log.delete.on.disable", Boolean, "false", Valid::Any, Support::NoEffect(NO_TIERED_STORAGE)),
    def!("remote.storage.enable", Boolean, "false", Valid::Any, Support::NoEffect(NO_TIERED_STORAGE)),
    def!("retention.bytes", Long, "-1", Valid::Any, Support::Honoured),
    def!("retention.ms", Long, "604800000", Valid::AtLeast(-1), Support::Honoured),
    def!("segment.bytes", Int, "1073741824",
        Valid::Between(SEGMENT_BYTES_MIN as i64, SEGMENT_BYTES_MAX as i64), Support::Honoured),
    def!("segment.index.bytes", Int, "10485760", Valid::AtLeast(4),
        Support::NoEffect("Fjord's offset index grows with its segment instead of being preallocated")),
    def!("segment.jitter.ms", Long, "0", Valid::AtLeast(0), Support::Honoured),
    def!("segment.ms", Long, "604800000", Valid::AtLeast(1), Support::Honoured),
    def!("unclean.leader.election.enable", Boolean, "false", Valid::Any, Support::Honoured),
];

/// The config named `name`, if Kafka defines it for topics.
pub fn find(name: &str) -> Option<&'static Def> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Kafka's message for a value its validator refuses.
fn invalid(name: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("Invalid value {value} for configuration {name}: {why}")
}

/// Parses an integer config as Kafka does (surrounding spaces allowed).
pub fn parse_number(def: &Def, value: &str) -> Result<i64, String> {
    let trimmed = value.trim();
    let parsed = match def.kind {
        Kind::Int => trimmed.parse::<i32>().map(i64::from).ok(),
        _ => trimmed.parse::<i64>().ok(),
    };
    parsed.ok_or_else(|| {
        invalid(def.name, value, format!("Not a number of type {}", def.kind.name()))
    })
}

/// Parses a boolean config as Kafka does: `true` or `false`, any case.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "Expected value to be either true or false")),
    }
}

impl Def {
    /// Kafka's check of `value`.
    fn check_kafka(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        match self.kind {
            Kind::Boolean => parse_bool(name, value).map(|_| ()),
            Kind::Double => {
                let parsed: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "Not a number of type DOUBLE"))?;
                if matches!(self.valid, Valid::Ratio) && !(0.0..=1.0).contains(&parsed) {
                    let why = if parsed < 0.0 {
                        "Value must be at least 0"
                    } else {
                        "Value must be no more than 1"
                    };
                    return Err(invalid(name, value, why));
                }
                Ok(())
            }
            Kind::Int | Kind::Long => {
                let n = parse_number(self, value)?;
                match self.valid {
                    Valid::AtLeast(min) if n < min => {
                        Err(invalid(name, value, format!("Value must be at least {min}")))
                    }
                    Valid::Between(min, _) if n < min => {
                        Err(invalid(name, value, format!("Value must be at least {min}")))
                    }
                    Valid::Between(_, max) if n > max => {
                        Err(invalid(name, value, format!("Value must be no more than {max}")))
                    }
                    Valid::GzipLevel if n != -1 && !(1..=9).contains(&n) => {
                        Err(invalid(name, value, "Value must be between 1 and 9 or equal to -1"))
                    }
                    _ => Ok(()),
                }
            }
            Kind::String => match self.valid {
                Valid::OneOf(allowed) if !allowed.contains(&value.trim()) => Err(invalid(
                    name,
                    value,
                    format!("String must be one of: {}", allowed.join(", ")),
                )),
                _ => Ok(()),
            },
            Kind::List => {
                let items = list_items(value);
                match self.valid {
                    Valid::ListOf(allowed) => {
                        match items.iter().find(|item| !allowed.contains(item)) {
                            Some(_) => Err(invalid(
                                name,
                                value,
                                format!("String must be one of: {}", allowed.join(", ")),
                            )),
                            None => Ok(()),
                        }
                    }
                    Valid::Throttled => {
                        let pair = |item: &&str| {
                            item.split_once(':').is_some_and(|(p, b)| {
                                p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                            })
                        };
                        if items == ["*"] || items.iter().all(pair) {
                            Ok(())
                        } else {
                            Err(invalid(name, value, format!("{name} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...")))
                        }
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// A list config's items: comma-separated, trimmed, empty ones dropped.
pub fn list_items(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).collect()
}

/// Checks one topic config as Kafka does; `Err` is the message for INVALID_CONFIG.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    let Some(def) = find(name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    def.check_kafka(value)?;
    if name == "remote.storage.enable" && parse_bool(name, value)? {
        return Err("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.".to_string());
    }
    Ok(())
}

/// Kafka's check across configs: the compaction lags in order.
pub fn check_together(get: impl Fn(&str) -> Option<i64>) -> Result<(), String> {
    let min = get("min.compaction.lag.ms").unwrap_or(0);
    let max = get("max.compaction.lag.ms").unwrap_or(i64::MAX);
    if min > max {
        return Err(format!(
            "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_in_name_order_and_every_default_passes_its_own_check() {
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 37, "Kafka 4.4 defines 37 topic configs");
        for def in TOPIC_CONFIGS {
            assert_eq!(check(def.name, def.default), Ok(()), "{}", def.name);
        }
    }

    #[test]
    fn values_are_refused_with_kafkas_messages() {
        let refused = |name: &str, value: &str| check(name, value).unwrap_err();
        assert_eq!(
            refused("retention.ms", "-2"),
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        assert_eq!(
            refused("max.decompressed.message.bytes", "x"),
            "Invalid value x for configuration max.decompressed.message.bytes: Not a number of type INT"
        );
        assert_eq!(
            refused("compression.gzip.level", "12"),
            "Invalid value 12 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"
        );
        assert_eq!(
            refused("cleanup.policy", "foo"),
            "Invalid value foo for configuration cleanup.policy: String must be one of: compact, delete"
        );
        assert_eq!(
            refused("errors.deadletterqueue.group.enable", "maybe"),
            "Invalid value maybe for configuration errors.deadletterqueue.group.enable: Expected value to be either true or false"
        );
        assert_eq!(refused("no.such.config", "1"), "Unknown topic config name: no.such.config");
        assert!(refused("remote.storage.enable", "true")
            .starts_with("Tiered Storage functionality is disabled"));
        assert!(
            refused("min.cleanable.dirty.ratio", "1.5").ends_with("Value must be no more than 1")
        );
        assert!(refused("leader.replication.throttled.replicas", "0:x").contains("literal '*'"));
    }

    #[test]
    fn values_fjord_honours_pass() {
        for (name, value) in [
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", "delete"),
            ("compression.type", "producer"),
            ("compression.type", "zstd"),
            ("message.timestamp.type", "LogAppendTime"),
            ("unclean.leader.election.enable", "FALSE"),
            ("unclean.leader.election.enable", "true"),
            ("flush.messages", "1"),
            ("flush.messages", "10"),
            ("segment.jitter.ms", "100"),
            ("flush.ms", "1000"),
            ("min.compaction.lag.ms", "5"),
            ("compression.zstd.level", "-5"),
            ("local.retention.ms", "1000"),
            ("leader.replication.throttled.replicas", ""),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1,1:2"),
        ] {
            assert_eq!(check(name, value), Ok(()), "{name}={value}");
        }
        assert!(
            check_together(|n| (n == "min.compaction.lag.ms").then_some(10).or(Some(5))).is_err()
        );
    }
}
