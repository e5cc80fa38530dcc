//! The broker's state: its topics and partitions, producer id allocation, and the
//! background upkeep (retention, rolls, interval flushes).
//!
//! Topic metadata files live in `<data_dir>/topics/`; creating a topic writes the partition
//! directories first and the metadata file last, so a crash in between leaves orphan
//! directories (ignored) rather than a topic without data. Deleting removes the metadata
//! file first, then the data.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{BrokerConfig, TOPICS_MAX, TOPIC_PARTITIONS_MAX};
use crate::coordinator::{Coordinator, GroupConfig, OFFSETS_TOPIC};
use crate::partition::{partition_dir, Partition};
use crate::topic::{validate_name, TopicConfig, TopicFile};

/// Largest topic metadata file read at startup.
const TOPIC_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Producer ids are handed out from blocks of this size; the block's end is persisted
/// before any id from it is used, so ids are never reused after a restart.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Topic {
    pub name: Rc<str>,
    pub id: [u8; 16],
    pub config: TopicConfig,
    pub partitions: Vec<Rc<Partition>>,
}

/// An error for one topic operation, as Kafka reports it.
#[derive(Debug, Clone)]
pub struct TopicError {
    pub code: ResponseError,
    pub message: String,
}

impl TopicError {
    fn new(code: ResponseError, message: impl Into<String>) -> TopicError {
        TopicError { code, message: message.into() }
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    topics: RefCell<BTreeMap<String, Rc<Topic>>>,
    /// Woken on every append, for fetches waiting on `min_bytes`.
    pub data_arrived: Notify,
    /// Create/delete run one at a time.
    admin: tokio::sync::Mutex<()>,
    next_producer_id: Cell<i64>,
    producer_id_limit: Cell<i64>,
    coordinator: std::cell::OnceCell<Rc<Coordinator>>,
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into the live buffer.
    #[allow(unsafe_code)]
    let filled = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if filled != id.len() as isize {
        // Never expected on Linux; fall back to time and pid, still unique enough for ids.
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()) ^ u128::from(std::process::id());
        id = seed.to_be_bytes();
    }
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

impl Broker {
    fn topics_dir(&self) -> PathBuf {
        self.config.data_dir.join("topics")
    }

