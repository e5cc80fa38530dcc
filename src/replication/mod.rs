//! Replication as this broker takes part in it: its duty in the cluster (`duty.rs`:
//! heartbeat, controller pass, in-sync sets, state sync) and the follower fetcher
//! (`fetcher.rs`), which copies the leaders' logs to this broker's replicas. The cluster
//! state and its controller logic live in the `fjord-replication` crate and in
//! `broker::cluster`, below this layer.

pub mod duty;
pub mod fetcher;
