//! When a buffered file write runs on the calling (shard) thread instead of an io_uring
//! worker.
//!
//! ext4 cannot start a buffered write with a promise not to wait, so io_uring hands every
//! one to an io-wq worker thread and wakes the shard when it is done: two thread wake-ups
//! per append, which on this kind of VM were most of an append's latency. A buffered write
//! that only copies into the page cache costs the same on the shard itself. It waits for the
//! disk only when the kernel throttles writers (`balance_dirty_pages`, once dirty pages pass
//! the free-run ceiling, halfway between the background and the foreground thresholds), and
//! rarely on the journal or on memory reclaim. So a write of at most `INLINE_WRITE_BYTES_MAX`
//! runs inline while both hold:
//! - the system's dirty and writeback pages are below halfway between the background
//!   threshold and the free-run ceiling (`/proc/vmstat`, read again at most every
//!   `DIRTY_CHECK_INTERVAL_MS`). Under a steady write load the flusher keeps dirty pages
//!   near the background threshold, so this holds there; it stops holding when the disk
//!   falls behind, a quarter of the way from the background to the foreground threshold
//!   before any throttling (an earlier rule, half the background threshold, sent every
//!   write of a sustained load to io_uring after its first seconds, docs/benchmarks.md);
//! - no inline write was slow lately: slower than `INLINE_WRITE_SLOW_US` with a sleep in it,
//!   or slower than `INLINE_WRITE_STALL_US` at all. A slow one sends writes to io_uring for
//!   `INLINE_WRITE_BACKOFF_MS`, doubled for each slow one in a row up to
//!   `INLINE_WRITE_BACKOFF_MS_MAX` (what the first rule cannot see: a memory cgroup's own
//!   dirty limits, a journal wait, a frozen file system, which sleep; long reclaim, which
//!   may not).
//!
//! Otherwise the write goes to io_uring, where a wait parks a worker, not the shard. The
//! first write of the process reads `/proc/vmstat` before it decides; if the file cannot be
//! read, writes go to io_uring.
//!
//! The state is process-wide (atomics): dirty pages are a property of the machine, and a
//! slow write on one shard is a warning for all of them.
//!
//! Small reads whose pages are all cached run inline too (`read_cached`, chosen by
//! `File::read_at`), with `RWF_NOWAIT` so that they never wait for the disk: through
//! io_uring, each one cost the reading task a trip through the shard's event loop, behind
//! whatever else was ready, and a fetch reads a few batch headers per partition.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Largest write run inline. A larger one is a long copy (8 MiB into new page-cache memory
/// takes over 10 ms on a VM), which on an io_uring worker leaves the shard free meanwhile.
pub(super) const INLINE_WRITE_BYTES_MAX: usize = 256 * 1024;
/// How often `/proc/vmstat` is read again (by whichever write comes first after this).
pub(super) const DIRTY_CHECK_INTERVAL_MS: u64 = 100;
/// An inline write slower than this that slept sends writes to io_uring for a while.
pub(super) const INLINE_WRITE_SLOW_US: u64 = 2_000;
/// An inline write slower than this sends writes to io_uring for a while, slept or not
/// (reclaim or compaction yield the CPU without sleeping; a hypervisor's stall of a few ms,
/// the usual reason for a slow write that never slept, stays well under it).
pub(super) const INLINE_WRITE_STALL_US: u64 = 10_000;
/// How long writes go to io_uring after a slow inline write (the first of a streak).
pub(super) const INLINE_WRITE_BACKOFF_MS: u64 = 1_000;
/// The longest back-off, reached after seven slow inline writes in a row.
pub(super) const INLINE_WRITE_BACKOFF_MS_MAX: u64 = 64_000;
/// Largest read run inline when its pages are cached (`File::read_at`); batch header walks
/// read at most 16 KiB at a time.
pub const INLINE_READ_BYTES_MAX: usize = 64 * 1024;
/// Most buffers one `pwritev` takes (the kernel's `IOV_MAX`).
pub(super) const IOVECS_MAX: usize = 1024;

