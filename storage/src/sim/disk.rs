//! `SimDisk`: the [`Disk`] of the simulator. Files live in memory ([`Image`]); names live in
//! two maps, the volatile one that calls see and the durable one a crash returns to, with
//! the name changes since each directory's last sync kept in order.
//!
//! Invariants:
//! - Every decision (a fault, a latency, what a crash keeps) comes from the disk's seeded
//!   generator, in the order of the calls: one seed, one schedule.
//! - A name change (create, rename, unlink) is durable only after `sync_dir` of its directory;
//!   a crash keeps a prefix of the others, in order (a journaling file system's behaviour).
//!   Renames are atomic, and `rename_noreplace` refuses a taken name. Directories themselves are durable when created.
//! - After a power-off (`power_off_at_sync`, `power_off_at_op`) every call fails with EIO
//!   until `crash`; after `crash`, files opened before it fail (stale handles).
//! - A failed write leaves a prefix of its bytes, whole sectors, in the volatile image. A
//!   failed sync leaves its data pending: the crash decides what survives (as on Linux,
//!   where the kernel may drop pages whose writeback failed).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use tokio_uring::buf::IoBuf;

use super::image::{Image, Kept, SECTOR_BYTES};
use super::rng::Rng;
use crate::disk::{Disk, DiskFile};

/// How often each fault happens, in parts per million of the calls that can have it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// EIO on a read.
    pub read_error_ppm: u32,
    /// EIO or ENOSPC on a write or a length change (the write may be partly done).
    pub write_error_ppm: u32,
    /// EIO or ENOSPC on `sync_data` or `sync_dir`.
    pub sync_error_ppm: u32,
    /// EIO on open, rename and unlink.
    pub metadata_error_ppm: u32,
    /// A call yields to other tasks first (one to three times).
    pub latency_ppm: u32,
    /// At a crash, one sector of a file's out-of-order writeback lands at a wrong position.
    pub misdirect_ppm: u32,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Only what a crash does and latency: no call fails.
    pub fn crashes_only(rng: &mut Rng) -> Faults {
        Faults { latency_ppm: rng.below(300_000) as u32, misdirect_ppm: 100_000, ..Faults::none() }
    }

    /// A random mix, each fault from none to a few percent of calls.
    pub fn random(rng: &mut Rng) -> Faults {
        let mut rate = |max: u64| if rng.coin() { 0 } else { rng.below(max) as u32 };
        Faults {
            read_error_ppm: rate(20_000),
            write_error_ppm: rate(20_000),
            sync_error_ppm: rate(30_000),
            metadata_error_ppm: rate(10_000),
            latency_ppm: rate(300_000),
            misdirect_ppm: rate(300_000),
        }
    }
}

/// What the disk did, for tests to report and to check that faults were reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub calls: u64,
    pub syncs: u64,
    pub injected_errors: u64,
    pub crashes: u64,
    pub files_torn: u64,
    pub files_scattered: u64,
    pub files_lost_unsynced: u64,
    pub misdirected_sectors: u64,
    /// Bytes whose writeback was started (`write_back`), and waited for.
    pub write_back_started_bytes: u64,
    pub write_back_waited_bytes: u64,
}

/// Adds another run's counts (tests sum them over their schedules).
impl std::ops::AddAssign for SimStats {
    fn add_assign(&mut self, other: SimStats) {
        self.calls += other.calls;
        self.syncs += other.syncs;
        self.injected_errors += other.injected_errors;
        self.crashes += other.crashes;
        self.files_torn += other.files_torn;
        self.files_scattered += other.files_scattered;
        self.files_lost_unsynced += other.files_lost_unsynced;
        self.misdirected_sectors += other.misdirected_sectors;
        self.write_back_started_bytes += other.write_back_started_bytes;
        self.write_back_waited_bytes += other.write_back_waited_bytes;
    }
}

/// A name change not yet made durable by a sync of its directory.
#[derive(Debug, Clone)]
enum NameOp {
    Link { path: PathBuf, inode: usize },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf, inode: usize },
}