    /// Opens every topic found in the data directory.
    pub async fn open(config: BrokerConfig) -> anyhow::Result<Rc<Broker>> {
        std::fs::create_dir_all(config.data_dir.join("topics"))
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display()))?;
        let broker = Rc::new(Broker {
            config,
            topics: RefCell::new(BTreeMap::new()),
            data_arrived: Notify::new(),
            admin: tokio::sync::Mutex::new(()),
            next_producer_id: Cell::new(0),
            producer_id_limit: Cell::new(0),
            coordinator: std::cell::OnceCell::new(),
        });
        let producer_file = broker.config.data_dir.join("producer-id-block");
        if let Some(bytes) = fjord_storage::io::read_file(&producer_file, 64).await? {
            let text = String::from_utf8_lossy(&bytes);
            let next: i64 = text.trim().parse().map_err(|_e| anyhow::anyhow!("{} holds {text:?}, not a number", producer_file.display()))?;
            broker.next_producer_id.set(next);
            broker.producer_id_limit.set(next);
        }
        let dir = broker.topics_dir();
        let mut names: Vec<String> = fjord_storage::io::list_dir(&dir)?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(format!("{name}.toml"));
            let Some(bytes) = fjord_storage::io::read_file(&path, TOPIC_FILE_BYTES_MAX).await? else { continue };
            let file: TopicFile = toml::from_str(&String::from_utf8_lossy(&bytes))
                .map_err(|e| anyhow::anyhow!("invalid topic file {}: {e}", path.display()))?;
            let config = TopicConfig { overrides: file.config.clone() };
            let id = parse_hex16(&file.id).ok_or_else(|| anyhow::anyhow!("invalid topic id in {}", path.display()))?;
            let topic = broker.open_topic(&name, id, file.partitions, config).await?;
            broker.topics.borrow_mut().insert(name, topic);
        }
        info!(topics = broker.topics.borrow().len(), data_dir = %broker.config.data_dir.display(), "broker state loaded");

        // The group coordinator's committed offsets live in an internal topic.
        let offsets = match broker.topic(OFFSETS_TOPIC) {
            Some(topic) => topic,
            None => {
                let mut config = TopicConfig::default();
                config.overrides.insert("segment.bytes".to_string(), (100 * 1024 * 1024).to_string());
                broker
                    .create_topic_inner(OFFSETS_TOPIC, broker.config.offsets_topic_partitions, config)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create {OFFSETS_TOPIC}: {}", e.message))?
            }
        };
        let group_config = GroupConfig {
            session_timeout_ms_min: broker.config.group_min_session_timeout_ms,
            session_timeout_ms_max: broker.config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: broker.config.group_initial_rebalance_delay_ms,
        };
        let coordinator = Coordinator::open(group_config, offsets.partitions.clone()).await?;
        let _ = broker.coordinator.set(coordinator);
        Ok(broker)
    }

    async fn open_topic(&self, name: &str, id: [u8; 16], partitions: i32, config: TopicConfig) -> anyhow::Result<Rc<Topic>> {
        let name: Rc<str> = Rc::from(name);
        let log_config = config.log_config(&self.config);
        let mut opened = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            let partition = Partition::open(&self.config.data_dir, Rc::clone(&name), index, log_config.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot open partition {name}-{index}: {e}"))?;
            opened.push(Rc::new(partition));
        }
        Ok(Rc::new(Topic { name, id, config, partitions: opened }))
    }

    /// The group coordinator (set once the broker is open).
    pub fn coordinator(&self) -> Rc<Coordinator> {
        Rc::clone(self.coordinator.get().expect("the coordinator is set when the broker opens"))
    }

    pub fn topic(&self, name: &str) -> Option<Rc<Topic>> {
        self.topics.borrow().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Rc<Topic>> {
        self.topics.borrow().values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        let topics = self.topics.borrow();
        let topic = topics.get(topic)?;
        usize::try_from(index).ok().and_then(|i| topic.partitions.get(i)).cloned()
    }

    /// Creates a topic. `validate_only` checks without creating.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication_factor: i16, config: TopicConfig, validate_only: bool) -> Result<Rc<Topic>, TopicError> {
        validate_name(name).map_err(|m| TopicError::new(ResponseError::InvalidTopicException, m))?;
        if name.starts_with("__") {
            return Err(TopicError::new(ResponseError::InvalidTopicException, format!("topic names starting with '__' are reserved for internal topics: {name}")));
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::new(ResponseError::InvalidPartitions, format!("partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}")));
        }
        if replication_factor != 1 {
            return Err(TopicError::new(ResponseError::InvalidReplicationFactor, format!("replication factor {replication_factor} is larger than the 1 available broker")));
        }
        if validate_only {
            if self.topics.borrow().contains_key(name) {
                return Err(TopicError::new(ResponseError::TopicAlreadyExists, format!("topic {name} already exists")));
            }
            return Ok(Rc::new(Topic { name: Rc::from(name), id: random_id(), config, partitions: Vec::new() }));
        }
        self.create_topic_inner(name, partitions, config).await
    }

    /// Creates a topic whose name and sizes were already checked (also internal topics).
    async fn create_topic_inner(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<Rc<Topic>, TopicError> {
        let _admin = self.admin.lock().await;
        if self.topics.borrow().contains_key(name) {
            return Err(TopicError::new(ResponseError::TopicAlreadyExists, format!("topic {name} already exists")));
        }
        if self.topics.borrow().len() >= TOPICS_MAX {
            return Err(TopicError::new(ResponseError::PolicyViolation, format!("the broker already holds {TOPICS_MAX} topics")));
        }
        let id = random_id();
        // Leftovers of an earlier topic of the same name whose deletion was interrupted.
        for index in 0..partitions {
            let dir = partition_dir(&self.config.data_dir, name, index);
            if dir.exists() {
                warn!(dir = %dir.display(), "removing leftover partition directory before creating the topic");
                std::fs::remove_dir_all(&dir).map_err(|e| TopicError::new(ResponseError::KafkaStorageError, format!("cannot remove {}: {e}", dir.display())))?;
            }
        }
        let topic = self
            .open_topic(name, id, partitions, config.clone())
            .await
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        let file = TopicFile { id: hex(&id), partitions, config: config.overrides.clone() };
        let text = toml::to_string(&file).map_err(|e| TopicError::new(ResponseError::UnknownServerError, e.to_string()))?;
        fjord_storage::io::write_file_atomic(&self.topics_dir().join(format!("{name}.toml")), text.into_bytes())
            .await
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        self.topics.borrow_mut().insert(name.to_string(), Rc::clone(&topic));
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topics.borrow_mut().remove(name) else {
            return Err(TopicError::new(ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist")));
        };
        fjord_storage::io::remove_file(&self.topics_dir().join(format!("{name}.toml")))
            .await
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        fjord_storage::io::sync_dir(&self.topics_dir()).await.map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        for partition in &topic.partitions {
            let _ = partition.close().await;
            if let Err(error) = std::fs::remove_dir_all(&partition.dir) {
                warn!(dir = %partition.dir.display(), %error, "cannot remove deleted partition's directory");
            }
        }
        info!(topic = name, "deleted topic");
        Ok(())
    }

    /// A new producer id, unique across restarts of this broker.
    pub async fn allocate_producer_id(&self) -> std::io::Result<i64> {
        let _admin = self.admin.lock().await;
        let next = self.next_producer_id.get();
        if next >= self.producer_id_limit.get() {
            let limit = next + PRODUCER_ID_BLOCK;
            let path = self.config.data_dir.join("producer-id-block");
            fjord_storage::io::write_file_atomic(&path, limit.to_string().into_bytes()).await?;
            self.producer_id_limit.set(limit);
        }
        self.next_producer_id.set(next + 1);
        Ok(next)
    }

    /// Retention, rolls and interval flushes for every partition, forever.
    pub async fn run_upkeep(self: Rc<Self>) {
        let tick_ms = 1000u64.min(self.config.retention_check_interval_ms).min(self.config.flush_interval_ms.unwrap_or(u64::MAX)).max(10);
        let mut last_retention = 0i64;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(tick_ms)).await;
            let now = now_ms();
            let retention = now - last_retention >= self.config.retention_check_interval_ms as i64;
            if retention {
                last_retention = now;
            }
            for topic in self.topics() {
                for partition in &topic.partitions {
                    match partition.maintain(now, retention).await {
                        Ok(outcome) if !outcome.deleted_segments.is_empty() => {
                            info!(partition = ?partition, segments = outcome.deleted_segments.len(), log_start_offset = outcome.log_start_offset, "retention");
                        }
                        Ok(_) => {}
                        Err(error) => warn!(partition = ?partition, %error, "upkeep failed"),
                    }
                }
            }
        }
    }

    /// Flushes and closes every partition cleanly.
    pub async fn close(&self) {
        for topic in self.topics() {
            for partition in &topic.partitions {
                if let Err(error) = partition.close().await {
                    warn!(partition = ?partition, %error, "unclean close");
                }
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn topic_id_hex(topic: &Topic) -> String {
    hex(&topic.id)
}
