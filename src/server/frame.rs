//! Reading request frames: the size prefix checked before any allocation, the frame's bytes
//! taken from the broker-wide request memory budget as they arrive, in bounded steps
//! (`RequestMemory`), and a minimum receive rate inside a frame (`RateWindow`).
//!
//! The read buffer holds the bytes of the frame its budget covers plus at most one read chunk.
//! How frames share the budget is `RequestMemory`'s part (broker/request_memory.rs).

use bytes::{Buf, Bytes, BytesMut};
use fjord_storage::io::{Stream, READ_CHUNK_BYTES};
use tokio::time::Instant;

use crate::broker::request_memory::{
    units, FinisherRole, RequestMemory, Reservation, SMALL_FRAME_BYTES,
};
use crate::protocol::SIZE_PREFIX_BYTES;

/// Inside a frame a client must send at least this many bytes (or the rest of the frame)
/// in every `FRAME_RATE_WINDOW_MS`, or it is disconnected: a minimum receive rate. A client
/// that announces a large request and trickles it (a byte every few seconds) would otherwise
/// hold its share of the request memory budget, and with a few such connections all of it,
/// for as long as it liked; now for one window at most.
pub const FRAME_RATE_MIN_BYTES: usize = 16 * 1024;
/// The window of that rate (a client that sends nothing at all inside a frame is dropped
/// after one window too).
pub const FRAME_RATE_WINDOW_MS: u64 = 10_000;

pub(super) enum FrameRead<'a> {
    Frame(Bytes, Reservation<'a>),
    Closed,
}

/// Reads the next request frame into `buf` (which keeps any bytes of the following one).
/// A frame's bytes are taken from the broker-wide (all shards) request memory budget as
/// they arrive, step by step, and given back when the request is answered: when the budget
/// is spent, connections stop reading and TCP pushes back on the clients.
pub(super) async fn read_frame<'a>(
    stream: &Stream,
    buf: &mut BytesMut,
    request_bytes_max: u64,
    budget: &'a RequestMemory,
) -> Result<FrameRead<'a>, String> {
    let mut inside: Option<InFrame<'a>> = None;
    loop {
        if let Some(total) = frame_total(buf, request_bytes_max)? {
            if inside.is_none() {
                let mut frame = InFrame::start(budget, buf.len(), total).await?;
                frame.fit_room(buf);
                inside = Some(frame);
            }
            let frame = inside.as_mut().expect("inside a frame");
            if buf.len() >= total {
                let mut bytes = buf.split_to(total);
                bytes.advance(SIZE_PREFIX_BYTES);
                if total > READ_CHUNK_BYTES {
                    // The buffer was allocated for this frame: the bytes after it move to
                    // a buffer of their own, so the connection does not keep (or later
                    // reclaim and read into) an allocation its budget no longer covers.
                    let rest = std::mem::take(buf);
                    *buf = BytesMut::with_capacity(READ_CHUNK_BYTES.max(rest.len()));
                    buf.extend_from_slice(&rest);
                }
                let reservation = inside.take().expect("inside a frame").reservation;
                return Ok(FrameRead::Frame(bytes.freeze(), reservation));
            }
            if buf.len() >= frame.covered {
                // Every byte the budget covers is in (the buffer is full): the next step.
                frame.next_step(buf.len()).await;
                frame.fit_room(buf);
            }
        } else if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let window = inside.as_mut().map(|frame| &mut frame.window);
        if let Read::Closed = read_more(stream, buf, window).await? {
            return Ok(FrameRead::Closed);
        }
    }
}

/// The size of the frame `buf` starts with, prefix included, once its prefix is in; an
/// error if it is negative or over `request_bytes_max`.
fn frame_total(buf: &[u8], request_bytes_max: u64) -> Result<Option<usize>, String> {
    let Some(prefix) = buf.get(..SIZE_PREFIX_BYTES) else { return Ok(None) };
    let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if size < 0 || size as u64 > request_bytes_max {
        return Err(format!(
            "frame size {size} outside 0..={request_bytes_max} (request_bytes_max)"
        ));
    }
    Ok(Some(SIZE_PREFIX_BYTES + size as usize))
}

