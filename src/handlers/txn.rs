//! Transaction APIs: InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, WriteTxnMarkers, DescribeTransactions and
//! ListTransactions. The coordinator's state machine is in `txn/`; this file translates
//! requests and responses, and gives the coordinator its markers (`BrokerTxnEnv`): each
//! partition's owning shard appends the control batch (`write_marker_here`).
//!
//! On one broker the coordinator starts with the broker when `__transaction_state` exists,
//! or at the first transactional request, which creates the topic (as Kafka creates it on
//! the first FindCoordinator for a transaction). In a cluster it starts with the broker and
//! coordinates the ids of the `__transaction_state` partitions this broker leads; markers
//! for partitions other brokers lead go to them as WriteTxnMarkers.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::errors::{append_error_code, code, storage_error_code};
use super::reply::{frame, HandlerError, Reply};
use crate::broker::outcome::PartitionOutcome;
use crate::broker::Broker;
use crate::group::{Committed, OFFSETS_TOPIC, OFFSET_METADATA_BYTES_MAX};
use crate::partition::Partition;
use crate::protocol::{decode_body, Request};
use crate::replication::fetcher::Connection;
use crate::txn::{
    txn_topic_configs, LocalFuture, Markers, TxnCheck, TxnConfig, TxnCoordinator, TxnEnv, TxnWrite,
    TXN_TOPIC,
};
use fjord_storage::batch::BatchHeader;

/// Markers one WriteTxnMarkers may carry, and partitions one transaction request may name.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;
/// The AddPartitionsToTxn version of a partition leader's check (verify_only, or the add of
/// transactions v2: v4+ makes the coordinator count the transaction as v2).
const LEADER_CHECK_VERSION: i16 = 4;
/// The WriteTxnMarkers version brokers send each other (Kafka 4 serves 1 only).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long a marker waits for the in-sync replicas.
const MARKER_REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The broker as the coordinator needs it: markers written here, or sent to the leaders
/// of other brokers with WriteTxnMarkers (one connection per broker, kept).
struct BrokerTxnEnv {
    broker: Weak<Broker>,
    peers: Rc<RefCell<HashMap<i32, Connection>>>,
}

impl TxnEnv for BrokerTxnEnv {
    fn write_markers(&self, markers: Markers) -> LocalFuture<Vec<Option<ResponseError>>> {
        let broker = self.broker.clone();
        let peers = Rc::clone(&self.peers);
        Box::pin(async move {
            let Some(broker) = broker.upgrade() else {
                return vec![
                    Some(ResponseError::CoordinatorNotAvailable);
                    markers.partitions.len()
                ];
            };
            // A partition whose task is lost is retried, as one without its leader.
            let mut results =
                vec![Some(ResponseError::NotLeaderOrFollower); markers.partitions.len()];
            // All at once: this broker's partitions each in a task of its own (their appends
            // and fdatasyncs overlap, on their shards), each other broker's in one request.
            let markers = Rc::new(markers);
            let mut local = Vec::new();
            let mut remote: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
            for (slot, (topic, index)) in markers.partitions.iter().enumerate() {
                match leader_elsewhere(&broker, topic, *index) {
                    Some(leader) => remote.entry(leader).or_default().push(slot),
                    None => {
                        let (broker, markers) = (Rc::clone(&broker), Rc::clone(&markers));
                        let (topic, index) = (topic.clone(), *index);
                        let task =
                            async move { write_marker(&broker, &topic, index, &markers).await };
                        local.push((slot, fjord_storage::io::spawn(task)));
                    }
                }
            }
            let sent: Vec<_> = remote
                .into_iter()
                .map(|(leader, slots)| {
                    let (broker, markers, peers) =
                        (Rc::clone(&broker), Rc::clone(&markers), Rc::clone(&peers));
                    let task = async move {
                        let answers = send_markers(&broker, &peers, leader, &markers, &slots).await;
                        (slots, answers)
                    };
                    fjord_storage::io::spawn(task)
                })
                .collect();
            for (slot, task) in local {
                results[slot] = task.await.unwrap_or(Some(ResponseError::UnknownServerError));
            }
            for task in sent {
                if let Ok((slots, answers)) = task.await {
                    for (slot, answer) in slots.into_iter().zip(answers) {
                        results[slot] = answer;
                    }
                }
            }
            results
        })
    }

