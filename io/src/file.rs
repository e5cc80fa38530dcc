//! A file opened for io_uring positioned I/O.
//!
//! `File` wraps a tokio-uring file with its path, so that every error can say which file
//! failed. Reads and writes are positioned (`pread`/`pwrite` semantics); the log never
//! relies on a file cursor. Writes loop until the whole buffer is written; reads loop until
//! the requested length is read or end of file is reached.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_uring::buf::IoBuf;

use super::inline;
use super::reaper::ClosesInReaper;
use super::residency::{
    page_bytes, NoMap, ResidencyMap, CACHED_CHECK_PAGES_MAX, RESIDENCY_MAP_BYTES,
};

/// An open file with its path.
#[derive(Debug)]
pub struct File {
    inner: tokio_uring::fs::File,
    path: PathBuf,
    /// The mapping `cached` asks the kernel about, made on first use; shared with the
    /// copies other threads hold (`share`).
    residency: std::cell::RefCell<Residency>,
    /// A copy of the descriptor, set by `close_last_in_reaper`: declared after `inner`, so
    /// it is dropped (handed to the reaper) after `inner` closed.
    last_close: std::cell::RefCell<Option<ClosesInReaper>>,
}

/// Where a file stands with its residency mapping.
#[derive(Debug, Clone)]
enum Residency {
    /// Not made yet, or none was free last time: try (again) on the next question.
    Unknown,
    Mapped(Arc<ResidencyMap>),
    /// The kernel refused it for this file: never try again.
    Refused,
}

/// A file on its way to another thread (`File::share`, then `File::from_shared` there).
#[derive(Debug)]
pub struct SharedFile {
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
    residency: Residency,
}

