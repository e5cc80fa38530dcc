//! The network side of a broker: the listener, one task per connection, and shutdown.
//!
//! Each connection starts one size-prefixed request at a time and answers in request order.
//! It reads on past a Produce once that Produce's appends have taken their turns in the
//! connection's per-partition order (`AppendOrder`), so the next Produce appends while this
//! one's appends run on other shards or wait for fdatasync or replicas (group commit); after
//! any other request it waits until the answer is written, as Kafka does
//! (`serve_connection`), and any other request starts once every earlier append is over.
//!
//! Limits: `request_bytes_max` per frame (checked before any allocation), the shared request
//! memory budget, a read buffer of at most one frame plus one read chunk per connection,
//! about `PIPELINE_MAX` Produce requests read but unanswered per connection,
//! `connections_max` connections in the whole broker (`Connections`).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use fjord_storage::io::{Listener, PipeStream, SplicePipe, Stream, READ_CHUNK_BYTES};
use kafka_protocol::messages::ApiKey;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

mod error;
mod inbox;

pub use error::ServeError;

use crate::broker::shards::Shards;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::handlers::{dispatch, AppendOrder, FetchResponse, Piece, Pipeline, Reply};
use crate::protocol::parse_request;

/// How long shutdown waits for in-flight requests before closing the logs anyway.
const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;
/// How long `serve` waits for its port while another socket holds it. A broker killed with
/// SIGKILL keeps its listening socket for a moment after its process is gone (io_uring
/// tears down its rings in the background, and an accept in flight holds the socket), so
/// a restart right away may find the port still taken.
const PORT_WAIT_MS_MAX: u64 = 10_000;
/// Pause between two tries while waiting for the port.
const PORT_WAIT_POLL_MS: u64 = 50;
/// How often `serve` checks, while shards open, whether one of them ended without saying.
const READY_POLL_MS: u64 = 100;

/// Shared shutdown state.
#[derive(Default)]
pub struct Shutdown {
    requested: Cell<bool>,
    notify: Notify,
    connections: Cell<usize>,
    drained: Notify,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.requested.set(true);
        self.notify.notify_waiters();
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.requested.get() {
            return;
        }
        notified.await;
    }
}