/// The last `/proc/vmstat` read found dirty pages far from throttling.
static DIRTY_FAR: AtomicBool = AtomicBool::new(false);
/// When `/proc/vmstat` was last read (`now_ms`); 0 = never.
static DIRTY_CHECKED_AT_MS: AtomicU64 = AtomicU64::new(0);
/// Until when writes go to io_uring after slow inline writes (`now_ms`); 0 = never.
static BACKOFF_UNTIL_MS: AtomicU64 = AtomicU64::new(0);
/// Slow inline writes in a row (an inline write that was not slow ends the streak).
static SLOW_STREAK: AtomicU64 = AtomicU64::new(0);
/// When the current back-off was set (`now_ms`); 0 = never.
static BACKOFF_SET_AT_MS: AtomicU64 = AtomicU64::new(0);
/// How the calling thread's writes choose their path (tests pin one; a shard is one thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As the module notes say.
    Decide,
    /// Every write through io_uring.
    IoUring,
    /// Every write up to `INLINE_WRITE_BYTES_MAX` inline, whatever the kernel's state.
    Inline,
}

thread_local! {
    static MODE: std::cell::Cell<Mode> = const { std::cell::Cell::new(Mode::Decide) };
}

/// Sends every later buffered write made on the calling thread to io_uring (for tests of
/// that path).
pub fn disable_inline_writes() {
    MODE.with(|mode| mode.set(Mode::IoUring));
}

/// Runs every later buffered write of at most `INLINE_WRITE_BYTES_MAX` made on the calling
/// thread inline, whatever the dirty pages and earlier slow writes (for tests of that path,
/// which otherwise depends on the machine's state).
pub fn force_inline_writes() {
    MODE.with(|mode| mode.set(Mode::Inline));
}

/// Milliseconds since the first call in this process, plus one (so 0 can mean "never").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Whether a buffered write of `bytes` may run on the calling thread.
pub(super) fn write_allowed(bytes: usize) -> bool {
    if bytes > INLINE_WRITE_BYTES_MAX {
        return false;
    }
    match MODE.with(|mode| mode.get()) {
        Mode::Decide => {}
        Mode::IoUring => return false,
        Mode::Inline => return true,
    }
    let now = now_ms();
    if now < BACKOFF_UNTIL_MS.load(Ordering::Relaxed) {
        return false;
    }
    let checked = DIRTY_CHECKED_AT_MS.load(Ordering::Relaxed);
    // Another thread may have stored a time later than this thread's `now`.
    if (checked == 0 || now.saturating_sub(checked) >= DIRTY_CHECK_INTERVAL_MS)
        && DIRTY_CHECKED_AT_MS
            .compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let far = std::fs::read_to_string("/proc/vmstat")
            .ok()
            .and_then(|text| dirty_far_from_throttling(&text))
            .unwrap_or(false);
        DIRTY_FAR.store(far, Ordering::Relaxed);
    }
    DIRTY_FAR.load(Ordering::Relaxed)
}

/// Records how long an inline write took and whether the thread slept in it; a slow one
/// that slept starts (or lengthens) the back-off. Slow writes that overlapped the one that
/// set the current back-off (other shards caught in the same stall) count as that one, not
/// as more in a row.
///
/// A slow write that never slept was not waiting for the disk, a lock or the kernel's
/// throttling: the thread was preempted, or on a VM the hypervisor stalled it (a fault on
/// new page-cache memory, another guest on the core). An io_uring worker would have been
/// stalled alike, so it does not send writes there (each back-off sends a second or more of
/// writes to io_uring, about one in sixteen 3-5 s benchmark runs here had one).
/// `slept` is asked only for a slow write. Returns whether this write set (or lengthened)
/// the back-off.
pub(super) fn note_write(
    took: Duration,
    slept: impl FnOnce() -> bool,
    path: &std::path::Path,
) -> bool {
    let took_us = took.as_micros() as u64;
    if took_us <= INLINE_WRITE_SLOW_US {
        SLOW_STREAK.store(0, Ordering::Relaxed);
        return false;
    }
    let slept = slept();
    if !slept && took_us <= INLINE_WRITE_STALL_US {
        tracing::debug!(path = %path.display(), took_us, "slow inline write that never slept (preempted or stalled): no back-off");
        return false;
    }
    let now = now_ms();
    let started = now.saturating_sub(took_us / 1000);
    if started < BACKOFF_SET_AT_MS.load(Ordering::Relaxed) {
        return false;
    }
    BACKOFF_SET_AT_MS.fetch_max(now, Ordering::Relaxed);
    let streak = SLOW_STREAK.fetch_add(1, Ordering::Relaxed) + 1;
    let backoff = backoff_ms(streak);
    BACKOFF_UNTIL_MS.fetch_max(now + backoff, Ordering::Relaxed);
    tracing::info!(path = %path.display(), took_us, slept, streak, "slow inline write: writes go through io_uring workers for {backoff} ms");
    true
}