    fn allocate_producer_id(&self) -> LocalFuture<Option<i64>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            let broker = broker.upgrade()?;
            match broker.allocate_producer_id().await {
                Ok(id) => Some(id),
                Err(error) => {
                    warn!(%error, "cannot allocate a producer id");
                    None
                }
            }
        })
    }
}

/// In a cluster, the partition's leader when it is another broker (`None`: this one, or
/// unknown, which the local write answers).
fn leader_elsewhere(broker: &Broker, topic: &str, index: i32) -> Option<i32> {
    let cluster = broker.cluster.as_ref()?;
    let leader = cluster.state.borrow().partition(topic, index).map(|p| p.leader)?;
    (leader >= 0 && leader != broker.config.broker_id).then_some(leader)
}

/// Sends the markers of `slots` to broker `leader` (WriteTxnMarkers v1); each partition's
/// error, NOT_LEADER_OR_FOLLOWER for all when the broker cannot be reached (retried).
async fn send_markers(
    broker: &Broker,
    peers: &RefCell<HashMap<i32, Connection>>,
    leader: i32,
    markers: &Markers,
    slots: &[usize],
) -> Vec<Option<ResponseError>> {
    let unreachable = || vec![Some(ResponseError::NotLeaderOrFollower); slots.len()];
    let Some(cluster) = broker.cluster.as_ref() else { return unreachable() };
    let mut request = WriteTxnMarkersRequest::default();
    let mut marker = write_txn_markers_request::WritableTxnMarker::default();
    marker.producer_id = ProducerId(markers.producer_id);
    marker.producer_epoch = markers.producer_epoch;
    marker.transaction_result = markers.commit;
    marker.coordinator_epoch = markers.coordinator_epoch;
    for &slot in slots {
        let (topic, index) = &markers.partitions[slot];
        if marker.topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
            let mut entry = write_txn_markers_request::WritableTxnMarkerTopic::default();
            entry.name = TopicName(topic.clone().into());
            marker.topics.push(entry);
        }
        marker.topics.last_mut().expect("pushed").partition_indexes.push(*index);
    }
    request.markers.push(marker);
    let connection = peers.borrow_mut().remove(&leader);
    let mut connection = match connection {
        Some(connection) => connection,
        None => {
            let Some(address) =
                cluster.address_of(leader).and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            else {
                return unreachable();
            };
            match Connection::connect(address).await {
                Ok(connection) => connection,
                Err(error) => {
                    warn!(broker = leader, %error, "cannot reach a partition leader for transaction markers");
                    return unreachable();
                }
            }
        }
    };
    let client_id = format!("fjord-txn-coordinator-{}", broker.config.broker_id);
    let answer: Result<WriteTxnMarkersResponse, _> = connection
        .call(ApiKey::WriteTxnMarkers, WRITE_TXN_MARKERS_VERSION, &request, &client_id)
        .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            warn!(broker = leader, %error, "WriteTxnMarkers to a partition leader failed");
            return unreachable();
        }
    };
    peers.borrow_mut().insert(leader, connection);
    let answered = |topic: &str, index: i32| {
        response
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == index)
            .map(|p| ResponseError::try_from_code(p.error_code))
    };
    slots
        .iter()
        .map(|&slot| {
            let (topic, index) = &markers.partitions[slot];
            answered(topic, *index).unwrap_or(Some(ResponseError::UnknownServerError))
        })
        .collect()
}

/// A marker on a partition of whichever shard owns it.
async fn write_marker(
    broker: &Broker,
    topic: &str,
    index: i32,
    m: &Markers,
) -> Option<ResponseError> {
    match broker.shards.owner_of(topic, index) {
        Some(shard) if shard != broker.shards.me => {
            broker
                .shards
                .write_marker(
                    shard,
                    topic.to_string(),
                    index,
                    m.producer_id,
                    m.producer_epoch,
                    m.commit,
                    m.coordinator_epoch,
                )
                .await
        }
        _ => {
            write_marker_here(
                broker,
                topic,
                index,
                m.producer_id,
                m.producer_epoch,
                m.commit,
                m.coordinator_epoch,
            )
            .await
        }
    }
}

