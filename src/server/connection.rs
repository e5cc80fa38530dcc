//! One connection: requests read and started in order, answers written in request order.
//!
//! It reads on past a Produce once that Produce's appends have taken their turns in the
//! connection's per-partition order (`AppendOrder`), so the next Produce appends while this
//! one's appends run on other shards or wait for fdatasync or replicas (group commit); after
//! any other request it waits until the answer is written, as Kafka does, and any other
//! request starts once every earlier append is over. About `PIPELINE_MAX` Produce requests
//! are read but unanswered at most.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::BytesMut;
use fjord_storage::io::{PipeStream, SplicePipe, Stream, READ_CHUNK_BYTES};
use kafka_protocol::messages::ApiKey;
use tokio::sync::{oneshot, Notify};
use tracing::{debug, warn};

use super::frame::{read_frame, FrameRead};
use super::shutdown::Shutdown;
use crate::broker::request_memory::{RequestMemory, Reservation};
use crate::broker::Broker;
use crate::handlers::{dispatch, AppendOrder, FetchResponse, Piece, Pipeline, Reply};
use crate::protocol::{parse_request, Request};

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
    _budget: Reservation<'a>,
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

/// Serves one connection until it closes or the shard shuts down.
pub(super) async fn serve_connection(
    broker: &Rc<Broker>,
    stream: &Stream,
    peer: SocketAddr,
    shutdown: &Shutdown,
) {
    let budget = &*broker.request_memory;
    let (answers, queue) = tokio::sync::mpsc::channel(PIPELINE_MAX);
    let in_flight = InFlight::default();
    tokio::join!(
        read_requests(broker, budget, stream, peer, shutdown, answers, &in_flight),
        write_answers(stream, peer, queue, &in_flight)
    );
}

/// Reads and starts requests in order; ends at shutdown, when the peer closes, on a bad
/// frame, or once a request's answer closes the connection.
async fn read_requests<'a>(
    broker: &'a Rc<Broker>,
    budget: &'a RequestMemory,
    stream: &Stream,
    peer: SocketAddr,
    shutdown: &Shutdown,
    answers: tokio::sync::mpsc::Sender<Answer<'a>>,
    in_flight: &InFlight,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let reserve = budget.units_total() as usize / PIPELINE_BUDGET_RESERVE_DIVISOR;
    let mut pipelining = false;
    // This connection's order of appends per partition, and the ends of the appends of
    // Produce requests started but maybe not over (at most about `PIPELINE_MAX`).
    let order = Rc::new(AppendOrder::default());
    let mut appending: Vec<oneshot::Receiver<()>> = Vec::new();
    loop {
        if shutdown.requested() {
            return;
        }
        let Some(()) = may_read_on(budget, shutdown, in_flight, pipelining, reserve).await else {
            return;
        };
        let Some((request, share)) =
            next_request(broker, budget, stream, &mut buf, peer, shutdown).await
        else {
            return;
        };
        let api = request.api_key;
        let Some(()) = after_earlier_appends(api, &mut appending, shutdown).await else {
            return;
        };
        let reply = start(broker, request, &order, &mut appending).await;
        pipelining = matches!(reply, Pending::Later(_));
        let closing = matches!(reply, Pending::Ready(Reply::Close(_)));
        in_flight.answers.set(in_flight.answers.get() + 1);
        if answers.send(Answer { api, reply, _budget: share }).await.is_err() || closing {
            // The writer stopped (the connection is closing), or will once it gets here.
            return;
        }
    }
}

/// Waits until the connection may read its next request; `None` at shutdown. It reads past
/// unanswered requests only behind a Produce (`pipelining`), and only while the budget
/// keeps its `reserve`; otherwise it waits until every answer is written.
async fn may_read_on(
    budget: &RequestMemory,
    shutdown: &Shutdown,
    in_flight: &InFlight,
    pipelining: bool,
    reserve: usize,
) -> Option<()> {
    while in_flight.answers.get() > 0 && !(pipelining && budget.units_free() >= reserve) {
        let written = in_flight.written.notified();
        tokio::select! {
            _ = written => {}
            _ = shutdown.wait() => return None,
        }
    }
    Some(())
}

/// The next request and its share of the request memory budget; `None` at shutdown, when
/// the peer closes, or on a bad frame or request (logged).
async fn next_request<'a>(
    broker: &Broker,
    budget: &'a RequestMemory,
    stream: &Stream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    shutdown: &Shutdown,
) -> Option<(Request, Reservation<'a>)> {
    let frame = tokio::select! {
        frame = read_frame(stream, buf, broker.config.request_bytes_max, budget) => frame,
        _ = shutdown.wait() => return None,
    };
    let (payload, share) = match frame {
        Ok(FrameRead::Frame(payload, share)) => (payload, share),
        Ok(FrameRead::Closed) => return None,
        Err(reason) => {
            warn!(%peer, %reason, "closing connection: bad frame");
            return None;
        }
    };
    match parse_request(payload) {
        Ok(mut request) => {
            request.peer = Some(peer);
            Some((request, share))
        }
        Err(error) => {
            warn!(%peer, %error, "closing connection: bad request");
            None
        }
    }
}

/// Lets a request of kind `api` start after the connection's earlier appends: a Produce at
/// once (the ends already over are forgotten), any other request once every earlier append
/// is over (`None` if shutdown comes first). A Fetch on the same connection reads them, as
/// if each Produce had been answered first.
async fn after_earlier_appends(
    api: ApiKey,
    appending: &mut Vec<oneshot::Receiver<()>>,
    shutdown: &Shutdown,
) -> Option<()> {
    if api == ApiKey::Produce {
        appending
            .retain_mut(|end| matches!(end.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    } else {
        for end in appending.drain(..) {
            tokio::select! {
                _ = end => {}
                _ = shutdown.wait() => return None,
            }
        }
    }
    Some(())
}

/// Starts a request's handler and waits until the request has taken effect: until it is
/// answered, or for a Produce with acks 1 or all, until its appends have taken their turns
/// in the connection's `order` (a later Produce's append to a partition then follows this
/// one's, and any other request waits for them to be over: the end of its appends is
/// pushed on `appending`).
async fn start(
    broker: &Rc<Broker>,
    request: Request,
    order: &Rc<AppendOrder>,
    appending: &mut Vec<oneshot::Receiver<()>>,
) -> Pending {
    let (ordered, is_ordered) = oneshot::channel();
    let (appended, is_appended) = oneshot::channel();
    let pipeline = Pipeline { order: Rc::clone(order), ordered, appended };
    let mut task = fjord_storage::io::spawn({
        let broker = Rc::clone(broker);
        async move { dispatch(&broker, request, Some(pipeline)).await }
    });
    let reply = tokio::select! {
        biased;
        answered = &mut task => Pending::Ready(handler_reply(answered)),
        Ok(()) = is_ordered => Pending::Later(task),
    };
    if matches!(reply, Pending::Later(_)) {
        appending.push(is_appended);
    }
    reply
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
