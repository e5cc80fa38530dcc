//! The live cluster state: every topic's partitions with their replicas, leader, leader
//! epoch and in-sync set. One TOML file, `cluster-state.toml`, in the cluster directory.
//!
//! Writers (the controller electing leaders, a broker creating a topic, a leader changing
//! its in-sync set) take the exclusive lock on `cluster-state.lock`, read the file, change
//! it, and replace it atomically: `cluster-state.toml.tmp`, fdatasync, rename, fsync of the
//! directory. A crash at any point leaves the old state or the new one, never a torn file.
//! `version` grows by one with every write, so readers notice changes cheaply.
//!
//! The store reaches its files only through a [`Disk`] (the machine's by default; the
//! simulator in `tests/simulation.rs`), the state lock included: the lock is the disk's
//! `try_lock`, so the simulated disk grants it in memory and a crash releases it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fjord_storage::{Disk, DiskFile, RealDisk};
use serde::{Deserialize, Serialize};

use crate::ReplicationError;

/// The state file's size limit: bounds what a broker reads every poll.
pub(crate) const STATE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// How long a writer waits for the state lock before giving up.
const STATE_LOCK_WAIT_MS_MAX: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterState {
    pub version: u64,
    /// The active controller (-1: none yet). It holds the role while its liveness heartbeat
    /// is fresh; another broker takes it over, under the state lock, once it is not.
    #[serde(default = "no_controller")]
    pub controller: i32,
    /// Grows by one each time a broker becomes controller. A controller writes the state
    /// only while the state still names it with the epoch it took, so one that lost the
    /// role (stopped, then resumed) can never write the state again as controller.
    #[serde(default)]
    pub controller_epoch: u64,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicState>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PartitionState {
    /// Preferred order: the first live in-sync replica leads.
    pub replicas: Vec<i32>,
    /// -1 when no in-sync replica is alive (the partition is offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// Reads and writes the state file of one cluster directory, on disk `D` (the machine's by
/// default).
#[derive(Debug, Clone)]
pub struct StateStore<D: Disk = RealDisk> {
    disk: D,
    dir: PathBuf,
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

    pub fn path(&self) -> PathBuf {
        self.dir.join("cluster-state.toml")
    }

    /// The current state (empty if no file exists yet).
    pub async fn read(&self) -> Result<ClusterState, ReplicationError> {
        let path = self.path();
        let Some(bytes) = self.disk.read_file(&path, STATE_BYTES_MAX).await? else {
            return Ok(ClusterState::default());
        };
        let fail = |reason: String| ReplicationError::StateFile {
            path: path.display().to_string(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|e| fail(e.to_string()))?;
        let body = verify_checksum(&text).map_err(fail)?;
        toml::from_str(body).map_err(|e| fail(e.to_string()))
    }

    /// The state, if the file holds a newer one than `known` (a version); `None` otherwise.
    /// The version is read from the file's first line first, so a poll of an unchanged state
    /// costs a read of `VERSION_PEEK_BYTES`, not a parse of the whole file (800 KB of TOML for
    /// 10,000 partitions, parsed every 100 ms, kept a CPU busy). A first line of another form
    /// is read the long way.
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

    /// The version on the state file's first line (`version = N`), without reading the rest;
    /// `None` if there is no file or its first line is not of that form.
    pub async fn version(&self) -> Result<Option<u64>, ReplicationError> {
        let path = self.path();
        let file = match self.disk.open_read(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let head = file.read_at(0, VERSION_PEEK_BYTES).await;
        file.close().await?;
        Ok(leading_version(&head?))
    }

    /// Changes the state under the state lock. `change` returns whether it changed anything;
    /// only then is the file rewritten (with `version + 1`). Returns the state after, or the
    /// change's refusal.
    ///
    /// Either answer is durable before it is returned. An update whose directory sync failed
    /// after its rename leaves its state readable but not durable, so an update that writes
    /// nothing syncs the directory before answering from what it read (the file's data was
    /// synced before its rename; only its name may be pending). Without it, a caller asking
    /// again for what a failed update had written (a leader's in-sync set) acted on a state
    /// a crash could undo.
    pub async fn update<E>(
        &self,
        change: impl FnOnce(&mut ClusterState) -> Result<bool, E>,
    ) -> Result<Result<ClusterState, E>, ReplicationError> {
        let _lock = self.lock().await?;
        let mut state = self.read().await?;
        match change(&mut state) {
            Ok(true) => {
                state.version += 1;
                let text = toml::to_string(&state).map_err(|e| ReplicationError::StateFile {
                    path: self.path().display().to_string(),
                    reason: e.to_string(),
                })?;
                self.disk.write_file_atomic(&self.path(), with_checksum(text).into_bytes()).await?;
                Ok(Ok(state))
            }
            unwritten => {
                self.disk.sync_dir(&self.dir).await?;
                Ok(unwritten.map(|_| state))
            }
        }
    }

    async fn lock(&self) -> Result<D::Lock, ReplicationError> {
        let path = self.dir.join("cluster-state.lock");
        let mut waited = 0u64;
        loop {
            if let Some(lock) = self.disk.try_lock(&path)? {
                return Ok(lock);
            }
            if waited >= STATE_LOCK_WAIT_MS_MAX {
                return Err(ReplicationError::StateFile {
                    path: path.display().to_string(),
                    reason: format!("lock still held after {waited} ms"),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += 5;
        }
    }
}

/// Bytes read to find the version on the state file's first line.
const VERSION_PEEK_BYTES: usize = 64;

/// `N` from a first line `version = N` (as `toml` writes `ClusterState`, version first).
pub(crate) fn leading_version(head: &[u8]) -> Option<u64> {
    let line = head.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.strip_prefix("version = ")?.trim().parse().ok()
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
        ClusterState { version: 0, controller: -1, controller_epoch: 0, topics: BTreeMap::new() }
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
            controller: 1,
            controller_epoch: 3,
            topics: BTreeMap::from([(
                "t".to_string(),
                TopicState { id: "x".into(), config: BTreeMap::new(), partitions: Vec::new() },
            )]),
        };
        let text = with_checksum(toml::to_string(&state).expect("serialize"));
        assert_eq!(leading_version(text.as_bytes()), Some(42), "{text}");
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
