//! Broker configuration: flags, an optional TOML file, and embedded defaults, merged in two
//! phases (raw values, then one validated `BrokerConfig`). Flags win over the file, the file
//! wins over the defaults. Every limit is checked here, once, at startup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest request frame accepted by default (Kafka's `socket.request.max.bytes`).
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 100 * 1024 * 1024;
/// A request frame may not announce more than this, whatever the config says: bounds the
/// memory one connection can make the broker allocate.
pub const REQUEST_BYTES_LIMIT_MAX: u64 = 1024 * 1024 * 1024;
/// Partitions one topic may have: bounds open files and memory per CreateTopics call.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// Topics one broker holds.
pub const TOPICS_MAX: usize = 10_000;
/// How far ahead of the broker's clock a producer's timestamp may be, by default
/// (Kafka 4.4's `log.message.timestamp.after.max.ms`); a topic may change it.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: u64 = 3_600_000;

/// The free-space floor under which produce is refused: room for a few segments' worth
/// of replica, index and checkpoint writes and the offsets topic.
pub const LOG_DIR_FREE_BYTES_MIN_DEFAULT: u64 = 64 * 1024 * 1024;

/// Cleaner threads at most (`log.cleaner.threads`).
pub const LOG_CLEANER_THREADS_MAX: usize = 16;
/// Least and most bytes of the cleaner's maps (`log.cleaner.dedupe.buffer.size`).
pub const LOG_CLEANER_DEDUPE_BYTES_MIN: u64 = 1024 * 1024;
pub const LOG_CLEANER_DEDUPE_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Largest `offsets.retention.minutes` (Kafka takes an int: 2^31 - 1 minutes).
pub const OFFSETS_RETENTION_MINUTES_MAX: u64 = i32::MAX as u64;

/// The settings of a running broker, validated.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// Host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub data_dir: PathBuf,
    pub broker_id: i32,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub request_bytes_max: u64,
    /// Threads, each with its own io_uring runtime and share of the partitions.
    pub shards: usize,
    /// Bytes of requests held in memory at once, across all connections; beyond it the
    /// broker stops reading and clients are slowed by TCP backpressure.
    pub request_memory_max: u64,
    /// Produce is refused (KAFKA_STORAGE_ERROR) while a data directory's file system has
    /// fewer bytes free, keeping room for replicas, checkpoints and the offsets topic.
    pub log_dir_free_bytes_min: u64,
    /// Open client connections; more are accepted and closed at once with a log line.
    pub connections_max: usize,
    /// Open connections from one client address (Kafka's `max.connections.per.ip`); more
    /// are closed at once with a log line. Unlimited (`connections_max`) by default, as Kafka.
    pub connections_max_per_ip: usize,
    /// Per-address exceptions to `connections_max_per_ip` (`max.connections.per.ip.overrides`).
    pub connections_max_per_ip_overrides: std::collections::HashMap<std::net::IpAddr, usize>,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub retention_check_interval_ms: u64,
    /// fdatasync every partition at this interval; `None` leaves it to acks=all and the OS.
    pub flush_interval_ms: Option<u64>,
    /// Whether an acks=all produce waits for fdatasync before it is acknowledged.
    pub fsync_acks_all: bool,
    /// Whether active segments reserve disk blocks ahead of their end (Kafka's
    /// `log.preallocate`, off by default as in Kafka; `LogConfig::preallocate`).
    pub log_preallocate: bool,
    pub message_max_bytes: u64,
    pub min_insync_replicas: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_initial_rebalance_delay_ms: u64,
    pub offsets_retention_minutes: u64,
    pub offsets_retention_check_interval_ms: u64,
    pub offsets_topic_partitions: i32,
    /// Partitions of `__transaction_state` when it is first created.
    pub transaction_state_partitions: i32,
    /// The longest transaction timeout a producer may ask for (`transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    /// How long a transactional id without transactions is kept
    /// (`transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: u64,
    /// How often open transactions are checked against their timeout
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub transaction_check_interval_ms: u64,
    /// The finalized level of the `transaction.version` feature clients are told: 2 lets
    /// them use transactions v2 (KIP-890 part 2), 0 keeps them on v1.
    pub transaction_version: i16,
    /// The cluster file when running as one broker of a cluster.
    pub cluster: Option<PathBuf>,
    /// A follower that has not caught up for this long leaves the in-sync set.
    pub replica_lag_time_max_ms: u64,
    /// How often the controller gives partitions back to their preferred leaders (Kafka's
    /// `auto.leader.rebalance.enable` and `leader.imbalance.check.interval.seconds`); `None`:
    /// never.
    pub leader_rebalance_interval_ms: Option<u64>,
    /// Threads that clean compacted partitions (Kafka's `log.cleaner.threads`).
    pub log_cleaner_threads: usize,
    /// Bytes per second the cleaner threads read and write together at most
    /// (`log.cleaner.io.max.bytes.per.second`); `None`: unbounded, as Kafka's default.
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Bytes of key -> offset maps the cleaner threads hold together at most
    /// (`log.cleaner.dedupe.buffer.size`), shared out evenly.
    pub log_cleaner_dedupe_buffer_size: u64,
}

