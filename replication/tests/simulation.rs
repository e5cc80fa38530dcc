//! Simulation: the replication crate's durable files, the cluster state file and a
//! partition's leader-epoch checkpoint, on the simulated disk (`fjord_storage::sim`), driven
//! through many seeded schedules of state updates (that change the state, that change
//! nothing, that the change refuses), state reads and version peeks, epoch assignments,
//! truncations, persists and reloads, with EIO, ENOSPC, torn, scattered and misdirected
//! writes injected and crashes between calls, inside any call and at any sync.
//!
//! Invariants checked:
//! - an I/O failure is reported: a call during which the disk injected a fault or lost
//!   power never returns success;
//! - the state file always reads back, checksum and all, as the last acknowledged state (an
//!   update returned it) or one that a later, failed update tried to write: never torn,
//!   never missing once a state was acknowledged; its version never goes backwards, and the
//!   first-line peek agrees with the whole read;
//! - the same holds of what a crash leaves, and that is then the state from which the
//!   version grows;
//! - the leader-epoch checkpoint loads as the entries last persisted or ones that a later,
//!   failed persist tried to write.
//!
//! One seed for everything: `FJORD_SEED` (printed at the start). Schedule `i` runs on seed
//! `FJORD_SEED + i`, so `FJORD_SEED=<that> FJORD_SIM_SCHEDULES=1` replays one schedule
//! alone. `FJORD_SIM_SCHEDULES` sets how many schedules run; `FJORD_SIM_TRACE=1` prints each
//! operation.
//!
//! The bugs the simulation found are pinned by named tests in `regression.rs`, a module of
//! this binary (one integration-test binary per crate).

mod regression;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use fjord_replication::{
    ClusterState, LeaderEpochCache, PartitionState, ReplicationError, StateStore, TopicState,
};
use fjord_storage::sim::{schedules, seed, Faults, Rng, SimDisk, SimStats, SCHEDULES_VARIABLE};
use fjord_storage::Disk;

type SimStore = StateStore<SimDisk>;
type SimEpochs = LeaderEpochCache<SimDisk>;

/// Schedules per test by default: thousands, within a few seconds of a debug build.
const SCHEDULES_DEFAULT: u64 = 2_000;
/// Operations in one schedule, at most: enough for several crashes and many versions.
const OPS_PER_SCHEDULE_MAX: u64 = 40;
/// Reads after a crash on a disk that injects faults before it is made quiet: a disk
/// failing every few calls could otherwise fail every read.
const RECOVERY_ATTEMPTS_MAX: u32 = 8;
/// Topics a schedule's state holds at most: bounds the state file (a few KB, several
/// sectors, so that torn writes have somewhere to tear).
const TOPICS_MAX: u64 = 4;
/// Partitions of one topic, at most.
const PARTITIONS_MAX: u64 = 4;
/// Brokers the simulated cluster has.
const BROKERS: i32 = 3;
/// The cluster (control) directory and a partition directory, in the simulated disk only.
const CONTROL_DIR: &str = "/sim/cluster";
const PARTITION_DIR: &str = "/sim/data/topic-0";

/// A failure with the context that replays it.
macro_rules! fail {
    ($ctx:expr, $($arg:tt)*) => {
        panic!("{}: {}", $ctx, format!($($arg)*))
    };
}

/// What the state file must read as.
#[derive(Debug, Default)]
struct StateModel {
    /// The last state an update acknowledged, or that recovery read after a crash.
    acked: ClusterState,
    /// States that failed updates tried to write since: the file may hold any of them.
    attempted: Vec<ClusterState>,
    /// The highest version read since the last crash: no read goes below it.
    seen: u64,
}

impl StateModel {
    fn allows(&self, state: &ClusterState) -> bool {
        let state = content(state);
        state == self.acked || self.attempted.contains(&state)
    }

    fn versions(&self) -> Vec<u64> {
        std::iter::once(&self.acked).chain(&self.attempted).map(|s| s.version).collect()
    }

    /// `state` was acknowledged: the file holds it durably, and no earlier attempt can
    /// come back.
    fn ack(&mut self, state: ClusterState) {
        self.seen = self.seen.max(state.version);
        self.acked = content(&state);
        self.attempted.clear();
    }
}

