//! Advisory whole-file locks (`flock(2)`), for the cluster's controller and liveness files.
//! A lock lives as long as its `FileLock`; the kernel releases it when the process dies,
//! however it dies, which is what makes a held lock a liveness signal.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// An exclusive lock held on a file.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the exclusive lock on `path` (created if missing) without waiting. `Ok(None)` if
    /// another process holds it.
    pub fn try_lock(path: &Path) -> io::Result<Option<FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open lock file {}: {e}", path.display())))?;
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock { file, path: path.to_path_buf() }));
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(io::Error::new(error.kind(), format!("flock {}: {error}", path.display())))
        }
    }

    /// Whether some process holds the lock on `path` (false if the file does not exist).
    pub fn is_held(path: &Path) -> io::Result<bool> {
        if !path.exists() {
            return Ok(false);
        }
        Ok(FileLock::try_lock(path)?.is_none())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file, e.g. to write a heartbeat into it.
    pub fn file(&self) -> &File {
        &self.file
    }
}
