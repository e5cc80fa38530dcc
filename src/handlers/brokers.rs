//! The brokers a client is told of, shared by Metadata and DescribeCluster: this broker
//! alone, or every broker of the cluster file with the address it advertises and whether it
//! is alive (a broker whose liveness lock is free or whose heartbeat is stale is down, as a
//! fenced broker is in Kafka); and the controller among them.

use crate::broker::Broker;

/// One broker as answers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BrokerNode {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub alive: bool,
}

/// Every broker, in the cluster file's order (alive or not); a broker whose address does
/// not parse is left out, as one no client could reach.
pub(super) fn all_brokers(broker: &Broker) -> Vec<BrokerNode> {
    let config = &broker.config;
    match &broker.cluster {
        None => vec![BrokerNode {
            id: config.broker_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
            alive: true,
        }],
        Some(cluster) => cluster
            .file
            .brokers
            .iter()
            .filter_map(|b| {
                let address = b.address.parse::<std::net::SocketAddr>().ok()?;
                Some(BrokerNode {
                    id: b.id,
                    host: address.ip().to_string(),
                    port: i32::from(address.port()),
                    alive: cluster.is_alive(b.id),
                })
            })
            .collect(),
    }
}

/// The brokers that are alive: the ones Metadata lists.
pub(super) fn live_brokers(broker: &Broker) -> Vec<BrokerNode> {
    all_brokers(broker).into_iter().filter(|b| b.alive).collect()
}

/// The controller clients are told of: this broker alone, or the holder of the cluster's
/// controller lock as the last state read names it. While none is known (a cluster starting,
/// or between a controller's death and its successor) this broker answers: every Fjord
/// broker serves the admin requests clients send the controller, as a Kafka 4 broker does
/// (which names a live broker, never a KRaft controller). Never -1: librdkafka then waits
/// for its next metadata refresh, minutes away, before sending CreateTopics at all.
pub(super) fn controller_id(broker: &Broker) -> i32 {
    match &broker.cluster {
        None => broker.config.broker_id,
        Some(cluster) => match cluster.state.borrow().controller {
            -1 => broker.config.broker_id,
            controller => controller,
        },
    }
}

/// Where a partition's leader is, as this broker last learned it: (leader id, leader
/// epoch), (-1, -1) for a partition it knows nothing of (Kafka's `getCurrentLeader`).
pub(super) fn leader_of(broker: &Broker, topic: &str, index: i32) -> (i32, i32) {
    let Ok(slot) = usize::try_from(index) else { return (-1, -1) };
    match &broker.cluster {
        None => match broker.topic(topic) {
            Some(t) if slot < t.partitions.len() => (broker.config.broker_id, 0),
            _ => (-1, -1),
        },
        Some(cluster) => cluster
            .state
            .borrow()
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(slot))
            .map_or((-1, -1), |p| (p.leader, p.leader_epoch)),
    }
}
