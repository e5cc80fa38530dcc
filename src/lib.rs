//! fjord: a log broker that speaks the Kafka wire protocol, on the fjord-storage engine.
//!
//! - `server.rs`: listener, connections, shutdown; `protocol.rs`: framing and the API table;
//!   `handlers/`: one file per Kafka API.
//! - `broker.rs`: topics and partitions; `partition.rs`, `producer.rs`: a hosted partition
//!   and its idempotent-producer state; `topic.rs`: names, configs, metadata files.
//! - `config.rs`: flags + TOML + defaults; `errors.rs`: Kafka error codes in one place.
//! - `cli/`: the `fjord` command line, including a small Kafka client for the admin,
//!   produce and consume commands.

pub mod alloc;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod coordinator;
mod errors;
pub mod fetcher;
mod handlers;
mod ids;
pub mod partition;
pub mod producer;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod shards;
pub mod topic;