/// A state without its write id, which the store draws after the change ran: what the model
/// compares.
fn content(state: &ClusterState) -> ClusterState {
    ClusterState { write_id: String::new(), ..state.clone() }
}

/// What the leader-epoch checkpoint must load as.
#[derive(Debug, Default)]
struct EpochModel {
    persisted: Vec<(i32, i64)>,
    attempted: Vec<Vec<(i32, i64)>>,
}

impl EpochModel {
    fn allows(&self, entries: &[(i32, i64)]) -> bool {
        self.persisted == entries || self.attempted.iter().any(|a| a == entries)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    schedules: u64,
    ops: u64,
    updates_acked: u64,
    updates_unchanged: u64,
    updates_failed: u64,
    persists_acked: u64,
    persists_failed: u64,
    crashes: u64,
    /// Crashes after which the state file held a state no update had acknowledged.
    recovered_attempted: u64,
    disk: SimStats,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.schedules += other.schedules;
        self.ops += other.ops;
        self.updates_acked += other.updates_acked;
        self.updates_unchanged += other.updates_unchanged;
        self.updates_failed += other.updates_failed;
        self.persists_acked += other.persists_acked;
        self.persists_failed += other.persists_failed;
        self.crashes += other.crashes;
        self.recovered_attempted += other.recovered_attempted;
        self.disk += other.disk;
    }
}

/// What the disk had done before a call: to tell whether the call met a fault.
#[derive(Debug, Clone, Copy)]
struct Marks {
    injected_errors: u64,
    powered_off: bool,
}

/// One schedule: its generator, disk, files and models.
struct Schedule {
    rng: Rng,
    disk: SimDisk,
    ctx: String,
    store: SimStore,
    epochs: SimEpochs,
    state: StateModel,
    persisted: EpochModel,
    /// The partition's log end, from which new epochs start.
    log_end: i64,
    trace: bool,
    counts: Counts,
}

impl Schedule {
    async fn new(seed: u64, faults: bool) -> Schedule {
        let mut rng = Rng::new(seed);
        let faults = if faults { Faults::random(&mut rng) } else { Faults::crashes_only(&mut rng) };
        let disk = SimDisk::new(rng.next_u64(), faults);
        for dir in [CONTROL_DIR, PARTITION_DIR] {
            disk.create_dir_all(Path::new(dir)).expect("directories on a fresh disk");
        }
        let ctx = format!(
            "schedule seed {seed} (rerun: FJORD_SEED={seed} {SCHEDULES_VARIABLE}=1), faults {faults:?}"
        );
        disk.set_armed(false);
        let epochs = SimEpochs::load_on(disk.clone(), Path::new(PARTITION_DIR))
            .await
            .unwrap_or_else(|error| fail!(ctx, "loading no epoch checkpoint: {error}"));
        disk.set_armed(true);
        Schedule {
            rng,
            store: SimStore::new_on(disk.clone(), Path::new(CONTROL_DIR)),
            disk,
            ctx,
            epochs,
            state: StateModel::default(),
            persisted: EpochModel::default(),
            log_end: 0,
            trace: std::env::var_os("FJORD_SIM_TRACE").is_some(),
            counts: Counts { schedules: 1, ..Counts::default() },
        }
    }

    fn marks(&self) -> Marks {
        Marks {
            injected_errors: self.disk.stats().injected_errors,
            powered_off: self.disk.powered_off(),
        }
    }

    /// Fails if the call since `before` met a fault (injected or a power-off) and yet
    /// returned success.
    fn check_reported<T, E: std::fmt::Debug>(
        &self,
        before: Marks,
        result: &Result<T, E>,
        what: &str,
    ) {
        let after = self.marks();
        let faulted = after.injected_errors > before.injected_errors || after.powered_off;
        if faulted && result.is_ok() {
            fail!(
                self.ctx,
                "{what} met a disk fault ({before:?} -> {after:?}) and returned success"
            );
        }
    }

