//! Reading request frames: the size prefix checked before any allocation, the frame's bytes
//! taken from the broker-wide request memory budget as they arrive, in bounded steps
//! (`Budget`), and a minimum receive rate inside a frame (`RateWindow`).
//!
//! The read buffer holds the bytes of the frame its budget covers plus at most one read chunk.
//!
//! How the budget is shared (docs/design.md, "Memory under overload", has the argument):
//! a small frame (up to `SMALL_FRAME_BYTES`, every request of a Kafka producer with default
//! settings) takes its whole size at once, from any part of the budget. A large frame takes
//! a first step of `SMALL_FRAME_BYTES`, then steps twice as large as the last (or the rest of
//! the frame), each once the bytes of the steps before it are in, and every step leaves part
//! of the budget free: a slice for small frames (`SMALL_FRAMES_SHARE_DIVISOR`), and one
//! `request_bytes_max` frame, the finisher's reserve. A large frame that cannot get its next
//! step claims the finisher role, which one frame at a time holds until it is complete: the
//! finisher's steps may use the reserve, so it always completes without waiting for any
//! other large frame, and two half-reserved frames never wait for each other for good.

use std::pin::pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::{Buf, Bytes, BytesMut};
use fjord_storage::io::{Stream, READ_CHUNK_BYTES};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::debug;

use crate::broker::shards::BUDGET_UNIT_BYTES;
use crate::broker::Broker;

/// Inside a frame a client must send at least this many bytes (or the rest of the frame)
/// in every `FRAME_RATE_WINDOW_MS`, or it is disconnected: a minimum receive rate. A client
/// that announces a large request and trickles it (a byte every few seconds) would otherwise
/// hold its share of the request memory budget, and with a few such connections all of it,
/// for as long as it liked; now for one window at most.
pub const FRAME_RATE_MIN_BYTES: usize = 16 * 1024;
/// The window of that rate (a client that sends nothing at all inside a frame is dropped
/// after one window too).
pub const FRAME_RATE_WINDOW_MS: u64 = 10_000;

/// A frame up to this size (its size prefix included) is small: it takes its whole size
/// from the budget in one acquisition, and may use any part of the budget. Twice the
/// `max.request.size` of Kafka's producers (1 MiB by default; librdkafka's
/// `message.max.bytes` is 1 000 000), so every request of a producer with default settings,
/// with its headers, is small, and so are fetches, metadata and group requests. A larger
/// frame takes its budget in steps, the first of this size.
const SMALL_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// The slice of the budget large frames leave to small ones, as a divisor of the budget
/// (64 MiB of the default 512 MiB), less when the budget holds less beside the finisher's
/// reserve (none when `request-memory-max` is one `request-bytes-max` frame).
const SMALL_FRAMES_SHARE_DIVISOR: u64 = 8;

