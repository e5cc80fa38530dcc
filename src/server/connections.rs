//! The broker's connections, counted across all shards: which shard serves a new one, the
//! broker-wide `connections_max` and the per-address limits, and the hand-over of a
//! connection from the shard that accepted it to the one that serves it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use fjord_storage::io::Stream;
use tracing::{debug, warn};

/// A connection accepted by one shard for another to serve, with its place in the count.
pub(super) type Handover = (std::net::TcpStream, SocketAddr, Admitted);

/// The broker's connections, shared by all shards: how many each shard serves, which shard
/// serves a new one, and the broker-wide `connections_max`.
///
/// Every shard accepts on the same port (SO_REUSEPORT), and the kernel picks the accepting
/// shard by a hash of the client's address and port: two connections land on the same shard
/// half the time, and one core then does the network work of both while the other idles
/// (consuming with 2 connections measured 1.5-2.0 GB/s that way against 2.1-2.3 GB/s when
/// they were spread, docs/benchmarks.md). So a new connection is served by the shard with
/// the fewest (the accepting one on a tie), and the accepting shard hands it over when that
/// is another. Kafka clients keep their connections for long, so counting them is enough.
pub(super) struct Connections {
    /// Connections each shard serves or has been handed and not yet taken.
    live: Box<[AtomicUsize]>,
    /// All of them: the exact count `max` bounds (the sum of `live` may lag it).
    total: AtomicUsize,
    max: usize,
    /// Shards that stopped taking connections (shutting down): none is handed to them.
    stopping: Box<[AtomicBool]>,
    /// To each shard, the connections others accepted for it. Unbounded, but every
    /// connection in them is counted in `total`, so they hold fewer than `max`.
    handovers: Vec<tokio::sync::mpsc::UnboundedSender<Handover>>,
    per_ip: PerIp,
}

/// Open connections per client address and their limits (Kafka's `max.connections.per.ip`
/// and its overrides). A map behind a lock: taken once per connection opened or closed.
pub(super) struct PerIp {
    max: usize,
    overrides: HashMap<IpAddr, usize>,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub(super) fn new(max: usize, overrides: HashMap<IpAddr, usize>) -> PerIp {
        PerIp { max, overrides, open: std::sync::Mutex::new(HashMap::new()) }
    }

    /// Counts a connection from `ip`, or says the address has its limit already.
    fn admit(&self, ip: IpAddr) -> Result<(), usize> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.max);
        let mut open = self.open.lock().expect("per-address counts: no holder panics");
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            return Err(limit);
        }
        *count += 1;
        Ok(())
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().expect("per-address counts: no holder panics");
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// A connection's place in `Connections`, given back when it is dropped: when the
/// connection ends, however it ends (a handler that panicked, a hand-over that failed or
/// was never taken).
pub(super) struct Admitted {
    connections: Arc<Connections>,
    shard: usize,
    ip: IpAddr,
}

impl Admitted {
    /// The shard that serves the connection.
    pub(super) fn shard(&self) -> usize {
        self.shard
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.live[self.shard].fetch_sub(1, Ordering::Relaxed);
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        self.connections.per_ip.release(self.ip);
    }
}

impl Connections {
    pub(super) fn new(
        max: usize,
        per_ip: PerIp,
        handovers: Vec<tokio::sync::mpsc::UnboundedSender<Handover>>,
    ) -> Connections {
        Connections {
            live: handovers.iter().map(|_| AtomicUsize::new(0)).collect(),
            total: AtomicUsize::new(0),
            max,
            stopping: handovers.iter().map(|_| AtomicBool::new(false)).collect(),
            handovers,
            per_ip,
        }
    }

    /// Counts a connection that shard `me` accepted and says which shard serves it, or
    /// refuses it (`None`, with a log line) when the broker has `max` already, or its client
    /// address has its own limit.
    pub(super) fn admit(self: &Arc<Self>, me: usize, peer: SocketAddr) -> Option<Admitted> {
        if let Err(limit) = self.per_ip.admit(peer.ip()) {
            warn!(%peer, limit, "connection refused: connections_max_per_ip reached for this address");
            return None;
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.total.fetch_sub(1, Ordering::Relaxed);
            self.per_ip.release(peer.ip());
            warn!(%peer, limit = self.max, "connection refused: connections_max reached");
            return None;
        }
        let counts = self.live.iter().zip(self.stopping.iter()).map(|(live, stopping)| {
            if stopping.load(Ordering::Relaxed) {
                usize::MAX
            } else {
                live.load(Ordering::Relaxed)
            }
        });
        let shard = fewest(counts, me);
        self.live[shard].fetch_add(1, Ordering::Relaxed);
        Some(Admitted { connections: Arc::clone(self), shard, ip: peer.ip() })
    }

    /// Gives an admitted connection to the shard chosen for it; if that fails (the shard
    /// has stopped), the connection is closed and uncounted (dropped).
    pub(super) fn hand_over(&self, admitted: Admitted, stream: Stream, peer: SocketAddr) {
        let shard = admitted.shard;
        let sent = match stream.into_std() {
            Ok(stream) => self.handovers[shard]
                .send((stream, peer, admitted))
                .map_err(|_| "the shard has stopped".to_string()),
            Err(error) => Err(format!("cannot duplicate the socket: {error}")),
        };
        match sent {
            Ok(()) => debug!(%peer, shard, "connection handed over"),
            Err(reason) => {
                warn!(%peer, shard, %reason, "connection closed: cannot hand it to the shard that was to serve it")
            }
        }
    }

    /// Shard `me` takes no more connections: none is handed to it from now on.
    pub(super) fn stop(&self, me: usize) {
        self.stopping[me].store(true, Ordering::Relaxed);
    }
}

/// The index of the smallest count; `me` when it is as small as any.
fn fewest(counts: impl Iterator<Item = usize>, me: usize) -> usize {
    counts
        .enumerate()
        .min_by_key(|&(shard, count)| (count, shard != me, shard))
        .map_or(me, |(shard, _)| shard)
}

#[cfg(test)]
mod tests {
    use super::fewest;

    #[test]
    fn a_connection_goes_to_the_shard_with_the_fewest_and_stays_on_a_tie() {
        assert_eq!(fewest([0, 0].into_iter(), 1), 1, "a tie keeps it where it was accepted");
        assert_eq!(fewest([1, 0].into_iter(), 0), 1);
        assert_eq!(fewest([3, 2, 2].into_iter(), 0), 1, "among others tied, the lowest index");
        assert_eq!(fewest([3, 2, 2].into_iter(), 2), 2);
        assert_eq!(fewest([5].into_iter(), 0), 0);
    }
}
