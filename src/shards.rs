//! Thread per core: `--shards N` runs N threads, each with its own io_uring runtime and its
//! own `Broker` that owns a share of the partitions (`owner`). Every shard accepts
//! connections on the same port (SO_REUSEPORT). A request is answered by the shard whose
//! connection it arrived on: the parts that touch partitions of other shards go to their
//! owners over channels (Produce, Fetch and ListOffsets per partition), and requests about
//! the cluster as a whole (Metadata, topic administration, consumer groups, producer ids)
//! go whole to shard 0. No locks on the data path: a partition is only ever touched by its
//! owner's thread; fetched record bytes cross threads as duplicated file descriptors, so
//! they are still spliced from the file to the socket.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use fjord_storage::io::File;
use fjord_storage::FileRegion;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::warn;

use crate::broker::Broker;
use crate::handlers::{self, PartitionOutcome, PartitionRead, Reply};

/// Shards at most: one per core on any machine Fjord expects.
pub const SHARDS_MAX: usize = 256;

/// The shard that owns a partition. Internal topics (consumer offsets) live on shard 0 with
/// the group coordinator.
pub fn owner(count: usize, topic: &str, index: i32) -> usize {
    if count <= 1 || topic.starts_with("__") {
        return 0;
    }
    let hash = crate::coordinator::java_string_hash(topic) as u32 as usize;
    hash.wrapping_add(index.max(0) as usize) % count
}

/// A fetched region crossing threads: the segment file as a duplicated descriptor.
pub struct RemoteRegion {
    fd: OwnedFd,
    path: PathBuf,
    segment_base_offset: i64,
    position: u64,
    len: u64,
    first_offset: i64,
    next_offset: i64,
}

pub struct RemoteRead {
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    regions: Vec<RemoteRegion>,
    hw_moved: bool,
}

/// What a forwarded whole request came to.
pub enum FrameReply {
    Frame(Bytes),
    Nothing,
    Close(String),
}

