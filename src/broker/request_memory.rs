//! The broker-wide request memory budget (`request-memory-max`, shared by all shards) as
//! request frames take it: bytes as they arrive, in bounded steps, with a slice kept for
//! small frames and a reserve that lets one large frame at a time always finish.
//!
//! A small frame (up to `SMALL_FRAME_BYTES`, every request of a Kafka producer with default
//! settings) takes its whole size at once, from any part of the budget. A large frame takes
//! a first step of `SMALL_FRAME_BYTES`, then steps twice as large as the last (or the rest of
//! the frame), each once the bytes of the steps before it are in, and every step leaves part
//! of the budget free: a slice for small frames (`SMALL_FRAMES_SHARE_DIVISOR`), and one
//! `request_bytes_max` frame, the finisher's reserve. A large frame that cannot get its next
//! step claims the finisher role, which one frame at a time holds until it is complete: the
//! finisher's steps may use the reserve, so it always completes without waiting for any
//! other large frame, and two half-reserved frames never wait for each other for good.
//! docs/design.md, "Memory under overload", has the argument.

use std::pin::pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore};
use tracing::debug;

use crate::protocol::SIZE_PREFIX_BYTES;

/// Bytes per permit of the request memory budget.
pub const BUDGET_UNIT_BYTES: u64 = 1024;

/// A frame up to this size (its size prefix included) is small: it takes its whole size
/// from the budget in one acquisition, and may use any part of the budget. Twice the
/// `max.request.size` of Kafka's producers (1 MiB by default; librdkafka's
/// `message.max.bytes` is 1 000 000), so every request of a producer with default settings,
/// with its headers, is small, and so are fetches, metadata and group requests. A larger
/// frame takes its budget in steps, the first of this size.
pub const SMALL_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// The slice of the budget large frames leave to small ones, as a divisor of the budget
/// (64 MiB of the default 512 MiB), less when the budget holds less beside the finisher's
/// reserve (none when `request-memory-max` is one `request-bytes-max` frame).
const SMALL_FRAMES_SHARE_DIVISOR: u64 = 8;

/// RequestMemory units covering `bytes`, rounded up.
pub fn units(bytes: usize) -> u32 {
    (bytes as u64).div_ceil(BUDGET_UNIT_BYTES) as u32
}

/// The broker-wide request memory budget as frames use it: a semaphore of
/// `BUDGET_UNIT_BYTES` permits (one for all shards), the slices large frames leave free,
/// and the finisher role. Small frames wait for it in the semaphore's own (first come,
/// first served) queue; large frames never queue there, so a large frame waiting never
/// holds up a small one: they wait for `released`, notified whenever units or the role are
/// given back while one waits.
pub struct RequestMemory {
    semaphore: Semaphore,
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

impl RequestMemory {
    /// A budget of `request_memory_max` bytes (rounded up to `BUDGET_UNIT_BYTES`, as each
    /// frame's share is) for requests of `request_bytes_max` at most. The configuration
    /// makes it hold at least one.
    pub fn new(request_memory_max: u64, request_bytes_max: u64) -> RequestMemory {
        let units_total = request_memory_max
            .div_ceil(BUDGET_UNIT_BYTES)
            .min(Semaphore::MAX_PERMITS as u64)
            .min(u64::from(u32::MAX / 2)) as u32;
        let finisher_reserve =
            units(request_bytes_max as usize + SIZE_PREFIX_BYTES).min(units_total);
        let small_slice = (u64::from(units_total) / SMALL_FRAMES_SHARE_DIVISOR) as u32;
        RequestMemory {
            semaphore: Semaphore::new(units_total as usize),
            units_total,
            small_slice: small_slice.min(units_total - finisher_reserve),
            finisher_reserve,
            finisher: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
        }
    }

    pub fn units_total(&self) -> u32 {
        self.units_total
    }

    pub fn units_free(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// A small frame's whole share: at once if the budget has it (the one acquisition of a
    /// normal request), else in the semaphore's queue behind earlier small frames.
    pub async fn take_small(&self, units: u32, bytes: usize) -> Result<Reservation<'_>, String> {
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
    pub async fn take_step<'a>(
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
pub struct Reservation<'a> {
    budget: &'a RequestMemory,
    units: u32,
}

impl<'a> Reservation<'a> {
    /// A share of nothing yet, for a large frame's steps to add to.
    pub fn empty(budget: &'a RequestMemory) -> Reservation<'a> {
        Reservation { budget, units: 0 }
    }

    /// The units it holds.
    pub fn units(&self) -> u32 {
        self.units
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.units > 0 {
            self.budget.give_back(self.units);
        }
    }
}

/// The finisher role, given up when dropped: when its frame is complete or abandoned.
pub struct FinisherRole<'a>(&'a RequestMemory);

impl Drop for FinisherRole<'_> {
    fn drop(&mut self) {
        self.0.finisher.store(false, Ordering::SeqCst);
        self.0.wake_waiters();
    }
}

/// A large frame counted in `RequestMemory::waiting` while it waits.
struct Waiting<'a>(&'a RequestMemory);

impl<'a> Waiting<'a> {
    fn register(budget: &'a RequestMemory) -> Waiting<'a> {
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
struct WakeOnDrop<'a>(&'a RequestMemory);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wake_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    use super::{FinisherRole, RequestMemory, Reservation};

    const MIB: u64 = 1024 * 1024;

    /// A budget of `memory` bytes for frames of `frame` bytes at most.
    fn budget(memory: u64, frame: u64) -> RequestMemory {
        RequestMemory::new(memory, frame)
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
        fn new(budget: &'a RequestMemory) -> Large<'a> {
            Large { held: Reservation { budget, units: 0 }, role: None }
        }

        /// Takes a step of `units` if it can be had without waiting.
        fn step(&mut self, budget: &'a RequestMemory, units: u32) -> bool {
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