/// Runs a broker until SIGTERM or SIGINT, then shuts it down cleanly. Prints
/// `fjord: listening on ADDR` on stdout once every shard serves. Blocks the calling thread.
pub fn serve(mut config: BrokerConfig) -> Result<(), ServeError> {
    match fjord_storage::io::raise_open_files_limit() {
        Ok(limit) => info!(open_files_max = limit, "open file limit"),
        Err(error) => warn!(%error, "cannot read the open file limit"),
    }
    let count = config.shards;
    wait_for_port(config.listen)?;
    // The first listener fixes the port (`--listen ...:0` picks a free one); with several
    // shards every listener shares it through SO_REUSEPORT.
    let first = bind_std(config.listen, count > 1)?;
    let local =
        first.local_addr().map_err(|source| ServeError::Bind { address: config.listen, source })?;
    if config.advertised_port == 0 {
        config.advertised_port = local.port();
    }
    let mut std_listeners = vec![first];
    for _ in 1..count {
        std_listeners.push(bind_std(local, true)?);
    }
    let data_arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let request_memory = crate::broker::shards::request_memory_budget(config.request_memory_max);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let (handovers, handed): (Vec<_>, Vec<_>) =
        (0..count).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let per_ip = PerIp {
        max: config.connections_max_per_ip,
        overrides: config.connections_max_per_ip_overrides.clone(),
        open: std::sync::Mutex::new(HashMap::new()),
    };
    let connections = Arc::new(Connections::new(config.connections_max, per_ip, handovers));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, ServeError>>();
    // In a cluster, shard 0 opens first: it takes the broker's liveness lock and removes the
    // partition directories the cluster state no longer gives this broker, which must not
    // race with another shard opening a partition of a newer state.
    let first_alone = config.cluster.is_some() && count > 1;
    let mut threads = Vec::with_capacity(count);
    let mut started = 0;
    for (me, ((listener, inbox), handed)) in
        std_listeners.into_iter().zip(receivers).zip(handed).enumerate()
    {
        let shards = if count > 1 {
            Shards::new(
                me,
                senders.clone(),
                std::sync::Arc::clone(&data_arrived),
                std::sync::Arc::clone(&request_memory),
            )
        } else {
            Shards::single(config.request_memory_max)
        };
        let (config, ready, connections) =
            (config.clone(), ready_tx.clone(), Arc::clone(&connections));
        let thread = std::thread::Builder::new()
            .name(format!("fjord-shard-{me}"))
            .spawn(move || {
                fjord_storage::io::block_on(run_shard(
                    config,
                    shards,
                    Listening { listener, connections, handed },
                    inbox,
                    ready,
                ))
            })
            .map_err(|source| ServeError::Thread { shard: me, source })?;
        threads.push(thread);
        if me == 0 && first_alone {
            if let Started::Stopped = wait_ready(&ready_rx, 1, &mut threads)? {
                return join_shards(threads);
            }
            started = 1;
        }
    }
    drop(ready_tx);
    drop(senders);
    if let Started::Stopped = wait_ready(&ready_rx, count - started, &mut threads)? {
        return join_shards(threads);
    }
    info!(address = %local, shards = count, "listening");
    println!("fjord: listening on {local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    join_shards(threads)
}

type ShardThread = std::thread::JoinHandle<Result<(), ServeError>>;

/// How waiting for the shards to open ended, if not with an error.
enum Started {
    Serving,
    /// A shard stopped cleanly before all were serving: a SIGTERM or SIGINT while starting.
    Stopped,
}

/// Waits until `shards` more shards have reported that they serve, or one failed to open,
/// or one of `threads` ended without reporting: an error if it failed or panicked, and
/// `Stopped` if it shut down cleanly (a signal while the others were still opening).
fn wait_ready(
    ready: &std::sync::mpsc::Receiver<Result<usize, ServeError>>,
    shards: usize,
    threads: &mut Vec<ShardThread>,
) -> Result<Started, ServeError> {
    let mut reported = 0;
    while reported < shards {
        match ready.recv_timeout(Duration::from_millis(READY_POLL_MS)) {
            Ok(Ok(_shard)) => reported += 1,
            Ok(Err(error)) => return Err(error),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(ended) = threads.iter().position(|t| t.is_finished()) {
                    return match threads.remove(ended).join() {
                        Ok(Ok(())) => Ok(Started::Stopped),
                        Ok(Err(error)) => Err(error),
                        Err(_panic) => Err(ServeError::Panicked { shard: ended }),
                    };
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ServeError::AllStopped);
            }
        }
    }
    Ok(Started::Serving)
}

/// Waits for every shard thread to end; the first failure is the outcome.
fn join_shards(threads: Vec<ShardThread>) -> Result<(), ServeError> {
    let mut outcome = Ok(());
    for (shard, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => outcome = outcome.and(Err(error)),
            Err(_panic) => outcome = outcome.and(Err(ServeError::Panicked { shard })),
        }
    }
    outcome
}

/// Waits (at most `PORT_WAIT_MS_MAX`) until a plain socket can bind `address`. Several
/// shards share a port through SO_REUSEPORT, which would also let them share it with the
/// listener of a previous instance still being torn down, so this checks first.
fn wait_for_port(address: SocketAddr) -> Result<(), ServeError> {
    if address.port() == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(PORT_WAIT_MS_MAX);
    let mut warned = false;
    loop {
        match std::net::TcpListener::bind(address) {
            Ok(_probe) => return Ok(()),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !warned {
                    warn!(%address, "the port is taken, perhaps by a broker still shutting down; waiting up to {PORT_WAIT_MS_MAX} ms");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(PORT_WAIT_POLL_MS));
            }
            Err(source) => return Err(ServeError::Bind { address, source }),
        }
    }
}

