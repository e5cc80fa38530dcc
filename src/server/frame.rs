//! Reading request frames: the size prefix checked before any allocation, the frame's bytes
//! taken from the broker-wide request memory budget before they are read, and a minimum
//! receive rate inside a frame (`RateWindow`).
//!
//! The read buffer holds at most one frame plus one read chunk.

use bytes::{Buf, Bytes, BytesMut};
use fjord_storage::io::{Stream, READ_CHUNK_BYTES};
use tokio::time::Instant;
use tracing::debug;

use crate::broker::shards::BUDGET_UNIT_BYTES;

/// Inside a frame a client must send at least this many bytes (or the rest of the frame)
/// in every `FRAME_RATE_WINDOW_MS`, or it is disconnected: a minimum receive rate. A client
/// that announces a large request and trickles it (a byte every few seconds) would otherwise
/// hold its share of the request memory budget, and with a few such connections all of it,
/// for as long as it liked; now for one window at most.
pub const FRAME_RATE_MIN_BYTES: usize = 16 * 1024;
/// The window of that rate (a client that sends nothing at all inside a frame is dropped
/// after one window too).
pub const FRAME_RATE_WINDOW_MS: u64 = 10_000;

/// Bytes of a frame's size prefix (a big-endian i32).
const SIZE_PREFIX_BYTES: usize = 4;

pub(super) enum FrameRead<'a> {
    Frame(Bytes, Option<tokio::sync::SemaphorePermit<'a>>),
    Closed,
}

/// Reads the next request frame into `buf` (which keeps any bytes of the following one).
/// A frame's bytes are taken from the broker-wide (all shards) request memory budget before
/// they are read, and given back when the request is answered: when the budget is spent,
/// connections stop reading and TCP pushes back on the clients.
pub(super) async fn read_frame<'a>(
    stream: &Stream,
    buf: &mut BytesMut,
    request_bytes_max: u64,
    budget: &'a tokio::sync::Semaphore,
) -> Result<FrameRead<'a>, String> {
    let mut permit: Option<tokio::sync::SemaphorePermit<'a>> = None;
    // Inside a frame: its receive rate, from once its budget is taken.
    let mut window: Option<RateWindow> = None;
    loop {
        if let Some(total) = frame_total(buf, request_bytes_max)? {
            if permit.is_none() {
                permit = Some(take_budget(budget, total).await?);
                // The rate is the client's: a wait for the budget does not count against it.
                window = Some(RateWindow::start(buf.len(), total));
            }
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                frame.advance(SIZE_PREFIX_BYTES);
                return Ok(FrameRead::Frame(frame.freeze(), permit));
            }
            // Room for the rest of this frame; never more than one frame plus a chunk.
            buf.reserve((total - buf.len()).max(READ_CHUNK_BYTES.min(total)));
        } else if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        if let Read::Closed = read_more(stream, buf, window.as_mut()).await? {
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

/// Takes a frame's share of the request memory budget, waiting while it is spent.
async fn take_budget(
    budget: &tokio::sync::Semaphore,
    total: usize,
) -> Result<tokio::sync::SemaphorePermit<'_>, String> {
    let units = (total as u64).div_ceil(BUDGET_UNIT_BYTES) as u32;
    match budget.try_acquire_many(units) {
        Ok(permit) => Ok(permit),
        Err(_) => {
            debug!(bytes = total, "request memory budget spent; waiting (backpressure)");
            budget
                .acquire_many(units)
                .await
                .map_err(|e| format!("request memory budget closed: {e}"))
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
