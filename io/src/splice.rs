//! Zero-copy transfer of file regions into a socket: file -> pipe -> socket with
//! `splice(2)`. The record bytes move between kernel buffers only (page cache -> pipe ->
//! socket buffer); user space sees lengths, never bytes.
//!
//! Where each step runs (Linux 5.15 and later; see `inline_splices`):
//! - A file region whose pages are all cached and up to date (`File::cached`) is spliced
//!   into the pipe on the calling shard thread: it cannot wait on the disk. Any other
//!   region is spliced by io_uring, whose worker threads (io-wq) wait on the disk instead of
//!   the shard. io_uring always hands a splice to a worker, and each hand-off wakes a
//!   thread, so doing the cached case inline halves produce-to-consume latency
//!   (docs/benchmarks.md, "Fetch splices on the shard thread").
//! - The pipe drains into the socket on the calling thread, with the socket non-blocking:
//!   a full socket answers EAGAIN, and the stream then waits for writability through
//!   io_uring (a poll), never in a system call.
//!
//! Header bytes are written into the non-blocking pipe with `write(2)` on every kernel. On
//! older kernels io_uring's reads and writes of a non-blocking socket answer EAGAIN
//! instead of waiting, so the socket is left blocking and every splice goes through
//! io_uring.
//!
//! Invariants:
//! - A `SplicePipe` is empty between transfers. A transfer that fails part-way may leave
//!   bytes in the pipe, so the pipe is then replaced before its next use.
//! - The pipe's descriptors stay open while an operation on them is in flight: every
//!   submission holds an `Rc` of the pipe, which the runtime keeps until completion even
//!   when the future is dropped.
//! - A system call made on the shard thread here does not wait on the disk or a peer: the
//!   pipe and the socket are non-blocking, and a file is read inline only when its pages
//!   are cached and up to date. The exceptions: a page evicted between the check and the
//!   splice (two system calls apart), and a readahead mark on a cached page, which makes the
//!   splice start the next readahead: it does not wait for that read, but submitting it may
//!   wait for block-layer tags or for ext4 to read extent metadata.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

use super::File;

/// The pipe size asked for with `F_SETPIPE_SZ`: big enough that a fetch of a few hundred KiB
/// moves in a handful of submissions, small enough to stay within the default
/// `/proc/sys/fs/pipe-max-size` (1 MiB) for unprivileged processes.
const PIPE_BYTES_MAX: usize = 1024 * 1024;

/// How many times in a row a socket may answer EAGAIN before the transfer gives up. After
/// each EAGAIN the transfer waits for writability, so this only trips on a socket that
/// reports writable and then refuses every byte.
const SOCKET_EAGAIN_RETRIES_MAX: u32 = 1024;

#[derive(Debug)]
struct PipeFds {
    read: OwnedFd,
    write: OwnedFd,
}

/// A kernel pipe used as the staging buffer for splice.
#[derive(Debug)]
pub struct SplicePipe {
    fds: Rc<PipeFds>,
    capacity: usize,
    clean: bool,
}

