//! The process allocator: the system allocator, except that very large blocks are mapped
//! with `MAP_NORESERVE`.
//!
//! Why: Kafka request codecs (the `kafka-protocol` crate) reserve `count * size_of::<T>()`
//! for an array before checking that the frame holds `count` elements, so a 25-byte request
//! announcing 2^31 topics asks for ~150 GB. The system allocator refuses that and Rust
//! aborts the process. A `MAP_NORESERVE` mapping only reserves address space: the decode
//! then fails on the missing bytes, the block is unmapped untouched, and the connection is
//! closed with a log line. Physical memory is only used for pages actually written, so
//! legitimate large buffers (up to `request-bytes-max`) behave as before.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped instead of taken from the system allocator.
const MAPPED_BYTES_MIN: usize = 256 * 1024 * 1024;
/// Mappings are page aligned; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

pub struct Allocator;

fn mapped(layout: &Layout) -> bool {
    layout.size() >= MAPPED_BYTES_MIN && layout.align() <= PAGE_BYTES
}

// SAFETY: every block is either from `System` (and returned to it) or from `mmap` (and
// returned with `munmap` of the same length); `mapped` decides which, from the layout alone,
// and the layout given to `dealloc` is the one given to `alloc`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !mapped(&layout) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping; no file descriptor or address hint involved.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            // SAFETY: `ptr` came from the mmap above with this same length.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !mapped(&layout) && !mapped(&new_layout) {
            // SAFETY: both old and new blocks belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, then a copy of the common prefix and the
        // release of the old block, each through the path that matches its layout.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}