pub enum Message {
    Produce { topic: String, index: i32, records: Option<Bytes>, acks: i16, timeout_ms: i32, reply: oneshot::Sender<PartitionOutcome> },
    Fetch { topic: String, index: i32, offset: i64, limit: u64, replica: i32, epoch: i32, reply: oneshot::Sender<RemoteRead> },
    ListOffset { topic: String, index: i32, timestamp: i64, reply: oneshot::Sender<(i16, i64, i64)> },
    Frame { payload: Bytes, peer: Option<SocketAddr>, reply: oneshot::Sender<FrameReply> },
    TopicsChanged { reply: oneshot::Sender<()> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// This shard's view of the others.
pub struct Shards {
    pub me: usize,
    pub count: usize,
    peers: Vec<mpsc::UnboundedSender<Message>>,
    /// Woken on every append on any shard, for fetches waiting on `min_bytes`.
    pub data_arrived: Arc<Notify>,
}

fn gone<T>(_: T) -> ResponseError {
    ResponseError::UnknownServerError
}

impl Shards {
    pub fn single() -> Shards {
        Shards { me: 0, count: 1, peers: Vec::new(), data_arrived: Arc::new(Notify::new()) }
    }

    pub fn new(me: usize, peers: Vec<mpsc::UnboundedSender<Message>>, data_arrived: Arc<Notify>) -> Shards {
        Shards { me, count: peers.len(), peers, data_arrived }
    }

    /// Whether this shard opens the partition.
    pub fn owns(&self, topic: &str, index: i32) -> bool {
        owner(self.count, topic, index) == self.me
    }

    /// The shard that owns the partition, if it is another one.
    pub fn owner_of(&self, topic: &str, index: i32) -> Option<usize> {
        if self.count <= 1 {
            return None;
        }
        let shard = owner(self.count, topic, index);
        (shard != self.me).then_some(shard)
    }

    /// Whether whole cluster-level requests go to shard 0 from here.
    pub fn forwards_to_first(&self) -> bool {
        self.count > 1 && self.me != 0
    }

    fn send(&self, shard: usize, message: Message) -> bool {
        self.peers[shard].send(message).is_ok()
    }

    pub async fn produce(&self, shard: usize, topic: String, index: i32, records: Option<Bytes>, acks: i16, timeout_ms: i32) -> PartitionOutcome {
        let (reply, answer) = oneshot::channel();
        if !self.send(shard, Message::Produce { topic, index, records, acks, timeout_ms, reply }) {
            return PartitionOutcome { error: Some((ResponseError::UnknownServerError, format!("shard {shard} is gone"))), base_offset: -1, log_start_offset: -1 };
        }
        answer.await.unwrap_or_else(|_| PartitionOutcome { error: Some((ResponseError::UnknownServerError, format!("shard {shard} dropped the request"))), base_offset: -1, log_start_offset: -1 })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(&self, shard: usize, topic: String, index: i32, offset: i64, limit: u64, replica: i32, epoch: i32) -> PartitionRead {
        let (reply, answer) = oneshot::channel();
        let failed = |code: ResponseError| PartitionRead { error: code.code(), high_watermark: -1, log_start_offset: -1, regions: Vec::new(), hw_moved: false };
        if !self.send(shard, Message::Fetch { topic, index, offset, limit, replica, epoch, reply }) {
            return failed(ResponseError::UnknownServerError);
        }
        let Ok(remote) = answer.await.map_err(gone) else { return failed(ResponseError::UnknownServerError) };
        PartitionRead {
            error: remote.error,
            high_watermark: remote.high_watermark,
            log_start_offset: remote.log_start_offset,
            hw_moved: remote.hw_moved,
            regions: remote
                .regions
                .into_iter()
                .map(|r| FileRegion {
                    file: Rc::new(File::from_owned_fd(r.fd, r.path)),
                    segment_base_offset: r.segment_base_offset,
                    position: r.position,
                    len: r.len,
                    first_offset: r.first_offset,
                    next_offset: r.next_offset,
                })
                .collect(),
        }
    }

    pub async fn list_offset(&self, shard: usize, topic: String, index: i32, timestamp: i64) -> (i16, i64, i64) {
        let (reply, answer) = oneshot::channel();
        if !self.send(shard, Message::ListOffset { topic, index, timestamp, reply }) {
            return (ResponseError::UnknownServerError.code(), -1, -1);
        }
        answer.await.unwrap_or((ResponseError::UnknownServerError.code(), -1, -1))
    }

    /// Sends a whole request to shard 0 and returns its answer.
    pub async fn forward(&self, payload: Bytes, peer: Option<SocketAddr>) -> FrameReply {
        let (reply, answer) = oneshot::channel();
        if !self.send(0, Message::Frame { payload, peer, reply }) {
            return FrameReply::Close("shard 0 is gone".to_string());
        }
        answer.await.unwrap_or_else(|_| FrameReply::Close("shard 0 dropped the request".to_string()))
    }

    /// Shard 0, after creating or deleting topics: every other shard opens or drops its
    /// share before the client hears back.
    pub async fn topics_changed(&self) {
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            if self.send(shard, Message::TopicsChanged { reply }) {
                let _ = answer.await;
            }
        }
    }

    /// Shard 0 at shutdown: every other shard drains and closes its partitions first.
    pub async fn shut_down_others(&self) {
        for shard in (0..self.count).filter(|s| *s != self.me) {
            let (reply, answer) = oneshot::channel();
            if self.send(shard, Message::Shutdown { reply }) {
                let _ = answer.await;
            }
        }
    }
}

/// Serves what other shards send, until the channel closes. `on_shutdown` is run for a
/// Shutdown message before it is acknowledged.
pub async fn serve_inbox<F, Fut>(broker: Rc<Broker>, mut inbox: mpsc::UnboundedReceiver<Message>, on_shutdown: F)
where
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let on_shutdown = Rc::new(on_shutdown);
    while let Some(message) = inbox.recv().await {
        let broker = Rc::clone(&broker);
        let on_shutdown = Rc::clone(&on_shutdown);
        fjord_storage::io::spawn(async move {
            match message {
                Message::Produce { topic, index, records, acks, timeout_ms, reply } => {
                    let outcome = handlers::produce_partition(broker, topic, index, records, acks, timeout_ms).await;
                    let _ = reply.send(outcome);
                }
                Message::Fetch { topic, index, offset, limit, replica, epoch, reply } => {
                    let read = handlers::read_partition(&broker, &topic, index, offset, limit, replica, epoch).await;
                    let mut regions = Vec::with_capacity(read.regions.len());
                    let mut error = read.error;
                    for region in read.regions {
                        match region.file.dup_fd() {
                            Ok(fd) => regions.push(RemoteRegion {
                                fd,
                                path: region.file.path().to_path_buf(),
                                segment_base_offset: region.segment_base_offset,
                                position: region.position,
                                len: region.len,
                                first_offset: region.first_offset,
                                next_offset: region.next_offset,
                            }),
                            Err(e) => {
                                warn!(%e, "cannot hand a segment file to another shard");
                                error = ResponseError::KafkaStorageError.code();
                                regions.clear();
                                break;
                            }
                        }
                    }
                    let _ = reply.send(RemoteRead { error, high_watermark: read.high_watermark, log_start_offset: read.log_start_offset, regions, hw_moved: read.hw_moved });
                }
                Message::ListOffset { topic, index, timestamp, reply } => {
                    let _ = reply.send(handlers::list_offset(&broker, &topic, index, timestamp).await);
                }
                Message::Frame { payload, peer, reply } => {
                    let answer = match crate::protocol::parse_request(payload) {
                        Err(error) => FrameReply::Close(error.to_string()),
                        Ok(mut request) => {
                            request.peer = peer;
                            match handlers::dispatch(&broker, request).await {
                                Reply::Frame(bytes) => FrameReply::Frame(bytes),
                                Reply::Nothing => FrameReply::Nothing,
                                Reply::Close(reason) => FrameReply::Close(reason),
                                Reply::Fetch(_) => FrameReply::Close("a Fetch cannot be forwarded whole".to_string()),
                            }
                        }
                    };
                    let _ = reply.send(answer);
                }
                Message::TopicsChanged { reply } => {
                    if let Err(error) = broker.reload_topics().await {
                        warn!(%error, "cannot reload topics");
                    }
                    let _ = reply.send(());
                }
                Message::Shutdown { reply } => {
                    on_shutdown().await;
                    let _ = reply.send(());
                }
            }
        });
    }
}