impl NameOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            NameOp::Link { path, .. } | NameOp::Unlink { path } => path.parent(),
            NameOp::Rename { to, .. } => to.parent(),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, usize>) {
        match self {
            NameOp::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            NameOp::Unlink { path } => {
                names.remove(path);
            }
            NameOp::Rename { from, to, inode } => {
                names.remove(from);
                names.insert(to.clone(), *inode);
            }
        }
    }
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: Faults,
    /// Whether faults are injected now (a test may recover on a quiet disk).
    armed: bool,
    /// Bumped by every crash: handles of an older generation are stale.
    generation: u64,
    inodes: Vec<Image>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    name_ops: Vec<NameOp>,
    dirs: BTreeSet<PathBuf>,
    power_off_at_sync: Option<u64>,
    /// A sync (count) that fails with EIO while the power stays on.
    fail_at_sync: Option<u64>,
    power_off_at_call: Option<u64>,
    powered_off: bool,
    /// The call (count) at which the power went off.
    power_cut_call: Option<u64>,
    /// Bytes left on the simulated file system (`None`: unlimited). Writes consume it; a
    /// write or preallocation that does not fit fails with ENOSPC, having written what fit
    /// in whole sectors, as a real file system fills.
    free_bytes: Option<u64>,
    stats: SimStats,
}

/// A simulated disk. Clones share it.
#[derive(Debug, Clone)]
pub struct SimDisk(Rc<RefCell<State>>);

/// Which fault a call can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    Write,
    Sync,
    Metadata,
    /// Never fails but on a powered-off disk (`len`, `list_dir`, `close`).
    Quiet,
}

impl SimDisk {
    pub fn new(seed: u64, faults: Faults) -> SimDisk {
        SimDisk(Rc::new(RefCell::new(State {
            rng: Rng::new(seed),
            faults,
            armed: true,
            generation: 0,
            inodes: Vec::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            name_ops: Vec::new(),
            dirs: BTreeSet::new(),
            power_off_at_sync: None,
            fail_at_sync: None,
            power_off_at_call: None,
            powered_off: false,
            power_cut_call: None,
            free_bytes: None,
            stats: SimStats::default(),
        })))
    }

    /// Sets the bytes left on the file system (`None`: unlimited): with `Some(0)` every
    /// write fails with ENOSPC, and raising it again is space coming back (files deleted
    /// by someone else).
    pub fn set_free_bytes(&self, free: Option<u64>) {
        self.0.borrow_mut().free_bytes = free;
    }

    /// Turns fault injection on or off (crashes and power-offs still happen).
    pub fn set_armed(&self, armed: bool) {
        self.0.borrow_mut().armed = armed;
    }

    pub fn armed(&self) -> bool {
        self.0.borrow().armed
    }

    /// The power goes off at the `k`-th sync from now on (0 = the next one): that sync and
    /// every later call fail. Whether that sync reached the disk first is up to the seed.
    pub fn power_off_at_sync(&self, k: u64) {
        let mut state = self.0.borrow_mut();
        state.power_off_at_sync = Some(state.stats.syncs + k);
    }

    /// The `k`-th sync from now on (0 = the next one) fails with EIO, armed or not, and the
    /// power stays on: a failure at a chosen point, as `power_off_at_sync` is a crash at one.
    pub fn fail_at_sync(&self, k: u64) {
        let mut state = self.0.borrow_mut();
        state.fail_at_sync = Some(state.stats.syncs + k);
    }

    /// The power goes off at the `k`-th call from now on (0 = the next one).
    pub fn power_off_at_call(&self, k: u64) {
        let mut state = self.0.borrow_mut();
        state.power_off_at_call = Some(state.stats.calls + k);
    }

    /// Calls off a power-off set for later (one that already happened stays).
    pub fn cancel_power_off(&self) {
        let mut state = self.0.borrow_mut();
        state.power_off_at_sync = None;
        state.power_off_at_call = None;
    }

    pub fn powered_off(&self) -> bool {
        self.0.borrow().powered_off
    }

    pub fn stats(&self) -> SimStats {
        self.0.borrow().stats
    }