impl File {
    /// Opens `path` for reading and writing, creating it when `create` is set.
    ///
    /// With `O_NOATIME` where the kernel allows it (the broker owns its files): reading a
    /// segment then never updates its access time, which on ext4 would open a journal
    /// handle (and could wait on a commit) on the thread that reads.
    pub async fn open_rw(path: &Path, create: bool) -> io::Result<File> {
        let open = |flags: libc::c_int| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut options = tokio_uring::fs::OpenOptions::new();
            options.read(true).write(true).create(create).custom_flags(flags);
            async move { options.open(path).await }
        };
        let inner = match open(libc::O_NOATIME).await {
            // Not the file's owner: O_NOATIME is refused, the file opens without it.
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => open(0).await,
            other => other,
        }
        .map_err(|error| with_path(error, "open", path))?;
        Ok(File::opened(inner, path.to_path_buf(), Residency::Unknown))
    }

    fn opened(inner: tokio_uring::fs::File, path: PathBuf, residency: Residency) -> File {
        File {
            inner,
            path,
            residency: std::cell::RefCell::new(residency),
            last_close: std::cell::RefCell::new(None),
        }
    }

    /// Opens `path` read-only.
    pub async fn open_read(path: &Path) -> io::Result<File> {
        let inner = tokio_uring::fs::File::open(path)
            .await
            .map_err(|error| with_path(error, "open", path))?;
        Ok(File::opened(inner, path.to_path_buf(), Residency::Unknown))
    }

    /// The same open file for another thread to read from: a second descriptor (`dup`),
    /// with this file's residency mapping shared rather than made again (see `cached`).
    pub fn share(&self) -> io::Result<SharedFile> {
        let fd = super::duplicate(self.inner.as_raw_fd())
            .map_err(|error| with_path(error, "dup", &self.path))?;
        // The copy's shard asks about residency only where splices run inline; a refusal
        // travels too, so short-lived copies never try to map what the kernel refused.
        let residency =
            if super::splice::inline_splices() { self.residency() } else { Residency::Refused };
        Ok(SharedFile { fd, path: self.path.clone(), residency })
    }

    /// Opens a file another thread shared (`share`) on this thread.
    pub fn from_shared(shared: SharedFile) -> File {
        File::opened(
            tokio_uring::fs::File::from_std(std::fs::File::from(shared.fd)),
            shared.path,
            shared.residency,
        )
    }

    /// Makes the reaper thread close this file last, after this handle and its clones are
    /// gone (module `reaper`): called before the file's name is removed, so that freeing
    /// its blocks and pages (the eviction on the last close) never runs on this thread.
    pub fn close_last_in_reaper(&self) -> io::Result<()> {
        let fd = super::duplicate(self.inner.as_raw_fd())
            .map_err(|error| with_path(error, "dup", &self.path))?;
        *self.last_close.borrow_mut() = Some(ClosesInReaper::new(fd));
        Ok(())
    }

    /// The path this file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether every page of `len` bytes from `position` is in the page cache and up to
    /// date, so that reading them waits on no disk (module `residency`: `mincore(2)` on a
    /// mapping of the file that is never accessed). Any failure, and a range of more than
    /// `CACHED_CHECK_PAGES_MAX` pages or past `RESIDENCY_MAP_BYTES`, answers `false`. The
    /// answer can be stale by the time the caller reads: a page may be evicted in between.
    pub fn cached(&self, position: u64, len: u64) -> bool {
        self.cached_with(position, len, true)
    }

    /// `cached`, asking the kernel only through a mapping the file already has (`map`
    /// false): reads do not take one of the `RESIDENCY_MAPS_MAX` mappings, which opening
    /// thousands of partitions would use up before any of them is fetched from.
    fn cached_with(&self, position: u64, len: u64, map: bool) -> bool {
        if len == 0 || position >= RESIDENCY_MAP_BYTES {
            return false;
        }
        let page = page_bytes();
        let start = position / page * page;
        let Some(end) = position.checked_add(len).map(|end| end.div_ceil(page) * page) else {
            return false;
        };
        if (end - start) / page > CACHED_CHECK_PAGES_MAX as u64 || end > RESIDENCY_MAP_BYTES {
            return false;
        }
        let residency = if map { self.residency() } else { self.residency.borrow().clone() };
        match residency {
            Residency::Mapped(map) => map.all_cached(start, end),
            Residency::Unknown | Residency::Refused => false,
        }
    }

    /// Where this file stands with its residency mapping, after making one if there is none
    /// yet and one is free.
    fn residency(&self) -> Residency {
        let mut residency = self.residency.borrow_mut();
        if let Residency::Unknown = *residency {
            match ResidencyMap::new(self.inner.as_raw_fd()) {
                Ok(map) => *residency = Residency::Mapped(Arc::new(map)),
                Err(NoMap::Busy) => {}
                Err(NoMap::Refused) => *residency = Residency::Refused,
            }
        }
        residency.clone()
    }

    /// The current length of the file in bytes.
    pub async fn len(&self) -> io::Result<u64> {
        let statx =
            self.inner.statx().await.map_err(|error| with_path(error, "statx", &self.path))?;
        Ok(statx.stx_size)
    }

    /// Reads up to `len` bytes at `position`. Returns fewer bytes only at end of file.
    ///
    /// A read of at most `inline::INLINE_READ_BYTES_MAX` whose pages are all cached (`cached`,
    /// through a mapping the file already has: one a fetch's splice made) runs on the calling
    /// thread (`inline::read_cached`, a copy of a few µs), with `RWF_NOWAIT`: a page evicted
    /// since the check ends it there, and the rest goes through io_uring like any other read,
    /// where a wait for the disk parks a worker, not the shard.
    pub async fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out: Vec<u8> = if len <= inline::INLINE_READ_BYTES_MAX
            && self.cached_with(position, len as u64, false)
        {
            let read = inline::read_cached(self.inner.as_raw_fd(), position, len)
                .map_err(|error| with_path(error, "read", &self.path))?;
            // A run of inline reads (a walk of many headers) lets the shard's other tasks in
            // now and then, as a read through io_uring always did.
            if inline::inline_read_turn() {
                tokio::task::yield_now().await;
            }
            if read.len() == len {
                return Ok(read);
            }
            read
        } else {
            Vec::with_capacity(len)
        };
        while out.len() < len {
            let want = len - out.len();
            let buf = Vec::with_capacity(want);
            let (result, buf) = self.inner.read_at(buf, position + out.len() as u64).await;
            let read = result.map_err(|error| with_path(error, "read", &self.path))?;
            if read == 0 {
                break;
            }
            if out.is_empty() && read == want {
                return Ok(buf);
            }
            out.extend_from_slice(&buf[..read]);
        }
        Ok(out)
    }

    /// Writes all of `buf` at `position`, returning the buffer. A short write is continued;
    /// an error leaves an unknown prefix of `buf` written (the caller poisons the log).
    ///
    /// Runs on the calling thread when `inline::write_allowed` says the write will not wait
    /// for the disk; otherwise through io_uring.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, position: u64) -> (io::Result<()>, B) {
        if inline::write_allowed(buf.bytes_init()) {
            // SAFETY: `stable_ptr` is valid for `bytes_init` initialised bytes while `buf` is
            // owned here, and nothing writes to it meanwhile.
            #[allow(unsafe_code)]
            let bytes = unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) };
            let result = inline::write_now(self.inner.as_raw_fd(), &[bytes], position, &self.path);
            return (result.map_err(|error| with_path(error, "write", &self.path)), buf);
        }
        let (result, buf) = self.inner.write_all_at(buf, position).await;
        (result.map_err(|error| with_path(error, "write", &self.path)), buf)
    }

    /// Writes the buffers one after the other at `position`, with vectored writes of at most
    /// `IOVECS_MAX` buffers each (the kernel's `IOV_MAX` is 1024). On the calling thread or
    /// through io_uring, as `write_all_at`.
    pub async fn writev_all_at(
        &self,
        pieces: Vec<bytes::Bytes>,
        mut position: u64,
    ) -> io::Result<()> {
        use inline::IOVECS_MAX;
        if inline::write_allowed(pieces.iter().map(|p| p.len()).sum()) {
            return inline::write_now(self.inner.as_raw_fd(), &pieces, position, &self.path)
                .map_err(|error| with_path(error, "writev", &self.path));
        }
        // One `writev` at a time, continued here after a short write (a file system running
        // out of space writes what fits first): tokio-uring's `writev_at_all` panics on one.
        let mut pieces: std::collections::VecDeque<bytes::Bytes> =
            pieces.into_iter().filter(|p| !p.is_empty()).collect();
        while !pieces.is_empty() {
            let batch: Vec<bytes::Bytes> = pieces.iter().take(IOVECS_MAX).cloned().collect();
            let bytes: usize = batch.iter().map(|p| p.len()).sum();
            let (result, _) = self.inner.writev_at(batch, position).await;
            let written = result.map_err(|error| with_path(error, "writev", &self.path))?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("writev {}: 0 of {bytes} bytes written", self.path.display()),
                ));
            }
            position += written as u64;
            consume(&mut pieces, written);
        }
        Ok(())
    }

    /// Reserves disk blocks for `len` bytes from `position` without changing the file's
    /// size (`fallocate(FALLOC_FL_KEEP_SIZE)`): later writes there skip ext4's delayed
    /// allocation work per page.
    pub async fn preallocate(&self, position: u64, len: u64) -> io::Result<()> {
        self.inner
            .fallocate(position, len, libc::FALLOC_FL_KEEP_SIZE)
            .await
            .map_err(|error| with_path(error, "fallocate", &self.path))
    }

    /// Bytes free for unprivileged use on the file system holding this file (`fstatvfs`, a
    /// metadata call that does not wait on data I/O).
    pub fn free_bytes(&self) -> io::Result<u64> {
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: fstatvfs fills the struct on success; the descriptor stays open.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::fstatvfs(self.inner.as_raw_fd(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(with_path(io::Error::last_os_error(), "fstatvfs", &self.path));
        }
        // SAFETY: initialised by the successful call above.
        #[allow(unsafe_code)]
        let stat = unsafe { stat.assume_init() };
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Writeback of `len` bytes from `position`: started (`sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE`), and with `wait` also waited for, pages already under
    /// writeback included (`WAIT_BEFORE | WRITE | WAIT_AFTER`). Through io_uring, whose worker
    /// does any waiting. Makes nothing durable (no metadata, no disk cache flush): it only
    /// moves when dirty pages reach the disk, so the kernel's dirty limits are not what slows
    /// a writer.
    pub async fn write_back(&self, position: u64, len: u64, wait: bool) -> io::Result<()> {
        use io_uring::{opcode, types};
        let len = u32::try_from(len).map_err(|_overflow| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("write-back of {len} bytes"))
        })?;
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        let sqe = opcode::SyncFileRange::new(types::Fd(self.inner.as_raw_fd()), len)
            .offset(position)
            .flags(flags)
            .build();
        tokio_uring::UnsubmittedOneshot::new((), ResultTransform, sqe)
            .submit()
            .await
            .map_err(|error| with_path(error, "sync_file_range", &self.path))
    }

    /// `fdatasync`: the file's data (and the metadata needed to read it back) is durable.
    pub async fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().await.map_err(|error| with_path(error, "fdatasync", &self.path))
    }

    /// `fsync`.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all().await.map_err(|error| with_path(error, "fsync", &self.path))
    }

    /// Cuts or extends the file to `len` bytes.
    ///
    /// A plain `ftruncate(2)`: the io-uring 0.6 crate has no truncate opcode, and the call
    /// only changes metadata, so it does not block on data I/O.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len).map_err(|_overflow| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("length {len} exceeds off_t"))
        })?;
        // SAFETY: the descriptor is owned by `self.inner` and stays open for this call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::ftruncate(self.inner.as_raw_fd(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(with_path(io::Error::last_os_error(), "ftruncate", &self.path))
        }
    }

    /// Closes the file, reporting any error from `close(2)`.
    pub async fn close(self) -> io::Result<()> {
        let path = self.path;
        self.inner.close().await.map_err(|error| with_path(error, "close", &path))
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// Makes the entries of directory `path` durable (after a create, rename or delete).
pub async fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = File::open_read(path).await?;
    dir.sync_all().await?;
    dir.close().await
}

