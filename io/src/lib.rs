//! fjord-io, the I/O layer: the only crate in Fjord that touches io_uring, and the only one
//! allowed `unsafe` (besides the global allocator), one `#[allow(unsafe_code)]` and one
//! SAFETY line per block.
//!
//! Everything above this crate speaks in terms of [`File`] (positioned reads and writes,
//! `fdatasync`, truncation) and [`splice_to_socket`] (file region -> socket without copying
//! through user space). tokio-uring is unmaintained upstream, so keeping it behind this
//! boundary means a successor (compio, or raw io-uring) replaces two files, not the engine.
//!
//! Invariants:
//! - A buffer handed to the kernel is owned by the in-flight operation until it completes;
//!   dropping a future never frees memory the kernel may still write (tokio-uring's
//!   `BufResult` ownership model).
//! - Short reads and writes are retried here, so callers see whole transfers or an error.
//! - Every error names the file it happened on.
//!
//! A few metadata operations have no io_uring opcode in the io-uring 0.6 crate (`ftruncate`,
//! directory listing); they use plain syscalls, are cheap, and are marked where they happen.
//!
//! Two hot operations run as plain system calls on the shard thread when they cannot wait
//! on the disk, because io_uring would only hand them to one of its worker threads (io-wq)
//! and wake the shard afterwards, which is most of their latency here:
//! - splices of file regions whose pages are all cached, and of the pipe into a
//!   non-blocking socket ([`splice`]);
//! - buffered writes while dirty pages are far from the kernel's throttling and no inline
//!   write was slow lately ([`inline`]).
//!
//! Everything likely to wait on the disk still goes through io_uring.
//!
//! The other system calls Fjord needs `unsafe` for live here too, each behind a safe
//! function, so that the rest of the workspace denies `unsafe_code` without exceptions (the
//! global allocator, `src/alloc.rs`, aside): signals ([`send_signal`],
//! [`send_signal_to_group`], [`restore_default_sigpipe`]) and the bench's blocking socket
//! calls ([`send_file`], [`recv_into_spare`]).

mod file;
mod inline;
mod lock;
mod net;
mod process;
mod reaper;
mod residency;
mod splice;

pub use file::{
    file_system_space, list_dir, raise_open_files_limit, read_file, remove_file, rename,
    rename_noreplace, sync_dir, File, FileSystemSpace, SharedFile,
};
pub use inline::{disable_inline_writes, force_inline_writes, inline_reads, INLINE_READ_BYTES_MAX};
pub use lock::FileLock;
pub use net::{
    bind_reuseport_std, recv_into_spare, send_file, set_socket_option, Listener, Stream,
    READ_CHUNK_BYTES,
};
pub use process::{restore_default_sigpipe, send_signal, send_signal_to_group};
pub use reaper::{remove_dir_all_in_reaper, REAP_GRACE_MS};
pub use residency::RESIDENCY_MAP_BYTES;
pub use splice::{splice_to_socket, PipeStream, SplicePipe};
pub use tokio_uring::buf::{IoBuf, IoBufMut};

/// Runs `future` on a fresh single-threaded io_uring runtime. Used by tests, benchmarks and
/// tools; the broker builds one runtime per shard thread itself.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio_uring::start(future)
}

/// A second descriptor (close-on-exec) of `fd`, which the caller owns and keeps open for the
/// call: a file or socket of this thread's runtime on its way to another thread's.
fn duplicate(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the caller owns `fd` and keeps it open while it is borrowed here.
    #[allow(unsafe_code)]
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

/// Spawns a task on the current shard's runtime.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + 'static,
{
    tokio_uring::spawn(future)
}
