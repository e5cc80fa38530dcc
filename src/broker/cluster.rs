//! This broker's part in a cluster (`fjord serve --cluster FILE --broker-id N`): its
//! liveness lock and heartbeat, the controller duty when it holds the controller lock, the
//! in-sync set changes it asks for as a leader, and watching the state file.
//!
//! Failover: a broker that dies releases its liveness lock at once (the kernel drops flocks
//! of a dead process); one that is stopped (SIGSTOP, a hung disk, a paused VM) keeps it but
//! stops heartbeating, and is failed once its heartbeat is `HEARTBEAT_TIMEOUT_MS` old. The
//! active controller notices on its next tick (every `CLUSTER_TICK_MS`), elects the first
//! live in-sync replica of each partition the failed broker led, bumps the leader epoch and
//! writes the state; every broker notices the new state version on its next tick and takes
//! its new role.
//!
//! The controller role is a lease on the same liveness: the state names the controller and
//! its controller epoch. When the named controller is not alive, the first broker to tick
//! takes the role over under the state lock (controller epoch + 1). A controller writes only
//! while the state still names it with its epoch, so a stopped controller that resumes after
//! losing the role is fenced: it finds the newer epoch and steps down without writing.
//!
//! A broker that was itself stopped cannot trust its view: when its ticks stop for longer
//! than `PAUSE_SUSPECT_MS` it reads the state before it acknowledges an append
//! (`Broker::partition_for_leader`) and holds back in-sync set shrinks for one lag window,
//! since its followers' fetches went unanswered only because it was stopped.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use fjord_replication::{
    assign_replicas, cancel_reassignment, check_replica_list, complete_reassignments,
    elect_leaders, elect_one, elect_preferred_leaders, start_reassignment, ClusterFile,
    ClusterState, ElectionKind, ElectionRefusal, Liveness, PartitionState, ReassignmentRefusal,
    StateStore, TopicState,
};
use tracing::{info, warn};

use crate::broker::error::BrokerError;
use crate::broker::topic::{
    check_assignments, check_partition_increase, validate_name, TopicError,
};
use crate::broker::topic_configs::list_items;
use crate::clock::now_ms;
use crate::config::TOPIC_PARTITIONS_MAX;
use crate::group::{offsets_topic_configs, OFFSETS_TOPIC};
use crate::ids::{hex, random_id};

/// How often liveness, the controller and the state file are checked.
pub const CLUSTER_TICK_MS: u64 = 100;
/// A broker whose heartbeat is older than this is failed even if it holds its lock (hung).
pub const HEARTBEAT_TIMEOUT_MS: i64 = 3_000;
/// A gap between a shard's cluster ticks longer than this means the process was stopped
/// (or starved) long enough that its view of the state may be stale: a third of the
/// heartbeat timeout, well above a tick under load.
pub const PAUSE_SUSPECT_MS: i64 = HEARTBEAT_TIMEOUT_MS / 3;

/// What a broker's configuration tells its cluster duty.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSettings {
    /// Partitions of the offsets topic, created by the controller once enough brokers run.
    pub offsets_partitions: i32,
    /// How often the controller runs the preferred-leader rebalance; `None`: never.
    pub leader_rebalance_interval_ms: Option<u64>,
}

/// Why an election an operator asked for did not happen on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionOutcome {
    /// The topic or partition does not exist.
    Unknown,
    Refused(ElectionRefusal),
}

/// One topic's outcomes of an ElectLeaders request: (partition, outcome).
pub type TopicElections = (String, Vec<(i32, Result<(), ElectionOutcome>)>);

/// One election of `kind` on `topic`-`index` in `state`.
fn elect_in(
    state: &mut ClusterState,
    topic: &str,
    index: i32,
    live: &BTreeSet<i32>,
    kind: ElectionKind,
) -> Result<(), ElectionOutcome> {
    let partition = state
        .topics
        .get_mut(topic)
        .and_then(|t| t.partitions.get_mut(usize::try_from(index).ok()?))
        .ok_or(ElectionOutcome::Unknown)?;
    let old_leader = partition.leader;
    let new_leader = elect_one(partition, live, kind).map_err(ElectionOutcome::Refused)?;
    info!(%topic, partition = index, old_leader, new_leader, leader_epoch = partition.leader_epoch, ?kind, "leader elected on request");
    Ok(())
}

/// Why a reassignment request was refused for a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassignmentError {
    /// The topic or partition does not exist.
    Unknown,
    Refused(ReassignmentRefusal),
    /// The target has another number of replicas, and the request did not allow it.
    ReplicationFactor {
        from: usize,
        to: usize,
    },
}

