//! The live cluster state: every topic's partitions with their replicas, leader, leader
//! epoch and in-sync set, in the cluster directory's `cluster-state/`, one TOML file per
//! version (`00000000000000000042.toml`). The newest version is the state.
//!
//! No writer holds a lock. A writer reads the newest version N, changes it, writes
//! `<N+1>.tmp.<nonce>`, fdatasyncs it, and renames it to `<N+1>.toml` with
//! `RENAME_NOREPLACE`: of two writers that read N, exactly one takes the name, and the other
//! reads again and reapplies its change to the winner's state. A lock held across the write
//! (the `flock` this replaced) stopped every state write for as long as its holder was
//! stopped (SIGSTOP, a VM pause) between taking and releasing it; a name cannot be held.
//! After the rename the directory is fsynced, so an answer is durable before it is returned,
//! and a crash at any point leaves the old newest version or the new one, never a torn file.
//!
//! Only the newest `VERSIONS_KEPT` versions are kept: the writer of a version removes the
//! oldest ones, lowest first. A removed name could be taken again by a writer that read its
//! base long ago (stopped in between), which would look like winning; so after its rename a
//! writer checks that its base version is still on disk with the `write-id` it read. Removal
//! is lowest first, so a base still on disk means every name above it is the original one,
//! and the rename really claimed the version after it. A writer that finds its base gone
//! removes the name it took (never the newest: the newest is never removed) and starts over.
//! (A writer stopped between its rename and that check for longer than `VERSIONS_KEPT` more
//! writes take also finds its base gone and reapplies its change: every change is
//! conditional on the state it reads, so a reapplied one changes nothing or refuses, as a
//! topic's creation then answers that the topic exists.)
//!
//! A cluster directory from before versioned states has `cluster-state.toml` alone: it is
//! read while `cluster-state/` holds no version, and the first write copies it in as its
//! base. The store reaches its files only through a [`Disk`] (the machine's by default; the
//! simulator in `tests/simulation.rs`).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_storage::{Disk, DiskFile, RealDisk};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::ReplicationError;

/// A state file's size limit: bounds what a broker reads every poll.
pub(crate) const STATE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Versions kept on disk: the newest and the seven before it.
pub const VERSIONS_KEPT: u64 = 8;
/// Times a writer reads and retries after losing a version's name to another writer before
/// it gives up (each loss means another writer's change was written: progress).
const WRITE_ATTEMPTS_MAX: u32 = 1_000;
/// The pause after a lost race grows to this, in milliseconds.
const RETRY_PAUSE_MS_MAX: u64 = 20;
/// The directory of versions, and the single file of cluster directories before it.
const VERSIONS_DIR: &str = "cluster-state";
const LEGACY_FILE: &str = "cluster-state.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterState {
    pub version: u64,
    /// 16 hex digits unique to the write that made this version (empty before the first).
    /// A writer checks its base still carries the id it read (see the module notes).
    #[serde(default)]
    pub write_id: String,
    /// The active controller (-1: none yet). It holds the role while its liveness heartbeat
    /// is fresh; another broker takes it over, in a state write, once it is not.
    #[serde(default = "no_controller")]
    pub controller: i32,
    /// Grows by one each time a broker becomes controller. A controller writes the state
    /// only while the state still names it with the epoch it took, so one that lost the
    /// role (stopped, then resumed) can never write the state again as controller.
    #[serde(default)]
    pub controller_epoch: u64,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicState>,
    /// Broker configs changed while the cluster runs (IncrementalAlterConfigs and
    /// AlterConfigs on BROKER resources): every broker applies them at its next read.
    #[serde(default, skip_serializing_if = "DynamicBrokerConfigs::is_empty")]
    pub broker_configs: DynamicBrokerConfigs,
}

/// Broker configs set while brokers run, as Kafka keeps them: a cluster-wide default (the
/// resource named "") and per-broker values (the resource named by a broker id), which
/// win over the default. Names and values as on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DynamicBrokerConfigs {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster_default: BTreeMap<String, String>,
    /// Broker id (as a string: a TOML key) -> its own values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_broker: BTreeMap<String, BTreeMap<String, String>>,
}

