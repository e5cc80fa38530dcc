//! What the partition log needs of a file system, as two traits: [`Disk`] (names in
//! directories) and [`DiskFile`] (one open file). The log, its segments, recovery, retention
//! and the checkpoint reach files only through them, and so do the replication crate's
//! state file and leader-epoch checkpoints, so a seeded simulator (`sim::SimDisk`, which
//! depends on this module, not the reverse) can stand in for the real disk in tests.
//! [`Disk::write_file_atomic`] is the one atomic replace (temporary file, fdatasync, rename,
//! fsync of the directory) over a disk; [`Disk::rename_noreplace`] is the one compare-and-swap
//! on a name, which the cluster state's writers race with.
//!
//! Invariants:
//! - The log is generic over its disk, never `dyn`: [`RealDisk`] is a unit type whose calls
//!   are the `io` module's own, monomorphized and inlined, so the real append and read paths
//!   (inline writes, cached reads, splice of [`io::File`]) cost what they cost before.
//! - Reads and writes are positioned; nothing relies on a file cursor or on `O_APPEND`.
//! - A write that fails leaves an unknown prefix of its bytes written; callers poison.
//! - Data is durable only after `sync_data`; a name (create, rename, unlink) only after
//!   `sync_dir` of its directory.
//! - Every error names the file or directory it happened on.

// The shard runtimes are single-threaded and their futures are never `Send` (the log holds
// `Rc`s), so the trait's futures need no `Send` bound.
#![allow(async_fn_in_trait)]

use std::io::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use tracing::debug;

use bytes::Bytes;
use tokio_uring::buf::IoBuf;

use crate::io;

/// A file system: opens files, and changes and syncs the names in directories.
pub trait Disk: Clone + std::fmt::Debug + 'static {
    /// An open file of this disk.
    type File: DiskFile;

    /// Opens `path` for reading and writing, creating it when `create` is set.
    async fn open_rw(&self, path: &Path, create: bool) -> Result<Self::File>;
    /// Opens `path` read-only; `NotFound` if it does not exist.
    async fn open_read(&self, path: &Path) -> Result<Self::File>;
    /// Creates directory `path` and its parents (once per partition, at open).
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// The file names in directory `path`.
    fn list_dir(&self, path: &Path) -> Result<Vec<String>>;
    /// Removes a name; a name that is already gone is not an error. Open files stay
    /// readable.
    async fn remove_file(&self, path: &Path) -> Result<()>;
    /// Renames `from` to `to` atomically, replacing `to`.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Renames `from` to `to` only if no file is named `to` (`AlreadyExists` otherwise),
    /// atomically: of two writers racing for one name, exactly one wins. The cluster state's
    /// writers take each new version's name this way.
    async fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes the names in directory `path` durable (after a create, rename or unlink).
    async fn sync_dir(&self, path: &Path) -> Result<()>;

    /// Replaces `path` with `bytes` atomically and durably: writes `<path>.tmp`, fdatasyncs
    /// it, renames it over `path` and fsyncs the directory. A crash at any point leaves the
    /// old content or the new one, never a torn file; an error leaves either, and the new
    /// one is durable only once a later replace or directory sync succeeds.
    async fn write_file_atomic(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        let mut temp_name = path.as_os_str().to_os_string();
        temp_name.push(".tmp");
        let temp = PathBuf::from(temp_name);
        let file = self.open_rw(&temp, true).await?;
        file.set_len(0)?;
        let (result, _) = file.write_all_at(bytes, 0).await;
        result?;
        file.sync_data().await?;
        file.close().await?;
        self.rename(&temp, path).await?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => self.sync_dir(dir).await,
            _ => self.sync_dir(Path::new(".")).await,
        }
    }

    /// Reads a whole small file of at most `bytes_max` bytes; `None` if it does not exist.
    async fn read_file(&self, path: &Path, bytes_max: u64) -> Result<Option<Vec<u8>>> {
        let file = match self.open_read(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let len = file.len().await?;
        if len > bytes_max {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!("{} is {len} bytes, more than the {bytes_max} allowed", path.display()),
            ));
        }
        let bytes = file.read_at(0, len as usize).await?;
        file.close().await?;
        Ok(Some(bytes))
    }
}

