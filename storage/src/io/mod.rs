//! The I/O layer: the only module in Fjord that touches io_uring.
//!
//! Everything above this module speaks in terms of [`File`] (positioned reads and writes,
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

mod file;
mod lock;
mod net;
mod splice;

pub use file::{list_dir, raise_open_files_limit, read_file, remove_file, rename, sync_dir, write_file_atomic, File};
pub use lock::FileLock;
pub use net::{bind_reuseport_std, Listener, Stream, READ_CHUNK_BYTES};
pub use splice::{splice_to_socket, PipeStream, SplicePipe};
pub use tokio_uring::buf::{IoBuf, IoBufMut};

/// Runs `future` on a fresh single-threaded io_uring runtime. Used by tests, benchmarks and
/// tools; the broker builds one runtime per shard thread itself.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio_uring::start(future)
}

/// Spawns a task on the current shard's runtime.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + 'static,
{
    tokio_uring::spawn(future)
}