/// On the partition's owning shard: appends the marker as its leader, durably and
/// replicated; on an offsets partition the group coordinator applies or drops the
/// transaction's offsets.
pub(crate) async fn write_marker_here(
    broker: &Broker,
    topic: &str,
    index: i32,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Option<ResponseError> {
    let partition = match super::list_offsets::led_here(broker, topic, index).await {
        Ok(partition) => partition,
        Err(error) => return Some(error),
    };
    let leader_epoch = partition.replica.leader_epoch().max(0);
    let offset = match partition
        .write_marker(producer_id, epoch, commit, coordinator_epoch, leader_epoch)
        .await
    {
        Ok(offset) => offset,
        Err(error) => {
            warn!(partition = ?partition, producer_id, epoch, ?error, "transaction marker refused");
            return Some(append_error_code(&error));
        }
    };
    // Synced as an acks=all produce is (`--fsync-acks-all`).
    if broker.config.fsync_acks_all {
        if let Err(error) = partition.flush_to(offset + 1).await {
            return Some(storage_error_code(&error));
        }
    }
    if let Err(wait) = partition
        .wait_replicated(offset + 1, MARKER_REPLICATION_WAIT, broker.config.min_insync_replicas)
        .await
    {
        warn!(partition = ?partition, ?wait, "transaction marker not replicated in time");
        return Some(ResponseError::NotEnoughReplicas);
    }
    if topic == OFFSETS_TOPIC {
        broker.coordinator().complete_txn_offsets(index as usize, producer_id, commit);
    }
    // read_committed consumers parked on the partition may read further now.
    broker.data_arrived.notify_waiters();
    None
}

/// Produce v12 and later come from producers of transactions v2: the leader adds the
/// partition to the transaction itself (KIP-890 part 2).
const PRODUCE_ADDS_FROM: i16 = 12;
/// Produce v11 and later know TRANSACTION_ABORTABLE.
const PRODUCE_ABORTABLE_FROM: i16 = 11;
/// TxnOffsetCommit v5 and later add the offsets partition to the transaction themselves.
const TXN_OFFSET_COMMIT_ADDS_FROM: i16 = 5;
/// EndTxn v5 and later end transactions v2: the epoch goes up, the answer carries it.
const END_TXN_BUMPS_FROM: i16 = 5;

/// KIP-890, the partition leader's check: the first transactional batch of a producer in
/// a partition (no transaction of its, in its epoch, open here) is appended only if the
/// coordinator says the partition is in the producer's transaction (part 1: AddPartitionsToTxn
/// with verify_only) or adds it there (part 2, Produce v12+: AddPartitionsToTxn v4+ without
/// verify_only). The refusals are Kafka's: a partition not added is INVALID_TXN_STATE
/// (TRANSACTION_ABORTABLE from Produce v11), a fenced producer INVALID_PRODUCER_EPOCH, and
/// NOT_ENOUGH_REPLICAS (retried by clients) when the coordinator cannot answer now.
pub(crate) async fn verify_transactional(
    broker: &Rc<Broker>,
    partition: &Partition,
    txn: &TxnWrite,
    records: &[u8],
) -> Option<PartitionOutcome> {
    let header = BatchHeader::view(records)?;
    if !header.is_transactional() || header.is_control() {
        return None;
    }
    let (producer_id, epoch) = (header.producer_id.get(), header.producer_epoch.get());
    if partition.joins_open_transaction(producer_id, epoch) {
        return None;
    }
    let add = txn.request_version >= PRODUCE_ADDS_FROM;
    let sequence = header.base_sequence.get();
    if add && sequence != 0 && partition.producers.borrow().epoch_of(producer_id).is_none() {
        // Transactions v2 start every transaction at sequence 0 (a new epoch): a later
        // batch found first here is one pipelined behind a first batch that was refused
        // and is being retried. Taking it (a producer unknown here may start at any
        // sequence) would leave that retry out of order for good; the client retries this
        // one after it.
        return Some(PartitionOutcome::refused(
            ResponseError::OutOfOrderSequenceNumber,
            format!("the first batch of producer {producer_id}'s transaction here starts at sequence {sequence}, not 0"),
        ));
    }
    let check =
        TxnCheck { transactional_id: Arc::clone(&txn.transactional_id), producer_id, epoch, add };
    let Some(error) = check_partition(broker, check, &partition.topic, partition.index).await
    else {
        partition.txn_verified(producer_id, epoch);
        return None;
    };
    let (code, why) = match error {
        ResponseError::TransactionAbortable if txn.request_version >= PRODUCE_ABORTABLE_FROM => (
            ResponseError::TransactionAbortable,
            "Partition was not added to the transaction".to_string(),
        ),
        ResponseError::TransactionAbortable => {
            (ResponseError::InvalidTxnState, "Partition was not added to the transaction".to_string())
        }
        ResponseError::ProducerFenced => {
            (ResponseError::InvalidProducerEpoch, "the producer's epoch is fenced".to_string())
        }
        ResponseError::NotCoordinator
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException => (
            ResponseError::NotEnoughReplicas,
            format!("Unable to verify the partition has been added to the transaction. Underlying error: {error:?}"),
        ),
        other => (other, format!("transaction verification: {other:?}")),
    };
    Some(PartitionOutcome::refused(code, why))
}

/// Asks the id's coordinator about `topic`-`index` (`TxnCheck`): `None` if it is (or is
/// now) in the producer's transaction.
async fn check_partition(
    broker: &Rc<Broker>,
    check: TxnCheck,
    topic: &str,
    index: i32,
) -> Option<ResponseError> {
    let coordinator = match &broker.cluster {
        None => broker.config.broker_id,
        Some(cluster) => {
            let state = cluster.state.borrow();
            let count = state.topics.get(TXN_TOPIC).map_or(0, |t| t.partitions.len());
            if count == 0 {
                return Some(ResponseError::CoordinatorNotAvailable);
            }
            let index = crate::txn::txn_partition_index(&check.transactional_id, count) as i32;
            state.partition(TXN_TOPIC, index).map_or(-1, |p| p.leader)
        }
    };
    if coordinator == broker.config.broker_id {
        if broker.shards.me == 0 {
            return check_here(broker, &check, topic, index).await;
        }
        return broker.shards.check_txn(check, topic.to_string(), index).await;
    }
    check_remotely(broker, coordinator, &check, topic, index).await
}

/// On shard 0: this broker's coordinator's answer.
pub(crate) async fn check_here(
    broker: &Rc<Broker>,
    check: &TxnCheck,
    topic: &str,
    index: i32,
) -> Option<ResponseError> {
    let coordinator = match coordinator(broker).await {
        Ok(coordinator) => coordinator,
        Err(error) => return Some(error),
    };
    let partitions = [(topic.to_string(), index)];
    let TxnCheck { transactional_id, producer_id, epoch, add } = check;
    if *add {
        return coordinator
            .add_partitions(transactional_id, *producer_id, *epoch, &partitions, true)
            .await
            .err();
    }
    match coordinator.verify_partitions(transactional_id, *producer_id, *epoch, &partitions) {
        Ok(each) => each.into_iter().next().flatten(),
        Err(error) => Some(error),
    }
}

thread_local! {
    /// This shard's connections to other brokers' coordinators, for verification.
    static COORDINATORS: RefCell<HashMap<i32, Connection>> = RefCell::new(HashMap::new());
}

/// Another broker's coordinator's answer (AddPartitionsToTxn v4, verify_only unless the
/// check adds).
async fn check_remotely(
    broker: &Broker,
    coordinator: i32,
    check: &TxnCheck,
    topic: &str,
    index: i32,
) -> Option<ResponseError> {
    let cluster = broker.cluster.as_ref()?;
    let mut request = AddPartitionsToTxnRequest::default();
    let mut txn = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
    txn.transactional_id = TransactionalId(check.transactional_id.to_string().into());
    txn.producer_id = ProducerId(check.producer_id);
    txn.producer_epoch = check.epoch;
    txn.verify_only = !check.add;
    let mut wanted = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    wanted.name = TopicName(topic.to_string().into());
    wanted.partitions = vec![index];
    txn.topics = vec![wanted];
    request.transactions = vec![txn];
    let connection = COORDINATORS.with(|peers| peers.borrow_mut().remove(&coordinator));
    let mut connection = match connection {
        Some(connection) => connection,
        None => {
            let address = cluster
                .address_of(coordinator)
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
            let Some(address) = address else {
                return Some(ResponseError::CoordinatorNotAvailable);
            };
            match Connection::connect(address).await {
                Ok(connection) => connection,
                Err(error) => {
                    warn!(broker = coordinator, %error, "cannot reach a transaction coordinator to verify a partition");
                    return Some(ResponseError::NetworkException);
                }
            }
        }
    };
    let client_id = format!("fjord-partition-leader-{}", broker.config.broker_id);
    let answer: Result<AddPartitionsToTxnResponse, _> = connection
        .call(ApiKey::AddPartitionsToTxn, LEADER_CHECK_VERSION, &request, &client_id)
        .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            warn!(broker = coordinator, %error, "transaction verification failed");
            return Some(ResponseError::NetworkException);
        }
    };
    COORDINATORS.with(|peers| peers.borrow_mut().insert(coordinator, connection));
    if response.error_code != 0 {
        return ResponseError::try_from_code(response.error_code);
    }
    let code = response
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .flat_map(|t| &t.results_by_partition)
        .find(|p| p.partition_index == index)
        .map_or(ResponseError::UnknownServerError.code(), |p| p.partition_error_code);
    ResponseError::try_from_code(code)
}