/// Bytes of a frame's size prefix (a big-endian i32).
const SIZE_PREFIX_BYTES: usize = 4;

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
    budget: &'a Budget,
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
    budget: &'a Budget,
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
        budget: &'a Budget,
        buffered: usize,
        total: usize,
    ) -> Result<InFrame<'a>, String> {
        let mut frame = InFrame {
            budget,
            total,
            covered: 0,
            step: 0,
            reservation: Reservation { budget, units: 0 },
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
        let more = units(covered) - self.reservation.units;
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

/// Budget units covering `bytes`, rounded up.
fn units(bytes: usize) -> u32 {
    (bytes as u64).div_ceil(BUDGET_UNIT_BYTES) as u32
}

/// The broker-wide request memory budget as frames use it: the broker's semaphore of
/// `BUDGET_UNIT_BYTES` permits (shared by all shards), the slices large frames leave free,
/// and the finisher role. Small frames wait for it in the semaphore's own (first come,
/// first served) queue; large frames never queue there, so a large frame waiting never
/// holds up a small one: they wait for `released`, notified whenever units or the role are
/// given back while one waits.
pub(super) struct Budget {
    semaphore: Arc<Semaphore>,
    /// All of it, in units.
    units_total: u32,
    /// Units large frames leave free for small ones.
    small_slice: u32,
    /// Units large frames other than the finisher leave free besides: one
    /// `request_bytes_max` frame.
    finisher_reserve: u32,
    /// Whether a frame holds the finisher role.
    finisher: AtomicBool,
    /// Large frames waiting for `released`.
    waiting: AtomicUsize,
    released: Notify,
}

/// The budgets of the brokers running in this process, found by their semaphore. The
/// broker holds only the semaphore; the rest of a budget's state lives here, shared by the
/// shards' connections, and goes when the last connection does.
static BUDGETS: Mutex<Vec<Weak<Budget>>> = Mutex::new(Vec::new());

impl Budget {
    /// The budget of `broker`'s request memory semaphore; looked up once per connection.
    pub(super) fn of(broker: &Broker) -> Arc<Budget> {
        let mut budgets = BUDGETS.lock().expect("budget registry: no holder panics");
        budgets.retain(|budget| budget.strong_count() > 0);
        let found = budgets
            .iter()
            .filter_map(Weak::upgrade)
            .find(|budget| Arc::ptr_eq(&budget.semaphore, &broker.request_memory));
        found.unwrap_or_else(|| {
            let budget = Arc::new(Budget::new(
                Arc::clone(&broker.request_memory),
                broker.config.request_memory_max,
                broker.config.request_bytes_max,
            ));
            budgets.push(Arc::downgrade(&budget));
            budget
        })
    }

    /// The budget of a semaphore of `request_memory_max` bytes (in `BUDGET_UNIT_BYTES`
    /// permits) for frames of `request_bytes_max` at most, which it holds at least one of.
    fn new(semaphore: Arc<Semaphore>, request_memory_max: u64, request_bytes_max: u64) -> Budget {
        let units_total = request_memory_max
            .div_ceil(BUDGET_UNIT_BYTES)
            .min(Semaphore::MAX_PERMITS as u64)
            .min(u64::from(u32::MAX / 2)) as u32;
        let finisher_reserve =
            units(request_bytes_max as usize + SIZE_PREFIX_BYTES).min(units_total);
        let small_slice = (u64::from(units_total) / SMALL_FRAMES_SHARE_DIVISOR) as u32;
        Budget {
            semaphore,
            units_total,
            small_slice: small_slice.min(units_total - finisher_reserve),
            finisher_reserve,
            finisher: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
        }
    }

    pub(super) fn units_total(&self) -> u32 {
        self.units_total
    }

    pub(super) fn units_free(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A small frame's whole share: at once if the budget has it (the one acquisition of a
    /// normal request), else in the semaphore's queue behind earlier small frames.
    async fn take_small(&self, units: u32, bytes: usize) -> Result<Reservation<'_>, String> {
        if let Ok(permit) = self.semaphore.try_acquire_many(units) {
            permit.forget();
            return Ok(Reservation { budget: self, units });
        }
        debug!(bytes, "request memory budget spent; waiting (backpressure)");
        // Declared before the acquisition, so dropped after it: units the semaphore had
        // handed this wait and takes back when it is abandoned (the connection closing)
        // bypass `give_back`, so waiting large frames are told here.
        let _wake = WakeOnDrop(self);
        let permit = self
            .semaphore
            .acquire_many(units)
            .await
            .map_err(|e| format!("request memory budget closed: {e}"))?;
        permit.forget();
        Ok(Reservation { budget: self, units })
    }

    /// Adds `units` to a large frame's `reservation`, waiting until they can be had, and
    /// says whether it waited. A frame without the finisher role takes them only while
    /// that leaves the small frames' slice and the finisher's reserve free; a frame that
    /// cannot claims the role if no frame holds it; the finisher leaves only the slice.
    async fn take_step<'a>(
        &'a self,
        reservation: &mut Reservation<'a>,
        units: u32,
        finisher: &mut Option<FinisherRole<'a>>,
    ) -> bool {
        if self.try_step(units, finisher) {
            reservation.units += units;
            return false;
        }
        debug!(
            units,
            held = reservation.units,
            finisher = finisher.is_some(),
            "request memory budget spent for large frames; waiting"
        );
        loop {
            // Registered before the check, so units given back between the check and the
            // wait still wake it.
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            let _waiting = Waiting::register(self);
            if self.try_step(units, finisher) {
                reservation.units += units;
                return true;
            }
            released.await;
        }
    }

    /// One try at a large frame's step (see `take_step`).
    fn try_step<'a>(&'a self, units: u32, finisher: &mut Option<FinisherRole<'a>>) -> bool {
        if finisher.is_none() {
            if self.try_take_leaving(units, self.small_slice + self.finisher_reserve) {
                return true;
            }
            *finisher = self.claim_finisher();
            if finisher.is_some() {
                debug!(units, "a large frame takes the finisher role");
            }
        }
        finisher.is_some() && self.try_take_leaving(units, self.small_slice)
    }

    /// Takes `units` if at least `free` more stay available, atomically: it takes both and
    /// gives the `free` ones back at once.
    fn try_take_leaving(&self, units: u32, free: u32) -> bool {
        let Ok(permit) = self.semaphore.try_acquire_many(units + free) else { return false };
        permit.forget();
        if free > 0 {
            self.give_back(free);
        }
        true
    }

    fn claim_finisher(&self) -> Option<FinisherRole<'_>> {
        self.finisher
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| FinisherRole(self))
    }

    fn give_back(&self, units: u32) {
        self.semaphore.add_permits(units as usize);
        self.wake_waiters();
    }

    /// Wakes the large frames waiting, if any. The fence pairs with `Waiting::register`'s:
    /// either a waiter's check sees what was just given back, or this sees the waiter.
    fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.released.notify_waiters();
        }
    }
}

