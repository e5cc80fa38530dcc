//! The broker's state: its topics and partitions, producer id allocation, and the
//! background upkeep (retention, rolls, interval flushes, high-watermark checkpoints).
//!
//! Single node: topic metadata files live in `<data_dir>/topics/`; creating a topic writes
//! the partition directories first and the metadata file last, so a crash in between leaves
//! orphan directories (ignored) rather than a topic without data. Deleting removes the
//! metadata file first, then the data.
//!
//! Cluster (`--cluster`): topics live in the cluster state file instead (`cluster.rs`), and
//! this broker opens only the partitions it holds a replica of; `apply_state` brings the
//! local partitions in line with the state every time it changes.

pub mod cleaner;
pub mod cluster;
pub mod dynamic;
mod error;
pub mod outcome;
pub mod request_memory;
pub mod shards;
pub mod throttle;
pub mod topic;
pub mod topic_configs;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::broker::cluster::Cluster;
use crate::broker::shards::Shards;
use crate::broker::topic::{
    check_assignments, check_partition_increase, validate_name, ConfigChange, TopicConfig,
    TopicError, TopicFile,
};
pub use error::BrokerError;

use crate::clock::now_ms;
use crate::config::{BrokerConfig, TOPICS_MAX, TOPIC_PARTITIONS_MAX};
use crate::group::{offsets_topic_configs, Coordinator, GroupConfig, OFFSETS_TOPIC};
use crate::ids::{hex, parse_hex16, random_id};
use crate::partition::{partition_dir, Partition};
use fjord_replication::{ClusterState, PartitionState, TopicState};
use fjord_storage::{Disk, RealDisk};

/// Largest topic metadata file read at startup.
const TOPIC_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Producer ids are handed out from blocks of this size; the block's end is persisted
/// before any id from it is used, so ids are never reused after a restart.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Partitions a shard opens, changes the role of, or checkpoints at once. Each of those
/// waits for the disk (a new partition's files and its fsyncs, a new epoch's fsync): one
/// after another, a topic of 10,000 partitions took more than a minute to create in a
/// cluster, and concurrent fsyncs share the file system's journal commits.
const PARTITION_WORK_CONCURRENCY: usize = 64;

/// Runs `work` on each item on this shard, at most `PARTITION_WORK_CONCURRENCY` at once,
/// and returns the outputs in the items' order. A panic in one is raised here, as if the
/// work had run inline; if this future is dropped, the tasks still running are aborted, so
/// none outlives its caller (and the locks it holds).
async fn for_each_concurrently<T, F, Fut>(items: Vec<T>, work: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future + 'static,
    Fut::Output: 'static,
{
    /// Aborts the round's tasks that are still running when dropped.
    struct Round<O>(Vec<tokio::task::JoinHandle<O>>);
    impl<O> Drop for Round<O> {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }
    let mut outputs = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut round = Round(
            items
                .by_ref()
                .take(PARTITION_WORK_CONCURRENCY)
                .map(|item| fjord_storage::io::spawn(work(item)))
                .collect(),
        );
        for task in round.0.iter_mut() {
            match task.await {
                Ok(output) => outputs.push(output),
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                // Only an abort cancels a task, and only `Round` aborts them.
                Err(error) => unreachable!("partition work cancelled: {error}"),
            }
        }
    }
    outputs
}

pub struct Topic {
    pub name: Rc<str>,
    pub id: [u8; 16],
    pub config: TopicConfig,
    /// Indexed by partition number; `None` where this broker holds no replica.
    pub partitions: Vec<Option<Rc<Partition>>>,
}

impl Topic {
    /// The partitions this broker holds a replica of.
    pub fn local_partitions(&self) -> impl Iterator<Item = &Rc<Partition>> {
        self.partitions.iter().flatten()
    }

    /// Closes this shard's partitions of a topic that is gone (deleted, or replaced by a
    /// new topic of the same name) and removes their directories, several at once.
    async fn remove_local_partitions(&self) {
        remove_partitions(self.local_partitions().cloned().collect()).await;
    }
}

/// Closes partitions this shard no longer hosts (their topic is gone, or their replica
/// moved to other brokers) and removes their directories, several at once.
async fn remove_partitions(partitions: Vec<Rc<Partition>>) {
    for_each_concurrently(partitions, |partition| async move {
        let _ = partition.close().await;
        remove_dir_in_background(&partition.dir);
    })
    .await;
}

/// The suffix of a partition directory on its way out (Kafka's `-delete`): renamed so, the
/// directory is removed off the shard thread while a topic of the same name can be made.
const DELETED_DIR_SUFFIX: &str = "-delete";

/// Removes the directory `dir` without making this thread wait for the disk to free its
/// data: renamed to `<dir>.<unique>-delete` here (a metadata change), removed by the reaper
/// thread (`io::remove_dir_all_in_reaper`). A crash in between leaves the renamed
/// directory, which the next start removes (`remove_deleted_dirs`).
fn remove_dir_in_background(dir: &Path) {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut name = dir.as_os_str().to_os_string();
    name.push(format!(".{unique}{DELETED_DIR_SUFFIX}"));
    let renamed = PathBuf::from(name);
    match std::fs::rename(dir, &renamed) {
        Ok(()) => fjord_storage::io::remove_dir_all_in_reaper(renamed),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(dir = %dir.display(), %error, "cannot rename a removed partition's directory; removing it in place");
            if let Err(error) = std::fs::remove_dir_all(dir) {
                warn!(dir = %dir.display(), %error, "cannot remove a removed partition's directory");
            }
        }
    }
}

/// Hands the directories a crash left renamed for removal (`remove_dir_in_background`) to
/// the reaper.
fn remove_deleted_dirs(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return };
    for entry in entries.flatten() {
        let is_deleted = entry.file_name().to_string_lossy().ends_with(DELETED_DIR_SUFFIX);
        if is_deleted && entry.path().is_dir() {
            info!(dir = %entry.path().display(), "removing a directory left from a deletion");
            fjord_storage::io::remove_dir_all_in_reaper(entry.path());
        }
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    topics: RefCell<BTreeMap<String, Rc<Topic>>>,
    /// Woken on every append (on any shard), for fetches waiting on `min_bytes`.
    pub data_arrived: std::sync::Arc<Notify>,
    /// This shard and the others (`shards.rs`); one shard unless `--shards`.
    pub shards: Shards,
    /// Create/delete run one at a time.
    admin: tokio::sync::Mutex<()>,
    next_producer_id: Cell<i64>,
    producer_id_limit: Cell<i64>,
    coordinator: std::cell::OnceCell<Rc<Coordinator>>,
    /// The transaction coordinator (shard 0 of a single broker), set when
    /// `__transaction_state` exists or the first transactional producer comes.
    pub txn: std::cell::OnceCell<Rc<crate::txn::TxnCoordinator>>,
    /// Set when running as one broker of a cluster.
    pub cluster: Option<Rc<Cluster>>,
    /// The bytes of requests being read or handled, in KiB permits (`request-memory-max`),
    /// shared by all shards.
    pub request_memory: std::sync::Arc<request_memory::RequestMemory>,
    /// Set once `close` starts: a cluster state arriving later (shard 0 hands states to the
    /// other shards until it stops itself) must not open partitions nobody closes.
    closing: Cell<bool>,
    /// Broker configs changed while running (`dynamic.rs`): from `broker-configs.toml` on
    /// one broker, from the cluster state in a cluster.
    dynamic: RefCell<fjord_replication::DynamicBrokerConfigs>,
}

