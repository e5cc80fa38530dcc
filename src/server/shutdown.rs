//! A shard's shutdown state: whether shutdown was asked for, and the connections it still
//! serves, which shutdown waits for (at most a while) before the logs close.
//!
//! Counts and flags live in `Cell`s: a shard's tasks all run on its one thread.

use std::cell::Cell;

use tokio::sync::Notify;

/// Shared shutdown state of one shard.
#[derive(Default)]
pub struct Shutdown {
    requested: Cell<bool>,
    notify: Notify,
    /// Connections this shard serves now.
    connections: Cell<usize>,
    /// Notified each time a connection ends.
    drained: Notify,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.requested.set(true);
        self.notify.notify_waiters();
    }

    /// Whether shutdown has been asked for.
    pub(super) fn requested(&self) -> bool {
        self.requested.get()
    }

    /// Waits until shutdown is asked for (at once if it was already).
    pub(super) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.requested.get() {
            return;
        }
        notified.await;
    }

    pub(super) fn connection_opened(&self) {
        self.connections.set(self.connections.get() + 1);
    }

    pub(super) fn connection_closed(&self) {
        self.connections.set(self.connections.get() - 1);
        self.drained.notify_waiters();
    }

    /// Waits until every connection has ended, or `deadline`; the connections still open
    /// then (0 if all ended).
    pub(super) async fn drained_by(&self, deadline: tokio::time::Instant) -> usize {
        while self.connections.get() > 0 {
            let drained = self.drained.notified();
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                break;
            }
        }
        self.connections.get()
    }
}