/// Values from the TOML file; every field optional. Names match the long flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub advertised_host: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub broker_id: Option<i32>,
    pub auto_create_topics: Option<bool>,
    pub num_partitions: Option<i32>,
    pub request_bytes_max: Option<u64>,
    pub request_memory_max: Option<u64>,
    pub log_dir_free_bytes_min: Option<u64>,
    pub shards: Option<usize>,
    pub connections_max: Option<usize>,
    pub connections_max_per_ip: Option<usize>,
    pub connections_max_per_ip_overrides: Option<String>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub retention_check_interval_ms: Option<u64>,
    pub flush_interval_ms: Option<u64>,
    pub fsync_acks_all: Option<bool>,
    pub log_preallocate: Option<bool>,
    pub message_max_bytes: Option<u64>,
    pub min_insync_replicas: Option<i32>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub group_initial_rebalance_delay_ms: Option<u64>,
    pub offsets_retention_minutes: Option<u64>,
    pub offsets_retention_check_interval_ms: Option<u64>,
    pub offsets_topic_partitions: Option<i32>,
    pub transaction_state_partitions: Option<i32>,
    pub transaction_max_timeout_ms: Option<i32>,
    pub transactional_id_expiration_ms: Option<u64>,
    pub transaction_check_interval_ms: Option<u64>,
    pub transaction_version: Option<i16>,
    pub cluster: Option<PathBuf>,
    pub replica_lag_time_max_ms: Option<u64>,
    pub auto_leader_rebalance_enable: Option<bool>,
    pub leader_imbalance_check_interval_ms: Option<u64>,
    pub log_cleaner_threads: Option<usize>,
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
}

