//! Broker liveness on one host: each broker holds an exclusive lock on
//! `broker-<id>.alive` for as long as it lives, and writes its heartbeat time (ms since the
//! epoch, 8 bytes big-endian) into it. The kernel drops the lock when the process dies,
//! however it dies, so `kill -9` is noticed at the next check; a process that hangs keeps the
//! lock but stops heartbeating, and is declared failed once its heartbeat is older than the
//! liveness timeout.
//!
//! It stays outside the `Disk` (plain `flock` and `pwrite`): nothing here is durable state.
//! The heartbeat is never synced and means nothing after a crash, which releases the lock
//! anyway; what it relies on is the kernel dropping a dead process's lock, which only the
//! real kernel does.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fjord_storage::io::FileLock;

use crate::ReplicationError;

/// This broker's liveness lock.
#[derive(Debug)]
pub struct Liveness {
    lock: FileLock,
}

fn path(dir: &Path, id: i32) -> PathBuf {
    dir.join(format!("broker-{id}.alive"))
}

impl Liveness {
    /// Takes broker `id`'s liveness lock; fails if another process holds it (the same broker
    /// id started twice).
    pub fn acquire(dir: &Path, id: i32) -> Result<Liveness, ReplicationError> {
        match FileLock::try_lock(&path(dir, id))? {
            Some(lock) => Ok(Liveness { lock }),
            None => Err(ReplicationError::ClusterFile {
                path: path(dir, id).display().to_string(),
                reason: format!("broker {id} is already running (its liveness lock is held)"),
            }),
        }
    }

    /// Writes the heartbeat. Plain `pwrite` of 8 bytes into a file only this process writes.
    pub fn beat(&self, now_ms: i64) -> Result<(), ReplicationError> {
        self.lock.file().write_all_at(&now_ms.to_be_bytes(), 0)?;
        Ok(())
    }

    /// Whether broker `id` is alive: its lock is held and its heartbeat is at most
    /// `timeout_ms` old.
    pub fn is_alive(
        dir: &Path,
        id: i32,
        now_ms: i64,
        timeout_ms: i64,
    ) -> Result<bool, ReplicationError> {
        let path = path(dir, id);
        if !FileLock::is_held(&path)? {
            return Ok(false);
        }
        let bytes = std::fs::read(&path)?;
        let beat = bytes.get(..8).map_or(0, |b| i64::from_be_bytes(b.try_into().expect("8 bytes")));
        Ok(now_ms - beat <= timeout_ms)
    }
}