/// Starts the coordinator at shard 0's start: on one broker if `__transaction_state`
/// exists (transactions prepared before a stop are completed, open ones time out); in a
/// cluster always (it takes over the ids of the partitions this broker leads as the
/// cluster state says, `Broker::sync_txn_coordinator`).
pub(crate) async fn start_if_present(broker: &Rc<Broker>) {
    if broker.shards.me != 0 {
        return;
    }
    if broker.cluster.is_some() {
        let coordinator = started(broker);
        broker.sync_txn_coordinator().await;
        drop(coordinator);
    } else if broker.topic(TXN_TOPIC).is_some() {
        let _ = coordinator(broker).await;
    }
}

/// The coordinator object, made (with its timer) at the first call.
fn started(broker: &Rc<Broker>) -> (Rc<TxnCoordinator>, bool) {
    if let Some(coordinator) = broker.txn.get() {
        return (Rc::clone(coordinator), false);
    }
    let config = TxnConfig {
        max_timeout_ms: broker.config.transaction_max_timeout_ms,
        id_expiration_ms: i64::try_from(broker.config.transactional_id_expiration_ms)
            .unwrap_or(i64::MAX),
        check_interval_ms: broker.config.transaction_check_interval_ms,
        min_insync: broker.config.min_insync_replicas,
        sync: broker.config.fsync_acks_all,
    };
    let coordinator = TxnCoordinator::new(
        config.clone(),
        Rc::new(BrokerTxnEnv {
            broker: Rc::downgrade(broker),
            peers: Rc::new(RefCell::new(HashMap::new())),
        }),
    );
    let _ = broker.txn.set(Rc::clone(&coordinator));
    let timer = Rc::downgrade(&coordinator);
    fjord_storage::io::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(config.check_interval_ms)).await;
            let Some(coordinator) = timer.upgrade() else { return };
            coordinator.check_timeouts().await;
        }
    });
    (coordinator, true)
}