/// `fjord serve` flags: the first phase, before merging and validation.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Host name given to clients in Metadata [default: the listen host].
    #[arg(long, value_name = "HOST")]
    pub advertised_host: Option<String>,
    /// Directory for partition logs and metadata [default: ./fjord-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of these settings (kebab-case keys, e.g. `retention-ms = 3600000`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This broker's id [default: 0].
    #[arg(long)]
    pub broker_id: Option<i32>,
    /// Create unknown topics when a client asks for their metadata [default: true].
    #[arg(long, value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic or of a CreateTopics without a count [default: 1].
    #[arg(long)]
    pub num_partitions: Option<i32>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(long)]
    pub request_bytes_max: Option<u64>,
    /// Threads serving requests, each with its own io_uring runtime and share of the
    /// partitions [default: the number of CPUs].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Bytes of requests held in memory at once, all connections together; more waits
    /// (backpressure) [default: 536870912].
    #[arg(long)]
    pub request_memory_max: Option<u64>,
    /// Produce is refused while the data directory's file system has fewer bytes free,
    /// keeping room for replicas, checkpoints and the offsets topic [default: 67108864].
    #[arg(long)]
    pub log_dir_free_bytes_min: Option<u64>,
    /// Most client connections open at once [default: 10000].
    #[arg(long)]
    pub connections_max: Option<usize>,
    /// Most connections open at once from one client address (Kafka's
    /// `max.connections.per.ip`) [default: no limit beyond --connections-max].
    #[arg(long)]
    pub connections_max_per_ip: Option<usize>,
    /// Exceptions to --connections-max-per-ip, as `IP:COUNT,IP:COUNT` (Kafka's
    /// `max.connections.per.ip.overrides`; addresses, not host names).
    #[arg(long, value_name = "IP:COUNT,...")]
    pub connections_max_per_ip_overrides: Option<String>,
    /// Default segment size in bytes (`segment.bytes`) [default: 1073741824].
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Default segment age before a roll, ms (`segment.ms`) [default: 604800000].
    #[arg(long)]
    pub segment_ms: Option<u64>,
    /// Default retention by time, ms; -1 keeps forever (`retention.ms`) [default: 604800000].
    #[arg(long, allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Default retention by size per partition, bytes; -1 keeps all (`retention.bytes`) [default: -1].
    #[arg(long, allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// How often retention runs, ms [default: 300000].
    #[arg(long)]
    pub retention_check_interval_ms: Option<u64>,
    /// fdatasync all partitions at this interval, ms [default: none].
    #[arg(long)]
    pub flush_interval_ms: Option<u64>,
    /// Wait for fdatasync before acknowledging acks=all produces [default: true].
    #[arg(long, value_name = "BOOL")]
    pub fsync_acks_all: Option<bool>,
    /// Reserve disk blocks ahead of the active segments' ends (Kafka's `log.preallocate`;
    /// the topic config `preallocate` overrides it) [default: false].
    #[arg(long, value_name = "BOOL")]
    pub log_preallocate: Option<bool>,
    /// Threads cleaning compacted partitions (`log.cleaner.threads`) [default: 1].
    #[arg(long)]
    pub log_cleaner_threads: Option<usize>,
    /// Bytes per second the cleaner reads and writes at most
    /// (`log.cleaner.io.max.bytes.per.second`) [default: unbounded].
    #[arg(long)]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Bytes of the cleaner's key -> offset maps (`log.cleaner.dedupe.buffer.size`)
    /// [default: 134217728].
    #[arg(long)]
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    /// Largest record batch accepted, bytes (`max.message.bytes`) [default: 1048588].
    #[arg(long)]
    pub message_max_bytes: Option<u64>,
    /// Default `min.insync.replicas` [default: 1].
    #[arg(long)]
    pub min_insync_replicas: Option<i32>,
    /// Shortest session timeout a consumer may ask for, ms [default: 6000].
    #[arg(long)]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Longest session timeout a consumer may ask for, ms [default: 1800000].
    #[arg(long)]
    pub group_max_session_timeout_ms: Option<i32>,
    /// How long a new group's first rebalance waits for more members, ms [default: 1000].
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// How long the committed offsets of a group nobody reads are kept, minutes
    /// (`offsets.retention.minutes`: an empty group's since it became empty, a standalone
    /// consumer's since each commit) [default: 10080, 7 days].
    #[arg(long)]
    pub offsets_retention_minutes: Option<u64>,
    /// How often committed offsets are checked for expiry, ms
    /// (`offsets.retention.check.interval.ms`) [default: 600000].
    #[arg(long)]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// Partitions of `__consumer_offsets` when it is first created [default: 8].
    #[arg(long)]
    pub offsets_topic_partitions: Option<i32>,
    /// Partitions of `__transaction_state` when it is first created (at the first
    /// transactional producer) [default: 50].
    #[arg(long)]
    pub transaction_state_partitions: Option<i32>,
    /// The longest transaction timeout a producer may ask for, ms
    /// (`transaction.max.timeout.ms`) [default: 900000].
    #[arg(long)]
    pub transaction_max_timeout_ms: Option<i32>,
    /// How long a transactional id without transactions is kept, ms
    /// (`transactional.id.expiration.ms`) [default: 604800000, 7 days].
    #[arg(long)]
    pub transactional_id_expiration_ms: Option<u64>,
    /// How often open transactions are checked against their timeout, ms (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`) [default: 10000].
    #[arg(long)]
    pub transaction_check_interval_ms: Option<u64>,
    /// The `transaction.version` feature level clients are told (0, 1 or 2): 2 lets
    /// producers use transactions v2 (KIP-890 part 2, the epoch bumped at every end), as
    /// Kafka 4 does [default: 2].
    #[arg(long)]
    pub transaction_version: Option<i16>,
    /// Run as one broker of the cluster described by this file (see `fjord cluster up`);
    /// the listen address and data dir then come from the file's entry for --broker-id.
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// A follower that has not caught up for this long leaves the in-sync set, ms [default: 10000].
    #[arg(long)]
    pub replica_lag_time_max_ms: Option<u64>,
    /// In a cluster, give partitions back to their preferred (first) replica once it is in
    /// sync again, every --leader-imbalance-check-interval-ms [default: true].
    #[arg(long, value_name = "BOOL")]
    pub auto_leader_rebalance_enable: Option<bool>,
    /// How often the preferred-leader rebalance runs, ms [default: 300000].
    #[arg(long)]
    pub leader_imbalance_check_interval_ms: Option<u64>,
}