/// One partition's outcome of an AlterPartitionReassignments request.
pub type ReassignmentOutcome = Result<(), ReassignmentError>;

pub struct Cluster {
    /// Partitions of the offsets topic, created by the controller once enough brokers run.
    pub offsets_partitions: i32,
    /// How often the controller runs the preferred-leader rebalance; `None`: never.
    leader_rebalance_interval_ms: Option<u64>,
    /// When the controller last ran it (ms).
    last_rebalance_ms: Cell<i64>,
    pub file: ClusterFile,
    pub store: StateStore,
    pub me: i32,
    /// This broker's liveness lock and heartbeat; held by shard 0 only (the other shards of
    /// the broker join with `Cluster::view`).
    pub(crate) liveness: Option<Liveness>,
    /// The controller epoch this broker holds the controller role in, if it does; only
    /// shard 0 competes for it.
    controller_epoch: Cell<Option<u64>>,
    /// When this shard's cluster duty last ticked (ms), and when it last found its ticks
    /// had stopped for longer than `PAUSE_SUSPECT_MS` (a pause of the process).
    last_tick_ms: Cell<i64>,
    resumed_ms: Cell<i64>,
    /// The state version and live brokers of the controller's last election pass that
    /// changed nothing: until either changes, the next pass would change nothing either.
    controller_idle: RefCell<Option<(u64, BTreeSet<i32>)>>,
    /// The last state applied by this shard.
    pub state: RefCell<ClusterState>,
    /// Held while a state is applied: the tick, admin requests and produce requests that
    /// found this broker behind all apply states, and two at once would open the same
    /// partition twice.
    pub(crate) applying: tokio::sync::Mutex<()>,
    /// Held while `Broker::sync_cluster_state` reads and applies the state file; with
    /// `syncs_started`, concurrent callers share reads.
    pub(crate) syncing: tokio::sync::Mutex<()>,
    pub(crate) syncs_started: std::cell::Cell<u64>,
}

