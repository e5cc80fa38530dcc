//! DescribeLogDirs (API 35): this broker's one log directory (its data directory) with each
//! partition it hosts, as Kafka's `ReplicaManager.describeLogDirs` answers it.
//!
//! A partition's size is the bytes of its segments and its offset lag is Kafka's
//! `max(high watermark - log end, 0)` of the replica's own log: 0 for a leader and for a
//! follower alike, since a replica's high watermark never passes its own log end (Kafka only
//! reports a lag for a future replica moving between directories, which Fjord has not). A
//! request names partitions, or none (null) for all of them; those this broker does not host
//! are left out, as Kafka leaves them out. Every shard tells of the partitions it owns, asked
//! at once. From v4 the answer carries the file system's size and usable bytes (`statvfs`,
//! what Java's `FileStore` reads). A compacted partition's entry also carries its cleaning
//! (`CleanerStatus`, for `fjord topic describe`) as a tagged field from v2, the first
//! flexible version, which other clients skip as any unknown tag.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::reply::{frame, HandlerError, Reply};
use crate::broker::cleaner::CleanerStatus;
use crate::broker::outcome::LogDirPartition;
use crate::broker::shards::{owner, Shards};
use crate::broker::Broker;
use crate::protocol::{decode_body, Request};

/// Partitions one request may name: more than a broker hosts in practice (clients describe
/// all of them with a null list), and a bound on what one request makes every shard look up.
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;
/// The first flexible version, whose answers may carry tagged fields.
const TAGGED_FROM_VERSION: i16 = 2;
/// The first version whose answer carries the file system's total and usable bytes.
const SPACE_FROM_VERSION: i16 = 4;

/// The partitions of this shard a DescribeLogDirs wants (`None`: every one it hosts).
pub(crate) async fn log_dir_partitions(
    broker: &Broker,
    wanted: Option<&[(String, i32)]>,
) -> Vec<LogDirPartition> {
    let partitions: Vec<_> = match wanted {
        None => broker
            .topics()
            .iter()
            .flat_map(|t| t.local_partitions().cloned().collect::<Vec<_>>())
            .collect(),
        Some(wanted) => {
            wanted.iter().filter_map(|(topic, index)| broker.partition(topic, *index)).collect()
        }
    };
    let mut found = Vec::with_capacity(partitions.len());
    for partition in partitions {
        found.push(LogDirPartition {
            topic: partition.topic.to_string(),
            index: partition.index,
            size_bytes: partition.size_bytes().await,
            offset_lag: (partition.high_watermark() - partition.log_end_offset()).max(0),
            cleaner: partition.cleaner_status(),
        });
    }
    found
}

pub(super) async fn handle(broker: &Rc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let body: DescribeLogDirsRequest = decode_body(request)?;
    let wanted = match &body.topics {
        None => None,
        Some(topics) => {
            let count: usize = topics.iter().map(|t| t.partitions.len()).sum();
            super::reply::at_most("partitions", count, PARTITIONS_PER_REQUEST_MAX)?;
            // Each partition once, as Kafka takes them as a set.
            let set: BTreeSet<(String, i32)> = topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect();
            Some(set)
        }
    };
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![describe_dir(broker, wanted, request.version).await];
    frame(request, &response)
}

/// The data directory's answer: its partitions, and from v4 its file system's space; or,
/// when the file system or a shard cannot tell, the error Kafka gives a directory it cannot
/// describe (UNKNOWN_SERVER_ERROR, for an I/O failure that is not a storage error).
async fn describe_dir(
    broker: &Broker,
    wanted: Option<BTreeSet<(String, i32)>>,
    version: i16,
) -> DescribeLogDirsResult {
    let dir = std::path::absolute(&broker.config.data_dir)
        .unwrap_or_else(|_relative| broker.config.data_dir.clone());
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = dir.display().to_string().into();
    let space = match fjord_storage::io::file_system_space(&dir) {
        Ok(space) => space,
        Err(error) => {
            warn!(dir = %dir.display(), %error, "DescribeLogDirs: cannot measure the file system");
            result.error_code = ResponseError::UnknownServerError.code();
            return result;
        }
    };
    let Some(partitions) = gather(broker, wanted).await else {
        warn!(dir = %dir.display(), "DescribeLogDirs: a shard did not answer");
        result.error_code = ResponseError::UnknownServerError.code();
        return result;
    };
    result.topics = by_topic(partitions, version >= TAGGED_FROM_VERSION);
    if version >= SPACE_FROM_VERSION {
        // Java's `FileStore` reports a size past `i64::MAX` as `Long.MAX_VALUE` too.
        result.total_bytes = i64::try_from(space.total_bytes).unwrap_or(i64::MAX);
        result.usable_bytes = i64::try_from(space.usable_bytes).unwrap_or(i64::MAX);
    }
    result
}

/// The wanted partitions from every shard (each asked for those it owns, the others at once
/// while this one looks at its own); `None` if a shard is gone.
async fn gather(
    broker: &Broker,
    wanted: Option<BTreeSet<(String, i32)>>,
) -> Option<Vec<LogDirPartition>> {
    let shards = &broker.shards;
    let of_shard = |shard: usize| {
        wanted.as_ref().map(|set| {
            set.iter().filter(|(t, i)| owner(shards.count, t, *i) == shard).cloned().collect()
        })
    };
    let mut asked = Vec::new();
    for shard in (0..shards.count).filter(|s| *s != shards.me) {
        let part: Option<Vec<(String, i32)>> = of_shard(shard);
        if part.as_ref().is_none_or(|p| !p.is_empty()) {
            asked.push(shards.log_dir_partitions(shard, part));
        }
    }
    let mine: Option<Vec<(String, i32)>> = of_shard(shards.me);
    let mut found = log_dir_partitions(broker, mine.as_deref()).await;
    for answer in asked {
        found.extend(Shards::log_dir_partitions_of(answer).await?);
    }
    Some(found)
}

/// The partitions grouped by topic, topics by name and partitions by index.
/// With `tagged`, a compacted partition carries its cleaning as a tagged field
/// (`CleanerStatus::TAG`).
fn by_topic(partitions: Vec<LogDirPartition>, tagged: bool) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for found in partitions {
        let mut partition = DescribeLogDirsPartition::default();
        partition.partition_index = found.index;
        partition.partition_size = i64::try_from(found.size_bytes).unwrap_or(i64::MAX);
        partition.offset_lag = found.offset_lag;
        partition.is_future_key = false;
        if let Some(status) = found.cleaner.filter(|_| tagged) {
            partition.unknown_tagged_fields.insert(CleanerStatus::TAG, status.encode());
        }
        topics.entry(found.topic).or_default().push(partition);
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = TopicName(name.into());
            topic.partitions = partitions;
            topic
        })
        .collect()
}
