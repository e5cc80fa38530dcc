//! One shard's life on its own thread and runtime: the broker opened, its background tasks
//! and the inbox of other shards' requests started, connections accepted (or taken from the
//! shard that accepted them) until shutdown, then drained, and the logs closed. Shard 0 also
//! handles signals and stops the others first at shutdown.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use fjord_storage::io::{Listener, Stream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::connection::serve_connection;
use super::connections::{Admitted, Connections, Handover};
use super::error::ServeError;
use super::inbox;
use super::shutdown::Shutdown;
use crate::broker::shards::{Message, Shards};
use crate::broker::Broker;
use crate::config::BrokerConfig;

/// How long shutdown waits for in-flight requests before closing the logs anyway.
const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;
/// Pause after a failed accept before the next.
const ACCEPT_RETRY_MS: u64 = 10;

/// A shard's side of the port: its listener, and the connections others hand it.
pub(super) struct Listening {
    pub(super) listener: std::net::TcpListener,
    pub(super) connections: Arc<Connections>,
    pub(super) handed: UnboundedReceiver<Handover>,
}

/// One shard: its runtime's broker, listener and tasks. Reports on `ready` once it serves
/// (or why it could not open).
pub(super) async fn run_shard(
    config: BrokerConfig,
    shards: Shards,
    listening: Listening,
    inbox: UnboundedReceiver<Message>,
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
    serve_inbox(&broker, inbox, &shutdown, &stopped);
    let tasks = Background::start(&broker, me);
    if me == 0 {
        // Installed here, before this shard reports ready (and `serve` prints that it
        // listens), not in the task: a SIGTERM right after the listening line must shut the
        // broker down cleanly, not kill it.
        shut_down_on_signal(&shutdown);
    }
    let _ = ready.send(Ok(me));

    accept_until_shutdown(&broker, &listener, &connections, &mut handed, &shutdown).await;
    stop_taking_connections(&listener, &connections, handed, me);
    // Let in-flight requests finish; idle connections stop at their next read.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX);
    let busy = shutdown.drained_by(deadline).await;
    if busy > 0 {
        warn!(connections = busy, "shutdown: connections still busy, closing logs anyway");
    }
    if me == 0 {
        // The others first: their in-flight requests may still need shard 0.
        broker.shards.shut_down_others().await;
    }
    tasks.abort();
    broker.close().await;
    stopped.notify_waiters();
    info!(shard = me, "shut down cleanly");
    Ok(())
}

/// Serves other shards' requests for this shard's partitions; a Shutdown from shard 0 stops
/// this shard and is acknowledged once its partitions are closed (`stopped`).
fn serve_inbox(
    broker: &Rc<Broker>,
    inbox: UnboundedReceiver<Message>,
    shutdown: &Rc<Shutdown>,
    stopped: &Rc<Notify>,
) {
    let (shutdown, stopped) = (Rc::clone(shutdown), Rc::clone(stopped));
    fjord_storage::io::spawn(inbox::serve_inbox(Rc::clone(broker), inbox, move || {
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

/// A shard's background tasks, aborted at shutdown once its connections are drained.
struct Background {
    upkeep: tokio::task::JoinHandle<()>,
    /// Shard 0's group coordinator timers.
    group_timers: Option<tokio::task::JoinHandle<()>>,
    /// In a cluster: this broker's duty and its follower fetchers.
    replication: Option<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>,
}

impl Background {
    fn start(broker: &Rc<Broker>, me: usize) -> Background {
        if me == 0 {
            let broker = Rc::clone(broker);
            fjord_storage::io::spawn(async move {
                crate::handlers::txn::start_if_present(&broker).await
            });
        }
        let upkeep = fjord_storage::io::spawn(Rc::clone(broker).run_upkeep());
        let group_timers =
            (me == 0).then(|| fjord_storage::io::spawn(broker.coordinator().run_timers()));
        let replication = broker.cluster.is_some().then(|| {
            (
                fjord_storage::io::spawn(crate::replication::duty::run(Rc::clone(broker))),
                fjord_storage::io::spawn(crate::replication::fetcher::run(Rc::clone(broker))),
            )
        });
        Background { upkeep, group_timers, replication }
    }

    fn abort(self) {
        self.upkeep.abort();
        if let Some(timers) = self.group_timers {
            timers.abort();
        }
        if let Some((cluster, fetchers)) = self.replication {
            cluster.abort();
            fetchers.abort();
        }
    }
}

/// Triggers `shutdown` on the first SIGTERM or SIGINT.
fn shut_down_on_signal(shutdown: &Rc<Shutdown>) {
    let shutdown = Rc::clone(shutdown);
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

/// Serves, each in its own task, the connections this shard accepts and keeps and those
/// other shards hand it, until shutdown.
async fn accept_until_shutdown(
    broker: &Rc<Broker>,
    listener: &Listener,
    connections: &Arc<Connections>,
    handed: &mut UnboundedReceiver<Handover>,
    shutdown: &Rc<Shutdown>,
) {
    let me = broker.shards.me;
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
                    Ok((stream, peer)) => match keep_or_hand_over(connections, me, stream, peer) {
                        Some(kept) => kept,
                        None => continue,
                    },
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                        continue;
                    }
                }
            }
            // Accepted by another shard, admitted and counted there, served here.
            Some((stream, peer, admitted)) = handed.recv() => (Stream::from_std(stream), peer, admitted),
            _ = shutdown.wait() => return,
        };
        spawn_connection(broker, shutdown, stream, peer, admitted);
    }
}

/// Admits a connection this shard accepted: the connection if this shard serves it; `None`
/// if it was refused (closed) or handed to the shard that serves it.
fn keep_or_hand_over(
    connections: &Arc<Connections>,
    me: usize,
    stream: Stream,
    peer: std::net::SocketAddr,
) -> Option<(Stream, std::net::SocketAddr, Admitted)> {
    let Some(admitted) = connections.admit(me, peer) else {
        drop(stream);
        return None;
    };
    if admitted.shard() == me {
        Some((stream, peer, admitted))
    } else {
        connections.hand_over(admitted, stream, peer);
        None
    }
}

/// Serves a connection in a task of its own, counted in `shutdown` while it lasts.
fn spawn_connection(
    broker: &Rc<Broker>,
    shutdown: &Rc<Shutdown>,
    stream: Stream,
    peer: std::net::SocketAddr,
    admitted: Admitted,
) {
    let me = broker.shards.me;
    let _ = stream.set_nodelay(true);
    shutdown.connection_opened();
    let broker = Rc::clone(broker);
    let shutdown = Rc::clone(shutdown);
    fjord_storage::io::spawn(async move {
        let _admitted = admitted;
        debug!(%peer, shard = me, "connection opened");
        serve_connection(&broker, &stream, peer, &shutdown).await;
        let _ = stream.shutdown();
        debug!(%peer, shard = me, "connection closed");
        shutdown.connection_closed();
    });
}

/// No more connections here: none is handed to this shard from now on, those handed and
/// not taken are closed (uncounted as they drop), and the listener leaves the port, so the
/// kernel gives new connections to the shards still serving (or refuses them).
fn stop_taking_connections(
    listener: &Listener,
    connections: &Connections,
    mut handed: UnboundedReceiver<Handover>,
    me: usize,
) {
    connections.stop(me);
    handed.close();
    while handed.try_recv().is_ok() {}
    if let Err(error) = listener.stop_listening() {
        debug!(%error, "shutdown: the listener did not stop listening");
    }
}