    /// Runs `ops` operations, each chosen by `choose` (a number below 100, see `step`),
    /// then crashes and checks what recovery reads.
    async fn run_ops(mut self, ops: u64, mut choose: impl FnMut(&mut Schedule) -> u64) -> Counts {
        for op in 0..ops {
            self.counts.ops += 1;
            let what = choose(&mut self);
            if self.trace {
                eprintln!(
                    "op {op}: {what} state {:?} epochs {:?}",
                    self.state.versions(),
                    self.persisted
                );
            }
            self.step(what).await;
            if self.disk.powered_off() {
                self.crash_and_recover().await;
            }
        }
        self.disk.cancel_power_off();
        self.crash_and_recover().await;
        self.counts.disk = self.disk.stats();
        self.counts
    }

    async fn step(&mut self, what: u64) {
        match what {
            0..=29 => self.update_changing().await,
            30..=39 => self.update_unchanged().await,
            40..=44 => self.update_refused().await,
            45..=54 => self.read().await,
            55..=69 => self.assign_epoch().await,
            70..=77 => self.truncate_epochs().await,
            78..=81 => self.reload_epochs().await,
            82..=87 => self.crash_and_recover().await,
            88..=93 => {
                let k = self.rng.below(4);
                self.trace(format_args!("power off at sync {k} from now"));
                self.disk.power_off_at_sync(k);
            }
            _ => {
                let k = self.rng.below(12);
                self.trace(format_args!("power off at call {k} from now"));
                self.disk.power_off_at_call(k);
            }
        }
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.trace {
            eprintln!("   {what}");
        }
    }

    /// An update whose change (usually) changes the state.
    async fn update_changing(&mut self) {
        let mut rng = Rng::new(self.rng.next_u64());
        let seen: RefCell<Option<(ClusterState, Option<ClusterState>)>> = RefCell::new(None);
        let before = self.marks();
        let result = self
            .store
            .update(|state| {
                let read = state.clone();
                let changed = mutate(&mut rng, state);
                let mut written = content(state);
                written.version += 1;
                *seen.borrow_mut() = Some((read, changed.then_some(written)));
                Ok::<bool, ()>(changed)
            })
            .await;
        self.check_reported(before, &result, "update");
        let seen = seen.into_inner();
        if let Some((read, _)) = &seen {
            self.check_read(read, "the state an update read");
        }
        match result {
            Ok(Ok(state)) => {
                match seen.and_then(|(_, written)| written) {
                    Some(written) if written == content(&state) => self.counts.updates_acked += 1,
                    Some(written) => {
                        fail!(self.ctx, "update returned {state:?}, wrote {written:?}")
                    }
                    None => self.counts.updates_unchanged += 1,
                }
                self.trace(format_args!("update acknowledged version {}", state.version));
                self.state.ack(state);
            }
            Ok(Err(())) => fail!(self.ctx, "a change that never refuses was refused"),
            Err(error) => {
                self.check_io(&error, "update");
                self.counts.updates_failed += 1;
                if let Some((_, Some(written))) = seen {
                    self.trace(format_args!(
                        "update of version {} failed: {error}",
                        written.version
                    ));
                    self.state.attempted.push(written);
                }
            }
        }
    }

    /// An update whose change changes nothing: what it returns is acknowledged all the same
    /// (a leader asking for the in-sync set it already has acts on the answer).
    async fn update_unchanged(&mut self) {
        let before = self.marks();
        let result = self.store.update(|_| Ok::<bool, ()>(false)).await;
        self.check_reported(before, &result, "unchanged update");
        match result {
            Ok(Ok(state)) => {
                self.check_read(&state, "an unchanged update");
                self.counts.updates_unchanged += 1;
                self.trace(format_args!("unchanged update acknowledged version {}", state.version));
                self.state.ack(state);
            }
            Ok(Err(())) => fail!(self.ctx, "a change that never refuses was refused"),
            Err(error) => self.check_io(&error, "unchanged update"),
        }
    }

