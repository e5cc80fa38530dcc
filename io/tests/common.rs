//! Helpers shared by the io tests: temp dirs, a seeded RNG, connected sockets, and the two
//! fixtures that reach past the public API to set a test up: evicting a file's pages from
//! the page cache, and shrinking a socket's buffers.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use fjord_io::{File, Listener, Stream};

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A directory under Cargo's temporary directory for tests, inside the build directory:
    /// on the project's disk even where the system temp dir is tmpfs (whose pages cannot be
    /// evicted, which the page-cache tests need).
    pub(crate) fn on_disk(name: &str) -> TempDir {
        TempDir::under(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
    }

    pub(crate) fn new(name: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), name)
    }

    fn under(parent: &Path, name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = parent.join(format!("fjord-io-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A seeded generator (splitmix64, as the storage simulator's), so a test's bytes are the
/// same on every run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }
}

pub(crate) fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Reads exactly `len` bytes from `stream`.
pub(crate) async fn read_exact(stream: Rc<Stream>, len: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::with_capacity(len.max(1));
    while buf.len() < len {
        let (result, returned) = stream.read(buf).await;
        buf = returned;
        let read = result.expect("socket read");
        assert!(read > 0, "peer closed after {} of {len} bytes", buf.len());
    }
    buf
}

/// A connected pair on 127.0.0.1: (the side splice writes to, the side the test reads).
pub(crate) async fn socket_pair() -> (Stream, Rc<Stream>) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    // The kernel completes the handshake from the backlog, so connect, then accept.
    let client = Stream::connect(address).await.unwrap();
    let (server, _peer) = listener.accept().await.unwrap();
    (server, Rc::new(client))
}

/// Writes `content` to a new file at `path`.
pub(crate) async fn file_with(path: &std::path::Path, content: &[u8]) -> File {
    let file = File::open_rw(path, true).await.unwrap();
    let (result, _) = file.write_all_at(content.to_vec(), 0).await;
    result.unwrap();
    file
}

/// Drops `file`'s pages from the page cache (written back first), so the next read of them
/// goes to the disk.
pub(crate) async fn evict(file: &File) {
    file.sync_data().await.unwrap();
    // SAFETY: posix_fadvise on a descriptor `file` keeps open; it touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise DONTNEED");
}

/// Sets a socket's buffer size option (`SO_SNDBUF` or `SO_RCVBUF`) to `bytes`, so a transfer
/// of a few MiB fills it whatever the host's TCP settings.
pub(crate) fn set_socket_buffer(socket: &impl AsRawFd, option: libc::c_int, bytes: libc::c_int) {
    fjord_io::set_socket_option(socket, option, bytes)
        .unwrap_or_else(|e| panic!("setsockopt {option}: {e}"));
}
