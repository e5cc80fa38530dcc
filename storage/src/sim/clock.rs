//! A simulated clock: it stands still until the test moves it, and every copy shares it.

use std::cell::Cell;
use std::rc::Rc;

use crate::clock::Clock;

/// A clock the test moves. Clones share the time.
#[derive(Debug, Clone)]
pub struct SimClock(Rc<Cell<i64>>);

impl SimClock {
    pub fn new(now_ms: i64) -> SimClock {
        SimClock(Rc::new(Cell::new(now_ms)))
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get() + ms as i64);
    }

    /// Sets the time (it may go back, as a wall clock can).
    pub fn set(&self, now_ms: i64) {
        self.0.set(now_ms);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}