    /// An update whose change refuses (a topic that already exists): nothing is written,
    /// and the refusal is acknowledged as much as a state is (the caller acts on it).
    async fn update_refused(&mut self) {
        let before = self.marks();
        let result = self
            .store
            .update(|state| {
                let read = state.clone();
                mutate(&mut Rng::new(0), state);
                Err::<bool, ClusterState>(read)
            })
            .await;
        self.check_reported(before, &result, "refused update");
        match result {
            Ok(Err(read)) => {
                self.check_read(&read, "a refused update");
                self.trace(format_args!("refusal acknowledged version {}", read.version));
                self.state.ack(read);
            }
            Ok(Ok(_)) => fail!(self.ctx, "a refusing change was not refused"),
            Err(error) => self.check_io(&error, "refused update"),
        }
    }

    /// A read, a read of a newer state, or a peek at the version.
    async fn read(&mut self) {
        let before = self.marks();
        match self.rng.below(3) {
            0 => {
                let result = self.store.read().await;
                self.check_reported(before, &result, "read");
                match result {
                    Ok(state) => self.check_read(&state, "read"),
                    Err(error) => self.check_io(&error, "read"),
                }
            }
            1 => {
                let known = self.rng.below(self.state.seen + 2);
                let result = self.store.read_newer_than(known).await;
                self.check_reported(before, &result, "read_newer_than");
                match result {
                    Ok(Some(state)) if state.version > known => {
                        self.check_read(&state, "read_newer_than")
                    }
                    Ok(Some(state)) => {
                        fail!(
                            self.ctx,
                            "read_newer_than({known}) returned version {}",
                            state.version
                        )
                    }
                    Ok(None) if self.state.versions().iter().any(|v| *v <= known) => {}
                    Ok(None) => fail!(
                        self.ctx,
                        "read_newer_than({known}) found nothing newer; the file holds one of {:?}",
                        self.state.versions()
                    ),
                    Err(error) => self.check_io(&error, "read_newer_than"),
                }
            }
            _ => {
                let result = self.store.version().await;
                self.check_reported(before, &result, "version");
                match result {
                    Ok(version) => self.check_version(version.unwrap_or(0), "version"),
                    Err(error) => self.check_io(&error, "version"),
                }
            }
        }
    }

    /// `state` was read from the file: it must be one the model allows, and no older than
    /// one read before.
    fn check_read(&mut self, state: &ClusterState, what: &str) {
        if !self.state.allows(state) {
            fail!(
                self.ctx,
                "{what} returned version {} (controller {}, {} topics), which is neither the \
                 acknowledged version {} nor one attempted since ({:?})",
                state.version,
                state.controller,
                state.topics.len(),
                self.state.acked.version,
                self.state.attempted.iter().map(|s| s.version).collect::<Vec<_>>()
            );
        }
        self.check_version(state.version, what);
    }

    fn check_version(&mut self, version: u64, what: &str) {
        if version < self.state.seen || !self.state.versions().contains(&version) {
            fail!(
                self.ctx,
                "{what} found version {version}; seen {} before, the file holds one of {:?}",
                self.state.seen,
                self.state.versions()
            );
        }
        self.state.seen = version;
    }

    /// A failure must be the disk's: a damaged file is never an answer.
    fn check_io(&self, error: &ReplicationError, what: &str) {
        if !matches!(error, ReplicationError::Io(_)) {
            fail!(self.ctx, "{what} failed, not on I/O: {error}");
        }
        self.trace(format_args!("{what} failed: {error}"));
    }

    /// A new leader epoch at the log end (sometimes a stale one, which changes nothing);
    /// persisted when it changed the cache, as a new leader does.
    async fn assign_epoch(&mut self) {
        self.log_end += self.rng.below(100) as i64;
        let latest = self.epochs.latest_epoch().unwrap_or(-1);
        let epoch = latest - 1 + self.rng.below(4) as i32;
        if self.epochs.assign(epoch, self.log_end) {
            self.persist("assign").await;
        }
    }

    /// A cut of the log (a diverging follower): the epochs from there on go.
    async fn truncate_epochs(&mut self) {
        let offset = self.rng.below(self.log_end as u64 + 1) as i64;
        self.log_end = offset;
        if self.epochs.truncate_from(offset) {
            self.persist("truncate").await;
        }
    }

