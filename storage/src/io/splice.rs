//! Zero-copy transfer of a file region into a socket: file -> pipe -> socket with
//! `splice(2)`, submitted to io_uring as raw operations.
//!
//! tokio-uring has no splice operation, but it accepts raw submission entries through
//! `UnsubmittedOneshot`. The record bytes move between kernel buffers only (page cache ->
//! pipe -> socket buffer); user space sees lengths, never bytes.
//!
//! Invariants:
//! - A `SplicePipe` is empty between transfers. A transfer that fails part-way may leave
//!   bytes in the pipe, so the pipe is then replaced before its next use.
//! - The pipe's descriptors stay open while an operation on them is in flight: every
//!   submission holds an `Rc` of the pipe, which the runtime keeps until completion even
//!   when the future is dropped.

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

/// How many times in a row a socket may answer EAGAIN before the transfer gives up. Each
/// EAGAIN waits for writability first, so this only trips on a socket that reports writable
/// and then refuses every byte.
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
        let fds = unsafe { PipeFds { read: OwnedFd::from_raw_fd(raw[0]), write: OwnedFd::from_raw_fd(raw[1]) } };
        // Best effort: a smaller pipe only means more submissions.
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::fcntl(fds.write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES_MAX as libc::c_int) };
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
/// `socket` must stay open until the returned future completes. Fails with `UnexpectedEof`
/// if the file ends before `position + len`.
pub async fn splice_to_socket(
    pipe: &mut SplicePipe,
    file: &File,
    position: u64,
    len: u64,
    socket: RawFd,
) -> io::Result<()> {
    if !pipe.clean {
        *pipe = SplicePipe::new()?;
    }
    pipe.clean = false;
    let mut done: u64 = 0;
    while done < len {
        let chunk = (len - done).min(pipe.capacity as u64) as u32;
        let file_position = position + done;
        let moved = splice(&pipe.fds, file.as_raw_fd(), file_position as i64, pipe.fds.write.as_raw_fd(), -1, chunk)
            .await
            .map_err(|error| {
                io::Error::new(error.kind(), format!("splice {} at position {file_position}: {error}", file.path().display()))
            })?;
        if moved == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("splice {}: end of file at position {file_position}, wanted {} more bytes", file.path().display(), len - done),
            ));
        }
        let mut in_pipe = moved;
        let mut eagain_count = 0;
        while in_pipe > 0 {
            match splice(&pipe.fds, pipe.fds.read.as_raw_fd(), -1, socket, -1, in_pipe).await {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "splice to socket: peer accepted no bytes"))
                }
                Ok(sent) => {
                    in_pipe -= sent;
                    eagain_count = 0;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    eagain_count += 1;
                    if eagain_count > SOCKET_EAGAIN_RETRIES_MAX {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "splice to socket: socket never became writable"));
                    }
                    poll_writable(&pipe.fds, socket).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io::Error::new(error.kind(), format!("splice to socket: {error}"))),
            }
        }
        done += u64::from(moved);
    }
    pipe.clean = true;
    Ok(())
}

/// Turns a completion into `io::Result<u32>` (bytes moved), holding `PipeFds` until then.
struct CountTransform;

impl OneshotOutputTransform for CountTransform {
    type Output = io::Result<u32>;
    type StoredData = Rc<PipeFds>;

    fn transform_oneshot_output(self, _data: Rc<PipeFds>, cqe: io_uring::cqueue::Entry) -> io::Result<u32> {
        let result = cqe.result();
        if result >= 0 {
            Ok(result as u32)
        } else {
            Err(io::Error::from_raw_os_error(-result))
        }
    }
}

async fn splice(fds: &Rc<PipeFds>, fd_in: RawFd, off_in: i64, fd_out: RawFd, off_out: i64, len: u32) -> io::Result<u32> {
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
    buffered: usize,
    /// Pipe buffers (slots) in use: a pipe holds `capacity / PAGE` buffers, and every write
    /// or splice takes at least one, however few bytes it carries.
    slots: usize,
}

