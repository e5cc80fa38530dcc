//! Starting a broker: the port (waited for while a previous instance lets go of it), one
//! listener per shard sharing it, one thread per shard, and the wait until every shard
//! serves or one fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::connections::{Connections, PerIp};
use super::error::ServeError;
use super::shard::{run_shard, Listening};
use crate::broker::request_memory::RequestMemory;
use crate::broker::shards::{Message, Shards};
use crate::config::BrokerConfig;

/// How long `serve` waits for its port while another socket holds it. A broker killed with
/// SIGKILL keeps its listening socket for a moment after its process is gone (io_uring
/// tears down its rings in the background, and an accept in flight holds the socket), so
/// a restart right away may find the port still taken.
const PORT_WAIT_MS_MAX: u64 = 10_000;
/// Pause between two tries while waiting for the port.
const PORT_WAIT_POLL_MS: u64 = 50;
/// How often `serve` checks, while shards open, whether one of them ended without saying.
const READY_POLL_MS: u64 = 100;

/// Runs a broker until SIGTERM or SIGINT, then shuts it down cleanly. Prints
/// `fjord: listening on ADDR` on stdout once every shard serves. Blocks the calling thread.
pub fn serve(mut config: BrokerConfig) -> Result<(), ServeError> {
    match fjord_storage::io::raise_open_files_limit() {
        Ok(limit) => info!(open_files_max = limit, "open file limit"),
        Err(error) => warn!(%error, "cannot read the open file limit"),
    }
    let count = config.shards;
    wait_for_port(config.listen)?;
    let (std_listeners, local) = bind_listeners(config.listen, count)?;
    if config.advertised_port == 0 {
        config.advertised_port = local.port();
    }
    let data_arrived = Arc::new(tokio::sync::Notify::new());
    let replication_quotas = Arc::default();
    let request_memory =
        Arc::new(RequestMemory::new(config.request_memory_max, config.request_bytes_max));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..count).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let (handovers, handed): (Vec<_>, Vec<_>) =
        (0..count).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let per_ip =
        PerIp::new(config.connections_max_per_ip, config.connections_max_per_ip_overrides.clone());
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
                Arc::clone(&data_arrived),
                Arc::clone(&request_memory),
                Arc::clone(&replication_quotas),
            )
        } else {
            Shards::single(Arc::clone(&request_memory))
        };
        let listening = Listening { listener, connections: Arc::clone(&connections), handed };
        threads.push(spawn_shard(me, config.clone(), shards, listening, inbox, ready_tx.clone())?);
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
    announce(local, count);
    join_shards(threads)
}

/// Binds one listener per shard, and says the address they share. The first fixes the
/// port (`--listen ...:0` picks a free one); with several shards every listener shares it
/// through SO_REUSEPORT.
fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), ServeError> {
    let first = bind_std(address, count > 1)?;
    let local = first.local_addr().map_err(|source| ServeError::Bind { address, source })?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind_std(local, true)?);
    }
    Ok((listeners, local))
}

/// Starts shard `me` on a thread of its own, running its runtime until it ends.
fn spawn_shard(
    me: usize,
    config: BrokerConfig,
    shards: Shards,
    listening: Listening,
    inbox: tokio::sync::mpsc::UnboundedReceiver<Message>,
    ready: std::sync::mpsc::Sender<Result<usize, ServeError>>,
) -> Result<ShardThread, ServeError> {
    std::thread::Builder::new()
        .name(format!("fjord-shard-{me}"))
        .spawn(move || {
            fjord_storage::io::block_on(run_shard(config, shards, listening, inbox, ready))
        })
        .map_err(|source| ServeError::Thread { shard: me, source })
}

/// Says on stdout (and in the log) that every shard serves at `local`.
fn announce(local: SocketAddr, shards: usize) {
    info!(address = %local, shards, "listening");
    println!("fjord: listening on {local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
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