fn bind_std(address: SocketAddr, reuse_port: bool) -> Result<std::net::TcpListener, ServeError> {
    let bound = if reuse_port {
        // Bound outside any runtime; each shard wraps its own in its runtime.
        fjord_storage::io::bind_reuseport_std(address)
    } else {
        std::net::TcpListener::bind(address)
    };
    bound.map_err(|source| ServeError::Bind { address, source })
}

/// A connection accepted by one shard for another to serve, with its place in the count.
type Handover = (std::net::TcpStream, SocketAddr, Admitted);

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
struct Connections {
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
struct PerIp {
    max: usize,
    overrides: HashMap<IpAddr, usize>,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
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
struct Admitted {
    connections: Arc<Connections>,
    shard: usize,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.live[self.shard].fetch_sub(1, Ordering::Relaxed);
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        self.connections.per_ip.release(self.ip);
    }
}

impl Connections {
    fn new(
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
    fn admit(self: &Arc<Self>, me: usize, peer: SocketAddr) -> Option<Admitted> {
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
    fn hand_over(&self, admitted: Admitted, stream: Stream, peer: SocketAddr) {
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
    fn stop(&self, me: usize) {
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

/// A shard's side of the port: its listener, and the connections others hand it.
struct Listening {
    listener: std::net::TcpListener,
    connections: Arc<Connections>,
    handed: tokio::sync::mpsc::UnboundedReceiver<Handover>,
}

/// One shard: its runtime's broker, listener and tasks. Shard 0 also handles signals and
/// stops the others first at shutdown.
async fn run_shard(
    config: BrokerConfig,
    shards: Shards,
    listening: Listening,
    inbox: tokio::sync::mpsc::UnboundedReceiver<crate::broker::shards::Message>,
    ready: std::sync::mpsc::Sender<Result<usize, ServeError>>,
) -> Result<(), ServeError> {
    let me = shards.me;
    let Listening { listener, connections, mut handed } = listening;
    let listener = Listener::from_std(listener);
    let shutdown = Rc::new(Shutdown::default());
    let stopped = Rc::new(Notify::new());
    let broker = match Broker::open(config, shards).await {
        Ok(broker) => broker,
        Err(source) => {
            let _ = ready.send(Err(ServeError::Open { shard: me, source }));
            return Err(ServeError::NotOpened { shard: me });
        }
    };
    {
        // Other shards' requests for this shard's partitions; a Shutdown from shard 0 stops
        // this shard and is acknowledged once its partitions are closed.
        let (shutdown, stopped) = (Rc::clone(&shutdown), Rc::clone(&stopped));
        fjord_storage::io::spawn(inbox::serve_inbox(Rc::clone(&broker), inbox, move || {
            let (shutdown, stopped) = (Rc::clone(&shutdown), Rc::clone(&stopped));
            async move {
                let done = stopped.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                shutdown.trigger();
                done.await;
            }
        }));
    }
    let upkeep = fjord_storage::io::spawn(Rc::clone(&broker).run_upkeep());
    let group_timers =
        (me == 0).then(|| fjord_storage::io::spawn(broker.coordinator().run_timers()));
    let replication = broker.cluster.is_some().then(|| {
        (
            fjord_storage::io::spawn(crate::replication::duty::run(Rc::clone(&broker))),
            fjord_storage::io::spawn(crate::replication::fetcher::run(Rc::clone(&broker))),
        )
    });
    if me == 0 {
        let shutdown = Rc::clone(&shutdown);
        // Installed here, before this shard reports ready (and `serve` prints that it
        // listens), not in the task: a SIGTERM right after the listening line must shut the
        // broker down cleanly, not kill it.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("install SIGINT handler");
        fjord_storage::io::spawn(async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
            shutdown.trigger();
        });
    }
    let _ = ready.send(Ok(me));

    // One accept in flight at a time, kept across the loop: dropping it unfinished (when a
    // handed-over connection comes first) would leave its io_uring operation in the kernel,
    // and the connection it then accepts would be lost.
    let accept = listener.accept();
    tokio::pin!(accept);
    loop {
        let (stream, peer, admitted) = tokio::select! {
            accepted = &mut accept => {
                accept.set(listener.accept());
                match accepted {
                    Ok((stream, peer)) => {
                        let Some(admitted) = connections.admit(me, peer) else {
                            drop(stream);
                            continue;
                        };
                        if admitted.shard == me {
                            (stream, peer, admitted)
                        } else {
                            connections.hand_over(admitted, stream, peer);
                            continue;
                        }
                    }
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            // Accepted by another shard, admitted and counted there, served here.
            Some((stream, peer, admitted)) = handed.recv() => (Stream::from_std(stream), peer, admitted),
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        shutdown.connections.set(shutdown.connections.get() + 1);
        let broker = Rc::clone(&broker);
        let shutdown = Rc::clone(&shutdown);
        fjord_storage::io::spawn(async move {
            let _admitted = admitted;
            debug!(%peer, shard = me, "connection opened");
            serve_connection(&broker, &stream, peer, &shutdown).await;
            let _ = stream.shutdown();
            debug!(%peer, shard = me, "connection closed");
            shutdown.connections.set(shutdown.connections.get() - 1);
            shutdown.drained.notify_waiters();
        });
    }

    // No more connections here: none is handed to this shard from now on, those handed and
    // not taken are closed (uncounted as they drop), and the listener leaves the port, so
    // the kernel gives new connections to the shards still serving (or refuses them).
    connections.stop(me);
    handed.close();
    while handed.try_recv().is_ok() {}
    if let Err(error) = listener.stop_listening() {
        debug!(%error, "shutdown: the listener did not stop listening");
    }

    // Let in-flight requests finish; idle connections stop at their next read.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX);
    while shutdown.connections.get() > 0 {
        let drained = shutdown.drained.notified();
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            warn!(
                connections = shutdown.connections.get(),
                "shutdown: connections still busy, closing logs anyway"
            );
            break;
        }
    }
    if me == 0 {
        // The others first: their in-flight requests may still need shard 0.
        broker.shards.shut_down_others().await;
    }
    upkeep.abort();
    if let Some(timers) = group_timers {
        timers.abort();
    }
    if let Some((cluster, fetchers)) = replication {
        cluster.abort();
        fetchers.abort();
    }
    broker.close().await;
    stopped.notify_waiters();
    info!(shard = me, "shut down cleanly");
    Ok(())
}

enum FrameRead<'a> {
    Frame(Bytes, Option<tokio::sync::SemaphorePermit<'a>>),
    Closed,
}

/// Inside a frame a client must send at least this many bytes (or the rest of the frame)
/// in every `FRAME_RATE_WINDOW_MS`, or it is disconnected: a minimum receive rate. A client
/// that announces a large request and trickles it (a byte every few seconds) would otherwise
/// hold its share of the request memory budget, and with a few such connections all of it,
/// for as long as it liked; now for one window at most.
pub const FRAME_RATE_MIN_BYTES: usize = 16 * 1024;
/// The window of that rate (a client that sends nothing at all inside a frame is dropped
/// after one window too).
pub const FRAME_RATE_WINDOW_MS: u64 = 10_000;

/// Reads the next request frame into `buf` (which keeps any bytes of the following one).
/// A frame's bytes are taken from the broker-wide (all shards) request memory budget before
/// they are read, and given back when the request is answered: when the budget is spent,
/// connections stop reading and TCP pushes back on the clients.
async fn read_frame<'a>(
    stream: &Stream,
    buf: &mut BytesMut,
    request_bytes_max: u64,
    budget: &'a tokio::sync::Semaphore,
) -> Result<FrameRead<'a>, String> {
    let mut permit: Option<tokio::sync::SemaphorePermit<'a>> = None;
    // Inside a frame: when the current rate window ends and how much was buffered at its start.
    let mut window: Option<(tokio::time::Instant, usize)> = None;
    let mut frame_total = 0usize;
    // Bytes buffered when the last read inside the frame began.
    let mut before_last_read = 0usize;
    loop {
        if buf.len() >= 4 {
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if size < 0 || size as u64 > request_bytes_max {
                return Err(format!(
                    "frame size {size} outside 0..={request_bytes_max} (request_bytes_max)"
                ));
            }
            let total = 4 + size as usize;
            if permit.is_none() {
                let units =
                    (total as u64).div_ceil(crate::broker::shards::BUDGET_UNIT_BYTES) as u32;
                permit = Some(match budget.try_acquire_many(units) {
                    Ok(permit) => permit,
                    Err(_) => {
                        debug!(
                            bytes = total,
                            "request memory budget spent; waiting (backpressure)"
                        );
                        budget
                            .acquire_many(units)
                            .await
                            .map_err(|e| format!("request memory budget closed: {e}"))?
                    }
                });
                // The rate is the client's: a wait for the budget does not count against it.
                window = Some((
                    tokio::time::Instant::now()
                        + std::time::Duration::from_millis(FRAME_RATE_WINDOW_MS),
                    buf.len(),
                ));
                frame_total = total;
            }
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                frame.advance(4);
                return Ok(FrameRead::Frame(frame.freeze(), permit));
            }
            // Room for the rest of this frame; never more than one frame plus a chunk.
            buf.reserve((total - buf.len()).max(READ_CHUNK_BYTES.min(total)));
        } else if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let taken = std::mem::take(buf);
        let (result, returned) = if let Some((deadline, at_start)) = window.as_mut() {
            // Inside a frame the rest must keep coming at the minimum rate.
            if tokio::time::Instant::now() >= *deadline {
                let sent = taken.len() - *at_start;
                let owed = FRAME_RATE_MIN_BYTES.min(frame_total - *at_start);
                if sent < owed {
                    *buf = taken;
                    return Err(format!(
                        "{sent} bytes in {FRAME_RATE_WINDOW_MS} ms inside a frame of {frame_total}, below the minimum of {FRAME_RATE_MIN_BYTES} (or the rest of the frame)"
                    ));
                }
                *deadline += std::time::Duration::from_millis(FRAME_RATE_WINDOW_MS);
                // The last read may have ended past the old window: its bytes count for the
                // new one too (lenient by one read, never unfair to a client at the rate).
                *at_start = before_last_read.max(*at_start);
            }
            // A read that times out loses its buffer (the kernel may still hold it), so it
            // may only time out when the connection is to be dropped anyway: at the end of
            // this window if it still owes bytes, else at the end of the next one (which a
            // read still waiting then has sent nothing in).
            let sent = taken.len() - *at_start;
            let owed = FRAME_RATE_MIN_BYTES.min(frame_total - *at_start);
            let window_ms = std::time::Duration::from_millis(FRAME_RATE_WINDOW_MS);
            let until = if sent >= owed { *deadline + window_ms } else { *deadline };
            before_last_read = taken.len();
            match tokio::time::timeout_at(until, stream.read(taken)).await {
                Ok(read) => read,
                Err(_elapsed) => {
                    return Err(format!("too few bytes inside a frame of {frame_total}: below {FRAME_RATE_MIN_BYTES} (or the rest of the frame) in {FRAME_RATE_WINDOW_MS} ms"))
                }
            }
        } else {
            stream.read(taken).await
        };
        *buf = returned;
        match result {
            Ok(0) if buf.is_empty() => return Ok(FrameRead::Closed),
            Ok(0) => {
                return Err(format!("peer closed inside a frame ({} bytes buffered)", buf.len()))
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(FrameRead::Closed)
            }
            Err(error) => return Err(format!("read failed: {error}")),
        }
    }
}

/// Produce requests of one connection read but not yet answered, at most (give or take the
/// one being started and the one being written). A request is started once the one before
/// it has taken effect (for a Produce with acks 1 or all: its appends have taken their
/// turns), so while a Produce's appends run on other shards or wait for fdatasync or for the
/// replicas, the next ones queue behind them and share that wait (group commit). Answers
/// leave in request order.
const PIPELINE_MAX: usize = 16;

/// Share of the request memory budget that reads past unanswered requests must leave free,
/// as a divisor: requests waiting on the replicas can then never take the whole budget and
/// starve the followers' fetches they are waiting for (those connections never pipeline).
const PIPELINE_BUDGET_RESERVE_DIVISOR: usize = 4;

/// A request's answer, ready or still coming (a Produce past its appends), with its share of
/// the request memory budget, held until the answer is written.
struct Answer<'a> {
    api: ApiKey,
    reply: Pending,
    _budget: Option<tokio::sync::SemaphorePermit<'a>>,
}

enum Pending {
    Ready(Reply),
    Later(tokio::task::JoinHandle<Reply>),
}

/// A handler task's reply; a handler that panicked closes the connection.
fn handler_reply(joined: Result<Reply, tokio::task::JoinError>) -> Reply {
    joined.unwrap_or_else(|e| Reply::Close(format!("handler failed: {e}")))
}

/// Answers queued or being written on one connection; the writer notifies after each.
#[derive(Default)]
struct InFlight {
    answers: Cell<usize>,
    written: Notify,
}

async fn serve_connection(
    broker: &Rc<Broker>,
    stream: &Stream,
    peer: SocketAddr,
    shutdown: &Shutdown,
) {
    let (answers, queue) = tokio::sync::mpsc::channel(PIPELINE_MAX);
    let in_flight = InFlight::default();
    tokio::join!(
        read_requests(broker, stream, peer, shutdown, answers, &in_flight),
        write_answers(stream, peer, queue, &in_flight)
    );
}

/// Reads and starts requests in order; ends at shutdown, when the peer closes, on a bad
/// frame, or once a request's answer closes the connection.
async fn read_requests<'a>(
    broker: &'a Rc<Broker>,
    stream: &Stream,
    peer: SocketAddr,
    shutdown: &Shutdown,
    answers: tokio::sync::mpsc::Sender<Answer<'a>>,
    in_flight: &InFlight,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let reserve = (broker.config.request_memory_max / crate::broker::shards::BUDGET_UNIT_BYTES)
        as usize
        / PIPELINE_BUDGET_RESERVE_DIVISOR;
    let mut pipelining = false;
    // This connection's order of appends per partition, and the ends of the appends of
    // Produce requests started but maybe not over (at most about `PIPELINE_MAX`).
    let order = Rc::new(AppendOrder::default());
    let mut appending: Vec<tokio::sync::oneshot::Receiver<()>> = Vec::new();
    loop {
        if shutdown.requested.get() {
            return;
        }
        // Read past unanswered requests only behind a Produce, and only while the budget
        // keeps its reserve; otherwise wait until every answer is written.
        while in_flight.answers.get() > 0
            && !(pipelining && broker.request_memory.available_permits() >= reserve)
        {
            let written = in_flight.written.notified();
            tokio::select! {
                _ = written => {}
                _ = shutdown.wait() => return,
            }
        }
        let frame = tokio::select! {
            frame = read_frame(stream, &mut buf, broker.config.request_bytes_max, &broker.request_memory) => frame,
            _ = shutdown.wait() => return,
        };
        let (payload, budget) = match frame {
            Ok(FrameRead::Frame(payload, permit)) => (payload, permit),
            Ok(FrameRead::Closed) => return,
            Err(reason) => {
                warn!(%peer, %reason, "closing connection: bad frame");
                return;
            }
        };
        let request = match parse_request(payload) {
            Ok(mut request) => {
                request.peer = Some(peer);
                request
            }
            Err(error) => {
                warn!(%peer, %error, "closing connection: bad request");
                return;
            }
        };
        let api = request.api_key;
        if api == ApiKey::Produce {
            appending.retain_mut(|end| {
                matches!(end.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty))
            });
        } else {
            // Any other request starts once every earlier append is over: a Fetch on the same
            // connection reads them, as if each Produce had been answered first.
            for end in appending.drain(..) {
                tokio::select! {
                    _ = end => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
        let (ordered, is_ordered) = tokio::sync::oneshot::channel();
        let (appended, is_appended) = tokio::sync::oneshot::channel();
        let pipeline = Pipeline { order: Rc::clone(&order), ordered, appended };
        let mut task = fjord_storage::io::spawn({
            let broker = Rc::clone(broker);
            async move { dispatch(&broker, request, Some(pipeline)).await }
        });
        // The next request waits until this one has taken effect: until it is answered, or
        // for a Produce with acks 1 or all, until its appends have taken their turns in the
        // connection's order (`AppendOrder`): a later Produce's append to a partition then
        // follows this one's, and any other request waits for them to be over (above).
        let reply = tokio::select! {
            biased;
            answered = &mut task => Pending::Ready(handler_reply(answered)),
            Ok(()) = is_ordered => Pending::Later(task),
        };
        pipelining = matches!(reply, Pending::Later(_));
        if pipelining {
            appending.push(is_appended);
        }
        let closing = matches!(reply, Pending::Ready(Reply::Close(_)));
        in_flight.answers.set(in_flight.answers.get() + 1);
        if answers.send(Answer { api, reply, _budget: budget }).await.is_err() || closing {
            // The writer stopped (the connection is closing), or will once it gets here.
            return;
        }
    }
}

/// Writes the answers in request order. On a failed write or a closing answer it shuts the
/// socket down, so the reader stops too, and waits for the handlers still running before
/// their budget shares are given back.
async fn write_answers(
    stream: &Stream,
    peer: SocketAddr,
    mut queue: tokio::sync::mpsc::Receiver<Answer<'_>>,
    in_flight: &InFlight,
) {
    let mut pipe: Option<SplicePipe> = None;
    while let Some(answer) = queue.recv().await {
        let reply = match answer.reply {
            Pending::Ready(reply) => reply,
            Pending::Later(task) => handler_reply(task.await),
        };
        let api = answer.api;
        let written = match reply {
            Reply::Frame(bytes) => stream.write_all(bytes).await.0.map_err(|e| e.to_string()),
            Reply::Fetch(response) => {
                write_fetch(stream, &mut pipe, response).await.map_err(|e| e.to_string())
            }
            Reply::Nothing => Ok(()),
            Reply::Close(reason) => {
                warn!(%peer, ?api, %reason, "closing connection");
                Err(reason)
            }
        };
        in_flight.answers.set(in_flight.answers.get() - 1);
        in_flight.written.notify_waiters();
        if let Err(error) = written {
            debug!(%peer, ?api, %error, "connection closing; answers still queued are dropped");
            let _ = stream.shutdown();
            queue.close();
            while let Some(rest) = queue.recv().await {
                if let Pending::Later(task) = rest.reply {
                    let _ = task.await;
                }
            }
            return;
        }
    }
}

/// Writes a Fetch response through the connection's pipe: header bytes are written into
/// it, record bytes spliced into it from the segment files, and the pipe drains into the
/// socket when full and at the end, so a response of many partitions leaves in a few large
/// transfers and record bytes never pass through user space.
async fn write_fetch(
    stream: &Stream,
    pipe: &mut Option<SplicePipe>,
    response: FetchResponse,
) -> std::io::Result<()> {
    if pipe.is_none() {
        *pipe = Some(SplicePipe::new()?);
    }
    let mut out = PipeStream::new(pipe.as_mut().expect("created above"), stream.as_raw_fd())?;
    let mut prefix = Some((response.size as i32).to_be_bytes());
    for piece in response.pieces {
        match piece {
            Piece::Bytes(mut bytes) => {
                if let Some(prefix) = prefix.take() {
                    bytes.splice(0..0, prefix);
                }
                out.push_bytes(&bytes).await?;
            }
            Piece::Region(region) => {
                if let Some(prefix) = prefix.take() {
                    out.push_bytes(&prefix).await?;
                }
                out.push_file(&region.file, region.position, region.len).await?;
            }
        }
    }
    out.finish().await
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
