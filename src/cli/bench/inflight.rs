//! The window of requests in flight on one produce connection: the writer waits for room
//! before it sends, the reader thread takes the oldest entry as each response arrives
//! (responses come back in request order). Each entry is the send time and the records sent.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cli::error::CliError;

/// How long the writer waits for a response before it gives up on the connection.
const RESPONSE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Requests in flight on one connection: the writer waits while there are `inflight` of
/// them; the reader thread completes them in order as responses arrive.
pub(super) struct InFlight {
    queue: Mutex<VecDeque<(Instant, u64)>>,
    space: Condvar,
}

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight { queue: Mutex::new(VecDeque::new()), space: Condvar::new() }
    }

    /// Waits until fewer than `max` requests are in flight; `address` names the broker
    /// that did not answer in time.
    pub(super) fn wait_for_room(&self, max: usize, address: &str) -> Result<(), CliError> {
        let mut queue = self.queue.lock().expect("inflight lock");
        while queue.len() >= max {
            let (next, timeout) =
                self.space.wait_timeout(queue, RESPONSE_WAIT_MAX).expect("inflight lock");
            queue = next;
            if timeout.timed_out() {
                return Err(CliError::failure(format!(
                    "no produce response from {address} in 60 s"
                )));
            }
        }
        Ok(())
    }

    /// Notes a request of `count` records sent now. The writer alone adds, so the room it
    /// waited for stays until this push.
    pub(super) fn push(&self, count: u64) {
        self.queue.lock().expect("inflight lock").push_back((Instant::now(), count));
    }

    /// The oldest request (send time, records), answered; wakes a waiting writer.
    pub(super) fn pop(&self) -> Result<(Instant, u64), CliError> {
        let mut queue = self.queue.lock().expect("inflight lock");
        let front =
            queue.pop_front().ok_or_else(|| CliError::failure("a response nobody asked for"))?;
        self.space.notify_all();
        Ok(front)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.lock().expect("inflight lock").is_empty()
    }

    /// Waits until every request is answered, or a wait for one response times out.
    pub(super) fn wait_until_empty(&self) {
        let mut queue = self.queue.lock().expect("inflight lock");
        while !queue.is_empty() {
            let (next, timeout) =
                self.space.wait_timeout(queue, RESPONSE_WAIT_MAX).expect("inflight lock");
            queue = next;
            if timeout.timed_out() {
                break;
            }
        }
    }
}
