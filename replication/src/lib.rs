//! fjord-replication: what several brokers on one host need to agree on.
//!
//! - `cluster.rs`: the static cluster file (broker ids, addresses, data dirs).
//! - `state.rs`: the live cluster state (topics, replicas, leaders, epochs, in-sync sets),
//!   one file written atomically under a file lock.
//! - `liveness.rs`: each broker holds a lock on its own liveness file and heartbeats into it.
//! - `controller.rs`: replica placement and leader election, as pure functions of the state
//!   and the set of live brokers.
//! - `epochs.rs`: the leader epoch cache of a partition (epoch -> first offset), used to
//!   find and truncate a returning replica's divergent tail.
//! - `isr.rs`: a leader's view of its followers: high watermark and in-sync set.
//!
//! The follower fetcher speaks the Kafka protocol and lives with the broker (`src/`).

#![deny(unsafe_code)]

mod cluster;
mod controller;
mod epochs;
#[cfg(fuzzing)]
pub mod fuzzing;
mod isr;
mod liveness;
mod state;

pub use cluster::{BrokerEntry, ClusterFile};
pub use controller::{
    assign_replicas, cancel_reassignment, check_replica_list, complete_reassignments,
    elect_leaders, elect_one, elect_preferred_leaders, start_reassignment, Election, ElectionKind,
    ElectionRefusal, ReassignmentRefusal,
};
pub use epochs::{end_offset_in, LeaderEpochCache};
pub use isr::{FollowerProgress, ReplicaTracker};
pub use liveness::Liveness;
pub use state::{
    ClusterState, DynamicBrokerConfigs, PartitionState, StateStore, TopicState, VERSIONS_KEPT,
};

/// Errors of the replication layer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cluster file {path}: {reason}")]
    ClusterFile { path: String, reason: String },
    #[error("state file {path}: {reason}")]
    StateFile { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A partition's own replication file (its leader epoch cache) fails as the partition's
/// storage does: an I/O failure as itself, a file that does not parse as corrupt.
impl From<ReplicationError> for fjord_storage::StorageError {
    fn from(error: ReplicationError) -> Self {
        match error {
            ReplicationError::Io(error) => fjord_storage::StorageError::Io(error),
            ReplicationError::ClusterFile { path, reason }
            | ReplicationError::StateFile { path, reason } => {
                fjord_storage::StorageError::Corrupt { path: path.into(), position: 0, reason }
            }
        }
    }
}
