//! This broker's duty in a cluster, as one task per shard: heartbeats and the controller
//! pass (shard 0 only, each on its own task so neither waits for the other or for a state
//! being applied), in-sync set upkeep for the partitions this shard leads, and watching
//! the state file (shard 0 reads it and hands new states to the other shards).

use std::rc::Rc;
use std::time::Duration;

use tracing::warn;

use crate::broker::cluster::CLUSTER_TICK_MS;
use crate::broker::Broker;
use crate::clock::now_ms;

/// A task that is aborted when this is dropped: `run`'s helpers stop with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Heartbeats and controller duty (shard 0), in-sync set upkeep for this shard's
/// partitions and state watching (every shard), until aborted.
pub async fn run(broker: Rc<Broker>) {
    let cluster = Rc::clone(broker.cluster.as_ref().expect("clustered broker"));
    let lag_max_ms = broker.config.replica_lag_time_max_ms as i64;
    // Held (not read) until this future is dropped: aborting `run` aborts them too.
    let mut helpers = Vec::new();
    // The heartbeat has its own task: nothing below (a slow state write, a busy lock) may
    // delay it, or a healthy broker would look hung to the controller.
    if cluster.liveness.is_some() {
        let heartbeat = Rc::clone(&cluster);
        helpers.push(AbortOnDrop(fjord_storage::io::spawn(async move {
            loop {
                if let Some(Err(error)) = heartbeat.liveness.as_ref().map(|l| l.beat(now_ms())) {
                    warn!(%error, "cannot write the heartbeat");
                }
                tokio::time::sleep(Duration::from_millis(CLUSTER_TICK_MS)).await;
            }
        })));
        // The controller duty has its own task too: applying a state waits for this broker's
        // other shards (at startup, until they have opened), and elections for the whole
        // cluster must not wait with it.
        let controller = Rc::clone(&cluster);
        helpers.push(AbortOnDrop(fjord_storage::io::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(CLUSTER_TICK_MS)).await;
                controller.control().await;
            }
        })));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(CLUSTER_TICK_MS)).await;
        let mut now = now_ms();
        if cluster.view_may_be_stale(now) {
            // This process was stopped: another broker may lead its partitions by now.
            warn!(
                broker = cluster.me,
                "cluster duty resumed after a pause; re-reading the cluster state"
            );
            broker.sync_cluster_state().await;
            now = now_ms();
        }
        cluster.viewed(now);
        // After a pause the followers' fetches went unanswered because this broker was
        // stopped, not because they lag: no shrink for one lag window.
        let lag_max_ms =
            if cluster.holding_shrinks(now, lag_max_ms) { i64::MAX / 4 } else { lag_max_ms };
        // Leaders: drop followers that lag, take back those that caught up.
        for topic in broker.topics() {
            for partition in topic.local_partitions() {
                if !partition.replica.is_leader() {
                    continue;
                }
                if let Some(isr) = partition.wanted_isr(now, lag_max_ms) {
                    cluster.request_isr_change(partition, isr);
                }
            }
        }
        // Shard 0 reads the state file and hands new states to the other shards.
        if broker.shards.me == 0 {
            broker.sync_cluster_state().await;
        }
    }
}
