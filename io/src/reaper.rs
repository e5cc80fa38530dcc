//! The reaper: one background thread that frees the disk space of deleted files, so that no
//! shard thread waits for it.
//!
//! Unlinking a segment frees nothing yet; its blocks go back when the last descriptor of
//! the file closes, and that close runs the inode's eviction on the closing thread: every
//! page-cache page of the file dropped, every extent freed, and on a file system mounted
//! with `discard` a synchronous discard of each freed range (`ext4_free_blocks` ->
//! `blkdev_issue_discard`, 23 ms per segment traced on this machine, several segments per
//! retention pass). On a shard thread that stalls every partition and connection it owns.
//!
//! So a file about to be deleted first hands a copy of its descriptor to the reaper
//! ([`File::close_last_in_reaper`](crate::File::close_last_in_reaper)); the shard's own
//! close is then never the last one. The reaper gets the copy once the shard's file is
//! closed, keeps it `REAP_GRACE_MS` more (copies another shard made for a fetch in flight
//! close meanwhile) and closes it: the eviction runs here. Whole directories (a deleted
//! topic's partitions) are removed here too ([`remove_dir_all_in_reaper`]).
//!
//! The queue is bounded (`REAPER_QUEUE_MAX`): when it is full, or the thread cannot be
//! started, the work is done on the caller's thread as before, with a log line. Nothing
//! is lost either way: the names are gone before the reaper is involved, so a crash leaves
//! at most blocks that the kernel frees on its own (orphaned inodes) and directories the
//! broker removes at its next start.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Jobs waiting for the reaper at most; past this the caller does the work itself.
const REAPER_QUEUE_MAX: usize = 4096;
/// How long the reaper keeps a deleted file's last descriptor after the shard closed its
/// own: copies shared with other shards for a fetch in flight close within it (a copy that
/// outlives it closes, and evicts, on its own thread, as without the reaper).
pub const REAP_GRACE_MS: u64 = 1000;

/// What the reaper does.
enum Job {
    /// Close this descriptor of a deleted file after the grace period.
    Close(OwnedFd),
    /// Remove this directory and everything in it.
    RemoveDir(PathBuf),
}

fn queue() -> Option<&'static SyncSender<Job>> {
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (sender, receiver) = sync_channel(REAPER_QUEUE_MAX);
            match std::thread::Builder::new().name("fjord-reaper".into()).spawn(move || run(receiver)) {
                Ok(_) => Some(sender),
                Err(error) => {
                    warn!(%error, "cannot start the reaper thread: deleted files are freed on the thread that deletes them");
                    None
                }
            }
        })
        .as_ref()
}

/// Hands `job` to the reaper, or gives it back when the reaper cannot take it.
fn submit(job: Job) -> Result<(), Job> {
    let Some(queue) = queue() else { return Err(job) };
    match queue.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(job)) => {
            warn!(
                max = REAPER_QUEUE_MAX,
                "the reaper's queue is full: freeing a deleted file on this thread"
            );
            Err(job)
        }
        Err(TrySendError::Disconnected(job)) => Err(job),
    }
}

/// Closes `fd`, the last descriptor of a deleted file, in the reaper after the grace period
/// (or here, now, when the reaper cannot take it).
fn close_later(fd: OwnedFd) {
    if let Err(Job::Close(fd)) = submit(Job::Close(fd)) {
        drop(fd);
    }
}

/// A descriptor that closes in the reaper when dropped (`File`'s last one).
#[derive(Debug)]
pub(crate) struct ClosesInReaper(Option<OwnedFd>);

impl ClosesInReaper {
    pub(crate) fn new(fd: OwnedFd) -> ClosesInReaper {
        ClosesInReaper(Some(fd))
    }
}

impl Drop for ClosesInReaper {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            close_later(fd);
        }
    }
}

/// Removes the directory `path` and everything in it in the reaper thread (or here, now,
/// when the reaper cannot take it). Callers rename the directory to a name nothing else
/// will use first, so a new directory of the old name is never touched.
pub fn remove_dir_all_in_reaper(path: PathBuf) {
    if let Err(Job::RemoveDir(path)) = submit(Job::RemoveDir(path)) {
        remove_dir(&path);
    }
}

fn remove_dir(path: &std::path::Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => debug!(dir = %path.display(), "removed a deleted directory"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => warn!(dir = %path.display(), %error, "cannot remove a deleted directory"),
    }
}

/// The reaper thread: removes directories at once, closes descriptors once their grace
/// period is over, in the order they came.
fn run(receiver: Receiver<Job>) {
    let grace = Duration::from_millis(REAP_GRACE_MS);
    let mut waiting: VecDeque<(Instant, OwnedFd)> = VecDeque::new();
    loop {
        while waiting.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            waiting.pop_front();
        }
        let job = match waiting.front() {
            Some((due, _)) => {
                match receiver.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        match job {
            Job::Close(fd) => waiting.push_back((Instant::now() + grace, fd)),
            Job::RemoveDir(path) => remove_dir(&path),
        }
    }
    // Every sender is gone (the process is ending): close what is left now.
    waiting.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_handed_over_is_removed() {
        let dir = std::env::temp_dir().join(format!("fjord-reaper-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        std::fs::write(dir.join("inner/file"), b"data").unwrap();
        remove_dir_all_in_reaper(dir.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.exists() {
            assert!(Instant::now() < deadline, "{} still exists", dir.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
