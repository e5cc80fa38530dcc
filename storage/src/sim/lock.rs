//! Simulated `flock`s: the exclusive advisory locks of a [`SimDisk`](super::SimDisk), held
//! in memory. The simulator runs one process, so a lock models what matters to it: a
//! second holder is refused while the first lives, dropping the lock releases it, and a
//! crash (the processes die) releases every lock.
//!
//! Invariants:
//! - A path has at most one holder; each grant gets its own id.
//! - A lock dropped after a crash released it, or after another holder took the path since,
//!   releases nothing (its id no longer matches).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Debug, Default)]
struct Table {
    /// Path -> the id of the lock that holds it.
    held: BTreeMap<PathBuf, u64>,
    next_id: u64,
}

/// The locks of one simulated disk. Clones share them.
#[derive(Debug, Default, Clone)]
pub(super) struct Locks(Rc<RefCell<Table>>);

impl Locks {
    /// The lock on `path`, unless someone holds it.
    pub(super) fn try_lock(&self, path: &Path) -> Option<SimLock> {
        let mut table = self.0.borrow_mut();
        if table.held.contains_key(path) {
            return None;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.held.insert(path.to_path_buf(), id);
        Some(SimLock { locks: self.clone(), path: path.to_path_buf(), id })
    }

    /// Every holder died: a crash.
    pub(super) fn release_all(&self) {
        self.0.borrow_mut().held.clear();
    }
}

/// A lock held on a file of a [`SimDisk`](super::SimDisk); released when dropped.
#[derive(Debug)]
pub struct SimLock {
    locks: Locks,
    path: PathBuf,
    id: u64,
}

impl SimLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut table = self.locks.0.borrow_mut();
        if table.held.get(&self.path) == Some(&self.id) {
            table.held.remove(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_until_dropped_or_a_crash() {
        let locks = Locks::default();
        let path = Path::new("/sim/cluster-state.lock");
        let first = locks.try_lock(path).expect("a free lock");
        assert!(locks.try_lock(path).is_none(), "a held lock is refused");
        drop(first);
        let before_crash = locks.try_lock(path).expect("released by its drop");
        locks.release_all();
        let after_crash = locks.try_lock(path).expect("released by the crash");
        drop(before_crash);
        assert!(locks.try_lock(path).is_none(), "a stale lock's drop releases nothing");
        drop(after_crash);
        assert!(locks.try_lock(path).is_some());
    }
}