/// One open file: positioned reads and writes, `fdatasync`, truncation.
// `len` is a file's length on disk (an async `statx`), not a collection's size.
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: std::fmt::Debug + 'static {
    /// The path the file was opened with.
    fn path(&self) -> &Path;
    /// The current length in bytes.
    async fn len(&self) -> Result<u64>;
    /// Up to `len` bytes at `position`; fewer only at the end of the file.
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>>;
    /// Writes all of `buf` at `position` and hands the buffer back (the kernel owns it while
    /// the write is in flight).
    async fn write_all_at<B: IoBuf + AsRef<[u8]>>(&self, buf: B, position: u64) -> (Result<()>, B);
    /// Writes the pieces one after the other from `position`.
    async fn writev_all_at(&self, pieces: Vec<Bytes>, position: u64) -> Result<()>;
    /// Reserves blocks for `len` bytes from `position` without changing the length.
    async fn preallocate(&self, position: u64, len: u64) -> Result<()>;
    /// Bytes free for unprivileged use on the file's file system.
    fn free_bytes(&self) -> Result<u64>;
    /// Starts writeback of `len` bytes from `position`, and with `wait` waits for it: moves
    /// when dirty pages reach the disk, makes nothing durable (`sync_data` does).
    async fn write_back(&self, position: u64, len: u64, wait: bool) -> Result<()>;
    /// `fdatasync`: the data, and the metadata needed to read it back, is durable.
    async fn sync_data(&self) -> Result<()>;
    /// Cuts or extends the file to `len` bytes (not durable until `sync_data`).
    fn set_len(&self, len: u64) -> Result<()>;
    /// Closes the file, reporting the error of `close(2)`.
    async fn close(self) -> Result<()>;
    /// Called before the file's name is removed: its last close, which frees its blocks
    /// and page-cache pages, is to run off this thread (the reaper, `io::reaper`). Best
    /// effort: on failure the last close runs here, as it would without this call.
    fn free_elsewhere(&self) {}
}

/// The machine's disk, through the `io` module (io_uring). A unit type: it adds nothing to
/// the calls it forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    type File = io::File;

    #[inline]
    async fn open_rw(&self, path: &Path, create: bool) -> Result<io::File> {
        io::File::open_rw(path, create).await
    }
    #[inline]
    async fn open_read(&self, path: &Path) -> Result<io::File> {
        io::File::open_read(path).await
    }
    fn create_dir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::new(e.kind(), format!("create {}: {e}", path.display())))
    }
    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        io::list_dir(path)
    }
    async fn remove_file(&self, path: &Path) -> Result<()> {
        io::remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        io::rename(from, to).await
    }
    async fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()> {
        io::rename_noreplace(from, to)
    }
    async fn sync_dir(&self, path: &Path) -> Result<()> {
        io::sync_dir(path).await
    }
    async fn read_file(&self, path: &Path, bytes_max: u64) -> Result<Option<Vec<u8>>> {
        io::read_file(path, bytes_max).await
    }
}

impl DiskFile for io::File {
    #[inline]
    fn path(&self) -> &Path {
        io::File::path(self)
    }
    #[inline]
    async fn len(&self) -> Result<u64> {
        io::File::len(self).await
    }
    #[inline]
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        io::File::read_at(self, position, len).await
    }
    #[inline]
    async fn write_all_at<B: IoBuf + AsRef<[u8]>>(&self, buf: B, position: u64) -> (Result<()>, B) {
        io::File::write_all_at(self, buf, position).await
    }
    #[inline]
    async fn writev_all_at(&self, pieces: Vec<Bytes>, position: u64) -> Result<()> {
        io::File::writev_all_at(self, pieces, position).await
    }
    #[inline]
    async fn preallocate(&self, position: u64, len: u64) -> Result<()> {
        io::File::preallocate(self, position, len).await
    }

    async fn write_back(&self, position: u64, len: u64, wait: bool) -> Result<()> {
        io::File::write_back(self, position, len, wait).await
    }
    fn free_elsewhere(&self) {
        if let Err(error) = self.close_last_in_reaper() {
            debug!(%error, "the deleted file's space is freed on this thread");
        }
    }
    #[inline]
    fn free_bytes(&self) -> Result<u64> {
        io::File::free_bytes(self)
    }
    #[inline]
    async fn sync_data(&self) -> Result<()> {
        io::File::sync_data(self).await
    }
    #[inline]
    fn set_len(&self, len: u64) -> Result<()> {
        io::File::set_len(self, len)
    }
    #[inline]
    async fn close(self) -> Result<()> {
        io::File::close(self).await
    }
}
