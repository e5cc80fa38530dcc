//! fjord: a log broker that speaks the Kafka wire protocol, on the fjord-storage engine.
//!
//! The modules are layers; each imports only the ones below it (`docs/design.md`, "The
//! layout", walks a produce and a fetch down them):
//!
//! - `cli/`: the `fjord` command line, including a small Kafka client for the admin,
//!   produce, consume and bench commands. It starts a broker through `server`.
//! - `server/`: listeners, connections and framing, the shard threads, shutdown, and the
//!   inbox that serves other shards' requests.
//! - `handlers/`: one file per Kafka API, and the Kafka error code chosen for each failure.
//! - `replication/`: this broker's part in a cluster (heartbeat, controller duty, state
//!   sync) and the follower fetcher.
//! - `broker/`: the broker core: topics and their partitions on this shard, the cluster
//!   membership and state, and the channels to the other shards.
//! - `group/`: the consumer group coordinator and its `__consumer_offsets` records.
//! - `partition/`: one hosted partition: its log, idempotent producers, and its place in
//!   replication (role, in-sync set, high watermark).
//! - Below all: `protocol` (framing and the API table), `config`, `clock`, `ids`, `alloc`.

pub mod alloc;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod group;
mod handlers;
mod ids;
pub mod partition;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod txn;