/// Grows `buf` to exactly `capacity` bytes (never the doubling `BytesMut::reserve` may
/// choose), copying at most the bytes it holds.
fn grow(buf: &mut BytesMut, capacity: usize) {
    let mut bytes = Vec::from(std::mem::take(buf));
    bytes.reserve_exact(capacity.saturating_sub(bytes.len()));
    // Through `Bytes`, which takes the vector as it is: no copy.
    *buf = BytesMut::from(Bytes::from(bytes));
}

/// A frame being read: the budget its bytes hold and how far it reaches, and its rate.
struct InFrame<'a> {
    budget: &'a RequestMemory,
    /// The frame's size, prefix included.
    total: usize,
    /// Bytes of the frame, from its prefix, that its reservation covers.
    covered: usize,
    /// The last step taken, in bytes; the next is twice as large (or the rest).
    step: usize,
    reservation: Reservation<'a>,
    /// The part of the frame's buffer past what its budget covers, kept aside so that reads
    /// (which fill a buffer's spare capacity) stop there; joined back at the next step.
    rest: Option<BytesMut>,
    /// Held by a large frame that could not get a step outside the finisher's reserve,
    /// until the frame is complete or abandoned.
    finisher: Option<FinisherRole<'a>>,
    window: RateWindow,
}

impl<'a> InFrame<'a> {
    /// A frame of `total` bytes whose prefix is in, `buffered` bytes of it read: its first
    /// share of the budget (waited for while the budget is spent), and its first window.
    async fn start(
        budget: &'a RequestMemory,
        buffered: usize,
        total: usize,
    ) -> Result<InFrame<'a>, String> {
        let mut frame = InFrame {
            budget,
            total,
            covered: 0,
            step: 0,
            reservation: Reservation::empty(budget),
            rest: None,
            finisher: None,
            window: RateWindow::start(buffered, total),
        };
        if total <= SMALL_FRAME_BYTES {
            frame.reservation = budget.take_small(units(total), total).await?;
            frame.covered = total;
            frame.step = total;
        } else {
            frame.next_step(buffered).await;
        }
        // The rate is the client's: a wait for the budget does not count against it.
        frame.window = RateWindow::start(buffered, total);
        Ok(frame)
    }

    /// Takes the frame's next step of budget, waiting while none can be had; a wait
    /// restarts the rate window (`buffered` bytes in).
    async fn next_step(&mut self, buffered: usize) {
        let step = if self.step == 0 { SMALL_FRAME_BYTES } else { self.step * 2 };
        let step = step.min(self.total - self.covered);
        let covered = self.covered + step;
        let more = units(covered) - self.reservation.units();
        let waited = self.budget.take_step(&mut self.reservation, more, &mut self.finisher).await;
        self.covered = covered;
        self.step = step;
        if waited {
            self.window = RateWindow::start(buffered, self.total);
        }
    }
}

impl InFrame<'_> {
    /// Sizes `buf` for the frame, at its start and after each step. A frame that does not
    /// fit its buffer gets one allocated once, for exactly the whole frame (address space:
    /// pages are used as bytes arrive), never grown by copying what it holds, and its last
    /// read ends where it does (the next frame's bytes go to a new buffer). Until the budget
    /// covers the whole frame, the part past what it covers is split off into `rest`, so no
    /// read goes further; the buffer is full when a step is taken, so joining `rest` back is
    /// O(1).
    fn fit_room(&mut self, buf: &mut BytesMut) {
        if let Some(rest) = self.rest.take() {
            // Contiguous with the full buffer; if not (never), the grow below copies.
            let _ = buf.try_unsplit(rest);
        }
        if buf.capacity() < self.covered {
            grow(buf, self.total);
        }
        if self.covered < self.total && buf.capacity() > self.covered {
            self.rest = Some(buf.split_off(self.covered.max(buf.len())));
        }
    }
}