impl SplicePipe {
    /// Creates a pipe and asks for `PIPE_BYTES_MAX` of capacity (the kernel may give less).
    pub fn new() -> io::Result<SplicePipe> {
        let mut raw = [0 as RawFd; 2];
        // SAFETY: `raw` is a valid array of two descriptors for pipe2 to fill.
        #[allow(unsafe_code)]
        // Non-blocking: a full pipe answers EAGAIN instead of parking an io-wq worker forever.
        let rc = unsafe { libc::pipe2(raw.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(io::Error::new(
                io::Error::last_os_error().kind(),
                format!("pipe2 for splice: {}", io::Error::last_os_error()),
            ));
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        #[allow(unsafe_code)]
        let fds = unsafe {
            PipeFds { read: OwnedFd::from_raw_fd(raw[0]), write: OwnedFd::from_raw_fd(raw[1]) }
        };
        // Best effort: a smaller pipe only means more submissions.
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::fcntl(fds.write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES_MAX as libc::c_int)
        };
        // SAFETY: as above; F_GETPIPE_SZ takes no argument.
        #[allow(unsafe_code)]
        let capacity = unsafe { libc::fcntl(fds.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = if capacity > 0 { capacity as usize } else { 64 * 1024 };
        Ok(SplicePipe { fds: Rc::new(fds), capacity, clean: true })
    }

    /// The pipe's capacity in bytes: the most one file -> pipe step moves.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Moves `len` bytes of `file` starting at `position` into the socket `socket`, without
/// copying them through user space. Returns once every byte is in the socket's send buffer.
///
/// `socket` must stay open until the returned future completes; on Linux 5.15 and later it
/// is made non-blocking (see the module notes). Fails with `UnexpectedEof` if the file ends
/// before `position + len`; some bytes of such a transfer may have been sent and others
/// left in the pipe, so the caller must drop the connection.
pub async fn splice_to_socket(
    pipe: &mut SplicePipe,
    file: &File,
    position: u64,
    len: u64,
    socket: RawFd,
) -> io::Result<()> {
    let mut stream = PipeStream::new(pipe, socket)?;
    stream.push_file(file, position, len).await?;
    stream.finish().await
}

/// Turns a completion into `io::Result<u32>` (bytes moved), holding `PipeFds` until then.
struct CountTransform;

impl OneshotOutputTransform for CountTransform {
    type Output = io::Result<u32>;
    type StoredData = Rc<PipeFds>;

    fn transform_oneshot_output(
        self,
        _data: Rc<PipeFds>,
        cqe: io_uring::cqueue::Entry,
    ) -> io::Result<u32> {
        let result = cqe.result();
        if result >= 0 {
            Ok(result as u32)
        } else {
            Err(io::Error::from_raw_os_error(-result))
        }
    }
}

async fn splice(
    fds: &Rc<PipeFds>,
    fd_in: RawFd,
    off_in: i64,
    fd_out: RawFd,
    off_out: i64,
    len: u32,
) -> io::Result<u32> {
    let sqe = opcode::Splice::new(types::Fd(fd_in), off_in, types::Fd(fd_out), off_out, len)
        .flags(libc::SPLICE_F_MOVE)
        .build();
    UnsubmittedOneshot::new(Rc::clone(fds), CountTransform, sqe).submit().await
}

async fn poll_writable(fds: &Rc<PipeFds>, socket: RawFd) -> io::Result<()> {
    let sqe = opcode::PollAdd::new(types::Fd(socket), libc::POLLOUT as u32).build();
    UnsubmittedOneshot::new(Rc::clone(fds), CountTransform, sqe).submit().await.map(|_events| ())
}

/// Streams a response into a socket through the pipe: in-memory bytes are written into the
/// pipe, file regions are spliced into it, and the pipe is drained into the socket only when
/// it is full or the response is done. A response of many small regions then costs one
/// socket transfer instead of one per piece. Record bytes still never enter user space.
///
/// Invariant: `buffered` is the number of bytes in the pipe; `finish` leaves it empty. An
/// error leaves the pipe dirty, and it is replaced before its next use.
pub struct PipeStream<'a> {
    pipe: &'a mut SplicePipe,
    socket: RawFd,
    /// Splices run on this thread where they cannot wait (`inline_splices`).
    inline: bool,
    buffered: usize,
    /// Pipe buffers (slots) in use: a pipe holds `capacity / PAGE` buffers, and every write
    /// or splice takes at least one, however few bytes it carries.
    slots: usize,
}

/// The unit of a pipe's buffers.
const PIPE_PAGE_BYTES: usize = 4096;
// A whole pipe's worth of a region, starting mid-page, is one residency question.
const _: () = assert!(PIPE_BYTES_MAX / PIPE_PAGE_BYTES < super::residency::CACHED_CHECK_PAGES_MAX);

fn slots_for(len: usize) -> usize {
    len.div_ceil(PIPE_PAGE_BYTES) + 1
}

impl<'a> PipeStream<'a> {
    pub fn new(pipe: &'a mut SplicePipe, socket: RawFd) -> io::Result<PipeStream<'a>> {
        if !pipe.clean {
            *pipe = SplicePipe::new()?;
        }
        let inline = inline_splices();
        if inline {
            set_nonblocking(socket)?;
        }
        pipe.clean = false;
        Ok(PipeStream { pipe, socket, inline, buffered: 0, slots: 0 })
    }

    fn slots_max(&self) -> usize {
        (self.pipe.capacity / PIPE_PAGE_BYTES).max(2)
    }

    /// Appends bytes from memory (response headers).
    pub async fn push_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        if slots_for(bytes.len()) > self.slots_max() {
            // Larger than the pipe: through the pipe in pieces that fit.
            for chunk in bytes.chunks((self.slots_max() - 1) * PIPE_PAGE_BYTES) {
                Box::pin(self.push_bytes(chunk)).await?;
            }
            return Ok(());
        }
        if self.slots + slots_for(bytes.len()) > self.slots_max() {
            self.drain().await?;
        }
        self.slots += slots_for(bytes.len());
        let mut written_total = 0;
        while written_total < bytes.len() {
            let rest = &bytes[written_total..];
            // SAFETY: write(2) from a live slice into the pipe's write end, which we own.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::write(self.pipe.fds.write.as_raw_fd(), rest.as_ptr().cast(), rest.len())
            };
            if rc < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    // Fuller than counted: empty it and go on, counting what is left.
                    io::ErrorKind::WouldBlock => {
                        self.drain().await?;
                        self.slots += slots_for(bytes.len() - written_total);
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        return Err(io::Error::new(
                            error.kind(),
                            format!("write to the splice pipe: {error}"),
                        ))
                    }
                }
                continue;
            }
            if rc == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the splice pipe accepted no bytes",
                ));
            }
            self.buffered += rc as usize;
            written_total += rc as usize;
        }
        Ok(())
    }

    /// Appends `len` bytes of `file` from `position`, spliced (no copy through user space).
    pub async fn push_file(&mut self, file: &File, position: u64, len: u64) -> io::Result<()> {
        let mut done = 0u64;
        while done < len {
            let free_slots = self.slots_max().saturating_sub(self.slots);
            if free_slots < 2 {
                self.drain().await?;
                continue;
            }
            // A splice may start mid-page: one extra slot for the partial first page.
            let space = (free_slots - 1) * PIPE_PAGE_BYTES;
            let chunk = (len - done).min(space as u64) as u32;
            let at = position + done;
            let spliced = if self.inline && file.cached(at, u64::from(chunk)) {
                splice_now(
                    file.as_raw_fd(),
                    Some(at as i64),
                    self.pipe.fds.write.as_raw_fd(),
                    chunk,
                )
            } else {
                splice(
                    &self.pipe.fds,
                    file.as_raw_fd(),
                    at as i64,
                    self.pipe.fds.write.as_raw_fd(),
                    -1,
                    chunk,
                )
                .await
            };
            let moved = match spliced {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.drain().await?;
                    continue;
                }
                other => other.map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!("splice {} at position {at}: {error}", file.path().display()),
                    )
                })?,
            };
            self.slots += slots_for(moved as usize);
            if moved == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "splice {}: end of file at position {at}, wanted {} more bytes",
                        file.path().display(),
                        len - done
                    ),
                ));
            }
            self.buffered += moved as usize;
            done += u64::from(moved);
        }
        Ok(())
    }

    /// Moves everything in the pipe into the socket.
    async fn drain(&mut self) -> io::Result<()> {
        let mut eagain_count = 0;
        while self.buffered > 0 {
            let sent = if self.inline {
                splice_now(self.pipe.fds.read.as_raw_fd(), None, self.socket, self.buffered as u32)
            } else {
                splice(
                    &self.pipe.fds,
                    self.pipe.fds.read.as_raw_fd(),
                    -1,
                    self.socket,
                    -1,
                    self.buffered as u32,
                )
                .await
            };
            match sent {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "splice to socket: peer accepted no bytes",
                    ))
                }
                Ok(sent) => {
                    self.buffered -= sent as usize;
                    if self.buffered == 0 {
                        self.slots = 0;
                    }
                    eagain_count = 0;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    eagain_count += 1;
                    if eagain_count > SOCKET_EAGAIN_RETRIES_MAX {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "splice to socket: socket never became writable",
                        ));
                    }
                    poll_writable(&self.pipe.fds, self.socket).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(io::Error::new(error.kind(), format!("splice to socket: {error}")))
                }
            }
        }
        Ok(())
    }

    /// Sends what is left; the pipe is clean again afterwards.
    pub async fn finish(mut self) -> io::Result<()> {
        self.drain().await?;
        self.pipe.clean = true;
        Ok(())
    }
}