/// The back-off after the `streak`-th slow inline write in a row (from 1).
fn backoff_ms(streak: u64) -> u64 {
    INLINE_WRITE_BACKOFF_MS
        .saturating_mul(1 << streak.saturating_sub(1).min(16))
        .min(INLINE_WRITE_BACKOFF_MS_MAX)
}

/// From the text of `/proc/vmstat`: whether dirty plus writeback pages are below halfway
/// between the background threshold and the free-run ceiling (itself halfway between the
/// background and the foreground thresholds, where `balance_dirty_pages` starts to throttle).
/// `None` if a field is missing.
fn dirty_far_from_throttling(vmstat: &str) -> Option<bool> {
    let field = |name: &str| -> Option<u64> {
        vmstat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            if key == name {
                value.trim().parse().ok()
            } else {
                None
            }
        })
    };
    let dirty = field("nr_dirty")? + field("nr_writeback")?;
    let background = field("nr_dirty_background_threshold")?;
    let foreground = field("nr_dirty_threshold")?;
    let free_run = (background + foreground) / 2;
    Some(dirty < (background + free_run) / 2)
}

/// Writes `pieces` one after the other from `position` on the calling thread
/// (`pwritev_all`), and records how long that took (`note_write`); `path` names the file in
/// the log line of a slow write.
pub(super) fn write_now<P: AsRef<[u8]>>(
    fd: RawFd,
    pieces: &[P],
    position: u64,
    path: &std::path::Path,
) -> io::Result<()> {
    let switches = voluntary_switches();
    let started = Instant::now();
    let result = pwritev_all(fd, pieces, position);
    // Asked again only for a slow write; unknown counts as slept.
    let slept = || match (switches, voluntary_switches()) {
        (Some(before), Some(after)) => after != before,
        _ => true,
    };
    note_write(started.elapsed(), slept, path);
    result
}

/// Reads up to `len` bytes at `position` on the calling thread from pages already in the
/// page cache (`preadv2` with `RWF_NOWAIT`, in a vector with room for `len`). Stops short at
/// end of file and at the first page that is not cached (or if the kernel refuses
/// `RWF_NOWAIT`): the caller reads the rest another way. Never waits for the disk.
pub(super) fn read_cached(fd: RawFd, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    INLINE_READS.with(|reads| reads.set(reads.get() + 1));
    while out.len() < len {
        let offset = libc::off_t::try_from(position + out.len() as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let want = len - out.len();
        let spare = out.spare_capacity_mut();
        let iovec = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want };
        // SAFETY: the kernel writes at most `want` bytes into the spare capacity, which holds
        // at least that many (capacity `len`) and is borrowed mutably from `out`.
        #[allow(unsafe_code)]
        let read = unsafe { libc::preadv2(fd, &iovec, 1, offset, libc::RWF_NOWAIT) };
        match read {
            0 => break,
            n if n > 0 => {
                let filled = out.len() + n as usize;
                // SAFETY: the kernel initialised the `n` bytes after the old length.
                #[allow(unsafe_code)]
                unsafe {
                    out.set_len(filled)
                };
            }
            _ => {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Not cached (any more), or no RWF_NOWAIT here: what is read so far.
                    Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) => break,
                    _ => return Err(error),
                }
            }
        }
    }
    Ok(out)
}

/// Inline reads after which `inline_read_turn` says to yield, once each time.
pub(super) const INLINE_READS_PER_YIELD: u64 = 64;