    async fn persist(&mut self, what: &str) {
        let before = self.marks();
        let result = self.epochs.persist().await;
        self.check_reported(before, &result, "persist");
        let entries = self.epochs.entries().to_vec();
        match result {
            Ok(()) => {
                self.counts.persists_acked += 1;
                self.trace(format_args!("{what}: persisted {entries:?}"));
                self.persisted = EpochModel { persisted: entries, attempted: Vec::new() };
            }
            Err(error) => {
                self.check_io(&error, "persist");
                self.counts.persists_failed += 1;
                self.persisted.attempted.push(entries);
            }
        }
    }

    /// Loads the checkpoint again without a crash: what is there must be allowed.
    async fn reload_epochs(&mut self) {
        let before = self.marks();
        let result = SimEpochs::load_on(self.disk.clone(), Path::new(PARTITION_DIR)).await;
        self.check_reported(before, &result, "epoch load");
        match result {
            Ok(loaded) => self.check_epochs(&loaded, "a reload"),
            Err(error) => self.check_io(&error, "epoch load"),
        }
    }

    fn check_epochs(&self, loaded: &SimEpochs, what: &str) {
        if !self.persisted.allows(loaded.entries()) {
            fail!(
                self.ctx,
                "{what} loaded epochs {:?}; persisted {:?}, attempted since {:?}",
                loaded.entries(),
                self.persisted.persisted,
                self.persisted.attempted
            );
        }
    }

    /// A power loss and restart: both files must read back as the models allow, and what
    /// they hold is from now on the acknowledged state.
    async fn crash_and_recover(&mut self) {
        self.disk.crash();
        self.counts.crashes += 1;
        self.trace(format_args!("crash"));
        let armed = self.disk.armed();
        self.store = SimStore::new_on(self.disk.clone(), Path::new(CONTROL_DIR));
        let state = self.recover_state().await;
        if state != self.state.acked {
            self.counts.recovered_attempted += 1;
        }
        self.state.seen = 0;
        self.check_read(&state, "recovery");
        self.state.ack(state);
        self.epochs = self.recover_epochs().await;
        self.check_epochs(&self.epochs, "recovery");
        let entries = self.epochs.entries().to_vec();
        self.persisted = EpochModel { persisted: entries, attempted: Vec::new() };
        self.disk.set_armed(armed);
    }

    async fn recover_state(&mut self) -> ClusterState {
        for attempt in 0.. {
            if attempt == RECOVERY_ATTEMPTS_MAX {
                self.disk.set_armed(false);
            }
            let before = self.marks();
            let result = self.store.read().await;
            self.check_reported(before, &result, "read after a crash");
            let peek = self.store.version().await;
            match (result, peek) {
                (Ok(state), Ok(version)) => {
                    if version.unwrap_or(0) != state.version {
                        fail!(
                            self.ctx,
                            "after a crash the peek says {version:?}, the file {}",
                            state.version
                        );
                    }
                    return state;
                }
                (Err(error), _) => self.check_io(&error, "read after a crash"),
                (_, Err(error)) => self.check_io(&error, "version after a crash"),
            }
        }
        unreachable!("a quiet disk reads")
    }

    async fn recover_epochs(&mut self) -> SimEpochs {
        for attempt in 0.. {
            if attempt == RECOVERY_ATTEMPTS_MAX {
                self.disk.set_armed(false);
            }
            let before = self.marks();
            let result = SimEpochs::load_on(self.disk.clone(), Path::new(PARTITION_DIR)).await;
            self.check_reported(before, &result, "epoch load after a crash");
            match result {
                Ok(loaded) => return loaded,
                Err(error) => self.check_io(&error, "epoch load after a crash"),
            }
        }
        unreachable!("a quiet disk reads")
    }
}