/// Whether splices may run on the calling thread: Linux 5.15 or later, where io_uring's
/// reads and writes of a non-blocking socket still wait for readiness (before 5.15 they
/// answer EAGAIN, and the connection's other operations on the socket would fail).
pub(super) fn inline_splices() -> bool {
    static INLINE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INLINE.get_or_init(|| kernel_at_least(5, 15))
}

/// Whether the running kernel's release (`uname -r`) is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: utsname is plain data; uname fills it.
    #[allow(unsafe_code)]
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a live utsname.
    #[allow(unsafe_code)]
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    let release: String =
        name.release.iter().take_while(|c| **c != 0).map(|c| *c as u8 as char).collect();
    release_at_least(&release, major, minor)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Makes `socket` non-blocking, so a splice into it on the shard thread answers EAGAIN
/// instead of parking the thread. io_uring operations on the socket are unaffected: sockets
/// support non-blocking attempts, so io_uring still waits for readiness itself.
fn set_nonblocking(socket: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller keeps open, with an integer argument.
    #[allow(unsafe_code)]
    let flags = unsafe { libc::fcntl(socket, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::fcntl(socket, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A splice(2) on the calling thread, never waiting on the pipe (`SPLICE_F_NONBLOCK`) or on
/// a non-blocking socket. Only for transfers that cannot wait on the disk: a pipe into a
/// socket, or a file region whose pages are all in the page cache.
fn splice_now(fd_in: RawFd, off_in: Option<i64>, fd_out: RawFd, len: u32) -> io::Result<u32> {
    let mut offset = off_in.unwrap_or(0);
    let off_in_ptr = if off_in.is_some() { &mut offset as *mut i64 } else { std::ptr::null_mut() };
    loop {
        // SAFETY: splice(2) between descriptors the caller keeps open; `off_in_ptr` is null
        // or points to a live i64.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::splice(
                fd_in,
                off_in_ptr,
                fd_out,
                std::ptr::null_mut(),
                len as usize,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if rc >= 0 {
            return Ok(rc as u32);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(release_at_least("6.18.44-fc-v669", 5, 15));
        assert!(release_at_least("5.15.0-91-generic", 5, 15));
        assert!(!release_at_least("5.14.21-150500.55-default", 5, 15));
        assert!(!release_at_least("4.19.0", 5, 15));
        assert!(!release_at_least("garbage", 5, 15));
    }
}