thread_local! {
    /// Inline reads on this thread so far (`read_cached`).
    static INLINE_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many reads ran inline on this thread (`read_cached`).
pub fn inline_reads() -> u64 {
    INLINE_READS.with(std::cell::Cell::get)
}

/// Whether the inline read just made (`read_cached`) completes a run of
/// `INLINE_READS_PER_YIELD` on this thread, after which the caller yields to the thread's
/// other tasks.
pub(super) fn inline_read_turn() -> bool {
    inline_reads().is_multiple_of(INLINE_READS_PER_YIELD)
}

/// The calling thread's voluntary context switches so far (`getrusage(RUSAGE_THREAD)`,
/// about 0.4 µs): a call that slept (on I/O, a lock, the journal, the kernel's throttling)
/// adds at least one; preemption counts apart, and a hypervisor's stall not at all.
fn voluntary_switches() -> Option<i64> {
    // SAFETY: rusage is plain data; getrusage fills it.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live rusage.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (rc == 0).then_some(usage.ru_nvcsw as i64)
}

/// `pwritev(2)` of all of `pieces`, one after the other from `position`, on the calling
/// thread, at most `IOVECS_MAX` buffers per call; a short write continues where it stopped.
pub(super) fn pwritev_all<P: AsRef<[u8]>>(
    fd: RawFd,
    pieces: &[P],
    position: u64,
) -> io::Result<()> {
    let len = |i: usize| pieces[i].as_ref().len();
    let total: usize = pieces.iter().map(|p| p.as_ref().len()).sum();
    // (index of the first piece not wholly written, bytes of it already written)
    let (mut first, mut skip) = (0usize, 0usize);
    let mut done = 0usize;
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(pieces.len().min(IOVECS_MAX));
    while done < total {
        // Never start a call with empty pieces: many of them would fill it and write nothing.
        while len(first) == skip {
            first += 1;
            skip = 0;
        }
        iovecs.clear();
        for (i, piece) in pieces[first..].iter().map(AsRef::as_ref).enumerate().take(IOVECS_MAX) {
            let from = if i == 0 { skip } else { 0 };
            iovecs.push(libc::iovec {
                iov_base: piece[from..].as_ptr() as *mut libc::c_void,
                iov_len: piece.len() - from,
            });
        }
        // SAFETY: every iovec points into a live piece of `pieces`, which outlives the call;
        // the kernel only reads them.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::pwritev(
                fd,
                iovecs.as_ptr(),
                iovecs.len() as libc::c_int,
                (position + done as u64) as libc::off_t,
            )
        };
        let mut written = match rc {
            n if n > 0 => n as usize,
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("{done} of {total} bytes written"),
                ))
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
        };
        done += written;
        while written > 0 {
            let left = len(first) - skip;
            if written >= left {
                written -= left;
                first += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMSTAT: &str = "nr_free_pages 5000000\nnr_dirty 1000\nnr_writeback 200\nnr_written 77\nnr_dirty_threshold 1196268\nnr_dirty_background_threshold 597403\n";

    #[test]
    fn dirty_pages_far_from_throttling_allow_inline_writes() {
        assert_eq!(dirty_far_from_throttling(VMSTAT), Some(true));
        // The free-run ceiling is (597,403 + 1,196,268) / 2 = 896,835; the limit halfway
        // from the background threshold to it, (597,403 + 896,835) / 2 = 747,119.
        let steady = VMSTAT.replace("nr_dirty 1000", "nr_dirty 597403");
        assert_eq!(
            dirty_far_from_throttling(&steady),
            Some(true),
            "at the background threshold, where the flusher holds a steady load"
        );
        let below = VMSTAT.replace("nr_dirty 1000", "nr_dirty 746918");
        assert_eq!(dirty_far_from_throttling(&below), Some(true), "746,918 + 200 is below 747,119");
        let near = VMSTAT.replace("nr_dirty 1000", "nr_dirty 746919");
        assert_eq!(
            dirty_far_from_throttling(&near),
            Some(false),
            "writeback counts too: 746,919 + 200 reaches 747,119"
        );
        let missing = VMSTAT.replace("nr_dirty_background_threshold", "other");
        assert_eq!(dirty_far_from_throttling(&missing), None);
        // A field whose name is a prefix of another's is not mistaken for it.
        assert_eq!(dirty_far_from_throttling("nr_dirty_threshold 5\nnr_dirty 1\nnr_writeback 0\nnr_dirty_background_threshold 10\n"), Some(true));
    }

    #[test]
    fn cached_reads_return_a_true_prefix_and_stop_at_the_end() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("fjord-read-cached-{}", std::process::id()));
        let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&content).unwrap();
        file.sync_all().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_raw_fd();
        assert_eq!(
            read_cached(fd, 0, content.len()).unwrap(),
            content,
            "just written: cached whole"
        );
        assert_eq!(
            read_cached(fd, 60_000, 10_000).unwrap(),
            content[60_000..],
            "short at the end of the file"
        );
        assert!(read_cached(fd, 70_000, 10).unwrap().is_empty(), "nothing past the end");
        // The second half dropped from the page cache: whatever comes back is the file's own
        // prefix (the kernel may have read some of it back meanwhile), and no error.
        // SAFETY: posix_fadvise on an open descriptor touches no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::posix_fadvise(fd, 32 * 1024, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let got = read_cached(fd, 0, content.len()).unwrap();
        assert!(
            got.len() >= 32 * 1024 && got == content[..got.len()],
            "a prefix of {} bytes",
            got.len()
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn an_inline_read_yields_once_every_so_many() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        // Any 3 x INLINE_READS_PER_YIELD reads in a row, wherever the thread's count stands.
        let turns = (0..3 * INLINE_READS_PER_YIELD)
            .filter(|_| {
                read_cached(file.as_raw_fd(), 0, 16).unwrap();
                inline_read_turn()
            })
            .count();
        assert_eq!(turns, 3);
    }

    #[test]
    fn voluntary_switches_count_sleeps_not_work() {
        let before = voluntary_switches().expect("getrusage");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(3) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert_eq!(
            voluntary_switches(),
            Some(before),
            "3 ms of work without a syscall that sleeps"
        );
        std::thread::sleep(Duration::from_millis(1));
        assert!(voluntary_switches().expect("getrusage") > before, "a sleep is a voluntary switch");
    }

    #[test]
    fn a_slow_write_backs_off_if_it_slept_or_stalled_long() {
        let path = std::path::Path::new("test");
        assert!(
            !note_write(Duration::from_millis(1), || panic!("asked for a fast write"), path),
            "a fast write"
        );
        assert!(
            !note_write(Duration::from_millis(5), || false, path),
            "preempted a few ms, not waiting: no back-off"
        );
        assert!(
            note_write(Duration::from_millis(20), || false, path),
            "a stall past INLINE_WRITE_STALL_US backs off, slept or not"
        );
        // A later stall, not one that overlapped the one that set the back-off (which
        // counts as that one): as if that one had been set before the clock started.
        BACKOFF_SET_AT_MS.store(0, Ordering::Relaxed);
        assert!(
            note_write(Duration::from_millis(3), || true, path),
            "a slow write that slept backs off"
        );
        BACKOFF_UNTIL_MS.store(0, Ordering::Relaxed);
        BACKOFF_SET_AT_MS.store(0, Ordering::Relaxed);
        SLOW_STREAK.store(0, Ordering::Relaxed);
    }

    #[test]
    fn large_writes_always_go_to_io_uring() {
        assert!(!write_allowed(INLINE_WRITE_BYTES_MAX + 1));
    }

    #[test]
    fn slow_writes_in_a_row_back_off_longer_up_to_a_bound() {
        assert_eq!(backoff_ms(1), INLINE_WRITE_BACKOFF_MS);
        assert_eq!(backoff_ms(2), 2 * INLINE_WRITE_BACKOFF_MS);
        assert_eq!(backoff_ms(7), INLINE_WRITE_BACKOFF_MS_MAX);
        assert_eq!(backoff_ms(u64::MAX), INLINE_WRITE_BACKOFF_MS_MAX);
    }

    #[test]
    fn vectored_writes_continue_across_pieces() {
        let dir = std::env::temp_dir().join(format!("fjord-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pieces");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        use std::os::fd::AsRawFd;
        // More pieces than one call takes, starting with more empty ones than one call takes,
        // then some empty among others of varied sizes.
        let pieces: Vec<bytes::Bytes> = (0..1100u32)
            .map(|_| bytes::Bytes::new())
            .chain(
                (0..2500u32).map(|i| bytes::Bytes::from(vec![(i % 251) as u8; (i % 7) as usize])),
            )
            .collect();
        pwritev_all(file.as_raw_fd(), &pieces, 3).unwrap();
        pwritev_all(file.as_raw_fd(), &[b"abc"], 0).unwrap();
        let mut want = b"abc".to_vec();
        for piece in &pieces {
            want.extend_from_slice(piece);
        }
        assert_eq!(std::fs::read(&path).unwrap(), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