/// How one read into the buffer ended, if not with an error.
enum Read {
    Bytes,
    /// The peer closed (or reset) the connection between frames.
    Closed,
}

/// Reads once more into `buf`; inside a frame (`window`), no later than the rate allows.
async fn read_more(
    stream: &Stream,
    buf: &mut BytesMut,
    window: Option<&mut RateWindow>,
) -> Result<Read, String> {
    let deadline = match window {
        Some(window) => Some((window.read_deadline(buf.len())?, window.frame_total)),
        None => None,
    };
    let taken = std::mem::take(buf);
    let (result, returned) = match deadline {
        Some((until, frame_total)) => {
            match tokio::time::timeout_at(until, stream.read(taken)).await {
                Ok(read) => read,
                Err(_elapsed) => {
                    return Err(format!("too few bytes inside a frame of {frame_total}: below {FRAME_RATE_MIN_BYTES} (or the rest of the frame) in {FRAME_RATE_WINDOW_MS} ms"))
                }
            }
        }
        None => stream.read(taken).await,
    };
    *buf = returned;
    match result {
        Ok(0) if buf.is_empty() => Ok(Read::Closed),
        Ok(0) => Err(format!("peer closed inside a frame ({} bytes buffered)", buf.len())),
        Ok(_) => Ok(Read::Bytes),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => Ok(Read::Closed),
        Err(error) => Err(format!("read failed: {error}")),
    }
}

/// The minimum receive rate inside one frame, window by window: in each
/// `FRAME_RATE_WINDOW_MS` the client must send `FRAME_RATE_MIN_BYTES` or the rest of the
/// frame. Counted in bytes buffered, which grow only by reads.
struct RateWindow {
    /// When the current window ends.
    deadline: Instant,
    /// Bytes buffered at the current window's start.
    at_start: usize,
    /// Bytes buffered when the last read inside the frame began.
    before_last_read: usize,
    /// The frame's size, prefix included.
    frame_total: usize,
}

impl RateWindow {
    /// The first window of a frame of `frame_total` bytes, `buffered` of them in already.
    fn start(buffered: usize, frame_total: usize) -> RateWindow {
        RateWindow {
            deadline: Instant::now() + Self::length(),
            at_start: buffered,
            before_last_read: 0,
            frame_total,
        }
    }

    fn length() -> std::time::Duration {
        std::time::Duration::from_millis(FRAME_RATE_WINDOW_MS)
    }

    /// Bytes the client has sent in the current window, and the bytes it owes in it.
    fn sent_and_owed(&self, buffered: usize) -> (usize, usize) {
        let sent = buffered - self.at_start;
        (sent, FRAME_RATE_MIN_BYTES.min(self.frame_total - self.at_start))
    }

    /// How long a read that begins now, with `buffered` bytes in, may wait; an error if a
    /// window has ended with bytes still owed.
    fn read_deadline(&mut self, buffered: usize) -> Result<Instant, String> {
        if Instant::now() >= self.deadline {
            let (sent, owed) = self.sent_and_owed(buffered);
            if sent < owed {
                return Err(format!(
                    "{sent} bytes in {FRAME_RATE_WINDOW_MS} ms inside a frame of {}, below the minimum of {FRAME_RATE_MIN_BYTES} (or the rest of the frame)",
                    self.frame_total
                ));
            }
            self.deadline += Self::length();
            // The last read may have ended past the old window: its bytes count for the
            // new one too (lenient by one read, never unfair to a client at the rate).
            self.at_start = self.before_last_read.max(self.at_start);
        }
        // A read that times out loses its buffer (the kernel may still hold it), so it
        // may only time out when the connection is to be dropped anyway: at the end of
        // this window if it still owes bytes, else at the end of the next one (which a
        // read still waiting then has sent nothing in).
        let (sent, owed) = self.sent_and_owed(buffered);
        self.before_last_read = buffered;
        Ok(if sent >= owed { self.deadline + Self::length() } else { self.deadline })
    }
}