/// Changes `state` as the controller, topic creation or a leader would; returns whether it
/// changed anything (sometimes it does not).
fn mutate(rng: &mut Rng, state: &mut ClusterState) -> bool {
    let before = state.clone();
    let names: Vec<String> = state.topics.keys().cloned().collect();
    match rng.below(6) {
        0 | 1 => {
            let name = format!("topic-{}", rng.below(TOPICS_MAX));
            let partitions = (0..1 + rng.below(PARTITIONS_MAX))
                .map(|_| {
                    let replicas: Vec<i32> = (0..BROKERS).collect();
                    PartitionState {
                        leader: 0,
                        leader_epoch: 0,
                        isr: replicas.clone(),
                        replicas,
                        ..PartitionState::default()
                    }
                })
                .collect();
            let config = BTreeMap::from([(
                "retention.ms".to_string(),
                rng.below(u64::from(u32::MAX)).to_string(),
            )]);
            let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            state.topics.entry(name).or_insert(TopicState { id, config, partitions });
        }
        2 if !names.is_empty() => {
            state.topics.remove(&names[rng.below(names.len() as u64) as usize]);
        }
        3 | 4 if !names.is_empty() => {
            let topic = state.topics.get_mut(&names[rng.below(names.len() as u64) as usize]);
            let partitions = &mut topic.expect("a listed topic").partitions;
            let count = partitions.len() as u64;
            let partition = &mut partitions[rng.below(count) as usize];
            if rng.coin() {
                partition.leader = (partition.leader + 1) % BROKERS;
                partition.leader_epoch += 1;
            } else {
                let dropped = rng.below(BROKERS as u64) as i32;
                partition.isr = (0..BROKERS).filter(|b| *b != dropped).collect();
            }
        }
        _ => state.controller = rng.below(BROKERS as u64) as i32,
    }
    *state != before
}

fn run_all(name: &str, faults: bool) -> Counts {
    let seed = seed(name);
    let count = schedules(SCHEDULES_DEFAULT);
    let mut total = Counts::default();
    fjord_storage::io::block_on(async {
        for i in 0..count {
            let schedule_seed = seed.wrapping_add(i);
            let mut schedule = Schedule::new(schedule_seed, faults).await;
            let ops = 1 + schedule.rng.below(OPS_PER_SCHEDULE_MAX);
            let counts = schedule.run_ops(ops, |schedule| schedule.rng.below(100)).await;
            total.add(&counts);
        }
    });
    eprintln!("{name}: {total:?}");
    total
}

#[test]
fn seeded_schedules_with_crashes_keep_the_acknowledged_state_and_epochs() {
    let total = run_all("replication simulation (crashes)", false);
    assert!(total.crashes > 0 && total.updates_acked > 0 && total.persists_acked > 0, "{total:?}");
    assert!(total.recovered_attempted > 0, "no crash kept an unacknowledged state: {total:?}");
}

#[test]
fn seeded_schedules_with_io_faults_report_every_failure() {
    let total = run_all("replication simulation (I/O faults)", true);
    assert!(total.disk.injected_errors > 0 && total.updates_failed > 0, "{total:?}");
    assert!(total.persists_failed > 0, "{total:?}");
}

/// Operation codes of a fixed workload for the crash-at-every-sync test: topic creations
/// and changes, an unchanged update, reads, epoch assignments and a truncation.
const WORKLOAD: [u64; 16] = [0, 0, 55, 5, 30, 56, 45, 10, 70, 57, 15, 46, 58, 20, 71, 47];

/// redb's crash test: count the syncs of a fixed workload, then run it again with the power
/// going off at each sync in turn, and check what the files read back as.
#[test]
fn crash_at_every_sync_of_a_workload_keeps_what_was_acknowledged() {
    let seed = seed("replication crash at every sync");
    let mut crashed = 0;
    fjord_storage::io::block_on(async {
        let dry = Schedule::new(seed, false).await;
        let disk = dry.disk.clone();
        let mut codes = WORKLOAD.iter().copied();
        dry.run_ops(WORKLOAD.len() as u64, move |_| codes.next().expect("a code per op")).await;
        let syncs = disk.stats().syncs;
        assert!(syncs > 10, "the workload syncs {syncs} times");
        for k in 0..syncs {
            let mut schedule = Schedule::new(seed, false).await;
            schedule.ctx += &format!(", power off at sync {k}");
            schedule.disk.power_off_at_sync(k);
            let mut codes = WORKLOAD.iter().copied();
            let counts = schedule
                .run_ops(WORKLOAD.len() as u64, move |_| codes.next().expect("a code per op"))
                .await;
            crashed += counts.crashes;
        }
        eprintln!("replication crash at every sync: {syncs} syncs, {crashed} crashes recovered");
    });
    assert!(crashed > 0);
}