/// Creates `__transaction_state` if it does not exist: on one broker at once, in a cluster
/// through the cluster state (as Kafka creates it at the first FindCoordinator for a
/// transaction; clients retry until it has leaders).
async fn ensure_topic(broker: &Rc<Broker>) -> Result<(), ResponseError> {
    if broker.topic(TXN_TOPIC).is_some() {
        return Ok(());
    }
    let partitions = broker.config.transaction_state_partitions;
    let created = match &broker.cluster {
        None => broker.internal_topic(TXN_TOPIC, partitions, txn_topic_configs()).await.map(|_| ()),
        Some(cluster) => {
            let rf = cluster.file.replication_factor;
            match cluster.create_topic(TXN_TOPIC, partitions, rf, txn_topic_configs(), true).await {
                Err(crate::broker::topic::TopicError::AlreadyExists { .. }) => Ok(()),
                other => other,
            }
        }
    };
    created.map_err(|error| {
        warn!(%error, "cannot create {TXN_TOPIC}");
        ResponseError::CoordinatorNotAvailable
    })
}

/// The coordinator, started (and the topic created) at the first call;
/// COORDINATOR_LOAD_IN_PROGRESS while it replays its log, COORDINATOR_NOT_AVAILABLE in a
/// cluster until the topic has leaders.
pub(crate) async fn coordinator(broker: &Rc<Broker>) -> Result<Rc<TxnCoordinator>, ResponseError> {
    let (coordinator, new) = started(broker);
    if coordinator.is_loaded() {
        return Ok(coordinator);
    }
    if broker.cluster.is_some() {
        ensure_topic(broker).await?;
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if !new {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    ensure_topic(broker).await?;
    broker.sync_txn_coordinator().await;
    Ok(coordinator)
}

/// InitProducerId for a transactional producer.
pub(super) async fn init_producer_id(
    broker: &Rc<Broker>,
    request: &Request,
    body: &InitProducerIdRequest,
    transactional_id: &str,
) -> Result<(i64, i16), ResponseError> {
    let coordinator = coordinator(broker).await?;
    let expected = (request.version >= 3 && (body.producer_id.0 >= 0 || body.producer_epoch >= 0))
        .then_some((body.producer_id.0, body.producer_epoch));
    if let Some((id, epoch)) = expected {
        if id < 0 || epoch < 0 {
            return Err(ResponseError::InvalidRequest);
        }
    }
    let answer =
        coordinator.init_producer_id(transactional_id, body.transaction_timeout_ms, expected).await;
    answer.map_err(|error| fenced_for(error, request.version, 4))
}

/// Below `from` (the version that knows it), PRODUCER_FENCED is INVALID_PRODUCER_EPOCH.
fn fenced_for(error: ResponseError, version: i16, from: i16) -> ResponseError {
    if error == ResponseError::ProducerFenced && version < from {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

/// Whether transactional ids have coordinators: on one broker, this one once started; in a
/// cluster, the leaders of `__transaction_state` once it exists (created here if not).
pub(super) async fn find_transaction_coordinator(broker: &Rc<Broker>) -> Result<(), ResponseError> {
    if broker.cluster.is_some() {
        ensure_topic(broker).await?;
        return match broker.topic(TXN_TOPIC) {
            Some(_) => Ok(()),
            None => Err(ResponseError::CoordinatorNotAvailable),
        };
    }
    coordinator(broker).await.map(|_| ())
}

pub(super) async fn add_partitions_to_txn(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: AddPartitionsToTxnRequest = decode_body(request)?;
    let mut response = AddPartitionsToTxnResponse::default();
    if request.version >= 4 {
        for txn in &body.transactions {
            let partitions = named(&txn.topics);
            let errors = add_or_verify(
                broker,
                request.version,
                &txn.transactional_id.0,
                txn.producer_id.0,
                txn.producer_epoch,
                &partitions,
                txn.verify_only,
                !txn.verify_only,
            )
            .await;
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = txn.transactional_id.clone();
            result.topic_results = topic_results(&partitions, &errors);
            response.results_by_transaction.push(result);
        }
    } else {
        let partitions = named(&body.v3_and_below_topics);
        let errors = add_or_verify(
            broker,
            request.version,
            &body.v3_and_below_transactional_id.0,
            body.v3_and_below_producer_id.0,
            body.v3_and_below_producer_epoch,
            &partitions,
            false,
            false,
        )
        .await;
        response.results_by_topic_v3_and_below = topic_results(&partitions, &errors);
    }
    frame(request, &response)
}

fn named(topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p)))
        .collect()
}

/// Each partition's error: the topics' own first (an unknown partition, the others then
/// OPERATION_NOT_ATTEMPTED, as Kafka answers), then the coordinator's for all. `v2`: the add
/// of a partition leader for a producer of transactions v2 (AddPartitionsToTxn v4+, as
/// Kafka's `transactionVersionForAddPartitionsToTxn`).
#[allow(clippy::too_many_arguments)]
async fn add_or_verify(
    broker: &Rc<Broker>,
    version: i16,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    verify_only: bool,
    v2: bool,
) -> Vec<Option<ResponseError>> {
    if partitions.len() > PARTITIONS_PER_REQUEST_MAX {
        return vec![Some(ResponseError::InvalidRequest); partitions.len()];
    }
    let unknown: Vec<bool> =
        partitions.iter().map(|(t, p)| !broker.partition_exists(t, *p)).collect();
    if unknown.iter().any(|u| *u) {
        return unknown
            .iter()
            .map(|u| {
                Some(if *u {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                })
            })
            .collect();
    }
    let coordinator = match coordinator(broker).await {
        Ok(coordinator) => coordinator,
        Err(error) => return vec![Some(error); partitions.len()],
    };
    if verify_only {
        return match coordinator.verify_partitions(transactional_id, producer_id, epoch, partitions)
        {
            Ok(each) => each,
            Err(error) => vec![Some(error); partitions.len()],
        };
    }
    let result =
        coordinator.add_partitions(transactional_id, producer_id, epoch, partitions, v2).await;
    let error = result.err().map(|e| fenced_for(e, version, 2));
    vec![error; partitions.len()]
}

fn topic_results(
    partitions: &[(String, i32)],
    errors: &[Option<ResponseError>],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, index), error) in partitions.iter().zip(errors) {
        if out.last().is_none_or(|last| last.name.0.as_str() != topic) {
            let mut entry = AddPartitionsToTxnTopicResult::default();
            entry.name = TopicName(topic.clone().into());
            out.push(entry);
        }
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = *index;
        result.partition_error_code = code(*error);
        out.last_mut().expect("pushed").results_by_partition.push(result);
    }
    out
}