/// Shards at most: one per core on any machine Fjord expects.
pub const SHARDS_MAX: usize = 256;

/// One shard per CPU this process may run on (its affinity mask), at most `SHARDS_MAX`.
fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, SHARDS_MAX)
}

/// A setting the broker cannot start with; the message names the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error(transparent)]
    Cluster(#[from] fjord_replication::ReplicationError),
    #[error(transparent)]
    Log(#[from] fjord_storage::StorageError),
    /// A flag or value out of its range, as the user reads it.
    #[error("{0}")]
    Invalid(String),
}

/// Returns `ConfigError::Invalid` with the formatted message.
macro_rules! invalid {
    ($($message:tt)*) => {
        return Err(ConfigError::Invalid(format!($($message)*)))
    };
}

fn optional_limit(name: &str, value: i64) -> Result<Option<u64>, ConfigError> {
    match value {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        v => invalid!("{name} must be -1 or at least 0, got {v}"),
    }
}

impl ServeArgs {
    /// Merges flags, the TOML file and defaults into a validated config.
    pub fn resolve(&self) -> Result<BrokerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let cluster_path = self.cluster.clone().or(file.cluster.clone());
        let broker_id = self.broker_id.or(file.broker_id).unwrap_or(0);
        let cluster_file = match &cluster_path {
            Some(path) => Some(fjord_replication::ClusterFile::load(path)?),
            None => None,
        };
        let entry = match &cluster_file {
            Some(c) => Some(c.broker(broker_id).cloned().ok_or_else(|| {
                ConfigError::Invalid(format!("broker id {broker_id} is not in the cluster file"))
            })?),
            None => None,
        };
        let listen_text = self
            .listen
            .clone()
            .or_else(|| entry.as_ref().map(|e| e.address.clone()))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|error| {
            ConfigError::Invalid(format!(
                "--listen {listen_text:?} is not an ADDR:PORT such as 127.0.0.1:9092: {error}"
            ))
        })?;
        let advertised_host =
            self.advertised_host.clone().or(file.advertised_host).unwrap_or_else(|| {
                if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    listen.ip().to_string()
                }
            });
        let config = BrokerConfig {
            listen,
            advertised_host,
            advertised_port: listen.port(),
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| cluster_file.as_ref().and_then(|c| c.data_dir(broker_id)))
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./fjord-data")),
            broker_id,
            auto_create_topics: self.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            num_partitions: self.num_partitions.or(file.num_partitions).unwrap_or(1),
            request_bytes_max: self
                .request_bytes_max
                .or(file.request_bytes_max)
                .unwrap_or(REQUEST_BYTES_MAX_DEFAULT),
            connections_max: self.connections_max.or(file.connections_max).unwrap_or(10_000),
            connections_max_per_ip: self
                .connections_max_per_ip
                .or(file.connections_max_per_ip)
                .unwrap_or(usize::MAX),
            connections_max_per_ip_overrides: parse_ip_overrides(
                self.connections_max_per_ip_overrides
                    .as_deref()
                    .or(file.connections_max_per_ip_overrides.as_deref())
                    .unwrap_or(""),
            )?,
            request_memory_max: self
                .request_memory_max
                .or(file.request_memory_max)
                .unwrap_or(512 * 1024 * 1024),
            log_dir_free_bytes_min: self
                .log_dir_free_bytes_min
                .or(file.log_dir_free_bytes_min)
                .unwrap_or(LOG_DIR_FREE_BYTES_MIN_DEFAULT),
            // One per CPU by default.
            shards: self.shards.or(file.shards).unwrap_or_else(default_shards),
            segment_bytes: self.segment_bytes.or(file.segment_bytes).unwrap_or(1024 * 1024 * 1024),
            segment_ms: self.segment_ms.or(file.segment_ms).unwrap_or(7 * 24 * 3600 * 1000),
            retention_ms: optional_limit(
                "retention-ms",
                self.retention_ms.or(file.retention_ms).unwrap_or(7 * 24 * 3600 * 1000),
            )?,
            retention_bytes: optional_limit(
                "retention-bytes",
                self.retention_bytes.or(file.retention_bytes).unwrap_or(-1),
            )?,
            retention_check_interval_ms: self
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(300_000),
            flush_interval_ms: self.flush_interval_ms.or(file.flush_interval_ms),
            fsync_acks_all: self.fsync_acks_all.or(file.fsync_acks_all).unwrap_or(true),
            log_preallocate: self.log_preallocate.or(file.log_preallocate).unwrap_or(false),
            message_max_bytes: self
                .message_max_bytes
                .or(file.message_max_bytes)
                .unwrap_or(1024 * 1024 + 12),
            min_insync_replicas: self
                .min_insync_replicas
                .or(file.min_insync_replicas)
                .or(cluster_file.as_ref().map(|c| c.min_insync_replicas))
                .unwrap_or(1),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .or(file.group_min_session_timeout_ms)
                .unwrap_or(6000),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .or(file.group_max_session_timeout_ms)
                .unwrap_or(1_800_000),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(1000),
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes)
                .unwrap_or(10_080),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .or(file.offsets_retention_check_interval_ms)
                .unwrap_or(600_000),
            offsets_topic_partitions: self
                .offsets_topic_partitions
                .or(file.offsets_topic_partitions)
                .unwrap_or(8),
            transaction_state_partitions: self
                .transaction_state_partitions
                .or(file.transaction_state_partitions)
                .unwrap_or(50),
            transaction_max_timeout_ms: self
                .transaction_max_timeout_ms
                .or(file.transaction_max_timeout_ms)
                .unwrap_or(900_000),
            transactional_id_expiration_ms: self
                .transactional_id_expiration_ms
                .or(file.transactional_id_expiration_ms)
                .unwrap_or(604_800_000),
            transaction_check_interval_ms: self
                .transaction_check_interval_ms
                .or(file.transaction_check_interval_ms)
                .unwrap_or(10_000),
            transaction_version: self
                .transaction_version
                .or(file.transaction_version)
                .unwrap_or(crate::protocol::TRANSACTION_VERSION_MAX),
            cluster: cluster_path,
            replica_lag_time_max_ms: self
                .replica_lag_time_max_ms
                .or(file.replica_lag_time_max_ms)
                .unwrap_or(10_000),
            log_cleaner_threads: self.log_cleaner_threads.or(file.log_cleaner_threads).unwrap_or(1),
            log_cleaner_io_max_bytes_per_second: self
                .log_cleaner_io_max_bytes_per_second
                .or(file.log_cleaner_io_max_bytes_per_second),
            log_cleaner_dedupe_buffer_size: self
                .log_cleaner_dedupe_buffer_size
                .or(file.log_cleaner_dedupe_buffer_size)
                .unwrap_or(128 * 1024 * 1024),
            leader_rebalance_interval_ms: self
                .auto_leader_rebalance_enable
                .or(file.auto_leader_rebalance_enable)
                .unwrap_or(true)
                .then(|| {
                    self.leader_imbalance_check_interval_ms
                        .or(file.leader_imbalance_check_interval_ms)
                        .unwrap_or(300_000)
                }),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `IP:COUNT,IP:COUNT` (IPv6 as `[::1]:COUNT`) into a map; empty is none.