/// The unit of a pipe's buffers.
const PIPE_PAGE_BYTES: usize = 4096;

fn slots_for(len: usize) -> usize {
    len.div_ceil(PIPE_PAGE_BYTES) + 1
}

impl<'a> PipeStream<'a> {
    pub fn new(pipe: &'a mut SplicePipe, socket: RawFd) -> io::Result<PipeStream<'a>> {
        if !pipe.clean {
            *pipe = SplicePipe::new()?;
        }
        pipe.clean = false;
        Ok(PipeStream { pipe, socket, buffered: 0, slots: 0 })
    }

    fn slots_max(&self) -> usize {
        (self.pipe.capacity / PIPE_PAGE_BYTES).max(2)
    }

    /// Appends bytes from memory (response headers).
    pub async fn push_bytes(&mut self, mut bytes: Vec<u8>) -> io::Result<()> {
        if slots_for(bytes.len()) > self.slots_max() {
            // Larger than the pipe: drain, then send directly would reorder nothing since the
            // pipe is empty; write through the pipe in capacity-sized pieces.
            for chunk in bytes.chunks((self.slots_max() - 1) * PIPE_PAGE_BYTES) {
                Box::pin(self.push_bytes(chunk.to_vec())).await?;
            }
            return Ok(());
        }
        if self.slots + slots_for(bytes.len()) > self.slots_max() {
            self.drain().await?;
        }
        self.slots += slots_for(bytes.len());
        while !bytes.is_empty() {
            let sqe = opcode::Write::new(types::Fd(self.pipe.fds.write.as_raw_fd()), bytes.as_ptr(), bytes.len() as u32).offset(u64::MAX).build();
            let (written, returned) = UnsubmittedOneshot::new((Rc::clone(&self.pipe.fds), bytes), HoldTransform, sqe).submit().await;
            bytes = returned;
            let written = match written {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    // Fuller than counted: empty it and go on.
                    self.drain().await?;
                    continue;
                }
                other => other.map_err(|error| io::Error::new(error.kind(), format!("write to the splice pipe: {error}")))? as usize,
            };
            if written == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "the splice pipe accepted no bytes"));
            }
            self.buffered += written;
            bytes.drain(..written);
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
            let moved = match splice(&self.pipe.fds, file.as_raw_fd(), at as i64, self.pipe.fds.write.as_raw_fd(), -1, chunk).await {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.drain().await?;
                    continue;
                }
                other => other.map_err(|error| io::Error::new(error.kind(), format!("splice {} at position {at}: {error}", file.path().display())))?,
            };
            self.slots += slots_for(moved as usize);
            if moved == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("splice {}: end of file at position {at}, wanted {} more bytes", file.path().display(), len - done),
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
            match splice(&self.pipe.fds, self.pipe.fds.read.as_raw_fd(), -1, self.socket, -1, self.buffered as u32).await {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "splice to socket: peer accepted no bytes")),
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
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "splice to socket: socket never became writable"));
                    }
                    poll_writable(&self.pipe.fds, self.socket).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(io::Error::new(error.kind(), format!("splice to socket: {error}"))),
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

/// Like `CountTransform`, also handing back a buffer the operation held.
struct HoldTransform;

impl OneshotOutputTransform for HoldTransform {
    type Output = (io::Result<u32>, Vec<u8>);
    type StoredData = (Rc<PipeFds>, Vec<u8>);

    fn transform_oneshot_output(self, data: (Rc<PipeFds>, Vec<u8>), cqe: io_uring::cqueue::Entry) -> Self::Output {
        let result = cqe.result();
        let outcome = if result >= 0 { Ok(result as u32) } else { Err(io::Error::from_raw_os_error(-result)) };
        (outcome, data.1)
    }
}