pub(super) async fn add_offsets_to_txn(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: AddOffsetsToTxnRequest = decode_body(request)?;
    let mut response = AddOffsetsToTxnResponse::default();
    let index = broker.coordinator().partition_of(&body.group_id.0) as i32;
    let partitions = [(OFFSETS_TOPIC.to_string(), index)];
    let errors = add_or_verify(
        broker,
        request.version,
        &body.transactional_id.0,
        body.producer_id.0,
        body.producer_epoch,
        &partitions,
        false,
        false,
    )
    .await;
    response.error_code = code(errors[0]);
    frame(request, &response)
}

pub(super) async fn end_txn(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: EndTxnRequest = decode_body(request)?;
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let result = match coordinator(broker).await {
        Ok(coordinator) => {
            coordinator
                .end_txn(
                    &body.transactional_id.0,
                    body.producer_id.0,
                    body.producer_epoch,
                    body.committed,
                    request.version >= END_TXN_BUMPS_FROM,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok((producer_id, epoch)) if request.version >= END_TXN_BUMPS_FROM => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = epoch;
        }
        Ok(_) => {}
        Err(error) => {
            info!(transactional_id = %body.transactional_id.0, commit = body.committed, ?error, "EndTxn refused");
            response.error_code = fenced_for(error, request.version, 2).code();
        }
    }
    frame(request, &response)
}

pub(super) async fn txn_offset_commit(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: TxnOffsetCommitRequest = decode_body(request)?;
    let mut response = TxnOffsetCommitResponse::default();
    let mut commits = Vec::new();
    let mut too_large = Vec::new();
    for topic in &body.topics {
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            if metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
                too_large.push((topic.name.0.to_string(), p.partition_index));
                continue;
            }
            commits.push((
                topic.name.0.to_string(),
                p.partition_index,
                Committed {
                    offset: p.committed_offset,
                    leader_epoch: if request.version >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata,
                    commit_time_ms: crate::clock::now_ms(),
                },
            ));
        }
    }
    let (generation, member_id) = if request.version >= 3 {
        (body.generation_id, body.member_id.to_string())
    } else {
        (-1, String::new())
    };
    // The offsets partition must be in the producer's transaction (AddOffsetsToTxn), and
    // the producer not fenced: a zombie's offsets never wait for a later commit marker.
    let group_index = broker.coordinator().partition_of(&body.group_id.0) as i32;
    let transactional_id: Arc<str> = Arc::from(body.transactional_id.0.as_str());
    let verified = if broker.coordinator().owns(&body.group_id.0) {
        let check = TxnCheck {
            transactional_id,
            producer_id: body.producer_id.0,
            epoch: body.producer_epoch,
            add: request.version >= TXN_OFFSET_COMMIT_ADDS_FROM,
        };
        check_partition(broker, check, OFFSETS_TOPIC, group_index).await
    } else {
        Some(ResponseError::NotCoordinator)
    };
    let verified = match verified {
        None => Ok(()),
        Some(ResponseError::TransactionAbortable) => Err(ResponseError::InvalidTxnState),
        Some(ResponseError::ProducerFenced) => Err(ResponseError::InvalidProducerEpoch),
        Some(ResponseError::NotCoordinator) => Err(ResponseError::NotCoordinator),
        Some(ResponseError::CoordinatorLoadInProgress) => {
            Err(ResponseError::CoordinatorLoadInProgress)
        }
        Some(ResponseError::InvalidProducerIdMapping) => {
            Err(ResponseError::InvalidProducerIdMapping)
        }
        Some(_) => Err(ResponseError::CoordinatorNotAvailable),
    };
    let result = match verified {
        Err(error) => Err(error),
        Ok(()) => {
            broker
                .coordinator()
                .txn_commit(
                    body.producer_id.0,
                    body.producer_epoch,
                    &body.group_id.0,
                    generation,
                    &member_id,
                    commits,
                )
                .await
        }
    };
    let error = result.err().map(|e| match e {
        ResponseError::CoordinatorLoadInProgress if request.version < 2 => {
            ResponseError::CoordinatorNotAvailable
        }
        other => other,
    });
    for topic in &body.topics {
        let mut entry = TxnOffsetCommitResponseTopic::default();
        entry.name = topic.name.clone();
        for p in &topic.partitions {
            let mut partition = TxnOffsetCommitResponsePartition::default();
            partition.partition_index = p.partition_index;
            let large = too_large
                .iter()
                .any(|(t, i)| t == topic.name.0.as_str() && *i == p.partition_index);
            partition.error_code =
                if large { ResponseError::OffsetMetadataTooLarge.code() } else { code(error) };
            entry.partitions.push(partition);
        }
        response.topics.push(entry);
    }
    frame(request, &response)
}