impl DynamicBrokerConfigs {
    pub fn is_empty(&self) -> bool {
        self.cluster_default.is_empty() && self.per_broker.values().all(BTreeMap::is_empty)
    }

    /// The values of one resource: `None` for the cluster default, else a broker's.
    pub fn of(&self, broker: Option<i32>) -> BTreeMap<String, String> {
        match broker {
            None => self.cluster_default.clone(),
            Some(id) => self.per_broker.get(&id.to_string()).cloned().unwrap_or_default(),
        }
    }

    /// Replaces one resource's values (an empty map removes the broker's entry).
    pub fn set(&mut self, broker: Option<i32>, values: BTreeMap<String, String>) {
        match broker {
            None => self.cluster_default = values,
            Some(id) if values.is_empty() => {
                self.per_broker.remove(&id.to_string());
            }
            Some(id) => {
                self.per_broker.insert(id.to_string(), values);
            }
        }
    }
}

fn no_controller() -> i32 {
    -1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TopicState {
    /// 32 hex digits.
    pub id: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionState {
    /// Preferred order: the first live in-sync replica leads. While a reassignment runs,
    /// the target replicas followed by those being removed (Kafka's order).
    pub replicas: Vec<i32>,
    /// -1 when no in-sync replica is alive (the partition is offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// A reassignment in progress: replicas being added (copying the log as followers)...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// ... and replicas that leave once every added one is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// Whether a reassignment of this partition is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition will have once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }
}

/// Reads and writes the state of one cluster directory, on disk `D` (the machine's by
/// default).
#[derive(Debug, Clone)]
pub struct StateStore<D: Disk = RealDisk> {
    disk: D,
    dir: PathBuf,
}

/// How a write attempt ended when it did not answer.
enum Attempt {
    /// Another writer took the version's name first (or the base is gone): read again.
    Lost,
    /// The directory held no version: the base was copied in; read again.
    Seeded,
}

impl StateStore {
    /// The store of cluster directory `dir` on the machine's disk.
    pub fn new(dir: &Path) -> StateStore {
        StateStore::new_on(RealDisk, dir)
    }
}

impl<D: Disk> StateStore<D> {
    /// The store of cluster directory `dir` on `disk`.
    pub fn new_on(disk: D, dir: &Path) -> StateStore<D> {
        StateStore { disk, dir: dir.to_path_buf() }
    }

    /// The directory of versions.
    pub fn versions_dir(&self) -> PathBuf {
        self.dir.join(VERSIONS_DIR)
    }

    /// The file of `version`.
    pub fn version_path(&self, version: u64) -> PathBuf {
        self.versions_dir().join(format!("{version:020}.toml"))
    }

    /// The file the state is read from now: the newest version's, or the file of a
    /// cluster directory from before versions.
    pub fn path(&self) -> Result<PathBuf, ReplicationError> {
        Ok(match self.newest_version()? {
            Some(version) => self.version_path(version),
            None => self.dir.join(LEGACY_FILE),
        })
    }

    /// The current state (empty if none was written yet).
    pub async fn read(&self) -> Result<ClusterState, ReplicationError> {
        match self.newest_version()? {
            Some(version) => self.read_version(version).await,
            None => Ok(self.read_file(&self.dir.join(LEGACY_FILE)).await?.unwrap_or_default()),
        }
    }

    /// The state, if a newer one than `known` (a version) was written; `None` otherwise. A
    /// poll of an unchanged state lists the directory of versions and reads no file (800 KB
    /// of TOML for 10,000 partitions, parsed every 100 ms, kept a CPU busy).
    pub async fn read_newer_than(
        &self,
        known: u64,
    ) -> Result<Option<ClusterState>, ReplicationError> {
        if self.version().await?.is_some_and(|version| version <= known) {
            return Ok(None);
        }
        let state = self.read().await?;
        Ok((state.version > known).then_some(state))
    }

    /// The newest version's number, from the names alone (from the old single file's first
    /// line before any version exists); `None` if no state was written.
    pub async fn version(&self) -> Result<Option<u64>, ReplicationError> {
        if let Some(version) = self.newest_version()? {
            return Ok(Some(version));
        }
        let legacy = self.dir.join(LEGACY_FILE);
        Ok(self.read_head(&legacy).await?.and_then(|head| leading_version(&head)))
    }

    /// Changes the state. `change` returns whether it changed anything; only then is a new
    /// version written. Returns the state after, or the change's refusal. `change` runs
    /// again on the newer state whenever another writer wrote first, so it must decide from
    /// the state it is given.
    ///
    /// Either answer is durable before it is returned. An update whose directory sync failed
    /// after its rename leaves its state readable but not durable, so an update that writes
    /// nothing syncs the directory before answering from what it read (the file's data was
    /// synced before its rename; only its name may be pending). Without it, a caller asking
    /// again for what a failed update had written (a leader's in-sync set) acted on a state
    /// a crash could undo.
    pub async fn update<E>(
        &self,
        mut change: impl FnMut(&mut ClusterState) -> Result<bool, E>,
    ) -> Result<Result<ClusterState, E>, ReplicationError> {
        for attempt in 0..WRITE_ATTEMPTS_MAX {
            match self.try_update(&mut change).await? {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Seeded) => {}
                Err(Attempt::Lost) => {
                    let pause = (u64::from(attempt) + 1).min(RETRY_PAUSE_MS_MAX);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
        Err(ReplicationError::StateFile {
            path: self.versions_dir().display().to_string(),
            reason: format!("lost the race for a new version {WRITE_ATTEMPTS_MAX} times"),
        })
    }

    async fn try_update<E>(
        &self,
        change: &mut impl FnMut(&mut ClusterState) -> Result<bool, E>,
    ) -> Result<Result<Result<ClusterState, E>, Attempt>, ReplicationError> {
        let Some(base_version) = self.newest_version()? else {
            self.seed().await?;
            return Ok(Err(Attempt::Seeded));
        };
        let mut state = self.read_version(base_version).await?;
        let base_id = state.write_id.clone();
        match change(&mut state) {
            Ok(true) => {}
            unwritten => {
                self.disk.sync_dir(&self.versions_dir()).await?;
                return Ok(Ok(unwritten.map(|_| state)));
            }
        }
        state.version = base_version + 1;
        state.write_id = format!("{:016x}", unique_u64());
        if !self.claim(&state).await? {
            return Ok(Err(Attempt::Lost));
        }
        if !self.still_holds(base_version, &base_id).await? {
            warn!(
                version = state.version,
                "state write: base version {base_version} was replaced while this writer was \
                 held up; withdrawing the version it took and writing again"
            );
            self.disk.remove_file(&self.version_path(state.version)).await?;
            return Ok(Err(Attempt::Lost));
        }
        // Old versions go before the sync that makes this one durable, which makes their
        // removal durable with it. A failure to remove one fails the update (its version is
        // written, not yet durable), as any other disk error does.
        self.remove_old(state.version).await?;
        self.disk.sync_dir(&self.versions_dir()).await?;
        Ok(Ok(Ok(state)))
    }

    /// Writes `state` to a temporary file and renames it to its version's name if that is
    /// free. Returns whether it took the name.
    async fn claim(&self, state: &ClusterState) -> Result<bool, ReplicationError> {
        let text = toml::to_string(state).map_err(|e| ReplicationError::StateFile {
            path: self.version_path(state.version).display().to_string(),
            reason: e.to_string(),
        })?;
        let temp =
            self.versions_dir().join(format!("{:020}.tmp.{}", state.version, state.write_id));
        let file = self.disk.open_rw(&temp, true).await?;
        let (written, _) = file.write_all_at(with_checksum(text).into_bytes(), 0).await;
        let synced = match written {
            Ok(()) => file.sync_data().await,
            Err(error) => Err(error),
        };
        let closed = file.close().await;
        if let Err(error) = synced.and(closed) {
            let _ = self.disk.remove_file(&temp).await;
            return Err(error.into());
        }
        match self.disk.rename_noreplace(&temp, &self.version_path(state.version)).await {
            Ok(()) => Ok(true),
            Err(error)
                if matches!(error.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) =>
            {
                // Taken by another writer; or the temporary file was removed as older than
                // the newest version, which another writer had then also passed.
                debug!(version = state.version, "state write lost the race for its version");
                self.disk.remove_file(&temp).await?;
                Ok(false)
            }
            Err(error) => {
                let _ = self.disk.remove_file(&temp).await;
                Err(error.into())
            }
        }
    }

    /// Whether version `base` is still on disk as the write `write_id` made it.
    async fn still_holds(&self, base: u64, write_id: &str) -> Result<bool, ReplicationError> {
        let Some(head) = self.read_head(&self.version_path(base)).await? else {
            return Ok(false);
        };
        Ok(leading_version(&head) == Some(base) && leading_write_id(&head) == Some(write_id))
    }

    /// Copies the old single state file (or an empty state) in as the first version.
    async fn seed(&self) -> Result<(), ReplicationError> {
        let legacy = self.read_file(&self.dir.join(LEGACY_FILE)).await?;
        let mut state = legacy.unwrap_or_default();
        if state.write_id.is_empty() {
            state.write_id = format!("{:016x}", unique_u64());
        }
        self.disk.create_dir_all(&self.versions_dir())?;
        if self.claim(&state).await? {
            self.disk.sync_dir(&self.versions_dir()).await?;
            self.disk.sync_dir(&self.dir).await?;
        }
        Ok(())
    }

    /// Removes versions older than the newest `VERSIONS_KEPT` (lowest first, one name at a
    /// time: see the module notes) and temporary files of versions up to `newest`, whose
    /// writers have lost or given up.
    async fn remove_old(&self, newest: u64) -> Result<(), ReplicationError> {
        let mut versions = Vec::new();
        for name in self.disk.list_dir(&self.versions_dir())? {
            match parse_name(&name) {
                Some((version, false)) => versions.push(version),
                Some((version, true)) if version <= newest => {
                    self.disk.remove_file(&self.versions_dir().join(&name)).await?;
                }
                _ => {}
            }
        }
        versions.sort_unstable();
        for version in versions {
            if version + VERSIONS_KEPT > newest {
                break;
            }
            self.disk.remove_file(&self.version_path(version)).await?;
        }
        Ok(())
    }

    /// The highest version on disk, from the names.
    fn newest_version(&self) -> Result<Option<u64>, ReplicationError> {
        let names = match self.disk.list_dir(&self.versions_dir()) {
            Ok(names) => names,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(names
            .iter()
            .filter_map(|name| parse_name(name))
            .filter(|(_, temp)| !temp)
            .map(|(v, _)| v)
            .max())
    }

    async fn read_version(&self, version: u64) -> Result<ClusterState, ReplicationError> {
        let path = self.version_path(version);
        let state = self.read_file(&path).await?.ok_or_else(|| ReplicationError::StateFile {
            path: path.display().to_string(),
            reason: "the newest version vanished while it was read".to_string(),
        })?;
        if state.version != version {
            return Err(ReplicationError::StateFile {
                path: path.display().to_string(),
                reason: format!("holds version {} under the name of {version}", state.version),
            });
        }
        Ok(state)
    }

    /// One state file, checked and parsed; `None` if it does not exist.
    async fn read_file(&self, path: &Path) -> Result<Option<ClusterState>, ReplicationError> {
        let Some(bytes) = self.disk.read_file(path, STATE_BYTES_MAX).await? else {
            return Ok(None);
        };
        let fail = |reason: String| ReplicationError::StateFile {
            path: path.display().to_string(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|e| fail(e.to_string()))?;
        let body = verify_checksum(&text).map_err(fail)?;
        toml::from_str(body).map(Some).map_err(|e| fail(e.to_string()))
    }

    /// The first `HEAD_PEEK_BYTES` of a state file; `None` if it does not exist.
    async fn read_head(&self, path: &Path) -> Result<Option<Vec<u8>>, ReplicationError> {
        let file = match self.disk.open_read(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let head = file.read_at(0, HEAD_PEEK_BYTES).await;
        file.close().await?;
        Ok(Some(head?))
    }
}

/// `(version, is_temporary)` of a name in the directory of versions.
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (digits, rest) = name.split_at_checked(20)?;
    let version = digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())??;
    match rest {
        ".toml" => Some((version, false)),
        _ if rest.starts_with(".tmp.") => Some((version, true)),
        _ => None,
    }
}

/// A number no other write of this process, nor of another, is likely to repeat: the
/// process id, the time and a counter, mixed.
fn unique_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos ^ (u64::from(std::process::id()) << 40) ^ count.rotate_left(20);
    // splitmix64's finaliser: nearby inputs give unrelated outputs.
    let mut z = mixed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes read to find the version and write id on a state file's first two lines.
const HEAD_PEEK_BYTES: usize = 128;

/// `N` from a first line `version = N` (as `toml` writes `ClusterState`, version first).
pub(crate) fn leading_version(head: &[u8]) -> Option<u64> {
    let line = head.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.strip_prefix("version = ")?.trim().parse().ok()
}

/// `X` from a second line `write-id = "X"` (the field after the version).
pub(crate) fn leading_write_id(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\n').nth(1)?;
    let value = std::str::from_utf8(line).ok()?.strip_prefix("write-id = ")?;
    value.trim().strip_prefix('"')?.strip_suffix('"')
}

/// The last line of the state file: a CRC-32C of everything before it. TOML cut at a line
/// boundary is still valid TOML (a cluster with fewer topics), so only the checksum tells a
/// damaged file from a smaller cluster.
const CHECKSUM_PREFIX: &str = "# crc32c ";

fn with_checksum(mut body: String) -> String {
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("{CHECKSUM_PREFIX}{crc:08x}\n"));
    body
}

pub(crate) fn verify_checksum(text: &str) -> Result<&str, String> {
    let trimmed = text
        .strip_suffix('\n')
        .ok_or("the file does not end with its checksum line (truncated?)")?;
    let split = trimmed.rfind('\n').map_or(0, |i| i + 1);
    let (body, last) = trimmed.split_at(split);
    let stored = last
        .strip_prefix(CHECKSUM_PREFIX)
        .ok_or("the last line is not the checksum line (truncated?)")?;
    let stored = u32::from_str_radix(stored.trim(), 16)
        .map_err(|_e| format!("bad checksum line {last:?}"))?;
    let actual = crc32c::crc32c(body.as_bytes());
    if stored != actual {
        return Err(format!("checksum mismatch: stored {stored:08x}, computed {actual:08x}"));
    }
    Ok(body)
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            version: 0,
            write_id: String::new(),
            controller: -1,
            controller_epoch: 0,
            topics: BTreeMap::new(),
            broker_configs: DynamicBrokerConfigs::default(),
        }
    }
}

impl ClusterState {
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)
            .and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_first_line_the_serializer_writes() {
        let state = ClusterState {
            version: 42,
            write_id: "00112233445566ff".to_string(),
            controller: 1,
            controller_epoch: 3,
            topics: BTreeMap::from([(
                "t".to_string(),
                TopicState { id: "x".into(), config: BTreeMap::new(), partitions: Vec::new() },
            )]),
            broker_configs: DynamicBrokerConfigs {
                cluster_default: BTreeMap::from([("log.retention.ms".into(), "60000".into())]),
                per_broker: BTreeMap::from([(
                    "2".into(),
                    BTreeMap::from([("log.segment.bytes".into(), "1048576".into())]),
                )]),
            },
        };
        let text = with_checksum(toml::to_string(&state).expect("serialize"));
        let back: ClusterState = toml::from_str(&text).expect("deserialize");
        assert_eq!(back.broker_configs, state.broker_configs, "{text}");
        assert_eq!(leading_version(text.as_bytes()), Some(42), "{text}");
        assert_eq!(leading_write_id(text.as_bytes()), Some("00112233445566ff"), "{text}");
        assert_eq!(
            leading_version(&text.as_bytes()[..12]),
            Some(42),
            "a first line without its newline"
        );
        for other in ["controller = 1\nversion = 42\n", "version = x\n", ""] {
            assert_eq!(leading_version(other.as_bytes()), None, "{other:?}");
        }
    }

    #[test]
    fn checksum_catches_cuts_at_any_byte() {
        let text = with_checksum(
            "version = 3\ncontroller = 1\n\n[topics.a]\nid = \"x\"\npartitions = []\n".to_string(),
        );
        assert!(verify_checksum(&text).is_ok());
        for cut in 0..text.len() {
            assert!(verify_checksum(&text[..cut]).is_err(), "a cut at byte {cut} went unnoticed");
        }
        let flipped = text.replacen("a]", "b]", 1);
        assert!(verify_checksum(&flipped).is_err());
    }
}