/// Removes a file; a file that is already gone is not an error.
pub async fn remove_file(path: &Path) -> io::Result<()> {
    match tokio_uring::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(with_path(error, "unlink", path)),
    }
}

/// Renames `from` to `to` atomically (same file system).
pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    tokio_uring::fs::rename(from, to).await.map_err(|error| with_path(error, "rename", from))
}

/// Renames `from` to `to` only if `to` does not exist (`renameat2` with `RENAME_NOREPLACE`):
/// the one atomic compare-and-swap a directory offers. `AlreadyExists` if `to` is taken.
/// A file system without the flag (`EINVAL`) gets the same answer from `link`, which also
/// refuses an existing name, then `unlink` of `from`.
///
/// A plain syscall: io_uring's `RENAMEAT` takes the flag, but tokio-uring does not pass it.
/// It runs once per cluster-state write, never on the data path.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = |path: &Path| {
        std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
    };
    let (c_from, c_to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EINVAL) {
        return Err(with_path(error, "rename (no replace)", to));
    }
    std::fs::hard_link(from, to).map_err(|error| with_path(error, "link", to))?;
    std::fs::remove_file(from).map_err(|error| with_path(error, "unlink", from))
}

/// The size of a file system and the bytes an unprivileged writer may still use on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSystemSpace {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// The space of the file system holding `path` (`statvfs`: a metadata call that does not
/// wait on data I/O), as Java's `FileStore.getTotalSpace` and `getUsableSpace` measure it:
/// all blocks, and the blocks free for unprivileged use, in fragment-size units.
///
/// A plain syscall: io_uring has no `statvfs`. It runs for DescribeLogDirs, never on the
/// data path.
pub fn file_system_space(path: &Path) -> io::Result<FileSystemSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the path is a NUL-terminated string that outlives the call, and statvfs fills
    // the struct on success.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(with_path(io::Error::last_os_error(), "statvfs", path));
    }
    // SAFETY: initialised by the successful call above.
    #[allow(unsafe_code)]
    let stat = unsafe { stat.assume_init() };
    Ok(FileSystemSpace {
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
        usable_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
    })
}

