//! Why the broker core could not open or load what it keeps: its data directory, topic files,
//! partitions, the offsets topic and the group coordinator, or its place in a cluster. Each
//! variant names the file, topic or partition it happened to.

use std::path::PathBuf;

use fjord_replication::ReplicationError;
use fjord_storage::StorageError;

use crate::group::GroupError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds {text:?}, not a producer id")]
    ProducerIdFile { path: PathBuf, text: String },
    #[error("invalid topic file {path}: {reason}")]
    TopicFile { path: PathBuf, reason: String },
    #[error("cannot open partition {topic}-{index}: {source}")]
    OpenPartition {
        topic: String,
        index: i32,
        #[source]
        source: StorageError,
    },
    #[error("cannot create {topic}: {message}")]
    InternalTopic { topic: &'static str, message: String },
    #[error("broker id {id} is not in the cluster file {path}")]
    NotInCluster { id: i32, path: PathBuf },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] ReplicationError),
    #[error(transparent)]
    Group(#[from] GroupError),
}
