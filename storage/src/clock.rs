//! Wall-clock time for the log (segment age, flush intervals), behind [`Clock`] so tests can
//! run on a simulated clock (`sim::SimClock`) that moves only when told.
//!
//! Invariant: the log reads the time only through its clock; retention takes its `now_ms` as
//! an argument from the caller.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Clone + std::fmt::Debug + 'static {
    fn now_ms(&self) -> i64;
}

/// The system clock. A unit type: reading it is one `clock_gettime`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}