/// A frame's share of the budget, given back when dropped (once its request is answered,
/// or when its frame is abandoned).
pub(super) struct Reservation<'a> {
    budget: &'a Budget,
    units: u32,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.units > 0 {
            self.budget.give_back(self.units);
        }
    }
}

/// The finisher role, given up when dropped: when its frame is complete or abandoned.
struct FinisherRole<'a>(&'a Budget);

impl Drop for FinisherRole<'_> {
    fn drop(&mut self) {
        self.0.finisher.store(false, Ordering::SeqCst);
        self.0.wake_waiters();
    }
}

/// A large frame counted in `Budget::waiting` while it waits.
struct Waiting<'a>(&'a Budget);

impl<'a> Waiting<'a> {
    fn register(budget: &'a Budget) -> Waiting<'a> {
        budget.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Waiting(budget)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wakes the waiting large frames when dropped.
struct WakeOnDrop<'a>(&'a Budget);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wake_waiters();
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use tokio::sync::Semaphore;

    use super::{Budget, FinisherRole, Reservation, BUDGET_UNIT_BYTES};

    const MIB: u64 = 1024 * 1024;

    /// A budget of `memory` bytes for frames of `frame` bytes at most.
    fn budget(memory: u64, frame: u64) -> Budget {
        let semaphore = Arc::new(Semaphore::new(memory.div_ceil(BUDGET_UNIT_BYTES) as usize));
        Budget::new(semaphore, memory, frame)
    }

    /// Polls once; what a waiting future does on its own is tested by polling it again after
    /// what should (or should not) wake it.
    fn poll<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A large frame's share so far, and its finisher role if it has it.
    struct Large<'a> {
        held: Reservation<'a>,
        role: Option<FinisherRole<'a>>,
    }

    impl<'a> Large<'a> {
        fn new(budget: &'a Budget) -> Large<'a> {
            Large { held: Reservation { budget, units: 0 }, role: None }
        }

        /// Takes a step of `units` if it can be had without waiting.
        fn step(&mut self, budget: &'a Budget, units: u32) -> bool {
            let step = pin!(budget.take_step(&mut self.held, units, &mut self.role));
            matches!(poll(step), Poll::Ready(false))
        }
    }

    #[test]
    fn the_slices_are_an_eighth_for_small_frames_and_one_frame_for_the_finisher() {
        let default = budget(512 * MIB, 100 * MIB);
        assert_eq!(default.units_total, 512 * 1024);
        assert_eq!(default.small_slice, 64 * 1024, "an eighth of the budget");
        assert_eq!(default.finisher_reserve, 100 * 1024 + 1, "one frame, prefix included");
        // A budget of one frame keeps no slice: the frame must always fit.
        let tight = budget(100 * MIB + 4, 100 * MIB);
        assert_eq!((tight.small_slice, tight.finisher_reserve), (0, tight.units_total));
        let small = budget(2 * MIB, MIB);
        assert_eq!((small.small_slice, small.finisher_reserve), (256, 1025));
    }