/// Lists the file names in directory `path`.
///
/// A plain `getdents` through std: io_uring has no directory listing. It runs once per
/// partition when a log is opened, never on the data path.
pub fn list_dir(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|error| with_path(error, "read_dir", path))? {
        let entry = entry.map_err(|error| with_path(error, "read_dir", path))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Adds the operation and the path to an I/O error, keeping its kind (the log's poisoning
/// and the broker's error mapping look at it).
fn with_path(error: io::Error, operation: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{operation} {}: {error}", path.display()))
}

/// Reads a whole small file (metadata, configs). `None` if it does not exist.
pub async fn read_file(path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open_read(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.len().await?;
    if len > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes, more than the {bytes_max} allowed", path.display()),
        ));
    }
    let bytes = file.read_at(0, len as usize).await?;
    file.close().await?;
    Ok(Some(bytes))
}

/// Raises this process's open-file limit to its hard limit (a broker holds one descriptor
/// per segment plus one per connection) and returns the limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the live struct it is given.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the live struct it is given.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc == 0 {
            return Ok(raised.rlim_cur);
        }
    }
    Ok(limit.rlim_cur)
}

/// Drops the first `written` bytes of `pieces`: the whole pieces they cover, and the start
/// of the one a short write ended in.
fn consume(pieces: &mut std::collections::VecDeque<bytes::Bytes>, mut written: usize) {
    while written > 0 {
        let Some(first) = pieces.front_mut() else { return };
        if written >= first.len() {
            written -= first.len();
            pieces.pop_front();
        } else {
            let _ = first.split_to(written);
            written = 0;
        }
    }
}