pub(super) async fn write_txn_markers(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: WriteTxnMarkersRequest = decode_body(request)?;
    let mut response = WriteTxnMarkersResponse::default();
    let total: usize =
        body.markers.iter().flat_map(|m| &m.topics).map(|t| t.partition_indexes.len()).sum();
    for marker in &body.markers {
        let markers = Markers {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
            partitions: Vec::new(),
        };
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in &marker.topics {
            let mut entry = WritableTxnMarkerTopicResult::default();
            entry.name = topic.name.clone();
            for index in &topic.partition_indexes {
                let error = if total > PARTITIONS_PER_REQUEST_MAX {
                    Some(ResponseError::InvalidRequest)
                } else {
                    write_marker(broker, &topic.name.0, *index, &markers).await
                };
                let mut partition = WritableTxnMarkerPartitionResult::default();
                partition.partition_index = *index;
                partition.error_code = code(error);
                entry.partitions.push(partition);
            }
            result.topics.push(entry);
        }
        response.markers.push(result);
    }
    frame(request, &response)
}

pub(super) async fn describe_transactions(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: DescribeTransactionsRequest = decode_body(request)?;
    let mut response = DescribeTransactionsResponse::default();
    let coordinator = coordinator(broker).await;
    for id in &body.transactional_ids {
        let mut entry = DescribedState::default();
        // A refused id carries the fields' defaults (0), as Kafka's answer does.
        entry.transactional_id = id.clone();
        let described = match &coordinator {
            Ok(coordinator) => coordinator.describe(&id.0),
            Err(error) => Err(*error),
        };
        match described {
            Ok(d) => {
                entry.transaction_state = d.state.name().into();
                entry.transaction_timeout_ms = d.timeout_ms;
                entry.transaction_start_time_ms = d.start_ms;
                entry.producer_id = ProducerId(d.producer_id);
                entry.producer_epoch = d.producer_epoch;
                for (topic, index) in d.partitions {
                    if entry.topics.last().is_none_or(|t: &TopicData| t.topic.0.as_str() != topic) {
                        let mut data = TopicData::default();
                        data.topic = TopicName(topic.clone().into());
                        entry.topics.push(data);
                    }
                    entry.topics.last_mut().expect("pushed").partitions.push(index);
                }
            }
            Err(error) => entry.error_code = error.code(),
        }
        response.transaction_states.push(entry);
    }
    frame(request, &response)
}