    /// A power loss and restart: each file keeps its synced bytes and what the seed decides
    /// of the rest, names return to their durable state plus a prefix of the later changes,
    /// and every open file becomes stale.
    pub fn crash(&self) {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        state.generation += 1;
        state.powered_off = false;
        state.power_cut_call = None;
        state.power_off_at_sync = None;
        state.power_off_at_call = None;
        state.stats.crashes += 1;
        let misdirect_ppm = state.faults.misdirect_ppm;
        for image in &mut state.inodes {
            match image.crash(&mut state.rng, misdirect_ppm) {
                Kept::Clean | Kept::Everything => {}
                Kept::Nothing => state.stats.files_lost_unsynced += 1,
                Kept::Torn => state.stats.files_torn += 1,
                Kept::Scattered { misdirected } => {
                    state.stats.files_scattered += 1;
                    state.stats.misdirected_sectors += u64::from(misdirected);
                }
            }
        }
        let kept = state.rng.below(state.name_ops.len() as u64 + 1) as usize;
        for op in state.name_ops.drain(..).take(kept) {
            op.apply(&mut state.durable_names);
        }
        state.names.clone_from(&state.durable_names);
    }

    /// The bytes of the file at `path` as reads see them, if it exists (for tests).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.0.borrow();
        state.names.get(path).map(|&inode| state.inodes[inode].bytes().to_vec())
    }

    /// Counts a call and decides its fault: `Err` when the power is off or the seed
    /// injects one.
    fn enter(&self, call: Call, what: &str, path: &Path) -> Result<()> {
        let mut state = self.0.borrow_mut();
        state.stats.calls += 1;
        if call == Call::Sync {
            state.stats.syncs += 1;
        }
        let calls = state.stats.calls - 1;
        let syncs = state.stats.syncs.wrapping_sub(1);
        if state.power_off_at_call == Some(calls)
            || (call == Call::Sync && state.power_off_at_sync == Some(syncs))
        {
            state.powered_off = true;
            state.power_cut_call = Some(calls);
        }
        if state.powered_off {
            return Err(Error::other(format!(
                "{what} {}: EIO (simulated power loss)",
                path.display()
            )));
        }
        if call == Call::Sync && state.fail_at_sync == Some(syncs) {
            state.fail_at_sync = None;
            state.stats.injected_errors += 1;
            return Err(Error::other(format!("{what} {}: EIO (simulated)", path.display())));
        }
        let ppm = match call {
            Call::Read => state.faults.read_error_ppm,
            Call::Write => state.faults.write_error_ppm,
            Call::Sync => state.faults.sync_error_ppm,
            Call::Metadata => state.faults.metadata_error_ppm,
            Call::Quiet => 0,
        };
        if !state.armed || !state.rng.chance_ppm(ppm) {
            return Ok(());
        }
        state.stats.injected_errors += 1;
        let no_space = matches!(call, Call::Write | Call::Sync) && state.rng.coin();
        Err(if no_space {
            Error::new(
                ErrorKind::StorageFull,
                format!("{what} {}: ENOSPC (simulated)", path.display()),
            )
        } else {
            Error::other(format!("{what} {}: EIO (simulated)", path.display()))
        })
    }

    /// Whether the last call is the one the power went off at: a sync cut there may or
    /// may not have reached the disk, as the seed decides.
    fn sync_reached_before_cut(state: &mut State) -> bool {
        state.power_cut_call == Some(state.stats.calls - 1) && state.rng.coin()
    }

    /// Yields to other tasks one to three times, when the seed says so.
    async fn latency(&self) {
        let turns = {
            let mut state = self.0.borrow_mut();
            let ppm = state.faults.latency_ppm;
            if state.armed && state.rng.chance_ppm(ppm) {
                1 + state.rng.below(3)
            } else {
                0
            }
        };
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
    }

    fn open(&self, path: &Path, create: bool) -> Result<SimFile> {
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(not_found("open", path));
        }
        let inode = match state.names.get(path) {
            Some(&inode) => inode,
            None if create => {
                state.inodes.push(Image::default());
                let inode = state.inodes.len() - 1;
                state.names.insert(path.to_path_buf(), inode);
                state.name_ops.push(NameOp::Link { path: path.to_path_buf(), inode });
                inode
            }
            None => return Err(not_found("open", path)),
        };
        Ok(SimFile {
            disk: self.clone(),
            inode,
            generation: state.generation,
            path: path.to_path_buf(),
        })
    }
}