/// The outcome of an io_uring operation that answers only success or an errno.
struct ResultTransform;

impl tokio_uring::OneshotOutputTransform for ResultTransform {
    type Output = io::Result<()>;
    type StoredData = ();

    fn transform_oneshot_output(self, _data: (), cqe: io_uring::cqueue::Entry) -> io::Result<()> {
        match cqe.result() {
            result if result >= 0 => Ok(()),
            result => Err(io::Error::from_raw_os_error(-result)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_system_of_a_directory_has_its_usable_bytes_within_its_size() {
        let space = file_system_space(&std::env::temp_dir()).unwrap();
        assert!(space.total_bytes > 0, "{space:?}");
        assert!(space.usable_bytes <= space.total_bytes, "{space:?}");
        let missing = file_system_space(Path::new("/no/such/fjord/dir")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("/no/such/fjord/dir"), "{missing}");
    }

    #[test]
    fn a_short_write_is_continued_from_where_it_ended() {
        let piece = |text: &'static str| bytes::Bytes::from_static(text.as_bytes());
        let mut pieces: std::collections::VecDeque<bytes::Bytes> =
            [piece("abc"), piece("defg"), piece("h")].into_iter().collect();
        consume(&mut pieces, 5);
        assert_eq!(pieces, [piece("fg"), piece("h")]);
        consume(&mut pieces, 3);
        assert!(pieces.is_empty());
    }

    /// The open-file flags of `file`, from `/proc/self/fdinfo`.
    fn open_flags(file: &File) -> u32 {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
        let line = info.lines().find(|line| line.starts_with("flags:")).unwrap();
        u32::from_str_radix(line["flags:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn files_of_our_own_open_without_access_time_updates() {
        let dir = std::env::temp_dir().join(format!("fjord-file-noatime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        crate::block_on(async {
            let file = File::open_rw(&dir.join("segment"), true).await.unwrap();
            assert_ne!(
                open_flags(&file) & libc::O_NOATIME as u32,
                0,
                "a segment read must not update its access time"
            );
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
