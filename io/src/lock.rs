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
            .map_err(|e| {
                io::Error::new(e.kind(), format!("open lock file {}: {e}", path.display()))
            })?;
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

    /// Whether some process holds the exclusive lock on `path` (false if the file does not
    /// exist). The probe takes a *shared* lock for an instant: probes from several processes
    /// never block each other (an exclusive probe would make one prober see another's probe
    /// as a live holder), while a holder's exclusive lock refuses every probe.
    pub fn is_held(path: &Path) -> io::Result<bool> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("open lock file {}: {error}", path.display()),
                ))
            }
        };
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call; the shared
        // lock is released when `file` closes at the end of this function.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(false);
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            Ok(true)
        } else {
            Err(io::Error::new(error.kind(), format!("flock {}: {error}", path.display())))
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file, e.g. to write a heartbeat into it.
    pub fn file(&self) -> &File {
        &self.file
    }
}
