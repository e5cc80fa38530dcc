//! Which pages of a file are in the page cache and up to date, asked with `mincore(2)` on a
//! mapping of the file that is never accessed: the answer `File::cached` gives, which
//! decides whether a fetch may splice a region on the shard thread (module `splice`).
//!
//! Why `mincore` on a mapping: `cachestat(2)` needs no mapping, but counts every page present
//! in the cache, including pages whose readahead is still in flight, and a splice of those
//! waits for the disk; `mincore` reports a page only once it is up to date.
//!
//! The mapping (`ResidencyMap`):
//! - `PROT_NONE` and `MAP_PRIVATE`: nothing is ever read or written through it, no page
//!   table is ever filled, and the file does not count as writably mapped (which would add
//!   cache flushes to its reads and writes on some architectures). It costs address space
//!   and one entry in the process's memory map, no memory.
//! - `RESIDENCY_MAP_BYTES` long, enough for any segment (`SEGMENT_BYTES_MAX` plus one
//!   append), plus one probe page beyond: no segment reaches it, so `mincore` must always
//!   call it absent. The kernel answers truthfully only about files the process owns or may
//!   write; otherwise it calls every page present, the unsafe direction. The probe catches
//!   that on every question.
//! - At most `RESIDENCY_MAPS_MAX` exist at once in the process (2.5 TiB of address space),
//!   so a reader of thousands of old segments cannot use up the address space that
//!   allocations and thread stacks need. A file that finds none free asks again on its next
//!   question; meanwhile its reads go through io_uring.
//! - Shared (`Arc`) by the copies of a file other shards hold: made once per segment.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of a file a residency mapping covers: any segment (fjord-storage's
/// `SEGMENT_BYTES_MAX`, plus one append past it) fits, which fjord-storage asserts.
pub const RESIDENCY_MAP_BYTES: u64 = 2560 * 1024 * 1024;

/// Most residency mappings alive in the process at once.
pub(super) const RESIDENCY_MAPS_MAX: usize = 1024;

/// Most pages one question covers (1 MiB of 4 KiB pages, the splice pipe's size, and one
/// more for a range that starts mid-page).
pub(super) const CACHED_CHECK_PAGES_MAX: usize = 257;

/// Residency mappings alive now.
static LIVE_MAPS: AtomicUsize = AtomicUsize::new(0);

/// A file's residency mapping (see the module notes).
#[derive(Debug)]
pub(super) struct ResidencyMap {
    address: *mut u8,
}

// SAFETY: nothing is ever read or written through the mapping; any thread may ask `mincore`
// about it, and the last owner unmaps it.
#[allow(unsafe_code)]
unsafe impl Send for ResidencyMap {}
// SAFETY: as above; `mincore` only looks at the page tables and the page cache.
#[allow(unsafe_code)]
unsafe impl Sync for ResidencyMap {}

/// Why no mapping was made.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoMap {
    /// `RESIDENCY_MAPS_MAX` are alive: ask again later.
    Busy,
    /// The kernel refused the mapping, or would not answer truthfully about this file.
    Refused,
}

/// Bytes of the whole mapping: the covered part and the probe page.
fn map_len() -> usize {
    (RESIDENCY_MAP_BYTES + page_bytes()) as usize
}

impl ResidencyMap {
    pub(super) fn new(fd: RawFd) -> Result<ResidencyMap, NoMap> {
        if LIVE_MAPS.fetch_add(1, Ordering::Relaxed) >= RESIDENCY_MAPS_MAX {
            LIVE_MAPS.fetch_sub(1, Ordering::Relaxed);
            return Err(NoMap::Busy);
        }
        // SAFETY: a new private mapping of the caller's open descriptor that nothing ever
        // reads or writes through (PROT_NONE); `Drop` unmaps it.
        #[allow(unsafe_code)]
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len(),
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                fd,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            LIVE_MAPS.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(error = %std::io::Error::last_os_error(), "no residency mapping for a segment: its fetches splice through io_uring");
            return Err(NoMap::Refused);
        }
        let map = ResidencyMap { address: address.cast() };
        if !map.truthful() {
            tracing::warn!("mincore would not answer truthfully about a segment (not its owner, no write permission): its fetches splice through io_uring");
            return Err(NoMap::Refused);
        }
        Ok(map)
    }

    /// Whether every page from byte `start` to byte `end` (page-aligned, within
    /// `RESIDENCY_MAP_BYTES`, at most `CACHED_CHECK_PAGES_MAX` pages) is cached and up to
    /// date, and the kernel still answers truthfully.
    pub(super) fn all_cached(&self, start: u64, end: u64) -> bool {
        debug_assert!(start < end && end <= RESIDENCY_MAP_BYTES);
        let pages = ((end - start) / page_bytes()) as usize;
        let mut resident = [0u8; CACHED_CHECK_PAGES_MAX];
        if pages > resident.len() {
            return false;
        }
        // SAFETY: `start..end` lies within the mapping, and `resident` has room for one byte
        // per page.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::mincore(
                self.address.add(start as usize).cast(),
                (end - start) as usize,
                resident.as_mut_ptr(),
            )
        };
        rc == 0 && resident[..pages].iter().all(|byte| byte & 1 == 1) && self.truthful()
    }

    /// Whether `mincore` calls the probe page (past any segment's end) absent, as it must
    /// when it answers truthfully.
    fn truthful(&self) -> bool {
        let mut probe = [1u8];
        // SAFETY: the probe page is the mapping's last page; `probe` holds one byte.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::mincore(
                self.address.add(RESIDENCY_MAP_BYTES as usize).cast(),
                page_bytes() as usize,
                probe.as_mut_ptr(),
            )
        };
        rc == 0 && probe[0] & 1 == 0
    }
}

impl Drop for ResidencyMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made, which nothing else refers to.
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.address.cast(), map_len())
        };
        LIVE_MAPS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The page size, the unit of `mincore`'s answers.
pub(super) fn page_bytes() -> u64 {
    static PAGE_BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE_BYTES.get_or_init(|| {
        // SAFETY: sysconf has no memory arguments.
        #[allow(unsafe_code)]
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            page as u64
        } else {
            4096
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn mappings_are_bounded_and_given_back() {
        let dir = std::env::temp_dir().join(format!("fjord-residency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join("f"))
            .unwrap();
        // Other tests of this process may hold a few; take all that are left.
        let mut maps = Vec::new();
        loop {
            match ResidencyMap::new(file.as_raw_fd()) {
                Ok(map) => maps.push(map),
                Err(refusal) => {
                    assert_eq!(refusal, NoMap::Busy);
                    break;
                }
            }
            assert!(maps.len() <= RESIDENCY_MAPS_MAX, "more than the bound");
        }
        assert!(maps.len() > RESIDENCY_MAPS_MAX / 2, "only {} made", maps.len());
        assert!(maps[0].truthful(), "the probe page of our own file is absent");
        maps.pop();
        let again = ResidencyMap::new(file.as_raw_fd()).expect("one given back, one made");
        drop(again);
        drop(maps);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