impl Cluster {
    /// Loads the cluster file and takes this broker's liveness lock.
    pub fn join(path: PathBuf, me: i32, settings: ClusterSettings) -> Result<Cluster, BrokerError> {
        let file = ClusterFile::load(&path)?;
        if file.broker(me).is_none() {
            return Err(BrokerError::NotInCluster { id: me, path });
        }
        let mut attempts = 0;
        let liveness = loop {
            match Liveness::acquire(&file.dir, me) {
                Ok(liveness) => break liveness,
                // A controller probing our lock holds it for an instant: try again briefly.
                Err(error) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    if attempts == 20 {
                        return Err(error.into());
                    }
                }
                Err(error) => return Err(error.into()),
            }
        };
        liveness.beat(now_ms())?;
        Ok(Cluster::with(file, me, settings, Some(liveness)))
    }

    /// The cluster as seen by a shard other than shard 0 of the same broker: it applies the
    /// state to its own partitions and keeps their replicas in sync, while shard 0 holds the
    /// liveness lock (taken by `join` before any other shard starts) and the controller duty.
    pub fn view(path: PathBuf, me: i32, settings: ClusterSettings) -> Result<Cluster, BrokerError> {
        let file = ClusterFile::load(&path)?;
        if file.broker(me).is_none() {
            return Err(BrokerError::NotInCluster { id: me, path });
        }
        Ok(Cluster::with(file, me, settings, None))
    }

    fn with(
        file: ClusterFile,
        me: i32,
        settings: ClusterSettings,
        liveness: Option<Liveness>,
    ) -> Cluster {
        let store = StateStore::new(&file.dir);
        Cluster {
            offsets_partitions: settings.offsets_partitions,
            leader_rebalance_interval_ms: settings.leader_rebalance_interval_ms,
            last_rebalance_ms: Cell::new(now_ms()),
            file,
            store,
            me,
            liveness,
            controller_epoch: Cell::new(None),
            last_tick_ms: Cell::new(now_ms()),
            resumed_ms: Cell::new(i64::MIN / 2),
            controller_idle: RefCell::new(None),
            state: RefCell::new(ClusterState::default()),
            applying: tokio::sync::Mutex::new(()),
            syncing: tokio::sync::Mutex::new(()),
            syncs_started: std::cell::Cell::new(0),
        }
    }

    pub fn address_of(&self, id: i32) -> Option<String> {
        self.file.broker(id).map(|b| b.address.clone())
    }

    pub fn is_alive(&self, id: i32) -> bool {
        id == self.me
            || Liveness::is_alive(&self.file.dir, id, now_ms(), HEARTBEAT_TIMEOUT_MS)
                .unwrap_or(false)
    }

    pub fn live_brokers(&self) -> BTreeSet<i32> {
        self.file.brokers.iter().map(|b| b.id).filter(|id| self.is_alive(*id)).collect()
    }

    pub fn is_controller(&self) -> bool {
        self.controller_epoch.get().is_some()
    }

    /// Whether this shard's view of the state may be stale: its cluster ticks have stopped
    /// for longer than `PAUSE_SUSPECT_MS` (the process was stopped or starved), and the
    /// state has not been read since. Until it has, nothing is acknowledged as leader.
    pub fn view_may_be_stale(&self, now: i64) -> bool {
        now - self.last_tick_ms.get() > PAUSE_SUSPECT_MS
    }

    /// Marks the view fresh at `now`: a tick that found nothing stale, or the state read
    /// after a pause (only then, so that no append is acknowledged from the old view while
    /// the read is under way). A pause ends here.
    pub(crate) fn viewed(&self, now: i64) {
        if self.view_may_be_stale(now) {
            self.resumed_ms.set(now);
        }
        self.last_tick_ms.set(now.max(self.last_tick_ms.get()));
    }

    /// Whether in-sync set shrinks are held back at `now`: within one lag window of a
    /// resume, when followers' fetches went unanswered because this broker was stopped.
    pub fn holding_shrinks(&self, now: i64, lag_max_ms: i64) -> bool {
        now - self.resumed_ms.get() < lag_max_ms
    }

    /// Adds a topic to the cluster state, its replicas spread over the live brokers.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        config: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<(), TopicError> {
        if !internal {
            validate_name(name).map_err(|reason| TopicError::InvalidName { reason })?;
            if name.starts_with("__") {
                return Err(TopicError::Internal {
                    reason: format!("topic names starting with '__' are reserved: {name}"),
                });
            }
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions { partitions, max: TOPIC_PARTITIONS_MAX });
        }
        let live: Vec<i32> = self.live_brokers().into_iter().collect();
        if replication_factor < 1 || replication_factor as usize > live.len() {
            return Err(TopicError::InvalidReplicationFactor {
                replication_factor,
                live: live.len(),
            });
        }
        let start = (crate::ids::java_string_hash(name) & 0x7fff_ffff) as usize;
        let replicas = assign_replicas(&live, partitions, replication_factor, start);
        let result = self
            .store
            .update(|state| {
                if state.topics.contains_key(name) {
                    return Err(TopicError::AlreadyExists { name: name.to_string() });
                }
                let partitions = replicas
                    .iter()
                    .map(|r| PartitionState {
                        replicas: r.clone(),
                        leader: r[0],
                        leader_epoch: 0,
                        isr: r.clone(),
                        ..PartitionState::default()
                    })
                    .collect();
                state.topics.insert(
                    name.to_string(),
                    TopicState { id: hex(&random_id()), config: config.clone(), partitions },
                );
                Ok(true)
            })
            .await
            .map_err(|e| TopicError::storage("the cluster state", e))?;
        result.map(|_| {
            info!(
                topic = name,
                partitions, replication_factor, "created topic in the cluster state"
            );
        })
    }

    /// Adds partitions to a topic in the cluster state (CreatePartitions): the new ones
    /// placed as `assignments` says or where a new topic's would be, led by their first
    /// replica with every replica in sync (they are empty). `None` with `validate_only`,
    /// after the checks; otherwise the state written.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Option<ClusterState>, TopicError> {
        let live: Vec<i32> = self.live_brokers().into_iter().collect();
        let known = |id: i32| self.file.broker(id).is_some();
        let start = (crate::ids::java_string_hash(name) & 0x7fff_ffff) as usize;
        let place = |state: &ClusterState| -> Result<Vec<Vec<i32>>, TopicError> {
            let topic = state
                .topics
                .get(name)
                .ok_or_else(|| TopicError::Unknown { name: name.to_string() })?;
            let from = topic.partitions.len() as i32;
            check_partition_increase(name, from, count)?;
            let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
            if let Some(assignments) = &assignments {
                check_assignments(assignments, count - from, replication_factor, known)?;
                return Ok(assignments.clone());
            }
            if replication_factor > live.len() {
                return Err(TopicError::InvalidReplicationFactor {
                    replication_factor: replication_factor as i16,
                    live: live.len(),
                });
            }
            let placed = assign_replicas(&live, count, replication_factor as i16, start);
            Ok(placed[from as usize..].to_vec())
        };
        if validate_only {
            place(&self.state.borrow())?;
            return Ok(None);
        }
        let updated = self
            .store
            .update(|state| {
                let added = place(state)?;
                let topic = state.topics.get_mut(name).expect("placed only for a known topic");
                let mut partitions = Vec::with_capacity(added.len());
                for (i, replicas) in added.into_iter().enumerate() {
                    let isr: Vec<i32> =
                        replicas.iter().copied().filter(|r| live.contains(r)).collect();
                    let Some(&leader) = isr.first() else {
                        return Err(TopicError::InvalidReplicaAssignment {
                            reason: format!(
                                "All brokers specified in the manual partition assignment for partition {} are not alive.",
                                topic.partitions.len() + i
                            ),
                        });
                    };
                        partitions.push(PartitionState {
                        leader,
                        leader_epoch: 0,
                        isr,
                        replicas,
                        ..PartitionState::default()
                    });
                }
                topic.partitions.extend(partitions);
                Ok(true)
            })
            .await
            .map_err(|e| TopicError::storage("the cluster state", e))??;
        info!(topic = name, partitions = count, "added partitions in the cluster state");
        Ok(Some(updated))
    }

    /// Elections an operator asked for (ElectLeaders), all in one state update: for
    /// `partitions`, or for every partition (`None`, where those that need none are left
    /// out of the answer, as Kafka does). The state written, and each topic's outcomes in
    /// request order.
    pub async fn elect(
        &self,
        kind: ElectionKind,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<(ClusterState, Vec<TopicElections>), TopicError> {
        let live = self.live_brokers();
        let mut outcomes = Vec::new();
        let updated = self
            .store
            .update(|state| {
                outcomes.clear();
                let wanted: Vec<(String, Vec<i32>)> = match &partitions {
                    Some(list) => list.clone(),
                    None => state
                        .topics
                        .iter()
                        .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
                        .collect(),
                };
                let mut changed = false;
                for (topic, indexes) in wanted {
                    let mut results = Vec::with_capacity(indexes.len());
                    for index in indexes {
                        let outcome = elect_in(state, &topic, index, &live, kind);
                        changed |= outcome.is_ok();
                        let not_needed =
                            outcome == Err(ElectionOutcome::Refused(ElectionRefusal::NotNeeded));
                        if partitions.is_some() || !not_needed {
                            results.push((index, outcome));
                        }
                    }
                    outcomes.push((topic, results));
                }
                Ok::<bool, ()>(changed)
            })
            .await
            .map_err(|e| TopicError::storage("the cluster state", e))?;
        let state = updated.map_err(|()| TopicError::State {
            reason: "the election could not be written".to_string(),
        })?;
        Ok((state, outcomes))
    }

    /// Starts (`Some(target)`) or cancels (`None`) reassignments, all in one state update
    /// (AlterPartitionReassignments). The state written, and each partition's outcome in
    /// request order.
    pub async fn alter_reassignments(
        &self,
        wanted: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    ) -> Result<(ClusterState, Vec<ReassignmentOutcome>), TopicError> {
        let known = |id: i32| self.file.broker(id).is_some();
        let mut outcomes = Vec::new();
        let updated = self
            .store
            .update(|state| {
                outcomes.clear();
                let mut changed = false;
                for (topic, index, target) in &wanted {
                    let partition = state
                        .topics
                        .get_mut(topic)
                        .and_then(|t| t.partitions.get_mut(usize::try_from(*index).ok()?));
                    let outcome = match (partition, target) {
                        (None, _) => Err(ReassignmentError::Unknown),
                        (Some(partition), Some(target))
                            if !allow_replication_factor_change
                                && target.len()
                                    != partition.replicas.len() - partition.adding.len() =>
                        {
                            Err(ReassignmentError::ReplicationFactor {
                                from: partition.replicas.len() - partition.adding.len(),
                                to: target.len(),
                            })
                        }
                        (Some(partition), Some(target)) => check_replica_list(target, known)
                            .map(|()| changed |= start_reassignment(partition, target))
                            .map_err(ReassignmentError::Refused),
                        (Some(partition), None) => cancel_reassignment(partition)
                            .map(|()| changed = true)
                            .map_err(ReassignmentError::Refused),
                    };
                    outcomes.push(outcome);
                }
                Ok::<bool, ()>(changed)
            })
            .await
            .map_err(|e| TopicError::storage("the cluster state", e))?;
        let state = updated.map_err(|()| TopicError::State {
            reason: "the reassignment could not be written".to_string(),
        })?;
        for ((topic, index, target), outcome) in wanted.iter().zip(&outcomes) {
            match (target, outcome) {
                (Some(target), Ok(())) => {
                    info!(%topic, partition = index, ?target, "reassignment started")
                }
                (None, Ok(())) => info!(%topic, partition = index, "reassignment cancelled"),
                (_, Err(error)) => warn!(%topic, partition = index, ?error, "reassignment refused"),
            }
        }
        Ok((state, outcomes))
    }

    /// Makes an `__consumer_offsets` created by a Fjord from before compaction compacted.
    async fn compact_offsets_topic(&self) {
        let compacted = |config: &BTreeMap<String, String>| {
            config.get("cleanup.policy").is_some_and(|p| list_items(p).contains(&"compact"))
        };
        let stale =
            self.state.borrow().topics.get(OFFSETS_TOPIC).is_some_and(|t| !compacted(&t.config));
        if !stale {
            return;
        }
        let updated = self
            .store
            .update(|state| {
                let Some(topic) = state.topics.get_mut(OFFSETS_TOPIC) else { return Ok(false) };
                if compacted(&topic.config) {
                    return Ok(false);
                }
                topic.config.insert("cleanup.policy".to_string(), "compact".to_string());
                Ok::<bool, ()>(true)
            })
            .await;
        match updated {
            Ok(Ok(_)) => info!("{OFFSETS_TOPIC} is compacted from now on (cleanup.policy=compact)"),
            Ok(Err(())) => {}
            Err(error) => warn!(%error, "cannot make {OFFSETS_TOPIC} compacted"),
        }
    }

    /// Controller duty for one tick: take the role over if its holder is not alive, then
    /// elect.
    pub(crate) async fn control(&self) {
        let Some(epoch) = self.controller_term().await else { return };
        let live = self.live_brokers();
        if !self.state.borrow().topics.contains_key(OFFSETS_TOPIC)
            && live.len() >= self.file.replication_factor as usize
        {
            let config = offsets_topic_configs();
            if let Err(error) = self
                .create_topic(
                    OFFSETS_TOPIC,
                    self.offsets_partitions,
                    self.file.replication_factor,
                    config,
                    true,
                )
                .await
            {
                if !matches!(error, TopicError::AlreadyExists { .. }) {
                    warn!(%error, "cannot create {OFFSETS_TOPIC}");
                }
            }
        }
        self.compact_offsets_topic().await;
        // An unchanged state and the same live brokers need no pass (it would read and parse
        // the whole state file, every tick).
        let version = match self.store.version().await {
            Ok(version) => version,
            Err(error) => {
                warn!(%error, "controller cannot read the cluster state version");
                None
            }
        };
        let now = now_ms();
        let rebalance = self
            .leader_rebalance_interval_ms
            .is_some_and(|interval| now - self.last_rebalance_ms.get() >= interval as i64);
        if rebalance {
            self.last_rebalance_ms.set(now);
        }
        if !rebalance
            && version.is_some()
            && self
                .controller_idle
                .borrow()
                .as_ref()
                .is_some_and(|(v, l)| Some(*v) == version && *l == live)
        {
            return;
        }
        let mut elections = Vec::new();
        let mut idle_at = None;
        let mut fenced = false;
        let me = self.me;
        let result = self
            .store
            .update(|state| {
                if state.controller != me || state.controller_epoch != epoch {
                    fenced = true;
                    return Ok(false);
                }
                let before: Vec<(String, usize, Vec<i32>)> = state
                    .topics
                    .iter()
                    .flat_map(|(name, t)| t.partitions.iter().enumerate().map(move |(i, p)| (name.clone(), i, p.isr.clone())))
                    .collect();
                let (mut found, isr_changed) = elect_leaders(state, &live);
                if rebalance {
                    found.extend(elect_preferred_leaders(state, &live));
                }
                let completed = complete_reassignments(state, &live);
                for (topic, partition) in &completed {
                    let p = &state.topics[topic].partitions[*partition as usize];
                    info!(%topic, partition, replicas = ?p.replicas, leader = p.leader, "reassignment completed");
                }
                let isr_changed = isr_changed || !completed.is_empty();
                if isr_changed {
                    for (name, i, isr) in before {
                        let now = &state.topics[&name].partitions[i].isr;
                        if *now != isr {
                            info!(topic = %name, partition = i, old = ?isr, new = ?now, live = ?live, "controller removed dead brokers from the in-sync set");
                        }
                    }
                }
                let changed = !found.is_empty() || isr_changed;
                elections = found;
                if !changed {
                    idle_at = Some(state.version);
                }
                Ok::<bool, ()>(changed)
            })
            .await;
        *self.controller_idle.borrow_mut() = idle_at.map(|version| (version, live));
        if let Err(error) = result {
            warn!(%error, "controller cannot update the cluster state");
        }
        if fenced {
            self.controller_epoch.set(None);
            *self.controller_idle.borrow_mut() = None;
            warn!(
                broker = me,
                controller_epoch = epoch,
                "lost the controller role while stopped; stepping down without writing"
            );
            return;
        }
        for e in elections {
            info!(topic = %e.topic, partition = e.partition, old_leader = e.old_leader, new_leader = e.new_leader, leader_epoch = e.leader_epoch, "leader elected");
        }
    }

    /// The controller epoch this broker acts in this tick: the one it holds, or a new one
    /// if the controller the state names is not alive (taken over under the state lock, so
    /// one broker wins). `None` while a live broker holds the role.
    async fn controller_term(&self) -> Option<u64> {
        if let Some(epoch) = self.controller_epoch.get() {
            return Some(epoch);
        }
        let me = self.me;
        let named = self.state.borrow().controller;
        if named >= 0 && named != me && self.is_alive(named) {
            return None;
        }
        let result = self
            .store
            .update(|state| {
                let holder = state.controller;
                if holder >= 0 && holder != me && self.is_alive(holder) {
                    return Err(holder);
                }
                state.controller = me;
                state.controller_epoch += 1;
                Ok(true)
            })
            .await;
        match result {
            Ok(Ok(state)) => {
                self.controller_epoch.set(Some(state.controller_epoch));
                info!(
                    broker = me,
                    controller_epoch = state.controller_epoch,
                    "became the active controller"
                );
                Some(state.controller_epoch)
            }
            Ok(Err(_holder)) => None,
            Err(error) => {
                warn!(%error, "cannot take over the controller role");
                None
            }
        }
    }

    /// Asks for `partition`'s in-sync set to become `isr`, unless a request for it is already
    /// on its way: one at a time per partition, so a busy leader cannot pile up requests on
    /// the state lock. The outcome is applied to the local role at once.
    pub fn request_isr_change(
        self: &Rc<Self>,
        partition: &Rc<crate::partition::Partition>,
        isr: Vec<i32>,
    ) {
        if partition.replica.isr_change_pending.replace(true) {
            return;
        }
        let (cluster, partition) = (Rc::clone(self), Rc::clone(partition));
        fjord_storage::io::spawn(async move {
            let epoch = partition.replica.leader_epoch();
            if let Some((written, version)) =
                cluster.change_isr(&partition.topic, partition.index, epoch, isr).await
            {
                partition.set_isr(epoch, written, version);
            }
            partition.replica.isr_change_pending.set(false);
        });
    }

    /// A leader asks for a new in-sync set; applied only if it still leads in that epoch.
    /// Returns the in-sync set written and the state version it is in, if it was.
    pub async fn change_isr(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        mut isr: Vec<i32>,
    ) -> Option<(Vec<i32>, u64)> {
        let me = self.me;
        // A follower's last fetches may predate its death: only live brokers are in sync (the
        // controller removes dead ones, and must not be undone here).
        isr.retain(|r| *r == me || self.is_alive(*r));
        let result = self
            .store
            .update(|state| {
                let Some(p) = state
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.partitions.get_mut(partition as usize))
                else {
                    return Ok::<bool, ()>(false);
                };
                if p.leader != me || p.leader_epoch != leader_epoch || p.isr == isr {
                    return Ok(false);
                }
                info!(topic, partition, old = ?p.isr, new = ?isr, "in-sync set changed");
                p.isr = isr.clone();
                Ok(true)
            })
            .await;
        match result {
            Ok(Ok(state)) => {
                let current = state.partition(topic, partition)?;
                (current.leader == me && current.leader_epoch == leader_epoch)
                    .then(|| (current.isr.clone(), state.version))
            }
            Ok(Err(())) => None,
            Err(error) => {
                warn!(topic, partition, %error, "cannot change the in-sync set");
                None
            }
        }
    }
}