fn not_found(what: &str, path: &Path) -> Error {
    Error::new(ErrorKind::NotFound, format!("{what} {}: no such file", path.display()))
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open_rw(&self, path: &Path, create: bool) -> Result<SimFile> {
        self.latency().await;
        self.enter(Call::Metadata, "open", path)?;
        self.open(path, create)
    }

    async fn open_read(&self, path: &Path) -> Result<SimFile> {
        self.latency().await;
        self.enter(Call::Metadata, "open", path)?;
        self.open(path, false)
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        self.enter(Call::Quiet, "mkdir", path)?;
        let mut state = self.0.borrow_mut();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        self.enter(Call::Quiet, "read_dir", path)?;
        let state = self.0.borrow();
        if !state.dirs.contains(path) {
            return Err(not_found("read_dir", path));
        }
        Ok(state
            .names
            .keys()
            .filter(|name| name.parent() == Some(path))
            .filter_map(|name| name.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        self.latency().await;
        self.enter(Call::Metadata, "unlink", path)?;
        let mut state = self.0.borrow_mut();
        if state.names.remove(path).is_some() {
            state.name_ops.push(NameOp::Unlink { path: path.to_path_buf() });
        }
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.latency().await;
        self.enter(Call::Metadata, "rename", from)?;
        let mut state = self.0.borrow_mut();
        let inode = state.names.remove(from).ok_or_else(|| not_found("rename", from))?;
        state.names.insert(to.to_path_buf(), inode);
        state.name_ops.push(NameOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            inode,
        });
        Ok(())
    }

    async fn rename_noreplace(&self, from: &Path, to: &Path) -> Result<()> {
        self.latency().await;
        self.enter(Call::Metadata, "rename (no replace)", from)?;
        let mut state = self.0.borrow_mut();
        if state.names.contains_key(to) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("rename (no replace) {}: the name is taken", to.display()),
            ));
        }
        let inode = state.names.remove(from).ok_or_else(|| not_found("rename", from))?;
        state.names.insert(to.to_path_buf(), inode);
        state.name_ops.push(NameOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            inode,
        });
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> Result<()> {
        self.latency().await;
        let result = self.enter(Call::Sync, "fsync", path);
        let mut guard = self.0.borrow_mut();
        let state = &mut *guard;
        if result.is_err() && !SimDisk::sync_reached_before_cut(state) {
            return result;
        }
        let (synced, rest): (Vec<NameOp>, Vec<NameOp>) =
            state.name_ops.drain(..).partition(|op| op.dir() == Some(path));
        for op in &synced {
            op.apply(&mut state.durable_names);
        }
        state.name_ops = rest;
        result
    }
}

/// An open file of a [`SimDisk`].
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    inode: usize,
    generation: u64,
    path: PathBuf,
}