pub(super) async fn list_transactions(
    broker: &Rc<Broker>,
    request: &Request,
) -> Result<Reply, HandlerError> {
    let body: ListTransactionsRequest = decode_body(request)?;
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for filter in &body.state_filters {
        match crate::txn::TxnState::from_name(filter) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(filter.clone()),
        }
    }
    let unknown_only = states.is_empty() && !body.state_filters.is_empty();
    let listed = match broker.txn.get() {
        // A broker that never had a transaction has none to list (Kafka's empty answer).
        None => Vec::new(),
        Some(_) => match coordinator(broker).await {
            Ok(coordinator) => coordinator.list(),
            Err(error) => {
                response.error_code = error.code();
                Vec::new()
            }
        },
    };
    let now = crate::clock::now_ms();
    for txn in listed {
        let state_ok =
            body.state_filters.is_empty() || (!unknown_only && states.contains(&txn.state));
        let producer_ok = body.producer_id_filters.is_empty()
            || body.producer_id_filters.iter().any(|p| p.0 == txn.producer_id);
        let duration_ok = request.version < 1
            || body.duration_filter < 0
            || now - txn.start_ms > body.duration_filter;
        if state_ok && producer_ok && duration_ok {
            let mut entry = ListedState::default();
            entry.transactional_id = TransactionalId(txn.transactional_id.into());
            entry.producer_id = ProducerId(txn.producer_id);
            entry.transaction_state = txn.state.name().into();
            response.transaction_states.push(entry);
        }
    }
    frame(request, &response)
}