impl Broker {
    fn topics_dir(&self) -> PathBuf {
        self.config.data_dir.join("topics")
    }

    /// Opens every topic found in the data directory (this shard's share of the partitions).
    pub async fn open(config: BrokerConfig, shards: Shards) -> Result<Rc<Broker>, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir)
            .map_err(|source| BrokerError::DataDir { path: topics_dir, source })?;
        if shards.me == 0 {
            remove_deleted_dirs(&config.data_dir);
        }
        if let Some(file) = &config.cluster {
            // Shard 0 joins (liveness lock, controller duty); the others, started after it
            // is open, see the same cluster for their own partitions.
            let settings = cluster::ClusterSettings {
                offsets_partitions: config.offsets_topic_partitions,
                leader_rebalance_interval_ms: config.leader_rebalance_interval_ms,
            };
            let cluster = if shards.me == 0 {
                Cluster::join(file.clone(), config.broker_id, settings)?
            } else {
                Cluster::view(file.clone(), config.broker_id, settings)?
            };
            return Broker::open_clustered(config, Rc::new(cluster), shards).await;
        }
        let broker = Broker::new(config, None, shards);
        let producer_file = broker.config.data_dir.join("producer-id-block");
        if let Some(bytes) = fjord_storage::io::read_file(&producer_file, 64).await? {
            let text = String::from_utf8_lossy(&bytes);
            let next: i64 = text.trim().parse().map_err(|_not_a_number| {
                BrokerError::ProducerIdFile { path: producer_file.clone(), text: text.to_string() }
            })?;
            broker.next_producer_id.set(next);
            broker.producer_id_limit.set(next);
        }
        if let Some(configs) = read_broker_configs(&broker.broker_configs_path()).await? {
            *broker.dynamic.borrow_mut() = configs;
        }
        broker.reload_topics(None).await?;
        info!(topics = broker.topics.borrow().len(), shard = broker.shards.me, data_dir = %broker.config.data_dir.display(), "broker state loaded");
        if broker.shards.me != 0 {
            // Shard 0 keeps the offsets topic and the group coordinator.
            return Ok(broker);
        }

        // The group coordinator's committed offsets live in an internal topic.
        let offsets = match broker.topic(OFFSETS_TOPIC) {
            Some(topic) if broker.cluster.is_none() && !topic.config.compacted() => {
                // Made by a Fjord from before compaction: compacted from now on.
                let compact = |config: &TopicConfig| {
                    config.altered(&[ConfigChange::Set {
                        name: "cleanup.policy".to_string(),
                        value: "compact".to_string(),
                    }])
                };
                broker.alter_topic_config(OFFSETS_TOPIC, compact, false).await.map_err(|e| {
                    BrokerError::InternalTopic { topic: OFFSETS_TOPIC, message: e.to_string() }
                })?;
                info!("{OFFSETS_TOPIC} is compacted from now on (cleanup.policy=compact)");
                broker.topic(OFFSETS_TOPIC).unwrap_or(topic)
            }
            Some(topic) => topic,
            None => {
                let config = TopicConfig { overrides: offsets_topic_configs() };
                broker
                    .create_topic_inner(
                        OFFSETS_TOPIC,
                        broker.config.offsets_topic_partitions,
                        config,
                    )
                    .await
                    .map_err(|e| BrokerError::InternalTopic {
                        topic: OFFSETS_TOPIC,
                        message: e.to_string(),
                    })?
            }
        };
        let group_config = broker.group_config();
        let coordinator = Coordinator::open(group_config, offsets.partitions.clone(), true).await?;
        let _ = broker.coordinator.set(coordinator);
        Ok(broker)
    }

    /// Opens topics that appeared in the topics directory (this shard's share of their
    /// partitions), drops those whose metadata file is gone, and takes in the new config
    /// and added partitions of topic `changed`. Shard 0 tells the other shards to do this
    /// after every create, delete or change.
    pub async fn reload_topics(&self, changed: Option<&str>) -> Result<(), BrokerError> {
        let dir = self.topics_dir();
        let mut names: Vec<String> = fjord_storage::io::list_dir(&dir)?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .collect();
        names.sort();
        let gone: Vec<String> =
            self.topics.borrow().keys().filter(|k| !names.contains(k)).cloned().collect();
        for name in gone {
            let Some(topic) = self.topics.borrow_mut().remove(&name) else { continue };
            topic.remove_local_partitions().await;
        }
        for name in names {
            let existing = self.topic(&name);
            if existing.is_some() && changed != Some(name.as_str()) {
                continue;
            }
            let path = dir.join(format!("{name}.toml"));
            let Some(file) = read_topic_file(&path).await? else { continue };
            let config = TopicConfig { overrides: file.config.clone() };
            let id = parse_hex16(&file.id).ok_or_else(|| BrokerError::TopicFile {
                path: path.clone(),
                reason: format!("the topic id {:?} is not 32 hex digits", file.id),
            })?;
            if let Some(topic) = existing.filter(|t| t.id == id) {
                let from = topic.partitions.len() as i32;
                let log_config = self.log_config_for(&name, &config);
                let added =
                    self.open_partitions(&topic.name, from..file.partitions, &log_config).await?;
                self.replace_topic(&topic, config, added).await;
                continue;
            }
            let topic = self.open_topic(&name, id, file.partitions, config).await?;
            self.topics.borrow_mut().insert(name, topic);
        }
        Ok(())
    }

    fn new(config: BrokerConfig, cluster: Option<Rc<Cluster>>, shards: Shards) -> Rc<Broker> {
        Rc::new(Broker {
            config,
            topics: RefCell::new(BTreeMap::new()),
            data_arrived: std::sync::Arc::clone(&shards.data_arrived),
            admin: tokio::sync::Mutex::new(()),
            next_producer_id: Cell::new(0),
            producer_id_limit: Cell::new(0),
            request_memory: std::sync::Arc::clone(&shards.request_memory),
            shards,
            coordinator: std::cell::OnceCell::new(),
            txn: std::cell::OnceCell::new(),
            cluster,
            closing: Cell::new(false),
            dynamic: RefCell::new(Default::default()),
        })
    }

    /// The storage settings of topic `name`'s partitions: its overrides over the broker's
    /// dynamic defaults over its static ones.
    pub fn log_config_for(&self, name: &str, config: &TopicConfig) -> fjord_storage::LogConfig {
        log_config_of(name, &self.with_dynamic_defaults(config), &self.config)
    }

    /// Topic config `name` as it applies to a topic with `config`: its own value, else this
    /// broker's dynamic default for it; `None` where neither is set.
    pub fn topic_config_value(&self, config: &TopicConfig, name: &str) -> Option<String> {
        if let Some(value) = config.overrides.get(name) {
            return Some(value.clone());
        }
        let dynamic = self.dynamic.borrow();
        // Every produce asks: most brokers have no dynamic configs at all.
        if dynamic.is_empty() {
            return None;
        }
        let broker_name = dynamic::broker_config_of(name)?;
        dynamic::dynamic_value(&dynamic, self.config.broker_id, broker_name).map(|(value, _)| value)
    }

    /// The bound, in bytes per second, of replication throttle `rate_name` on this broker;
    /// `None`: unbounded. Only the broker's own dynamic value counts: Kafka's broker config
    /// handler sets its replication quotas from the broker's own entity, never from the
    /// cluster-wide default.
    pub fn throttle_rate(&self, rate_name: &str) -> Option<u64> {
        let dynamic = self.dynamic.borrow();
        let own = dynamic.per_broker.get(&self.config.broker_id.to_string())?;
        throttle::rate(own.get(rate_name).map(String::as_str))
    }

    /// The bound of `rate_name` that applies to `partition`'s replication with `replica`
    /// (this broker when following), if throttled: the replica is out of sync, the topic's
    /// `list` names the partition on this broker, and the rate is bounded.
    pub fn throttle_of(
        &self,
        partition: &Partition,
        replica: i32,
        list: &str,
        rate_name: &str,
    ) -> Option<u64> {
        if partition.replica.in_sync(replica) {
            return None;
        }
        let topic = self.topic(&partition.topic)?;
        let listed = topic.config.overrides.get(list)?;
        if !throttle::lists(listed, partition.index, self.config.broker_id) {
            return None;
        }
        self.throttle_rate(rate_name)
    }

    /// `config` with the broker's dynamic defaults under its own overrides.
    pub fn with_dynamic_defaults(&self, config: &TopicConfig) -> TopicConfig {
        let mut overrides = dynamic::topic_defaults(&self.dynamic.borrow(), self.config.broker_id);
        if overrides.is_empty() {
            return config.clone();
        }
        overrides.extend(config.overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        TopicConfig { overrides }
    }

    /// The in-sync replicas an acks=all append to a topic with `config` needs.
    /// On the produce path: no map is built unless a dynamic default applies.
    pub fn min_insync_replicas(&self, config: &TopicConfig) -> i32 {
        if config.overrides.contains_key("min.insync.replicas") || self.dynamic.borrow().is_empty()
        {
            return config.min_insync_replicas(&self.config);
        }
        self.with_dynamic_defaults(config).min_insync_replicas(&self.config)
    }

    /// The broker configs changed while running, as this broker last learned them.
    pub fn dynamic_configs(&self) -> fjord_replication::DynamicBrokerConfigs {
        self.dynamic.borrow().clone()
    }

    fn broker_configs_path(&self) -> PathBuf {
        self.config.data_dir.join(BROKER_CONFIGS_FILE)
    }

    /// Takes in new dynamic broker configs: every partition of this shard whose topic does
    /// not override a changed config applies the new default at once.
    pub async fn apply_dynamic(&self, configs: fjord_replication::DynamicBrokerConfigs) {
        if *self.dynamic.borrow() == configs {
            return;
        }
        info!(shard = self.shards.me, configs = ?configs, "broker configs changed");
        *self.dynamic.borrow_mut() = configs;
        let topics: Vec<Rc<Topic>> = self.topics.borrow().values().cloned().collect();
        for topic in topics {
            let log_config = self.log_config_for(&topic.name, &topic.config);
            for partition in topic.local_partitions() {
                if let Err(error) = partition.set_config(log_config.clone()).await {
                    // Checked before it was accepted; a refusal here is a bug, not input.
                    warn!(topic = %topic.name, partition = partition.index, %error, "cannot apply the broker's new config");
                }
            }
        }
    }

    /// Changes the dynamic configs of broker `resource` (`None`: the cluster-wide default)
    /// to what `change` makes of them (`Err`: the message for INVALID_REQUEST), or with
    /// `validate_only` only checks that it can. One broker keeps them in its data
    /// directory; a cluster in its state, which every broker applies.
    pub async fn alter_broker_configs(
        &self,
        resource: Option<i32>,
        change: impl Fn(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let invalid = |reason: String| TopicError::InvalidConfig { reason };
        if let Some(cluster) = &self.cluster {
            let updated = cluster
                .store
                .update(|state| {
                    let current = state.broker_configs.of(resource);
                    let altered = change(&current).map_err(invalid)?;
                    if validate_only || altered == current {
                        return Ok(false);
                    }
                    state.broker_configs.set(resource, altered);
                    Ok(true)
                })
                .await
                .map_err(|e| TopicError::storage("the cluster state", e))??;
            if !validate_only {
                self.apply_state(&updated).await;
            }
            return Ok(());
        }
        let _admin = self.admin.lock().await;
        let mut configs = self.dynamic_configs();
        let current = configs.of(resource);
        let altered = change(&current).map_err(invalid)?;
        if validate_only || altered == current {
            return Ok(());
        }
        configs.set(resource, altered);
        let path = self.broker_configs_path();
        // Serializing maps of strings cannot fail.
        let text = toml::to_string(&configs).expect("broker configs serialize");
        RealDisk
            .write_file_atomic(&path, text.into_bytes())
            .await
            .map_err(|e| TopicError::storage(format!("write {}", path.display()), e))?;
        self.apply_dynamic(configs.clone()).await;
        drop(_admin);
        self.shards.broker_configs_changed(&configs).await;
        Ok(())
    }

    fn group_config(&self) -> GroupConfig {
        GroupConfig {
            session_timeout_ms_min: self.config.group_min_session_timeout_ms,
            session_timeout_ms_max: self.config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.config.group_initial_rebalance_delay_ms,
            appended: std::sync::Arc::clone(&self.data_arrived),
            offsets_retention_ms: self.config.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: self.config.offsets_retention_check_interval_ms,
        }
    }

    /// Opens a broker of a cluster (one shard of it): its partitions and roles come from the
    /// cluster state. Shard 0 also removes partition directories the state no longer gives
    /// this broker (before any other shard starts, so none of theirs is taken for one), hands
    /// out producer ids and runs the group coordinator.
    async fn open_clustered(
        config: BrokerConfig,
        cluster: Rc<Cluster>,
        shards: Shards,
    ) -> Result<Rc<Broker>, BrokerError> {
        let first = shards.me == 0;
        let broker = Broker::new(config, Some(Rc::clone(&cluster)), shards);
        let state = cluster.store.read().await?;
        // This shard alone: the others have not started yet (shard 0) or read the state
        // themselves as they open.
        broker.apply_state_here(&state).await;
        info!(
            topics = broker.topics.borrow().len(),
            shard = broker.shards.me,
            state_version = state.version,
            "cluster state applied"
        );
        if !first {
            return Ok(broker);
        }
        broker.remove_orphan_partitions(&state);
        // Producer ids: this broker's id in the high bits keeps them unique in the cluster.
        let producer_file = broker.config.data_dir.join("producer-id-block");
        let base = i64::from(broker.config.broker_id) << 40;
        let next = match fjord_storage::io::read_file(&producer_file, 64).await? {
            Some(bytes) => {
                String::from_utf8_lossy(&bytes).trim().parse::<i64>().unwrap_or(base).max(base)
            }
            None => base,
        };
        broker.next_producer_id.set(next);
        broker.producer_id_limit.set(next);
        // The controller creates the offsets topic once enough brokers run.
        let group_config = broker.group_config();
        let offsets: Vec<Option<Rc<Partition>>> =
            broker.topic(OFFSETS_TOPIC).map(|t| t.partitions.clone()).unwrap_or_default();
        let coordinator = Coordinator::open(group_config, offsets, false).await?;
        coordinator.commit_min_insync.set(broker.config.min_insync_replicas);
        let _ = broker.coordinator.set(coordinator);
        broker.sync_coordinator().await;
        Ok(broker)
    }

    /// Reads the cluster state now and applies it if it is newer than the one applied
    /// (shard 0's tick does this every `CLUSTER_TICK_MS`, for every shard; a produce request
    /// naming this broker as a leader it does not know it is yet does it at once, on the
    /// shard owning the partition).
    ///
    /// One read at a time, shared: a caller that arrives while a read runs waits for it and
    /// then for one more (the running read may have started before the state it needs was
    /// written), but callers arriving together share that next read. So a burst of
    /// misdirected produce requests costs a couple of reads, not one each. The group
    /// coordinator is synced here too, under the same lock, only after a new state.
    pub async fn sync_cluster_state(&self) {
        let Some(cluster) = &self.cluster else { return };
        let seen = cluster.syncs_started.get();
        let _syncing = cluster.syncing.lock().await;
        if cluster.syncs_started.get() > seen {
            // A read that started after this caller arrived has finished: it saw what this
            // caller needs.
            return;
        }
        cluster.syncs_started.set(seen + 1);
        let known = cluster.state.borrow().version;
        match cluster.store.read_newer_than(known).await {
            Ok(Some(state)) => {
                self.apply_state(&state).await;
                self.sync_coordinator().await;
                self.sync_txn_coordinator().await;
            }
            Ok(None) => {}
            Err(error) => warn!(%error, "cannot read the cluster state"),
        }
    }

    /// Brings this broker's topics, partitions and roles in line with the cluster state. On
    /// shard 0 every other shard applies it first, so what shard 0 answers from (Metadata,
    /// the coordinator) is never ahead of the roles of the shards owning the partitions: a
    /// client told that this broker leads a partition finds it leading there.
    pub async fn apply_state(&self, state: &ClusterState) {
        if self.shards.count > 1 && self.shards.me == 0 {
            self.shards.apply_state_on_others(&std::sync::Arc::new(state.clone())).await;
        }
        self.apply_state_here(state).await;
    }

    /// Brings this shard's topics, partitions and roles in line with the cluster state.
    /// States are applied one at a time, and one older than the last applied is ignored.
    async fn apply_state_here(&self, state: &ClusterState) {
        let Some(cluster) = &self.cluster else { return };
        let _applying = cluster.applying.lock().await;
        if state.version < cluster.state.borrow().version || self.closing.get() {
            return;
        }
        let me = self.config.broker_id;
        let now = now_ms();
        // New broker defaults first: partitions opened below take them.
        self.apply_dynamic(state.broker_configs.clone()).await;
        // Topics gone from the state are deleted here too.
        let gone: Vec<String> = self
            .topics
            .borrow()
            .keys()
            .filter(|name| !state.topics.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            // Removed in a statement of its own: an `if let` would hold the borrow of
            // `topics` through the awaits below, and every request looking up a topic
            // meanwhile would panic on it.
            let removed = self.topics.borrow_mut().remove(&name);
            if let Some(topic) = removed {
                topic.remove_local_partitions().await;
                info!(topic = %name, "deleted topic (cluster state)");
            }
        }
        for (name, topic_state) in &state.topics {
            let existing = self.topic(name);
            if let Some(stale) = existing.as_ref().filter(|t| {
                hex(&t.id) != topic_state.id || t.partitions.len() > topic_state.partitions.len()
            }) {
                // Deleted and created again between two polls: the old data must not pass for
                // the new topic's.
                warn!(topic = %name, "topic was re-created; dropping the old incarnation's data");
                self.topics.borrow_mut().remove(name);
                stale.remove_local_partitions().await;
            }
            let config = TopicConfig { overrides: topic_state.config.clone() };
            let topic = match self.topic(name) {
                Some(topic)
                    if topic.config == config
                        && topic.partitions.len() == topic_state.partitions.len()
                        && !self.hosting_changed(&topic, topic_state) =>
                {
                    topic
                }
                Some(topic) => {
                    // Its config changed, partitions were added, or replicas moved.
                    self.rehost_topic(&topic, topic_state, config).await
                }
                None => {
                    let empty = Rc::new(Topic {
                        name: Rc::from(name.as_str()),
                        id: parse_hex16(&topic_state.id).unwrap_or([0; 16]),
                        config: config.clone(),
                        partitions: Vec::new(),
                    });
                    self.rehost_topic(&empty, topic_state, config).await
                }
            };
            let mut leading = Vec::new();
            for (index, p) in topic_state.partitions.iter().enumerate() {
                let Some(Some(partition)) = topic.partitions.get(index) else { continue };
                let role = partition.replica.role();
                if p.leader != me {
                    partition.become_follower(
                        p.leader,
                        p.leader_epoch,
                        p.replicas.clone(),
                        p.isr.clone(),
                    );
                } else if (role.leader, role.leader_epoch) == (me, p.leader_epoch) {
                    // The same leadership (only its sets may change): no wait, no task.
                    partition
                        .become_leader(
                            p.leader_epoch,
                            p.replicas.clone(),
                            p.isr.clone(),
                            now,
                            state.version,
                        )
                        .await;
                } else {
                    leading.push((
                        Rc::clone(partition),
                        p.leader_epoch,
                        p.replicas.clone(),
                        p.isr.clone(),
                    ));
                }
            }
            // A new leadership persists its epoch (an fsync each).
            let version = state.version;
            for_each_concurrently(leading, |(partition, epoch, replicas, isr)| async move {
                partition.become_leader(epoch, replicas, isr, now, version).await
            })
            .await;
        }
        *cluster.state.borrow_mut() = state.clone();
        self.data_arrived.notify_waiters();
    }

    /// Whether this shard hosts partition `index` of `name` in `partition`'s state: this
    /// broker holds one of its replicas and this shard owns it.
    fn hosts(&self, name: &str, index: usize, partition: &PartitionState) -> bool {
        partition.replicas.contains(&self.config.broker_id) && self.shards.owns(name, index as i32)
    }

    /// Whether `topic_state` gives this shard a partition of `topic` it has not opened, or
    /// takes away one it has (a reassignment moved a replica).
    fn hosting_changed(&self, topic: &Topic, topic_state: &TopicState) -> bool {
        topic_state.partitions.iter().enumerate().any(|(index, p)| {
            let open = topic.partitions.get(index).is_some_and(Option::is_some);
            self.hosts(&topic.name, index, p) != open
        })
    }

    /// Puts a clustered topic in line with `topic_state` on this shard: opens the partitions
    /// it now hosts (several at once), applies `config` to those it kept, and closes and
    /// removes those it no longer hosts, after the new topic is in place.
    async fn rehost_topic(
        &self,
        old: &Rc<Topic>,
        topic_state: &TopicState,
        config: TopicConfig,
    ) -> Rc<Topic> {
        let name = &old.name;
        let me = self.config.broker_id;
        let count = topic_state.partitions.len();
        let mut partitions = old.partitions.clone();
        partitions.resize(count, None);
        let mut dropped = Vec::new();
        let mut to_open = Vec::new();
        for (index, p) in topic_state.partitions.iter().enumerate() {
            match (self.hosts(name, index, p), partitions[index].take()) {
                (true, None) => to_open.push(index as i32),
                (true, kept) => partitions[index] = kept,
                (false, Some(gone)) => dropped.push(gone),
                (false, None) => {}
            }
        }
        let log_config = self.log_config_for(name, &config);
        if config != old.config {
            for partition in partitions.iter().flatten() {
                if let Err(error) = partition.set_config(log_config.clone()).await {
                    // Checked before it was accepted; a refusal here is a bug, not input.
                    warn!(partition = ?partition, %error, "cannot apply the topic's new config");
                }
            }
            info!(topic = %name, overrides = ?config.overrides, "topic config changed");
        }
        let data_dir = self.config.data_dir.clone();
        let opened = for_each_concurrently(to_open.clone(), |index| {
            let (data_dir, name, log_config, id) =
                (data_dir.clone(), Rc::clone(name), log_config.clone(), topic_state.id.clone());
            async move { open_clustered_partition(data_dir, name, index, log_config, me, id).await }
        })
        .await;
        for (index, partition) in to_open.into_iter().zip(opened) {
            partitions[index as usize] = partition;
        }
        let topic = Rc::new(Topic { name: Rc::clone(name), id: old.id, config, partitions });
        self.topics.borrow_mut().insert(name.to_string(), Rc::clone(&topic));
        if !dropped.is_empty() {
            let indexes: Vec<i32> = dropped.iter().map(|p| p.index).collect();
            info!(topic = %name, partitions = ?indexes, "replicas moved away from this broker; removing their data");
            remove_partitions(dropped).await;
        }
        topic
    }

    /// Removes partition directories this broker holds no replica of in the cluster state:
    /// topics deleted (or moved) while it was down. Run once at startup, when the state is
    /// complete and nothing is being created.
    fn remove_orphan_partitions(&self, state: &ClusterState) {
        if state.version == 0 {
            // No state file yet (a new cluster, or a lost file): never delete on that basis.
            return;
        }
        let me = self.config.broker_id;
        let hosted: std::collections::HashSet<String> = state
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.replicas.contains(&me))
                    .map(move |(i, _)| format!("{name}-{i}"))
            })
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            // Only directories that look like partition logs.
            if !path.is_dir()
                || hosted.contains(&name)
                || name.ends_with(DELETED_DIR_SUFFIX)
                || !(path.join("checkpoint").exists()
                    || path.join("00000000000000000000.log").exists()
                    || path.join("topic-id").exists())
            {
                continue;
            }
            warn!(dir = %path.display(), "removing a partition directory this broker no longer hosts (its topic was deleted or moved)");
            remove_dir_in_background(&path);
        }
    }

    /// Tells the transaction coordinator which `__transaction_state` partitions this broker
    /// leads now.
    pub async fn sync_txn_coordinator(&self) {
        let Some(coordinator) = self.txn.get() else { return };
        let Some(topic) = self.topic(crate::txn::TXN_TOPIC) else { return };
        coordinator.sync(topic.partitions.clone()).await;
    }

    /// Tells the coordinator which offsets partitions this broker leads now.
    pub async fn sync_coordinator(&self) {
        let Some(coordinator) = self.coordinator.get() else { return };
        let Some(topic) = self.topic(OFFSETS_TOPIC) else { return };
        let count = topic.partitions.len();
        for (index, partition) in topic.partitions.iter().enumerate() {
            let leads = partition.as_ref().is_some_and(|p| p.replica.is_leader());
            if let Err(error) = coordinator.set_owned(index, count, leads, partition.clone()).await
            {
                warn!(partition = index, %error, "cannot load groups of an offsets partition");
            }
        }
    }

    async fn open_topic(
        &self,
        name: &str,
        id: [u8; 16],
        partitions: i32,
        config: TopicConfig,
    ) -> Result<Rc<Topic>, BrokerError> {
        let log_config = self.log_config_for(name, &config);
        let name: Rc<str> = Rc::from(name);
        let opened = self.open_partitions(&name, 0..partitions, &log_config).await?;
        Ok(Rc::new(Topic { name, id, config, partitions: opened }))
    }

    /// Opens partitions `indexes` of a single broker's topic: this shard's share, `None`
    /// for the others.
    async fn open_partitions(
        &self,
        name: &Rc<str>,
        indexes: std::ops::Range<i32>,
        log_config: &fjord_storage::LogConfig,
    ) -> Result<Vec<Option<Rc<Partition>>>, BrokerError> {
        let mut opened = Vec::with_capacity(indexes.len());
        for index in indexes {
            if !self.shards.owns(name, index) {
                opened.push(None);
                continue;
            }
            let partition = Partition::open(
                &self.config.data_dir,
                Rc::clone(name),
                index,
                log_config.clone(),
                self.config.broker_id,
                false,
            )
            .await
            .map_err(|source| BrokerError::OpenPartition {
                topic: name.to_string(),
                index,
                source,
            })?;
            opened.push(Some(Rc::new(partition)));
        }
        Ok(opened)
    }

    /// Puts a changed topic in place of `old` on this shard: its partitions and `added`
    /// (opened with the new config), and `config`, which the partitions it had take from
    /// their next append, roll or retention check.
    async fn replace_topic(
        &self,
        old: &Rc<Topic>,
        config: TopicConfig,
        added: Vec<Option<Rc<Partition>>>,
    ) -> Rc<Topic> {
        if config != old.config {
            let log_config = self.log_config_for(&old.name, &config);
            for partition in old.local_partitions() {
                if let Err(error) = partition.set_config(log_config.clone()).await {
                    // Checked before it was accepted; a refusal here is a bug, not input.
                    warn!(topic = %old.name, partition = partition.index, %error, "cannot apply the topic's new config");
                }
            }
            info!(topic = %old.name, overrides = ?config.overrides, "topic config changed");
        }
        if !added.is_empty() {
            info!(topic = %old.name, from = old.partitions.len(), to = old.partitions.len() + added.len(), "partitions added");
        }
        let mut partitions = old.partitions.clone();
        partitions.extend(added);
        let topic = Rc::new(Topic { name: Rc::clone(&old.name), id: old.id, config, partitions });
        self.topics.borrow_mut().insert(old.name.to_string(), Rc::clone(&topic));
        topic
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

    /// Every partition this shard hosts, of every topic.
    fn local_partitions(&self) -> Vec<Rc<Partition>> {
        self.topics.borrow().values().flat_map(|topic| topic.local_partitions().cloned()).collect()
    }

    /// Whether the topic has partition `index` (wherever it is hosted).
    pub fn partition_exists(&self, topic: &str, index: i32) -> bool {
        self.topic(topic).is_some_and(|t| index >= 0 && (index as usize) < t.partitions.len())
    }

    /// The partition, if this shard of this broker hosts it.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        let topics = self.topics.borrow();
        let topic = topics.get(topic)?;
        usize::try_from(index).ok().and_then(|i| topic.partitions.get(i)).cloned().flatten()
    }

    /// The partition, if this shard hosts it, for a request only its leader answers. In a
    /// cluster, if this broker does not lead it (or does not know the topic, but not for an
    /// index past a known topic's partitions), the cluster state is read at once first
    /// (`sync_cluster_state`, one read shared by everyone waiting): clients learn leaders
    /// from any broker's Metadata, so they can name this broker the leader a tick before it
    /// has read the state that says so.
    pub async fn partition_for_leader(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        let found = self.partition(topic, index);
        let Some(cluster) = &self.cluster else { return found };
        // A broker that was stopped may have been deposed meanwhile: it reads the state
        // before it acknowledges anything (`Cluster::view_may_be_stale`).
        let now = crate::clock::now_ms();
        let stale = cluster.view_may_be_stale(now);
        // The topic lookups only when a read might follow, not on every append.
        if !stale
            && (found.as_ref().is_some_and(|p| p.replica.is_leader())
                || (self.topic(topic).is_some() && !self.partition_exists(topic, index)))
        {
            return found;
        }
        self.sync_cluster_state().await;
        if stale {
            cluster.viewed(now);
        }
        self.partition(topic, index)
    }

    /// Creates a topic. `validate_only` checks without creating.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        config: TopicConfig,
        validate_only: bool,
    ) -> Result<Rc<Topic>, TopicError> {
        validate_name(name).map_err(|reason| TopicError::InvalidName { reason })?;
        if name.starts_with("__") {
            return Err(TopicError::Internal {
                reason: format!(
                    "topic names starting with '__' are reserved for internal topics: {name}"
                ),
            });
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions { partitions, max: TOPIC_PARTITIONS_MAX });
        }
        if let Some(cluster) = &self.cluster {
            let rf = if replication_factor == -1 {
                cluster.file.replication_factor
            } else {
                replication_factor
            };
            if validate_only {
                return Ok(Rc::new(Topic {
                    name: Rc::from(name),
                    id: random_id(),
                    config,
                    partitions: Vec::new(),
                }));
            }
            cluster.create_topic(name, partitions, rf, config.overrides.clone(), false).await?;
            // Give the other brokers a tick to see the new state before clients use it.
            tokio::time::sleep(std::time::Duration::from_millis(
                2 * crate::broker::cluster::CLUSTER_TICK_MS + 50,
            ))
            .await;
            let state = cluster
                .store
                .read()
                .await
                .map_err(|e| TopicError::storage("the cluster state", e))?;
            self.apply_state(&state).await;
            return self.topic(name).ok_or_else(|| TopicError::State {
                reason: format!("topic {name} vanished after creation"),
            });
        }
        if replication_factor != 1 && replication_factor != -1 {
            return Err(TopicError::InvalidReplicationFactor { replication_factor, live: 1 });
        }
        if validate_only {
            if self.topics.borrow().contains_key(name) {
                return Err(TopicError::AlreadyExists { name: name.to_string() });
            }
            return Ok(Rc::new(Topic {
                name: Rc::from(name),
                id: random_id(),
                config,
                partitions: Vec::new(),
            }));
        }
        self.create_topic_inner(name, partitions, config).await
    }

    /// An internal topic, created with `overrides` if it does not exist yet.
    pub async fn internal_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Rc<Topic>, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        match self.create_topic_inner(name, partitions, TopicConfig { overrides }).await {
            Err(TopicError::AlreadyExists { .. }) => self.topic(name).ok_or_else(|| {
                TopicError::State { reason: format!("topic {name} vanished after creation") }
            }),
            other => other,
        }
    }

    /// Creates a topic whose name and sizes were already checked (also internal topics).
    async fn create_topic_inner(
        &self,
        name: &str,
        partitions: i32,
        config: TopicConfig,
    ) -> Result<Rc<Topic>, TopicError> {
        let _admin = self.admin.lock().await;
        if self.topics.borrow().contains_key(name) {
            return Err(TopicError::AlreadyExists { name: name.to_string() });
        }
        if self.topics.borrow().len() >= TOPICS_MAX {
            return Err(TopicError::TooMany { max: TOPICS_MAX });
        }
        let id = random_id();
        // Leftovers of an earlier topic of the same name whose deletion was interrupted.
        for index in 0..partitions {
            let dir = partition_dir(&self.config.data_dir, name, index);
            if dir.exists() {
                warn!(dir = %dir.display(), "removing leftover partition directory before creating the topic");
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| TopicError::storage(format!("remove {}", dir.display()), e))?;
            }
        }
        let topic = self
            .open_topic(name, id, partitions, config.clone())
            .await
            .map_err(|e| TopicError::storage(format!("open the partitions of {name}"), e))?;
        self.write_topic_file(name, &id, partitions, &config).await?;
        self.topics.borrow_mut().insert(name.to_string(), Rc::clone(&topic));
        info!(topic = name, partitions, "created topic");
        drop(_admin);
        self.shards.topics_changed(None).await;
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if let Some(cluster) = &self.cluster {
            if name == OFFSETS_TOPIC {
                return Err(TopicError::Internal {
                    reason: "the internal offsets topic cannot be deleted".to_string(),
                });
            }
            let removed = cluster
                .store
                .update(|state| Ok::<bool, ()>(state.topics.remove(name).is_some()))
                .await
                .map_err(|e| TopicError::storage("the cluster state", e))?
                .map_err(|()| TopicError::State { reason: "state update failed".to_string() })?;
            if !removed.topics.contains_key(name) && self.topic(name).is_none() {
                return Err(TopicError::Unknown { name: name.to_string() });
            }
            self.apply_state(&removed).await;
            return Ok(());
        }
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topics.borrow_mut().remove(name) else {
            return Err(TopicError::Unknown { name: name.to_string() });
        };
        let path = self.topics_dir().join(format!("{name}.toml"));
        fjord_storage::io::remove_file(&path)
            .await
            .map_err(|e| TopicError::storage(format!("remove {}", path.display()), e))?;
        fjord_storage::io::sync_dir(&self.topics_dir())
            .await
            .map_err(|e| TopicError::storage(format!("sync {}", self.topics_dir().display()), e))?;
        topic.remove_local_partitions().await;
        info!(topic = name, "deleted topic");
        self.shards.topics_changed(None).await;
        Ok(())
    }

    /// Writes a single broker's topic metadata file (atomically: a crash leaves the old
    /// file or the new one).
    async fn write_topic_file(
        &self,
        name: &str,
        id: &[u8; 16],
        partitions: i32,
        config: &TopicConfig,
    ) -> Result<(), TopicError> {
        let file = TopicFile { id: hex(id), partitions, config: config.overrides.clone() };
        let path = self.topics_dir().join(format!("{name}.toml"));
        // Serializing a map of strings and two numbers cannot fail.
        let text = toml::to_string(&file).expect("a topic file serializes");
        RealDisk
            .write_file_atomic(&path, text.into_bytes())
            .await
            .map_err(|e| TopicError::storage(format!("write {}", path.display()), e))
    }

    /// Changes a topic's config overrides to what `change` makes of them (`Err`: the
    /// message for INVALID_CONFIG), or with `validate_only` only checks that it can. In a
    /// cluster the change goes through the cluster state, so every broker applies it.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        change: impl Fn(&TopicConfig) -> Result<TopicConfig, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let unknown = || TopicError::Unknown { name: name.to_string() };
        if let Some(cluster) = &self.cluster {
            let updated = cluster
                .store
                .update(|state| {
                    let topic = state.topics.get_mut(name).ok_or_else(unknown)?;
                    let current = TopicConfig { overrides: topic.config.clone() };
                    let altered =
                        change(&current).map_err(|reason| TopicError::InvalidConfig { reason })?;
                    if validate_only || altered == current {
                        return Ok(false);
                    }
                    topic.config = altered.overrides;
                    Ok(true)
                })
                .await
                .map_err(|e| TopicError::storage("the cluster state", e))??;
            if !validate_only {
                self.apply_state(&updated).await;
            }
            return Ok(());
        }
        let _admin = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(unknown)?;
        let altered =
            change(&topic.config).map_err(|reason| TopicError::InvalidConfig { reason })?;
        if validate_only || altered == topic.config {
            return Ok(());
        }
        let partitions = topic.partitions.len() as i32;
        self.write_topic_file(name, &topic.id, partitions, &altered).await?;
        self.replace_topic(&topic, altered, Vec::new()).await;
        drop(_admin);
        self.shards.topics_changed(Some(name)).await;
        Ok(())
    }

    /// Grows a topic to `count` partitions (CreatePartitions), placed as `assignments` says
    /// (one replica list per new partition) or as a new topic's would be; with
    /// `validate_only` only checks that it can.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        if name == OFFSETS_TOPIC {
            // Every group's coordinator is chosen by hashing over its partitions.
            return Err(TopicError::Internal {
                reason: format!("the partitions of {OFFSETS_TOPIC} cannot be changed"),
            });
        }
        if let Some(cluster) = &self.cluster {
            let updated =
                cluster.create_partitions(name, count, assignments, validate_only).await?;
            if let Some(state) = updated {
                self.apply_state(&state).await;
            }
            return Ok(());
        }
        let _admin = self.admin.lock().await;
        let topic =
            self.topic(name).ok_or_else(|| TopicError::Unknown { name: name.to_string() })?;
        let from = topic.partitions.len() as i32;
        check_partition_increase(name, from, count)?;
        if let Some(assignments) = &assignments {
            let me = self.config.broker_id;
            check_assignments(assignments, count - from, 1, |id| id == me)?;
        }
        if validate_only {
            return Ok(());
        }
        // Leftovers of an interrupted growth (directories made, the file not yet written).
        for index in from..count {
            let dir = partition_dir(&self.config.data_dir, name, index);
            if dir.exists() {
                warn!(dir = %dir.display(), "removing leftover partition directory before adding the partition");
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| TopicError::storage(format!("remove {}", dir.display()), e))?;
            }
        }
        let log_config = self.log_config_for(name, &topic.config);
        let added = self
            .open_partitions(&topic.name, from..count, &log_config)
            .await
            .map_err(|e| TopicError::storage(format!("open the new partitions of {name}"), e))?;
        self.write_topic_file(name, &topic.id, count, &topic.config).await?;
        self.replace_topic(&topic, topic.config.clone(), added).await;
        drop(_admin);
        self.shards.topics_changed(Some(name)).await;
        Ok(())
    }

    /// A new producer id, unique across restarts of this broker.
    pub async fn allocate_producer_id(&self) -> std::io::Result<i64> {
        let _admin = self.admin.lock().await;
        let next = self.next_producer_id.get();
        if next >= self.producer_id_limit.get() {
            let limit = next + PRODUCER_ID_BLOCK;
            let path = self.config.data_dir.join("producer-id-block");
            RealDisk.write_file_atomic(&path, limit.to_string().into_bytes()).await?;
            self.producer_id_limit.set(limit);
        }
        self.next_producer_id.set(next + 1);
        Ok(next)
    }

    /// Retention, rolls, interval flushes and high-watermark checkpoints for every
    /// partition, forever.
    pub async fn run_upkeep(self: Rc<Self>) {
        let tick_ms = 1000u64
            .min(self.config.retention_check_interval_ms)
            .min(self.config.flush_interval_ms.unwrap_or(u64::MAX))
            .max(10);
        let mut last_retention = 0i64;
        let mut last_checkpoint = std::time::Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(tick_ms)).await;
            let now = now_ms();
            let retention = now - last_retention >= self.config.retention_check_interval_ms as i64;
            if retention {
                last_retention = now;
            }
            if self.cluster.is_some()
                && last_checkpoint.elapsed().as_millis()
                    >= u128::from(crate::partition::HW_CHECKPOINT_INTERVAL_MS)
            {
                let started = std::time::Instant::now();
                last_checkpoint = started;
                let partitions = self.local_partitions();
                let count = partitions.len();
                for_each_concurrently(partitions, |partition| async move {
                    partition.checkpoint_high_watermark().await
                })
                .await;
                debug!(
                    partitions = count,
                    ms = started.elapsed().as_millis() as u64,
                    "high-watermark checkpoint round"
                );
            }
            let cleaner = cleaner::Cleaner::get(
                self.config.log_cleaner_threads,
                self.config.log_cleaner_io_max_bytes_per_second,
                self.config.log_cleaner_dedupe_buffer_size,
            );
            for topic in self.topics() {
                for partition in topic.local_partitions() {
                    if partition.compacted() {
                        let partition = Rc::clone(partition);
                        fjord_storage::io::spawn(async move {
                            partition.clean(cleaner, now).await;
                        });
                    }
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

    /// Flushes and closes every partition cleanly. Waits for a state being applied to
    /// finish, and no state is applied after.
    pub async fn close(&self) {
        self.closing.set(true);
        let _applying = match &self.cluster {
            Some(cluster) => Some(cluster.applying.lock().await),
            None => None,
        };
        for_each_concurrently(self.local_partitions(), |partition| async move {
            if let Err(error) = partition.close().await {
                warn!(partition = ?partition, %error, "unclean close");
            }
        })
        .await;
    }
}

/// Opens partition `index` of a topic from the cluster state (id `topic_id`) for this
/// broker, and records the topic id in its directory. A directory left by an earlier topic of
/// the same name (deleted while this broker was down) is not this topic's data and goes.
async fn open_clustered_partition(
    data_dir: PathBuf,
    name: Rc<str>,
    index: i32,
    log_config: fjord_storage::LogConfig,
    me: i32,
    topic_id: String,
) -> Option<Rc<Partition>> {
    let dir = crate::partition::partition_dir(&data_dir, &name, index);
    let id_file = dir.join("topic-id");
    if let Ok(found) = std::fs::read_to_string(&id_file) {
        if found.trim() != topic_id {
            warn!(dir = %dir.display(), "partition directory belongs to an earlier topic of the same name; removing it");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    match Partition::open(&data_dir, Rc::clone(&name), index, log_config, me, true).await {
        Ok(partition) => {
            if !id_file.exists() {
                if let Err(error) =
                    RealDisk.write_file_atomic(&id_file, topic_id.into_bytes()).await
                {
                    warn!(path = %id_file.display(), %error, "cannot record the topic id");
                }
            }
            Some(Rc::new(partition))
        }
        Err(error) => {
            warn!(topic = %name, partition = index, %error, "cannot open partition");
            None
        }
    }
}

pub fn topic_id_hex(topic: &Topic) -> String {
    hex(&topic.id)
}

/// Reads a single broker's topic metadata file; `None` if it is gone.
/// A single broker's dynamic configs, in its data directory.
const BROKER_CONFIGS_FILE: &str = "broker-configs.toml";
/// The largest broker configs file read.
const BROKER_CONFIGS_FILE_BYTES_MAX: u64 = 1024 * 1024;

async fn read_broker_configs(
    path: &std::path::Path,
) -> Result<Option<fjord_replication::DynamicBrokerConfigs>, BrokerError> {
    let Some(bytes) = fjord_storage::io::read_file(path, BROKER_CONFIGS_FILE_BYTES_MAX).await?
    else {
        return Ok(None);
    };
    toml::from_str(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|e| BrokerError::TopicFile { path: path.to_path_buf(), reason: e.to_string() })
}

async fn read_topic_file(path: &std::path::Path) -> Result<Option<TopicFile>, BrokerError> {
    let Some(bytes) = fjord_storage::io::read_file(path, TOPIC_FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    toml::from_str(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|e| BrokerError::TopicFile { path: path.to_path_buf(), reason: e.to_string() })
}

/// The storage settings of topic `name`'s partitions. The offsets topic has no free-space
/// floor: commits go on while produce is refused for want of space, as the floor is kept
/// for them.
fn log_config_of(
    name: &str,
    config: &TopicConfig,
    broker: &crate::config::BrokerConfig,
) -> fjord_storage::LogConfig {
    let mut log_config = config.log_config(broker);
    if name == OFFSETS_TOPIC {
        log_config.free_bytes_min = 0;
    }
    log_config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn concurrent_partition_work_is_bounded_and_answers_in_order() {
        fjord_storage::io::block_on(async {
            let running = Rc::new(Cell::new(0usize));
            let most = Rc::new(Cell::new(0usize));
            let items: Vec<u64> = (0..150).collect();
            let outputs = for_each_concurrently(items, |item| {
                let (running, most) = (Rc::clone(&running), Rc::clone(&most));
                async move {
                    running.set(running.get() + 1);
                    most.set(most.get().max(running.get()));
                    // Each yields at least once, so a round's tasks all run at the same time.
                    tokio::time::sleep(std::time::Duration::from_micros(200 - item)).await;
                    running.set(running.get() - 1);
                    item * 2
                }
            })
            .await;
            assert_eq!(
                most.get(),
                PARTITION_WORK_CONCURRENCY,
                "at most this many at once, and that many"
            );
            assert_eq!(outputs, (0..150).map(|item| item * 2).collect::<Vec<u64>>());
        });
    }

    #[test]
    fn a_panic_in_concurrent_partition_work_reaches_the_caller() {
        let outcome = std::panic::catch_unwind(|| {
            fjord_storage::io::block_on(for_each_concurrently(
                vec![1u32, 2, 3],
                |item| async move {
                    assert!(item != 2, "partition work {item} failed");
                    item
                },
            ))
        });
        let message = outcome.expect_err("the panic was swallowed");
        assert_eq!(
            message.downcast_ref::<String>().map(String::as_str),
            Some("partition work 2 failed")
        );
    }
}