    #[test]
    fn a_small_frame_takes_its_share_in_one_acquisition() {
        let budget = budget(512 * MIB, 100 * MIB);
        let share = pin!(budget.take_small(3, 2100));
        let Poll::Ready(Ok(share)) = poll(share) else { panic!("no share at once") };
        assert_eq!(share.units, 3);
        assert_eq!(budget.units_free(), 512 * 1024 - 3);
        drop(share);
        assert_eq!(budget.units_free(), 512 * 1024, "given back when dropped");
    }

    /// Hold and wait: frames that each hold part of the budget and need more than is left
    /// do not wait for each other for good. The one that claims the finisher role draws on
    /// the reserve and completes; when it is complete the role passes on. Small frames get
    /// budget all along, from the slice large frames leave them.
    #[test]
    fn half_reserved_frames_complete_one_at_a_time_and_small_frames_get_in_meanwhile() {
        // 12 MiB for 4 MiB frames: 4097 units per frame, a 1536-unit slice, and 6655 units
        // for large frames outside the finisher's reserve.
        let budget = budget(12 * MIB, 4 * MIB);
        assert_eq!(
            (budget.units_total, budget.small_slice, budget.finisher_reserve),
            (12288, 1536, 4097)
        );
        let (mut a, mut b, mut c) = (Large::new(&budget), Large::new(&budget), Large::new(&budget));
        // Three first steps of 2 MiB fit outside the reserve and the slice.
        assert!(a.step(&budget, 2048) && b.step(&budget, 2048) && c.step(&budget, 2048));
        assert!(a.role.is_none() && b.role.is_none() && c.role.is_none());
        // None of them can take the rest of its frame outside the reserve: `a` asks first,
        // becomes the finisher and takes it from the reserve.
        assert!(a.step(&budget, 2049), "the finisher's step is taken from the reserve");
        assert!(a.role.is_some());
        {
            let mut b_waits = pin!(budget.take_step(&mut b.held, 2049, &mut b.role));
            assert!(poll(b_waits.as_mut()).is_pending(), "b waits: no room and no role");
            {
                let mut c_waits = pin!(budget.take_step(&mut c.held, 2049, &mut c.role));
                assert!(poll(c_waits.as_mut()).is_pending(), "c waits too");
            }
            // Meanwhile small frames get the whole rest, the slice included.
            let free = budget.units_free() as u32;
            assert!(free >= budget.small_slice, "the slice is free: {free} units");
            let small = pin!(budget.take_small(free, free as usize * 1024));
            let Poll::Ready(Ok(small)) = poll(small) else { panic!("a small frame waited") };
            drop(small);
            assert!(poll(b_waits.as_mut()).is_pending(), "units given back are not enough for b");
            // `a`'s frame is complete: its role goes, b takes it and its step.
            drop(a.role.take());
            assert_eq!(poll(b_waits.as_mut()), Poll::Ready(true), "b, now the finisher");
        }
        assert!(b.role.is_some());
        // `a`'s request is answered: its share comes back; c still waits for the role.
        drop(a.held);
        assert!(!c.step(&budget, 2049), "c has no role while b holds it");
        drop(b.role.take());
        assert!(c.step(&budget, 2049), "c, the next finisher");
        assert!(c.role.is_some());
        drop((b.held, c));
        assert_eq!(budget.units_free(), 12288, "everything given back");
    }

    /// Large frames can never take the small frames' slice, however many they are.
    #[test]
    fn large_frames_leave_the_small_frames_slice_free() {
        let budget = budget(64 * MIB, 16 * MIB);
        let mut frames: Vec<Large<'_>> = Vec::new();
        loop {
            let mut frame = Large::new(&budget);
            if !frame.step(&budget, 2048) {
                break;
            }
            frames.push(frame);
        }
        // One of them got the finisher role and took from the reserve; the rest stopped
        // outside it.
        assert_eq!(frames.iter().filter(|frame| frame.role.is_some()).count(), 1);
        assert!(budget.units_free() >= budget.small_slice as usize);
        let slice = budget.small_slice;
        let small = pin!(budget.take_small(slice, slice as usize * 1024));
        assert!(matches!(poll(small), Poll::Ready(Ok(_))), "the whole slice for small frames");
    }
}
