//! What one partition's part of a request comes to on the shard that owns the partition:
//! the typed outcomes that cross shards (`shards.rs`) and that the handlers put into their
//! responses. A partition's part is resolved where the partition lives; these types are
//! all that travels back.

use std::sync::Arc;

use fjord_storage::FileRegion;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, Semaphore};

use crate::partition::producer::ActiveProducer;

/// What one partition's part of a Produce came to.
#[derive(Debug, Clone)]
pub struct PartitionOutcome {
    pub error: Option<(ResponseError, String)>,
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The time the batches were stamped with on a LogAppendTime topic, else -1.
    pub log_append_time: i64,
    /// The records refused one by one (their index in the batch, and why), as Kafka's
    /// `record_errors` (Produce v8+).
    pub record_errors: Vec<(i32, String)>,
}

impl PartitionOutcome {
    pub(crate) fn refused(code: ResponseError, message: String) -> PartitionOutcome {
        PartitionOutcome {
            error: Some((code, message)),
            base_offset: -1,
            log_start_offset: -1,
            log_append_time: -1,
            record_errors: Vec::new(),
        }
    }

    /// INVALID_RECORD for the records of `record_errors`, with Kafka's message
    /// (`LogValidator.processRecordErrors`: the count and at most the first three).
    pub(crate) fn records_refused(record_errors: Vec<(i32, String)>) -> PartitionOutcome {
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{message}')"))
            .collect();
        let message = format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
            record_errors.len(),
            shown.join(", ")
        );
        PartitionOutcome {
            record_errors,
            ..PartitionOutcome::refused(ResponseError::InvalidRecord, message)
        }
    }
}

/// One partition's append in its connection's order (`AppendOrder`): it waits for its turn
/// (`turn`), and its end (appended, refused or abandoned) adds a permit to a semaphore the
/// request's handler counts and gives the connection's next append to the partition its
/// turn. The end is marked when dropped too, on any path, on any shard.
pub struct AppendDone {
    appended: Option<Arc<Semaphore>>,
    /// The end of the connection's previous append to the partition.
    after: Option<oneshot::Receiver<()>>,
    next: Option<oneshot::Sender<()>>,
}

impl AppendDone {
    /// `turn` is from `AppendOrder::turn`; without it the append waits for nothing.
    pub fn new(
        appended: &Arc<Semaphore>,
        turn: Option<(Option<oneshot::Receiver<()>>, oneshot::Sender<()>)>,
    ) -> AppendDone {
        let (after, next) = match turn {
            Some((after, next)) => (after, Some(next)),
            None => (None, None),
        };
        AppendDone { appended: Some(Arc::clone(appended)), after, next }
    }

    /// Waits until the connection's previous append to the partition is over.
    pub(crate) async fn turn(&mut self) {
        if let Some(after) = self.after.take() {
            let _ = after.await;
        }
    }

    pub(crate) fn now(&mut self) {
        if let Some(appended) = self.appended.take() {
            appended.add_permits(1);
        }
        if let Some(next) = self.next.take() {
            let _ = next.send(());
        }
    }
}

impl Drop for AppendDone {
    fn drop(&mut self) {
        self.now();
    }
}

/// One partition's part of a Fetch, resolved on the shard that owns the partition.
pub struct PartitionRead {
    /// Why the partition could not be read (`None`: it was, or had nothing to read).
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub regions: Vec<FileRegion>,
    /// Whether a follower's fetch moved the high watermark.
    pub hw_moved: bool,
    /// A read_committed read: the aborted transactions among its records
    /// (`AbortedTxn`'s producer id and first offset; `None` for other reads).
    pub aborted: Option<Vec<(i64, i64)>>,
}

/// One partition's answer, resolved on the shard that owns it.
#[derive(Debug, Clone, Copy)]
pub struct OffsetAnswer {
    pub error: Option<ResponseError>,
    pub timestamp: i64,
    pub offset: i64,
    /// The leader epoch the offset was written in (-1: none), which consumers check with
    /// OffsetForLeaderEpoch; for the latest offset, the current epoch (as Kafka).
    pub leader_epoch: i32,
}

impl OffsetAnswer {
    pub fn refused(error: ResponseError) -> OffsetAnswer {
        OffsetAnswer { error: Some(error), timestamp: -1, offset: -1, leader_epoch: -1 }
    }
}

/// Where a leader epoch ends on one partition (OffsetForLeaderEpoch, and the check of a
/// fetcher's last fetched epoch), resolved on the shard that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub error: Option<ResponseError>,
    /// The largest epoch at most the one asked about (-1: undefined).
    pub epoch: i32,
    /// Where that epoch ends (-1: undefined).
    pub end_offset: i64,
}

impl EpochEnd {
    pub fn refused(error: ResponseError) -> EpochEnd {
        EpochEnd { error: Some(error), epoch: -1, end_offset: -1 }
    }
}

/// One partition this broker hosts, as DescribeLogDirs tells it, from the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirPartition {
    pub topic: String,
    pub index: i32,
    /// Bytes of its segments (`.log` files).
    pub size_bytes: u64,
    /// How far its log end trails its high watermark (Kafka's formula: never below 0).
    pub offset_lag: i64,
    /// A compacted log's cleaning.
    pub cleaner: Option<crate::broker::cleaner::CleanerStatus>,
}

/// One partition's idempotent producers (DescribeProducers), from the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducersAnswer {
    pub error: Option<ResponseError>,
    pub producers: Vec<ActiveProducer>,
}

impl ProducersAnswer {
    pub fn refused(error: ResponseError) -> ProducersAnswer {
        ProducersAnswer { error: Some(error), producers: Vec::new() }
    }
}

impl PartitionRead {
    /// A read with nothing in it yet: no error, offsets unknown (-1), no regions.
    pub fn empty() -> PartitionRead {
        PartitionRead {
            error: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            regions: Vec::new(),
            hw_moved: false,
            aborted: None,
        }
    }

    pub fn refused(error: ResponseError) -> PartitionRead {
        PartitionRead { error: Some(error), ..PartitionRead::empty() }
    }
}