fn parse_ip_overrides(
    text: &str,
) -> Result<std::collections::HashMap<std::net::IpAddr, usize>, ConfigError> {
    let mut overrides = std::collections::HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (ip, count) = entry.rsplit_once(':').ok_or_else(|| {
            ConfigError::Invalid(format!(
                "connections-max-per-ip-overrides: {entry:?} is not IP:COUNT"
            ))
        })?;
        let ip: std::net::IpAddr =
            ip.trim_start_matches('[').trim_end_matches(']').parse().map_err(|error| {
                ConfigError::Invalid(format!(
                    "connections-max-per-ip-overrides: {ip:?} is not an IP address: {error}"
                ))
            })?;
        let count: usize = count.parse().map_err(|error| {
            ConfigError::Invalid(format!(
                "connections-max-per-ip-overrides: {count:?} is not a count: {error}"
            ))
        })?;
        overrides.insert(ip, count);
    }
    Ok(overrides)
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
}

impl BrokerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.broker_id < 0 {
            invalid!("broker-id must be at least 0, got {}", self.broker_id);
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&self.num_partitions) {
            invalid!(
                "num-partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {}",
                self.num_partitions
            );
        }
        if !(1024..=REQUEST_BYTES_LIMIT_MAX).contains(&self.request_bytes_max) {
            invalid!(
                "request-bytes-max must be between 1 KiB and 1 GiB, got {}",
                self.request_bytes_max
            );
        }
        if self.request_memory_max < self.request_bytes_max + 4 || self.request_memory_max > 1 << 40
        {
            invalid!("request-memory-max ({}) must hold at least one request of request-bytes-max ({}) and at most 1 TiB", self.request_memory_max, self.request_bytes_max);
        }
        if !(1..=SHARDS_MAX).contains(&self.shards) {
            invalid!("shards must be between 1 and {}, got {}", SHARDS_MAX, self.shards);
        }
        if self.connections_max == 0 || self.connections_max > 1_000_000 {
            invalid!("connections-max must be between 1 and 1000000, got {}", self.connections_max);
        }
        if self.connections_max_per_ip == 0 {
            invalid!("connections-max-per-ip must be at least 1");
        }
        if !(1..=LOG_CLEANER_THREADS_MAX).contains(&self.log_cleaner_threads) {
            invalid!(
                "log-cleaner-threads must be between 1 and {LOG_CLEANER_THREADS_MAX}, got {}",
                self.log_cleaner_threads
            );
        }
        if self.log_cleaner_io_max_bytes_per_second == Some(0) {
            invalid!("log-cleaner-io-max-bytes-per-second must be at least 1");
        }
        if !(LOG_CLEANER_DEDUPE_BYTES_MIN..=LOG_CLEANER_DEDUPE_BYTES_MAX)
            .contains(&self.log_cleaner_dedupe_buffer_size)
        {
            invalid!(
                "log-cleaner-dedupe-buffer-size must be between {LOG_CLEANER_DEDUPE_BYTES_MIN} and {LOG_CLEANER_DEDUPE_BYTES_MAX}, got {}",
                self.log_cleaner_dedupe_buffer_size
            );
        }
        if self.retention_check_interval_ms == 0 {
            invalid!("retention-check-interval-ms must be at least 1");
        }
        if self.flush_interval_ms == Some(0) {
            invalid!("flush-interval-ms must be at least 1");
        }
        if self.group_min_session_timeout_ms < 1
            || self.group_max_session_timeout_ms < self.group_min_session_timeout_ms
        {
            invalid!(
                "group session timeouts must satisfy 1 <= min ({}) <= max ({})",
                self.group_min_session_timeout_ms,
                self.group_max_session_timeout_ms
            );
        }
        if self.group_initial_rebalance_delay_ms > 300_000 {
            invalid!("group-initial-rebalance-delay-ms must be at most 300000");
        }
        // Kafka's bounds: at least 1 each (and minutes that fit in ms).
        if !(1..=OFFSETS_RETENTION_MINUTES_MAX).contains(&self.offsets_retention_minutes) {
            invalid!(
                "offsets-retention-minutes must be between 1 and {OFFSETS_RETENTION_MINUTES_MAX}, got {}",
                self.offsets_retention_minutes
            );
        }
        if self.offsets_retention_check_interval_ms < 1 {
            invalid!("offsets-retention-check-interval-ms must be at least 1");
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            invalid!(
                "offsets-topic-partitions must be between 1 and 1000, got {}",
                self.offsets_topic_partitions
            );
        }
        if !(1..=1000).contains(&self.transaction_state_partitions) {
            invalid!(
                "transaction-state-partitions must be between 1 and 1000, got {}",
                self.transaction_state_partitions
            );
        }
        if !(0..=crate::protocol::TRANSACTION_VERSION_MAX).contains(&self.transaction_version) {
            invalid!(
                "transaction-version must be between 0 and {}, got {}",
                crate::protocol::TRANSACTION_VERSION_MAX,
                self.transaction_version
            );
        }
        if self.transaction_max_timeout_ms < 1 {
            invalid!("transaction-max-timeout-ms must be at least 1");
        }
        if self.transactional_id_expiration_ms < 1 || self.transaction_check_interval_ms < 1 {
            invalid!("transactional-id-expiration-ms and transaction-check-interval-ms must be at least 1");
        }
        if self.min_insync_replicas < 1 {
            invalid!("min-insync-replicas must be at least 1");
        }
        self.default_log_config().validate()?;
        Ok(())
    }

    /// The log settings a topic gets when it sets none of its own.
    pub fn default_log_config(&self) -> fjord_storage::LogConfig {
        fjord_storage::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            segment_jitter_ms: 0,
            index_interval_bytes: 4096.min(self.segment_bytes),
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            flush: match self.flush_interval_ms {
                Some(ms) => fjord_storage::FlushPolicy::IntervalMs(ms),
                None => fjord_storage::FlushPolicy::Never,
            },
            flush_messages: None,
            batch_bytes_max: self.message_max_bytes,
            free_bytes_min: self.log_dir_free_bytes_min,
            preallocate: self.log_preallocate,
            // Kafka 4.4's defaults (`log.message.timestamp.before.max.ms` unbounded,
            // `log.message.timestamp.after.max.ms` one hour, KIP-1030).
            timestamp_before_max_ms: None,
            timestamp_after_max_ms: Some(TIMESTAMP_AFTER_MAX_MS_DEFAULT),
            log_append_time: false,
            compaction: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_default_to_the_cpus_and_can_be_chosen() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let defaults = ServeArgs::default().resolve().expect("defaults resolve");
        assert_eq!(defaults.shards, cpus.min(SHARDS_MAX));
        let one =
            ServeArgs { shards: Some(1), ..ServeArgs::default() }.resolve().expect("--shards 1");
        assert_eq!(one.shards, 1);
        assert!(
            ServeArgs { shards: Some(0), ..ServeArgs::default() }.resolve().is_err(),
            "--shards 0 is refused"
        );
    }
}