impl SimFile {
    /// Like `SimDisk::enter`, and fails on a handle from before the last crash.
    fn enter(&self, call: Call, what: &str) -> Result<()> {
        self.disk.enter(call, what, &self.path)?;
        if self.disk.0.borrow().generation != self.generation {
            return Err(Error::other(format!(
                "{what} {}: stale handle from before a crash",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Takes the free space a write of `len` bytes at `position` needs (what it adds past
    /// the file's end): all of it, or as many whole sectors as fit and ENOSPC, with how many
    /// of the write's bytes fit.
    fn take_space(
        &self,
        position: u64,
        len: u64,
        what: &str,
    ) -> std::result::Result<(), (u64, Error)> {
        let mut state = self.disk.0.borrow_mut();
        let Some(free) = state.free_bytes else { return Ok(()) };
        let file_len = state.inodes[self.inode].bytes().len() as u64;
        let inside = file_len.saturating_sub(position).min(len);
        let len = len - inside;
        if len <= free {
            state.free_bytes = Some(free - len);
            return Ok(());
        }
        let fits = free / SECTOR_BYTES * SECTOR_BYTES;
        state.free_bytes = Some(free - fits);
        let fits = inside + fits;
        state.stats.injected_errors += 1;
        let error = Error::new(
            ErrorKind::StorageFull,
            format!("{what} {}: ENOSPC (simulated full file system)", self.path.display()),
        );
        Err((fits, error))
    }

    fn write(&self, position: u64, bytes: &[u8]) -> Result<()> {
        if let Err((fits, error)) = self.take_space(position, bytes.len() as u64, "write") {
            let kept = (fits as usize).min(bytes.len());
            if kept > 0 {
                self.disk.0.borrow_mut().inodes[self.inode].write(position, &bytes[..kept]);
            }
            return Err(error);
        }
        if let Err(error) = self.enter(Call::Write, "write") {
            // A failed write may have written some whole sectors first.
            let mut state = self.disk.0.borrow_mut();
            if !state.powered_off && !bytes.is_empty() {
                let sectors = (bytes.len() as u64).div_ceil(SECTOR_BYTES);
                let kept = state.rng.below(sectors) * SECTOR_BYTES;
                let kept = (kept as usize).min(bytes.len());
                if kept > 0 {
                    state.inodes[self.inode].write(position, &bytes[..kept]);
                }
            }
            return Err(error);
        }
        self.disk.0.borrow_mut().inodes[self.inode].write(position, bytes);
        Ok(())
    }
}

impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn len(&self) -> Result<u64> {
        self.enter(Call::Quiet, "statx")?;
        Ok(self.disk.0.borrow().inodes[self.inode].bytes().len() as u64)
    }

    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        self.disk.latency().await;
        self.enter(Call::Read, "read")?;
        let state = self.disk.0.borrow();
        let bytes = state.inodes[self.inode].bytes();
        let start = (position as usize).min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    async fn write_all_at<B: IoBuf + AsRef<[u8]>>(&self, buf: B, position: u64) -> (Result<()>, B) {
        self.disk.latency().await;
        let result = self.write(position, buf.as_ref());
        (result, buf)
    }

    async fn writev_all_at(&self, pieces: Vec<Bytes>, position: u64) -> Result<()> {
        self.disk.latency().await;
        self.write(position, &pieces.concat())
    }

    /// Pages reach the simulated disk only at a sync (or a crash's lottery): starting their
    /// writeback early changes nothing there.
    async fn write_back(&self, _position: u64, len: u64, wait: bool) -> Result<()> {
        self.enter(Call::Quiet, "sync_file_range")?;
        let stats = &mut self.disk.0.borrow_mut().stats;
        if wait {
            stats.write_back_waited_bytes += len;
        } else {
            stats.write_back_started_bytes += len;
        }
        Ok(())
    }

    async fn preallocate(&self, _position: u64, len: u64) -> Result<()> {
        self.enter(Call::Quiet, "fallocate")?;
        // A preallocation takes no space here (writes are counted when they happen), but it
        // fails as a real one does when the space is not there.
        let free = self.disk.0.borrow().free_bytes;
        match free {
            Some(free) if free < len => Err(Error::new(
                ErrorKind::StorageFull,
                format!("fallocate {}: ENOSPC (simulated full file system)", self.path.display()),
            )),
            _ => Ok(()),
        }
    }

    fn free_bytes(&self) -> Result<u64> {
        self.enter(Call::Quiet, "fstatvfs")?;
        Ok(self.disk.0.borrow().free_bytes.unwrap_or(1 << 40))
    }

    async fn sync_data(&self) -> Result<()> {
        self.disk.latency().await;
        let result = self.enter(Call::Sync, "fdatasync");
        let mut state = self.disk.0.borrow_mut();
        // A sync the power cut may or may not have reached the disk first.
        let reached = result.is_ok() || SimDisk::sync_reached_before_cut(&mut state);
        if reached && state.generation == self.generation {
            state.inodes[self.inode].sync();
        }
        result
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.enter(Call::Write, "ftruncate")?;
        let mut state = self.disk.0.borrow_mut();
        // Cutting a file gives its blocks back; growing one takes none (a sparse end).
        let before = state.inodes[self.inode].bytes().len() as u64;
        if let Some(free) = state.free_bytes {
            state.free_bytes = Some(free + before.saturating_sub(len));
        }
        state.inodes[self.inode].set_len(len);
        Ok(())
    }

    async fn close(self) -> Result<()> {
        Ok(())
    }
}
