//! Placement and election, as pure functions of the cluster state and the set of live
//! brokers. The active controller (the broker the state names, with its controller epoch)
//! runs `elect_leaders` on every tick and writes the state if anything changed.
//!
//! Rules (Kafka's, without unclean election):
//! - a partition whose leader is alive keeps it; dead followers leave its in-sync set;
//! - a partition whose leader is dead gets the first live in-sync replica, in replica order,
//!   as leader, and its leader epoch grows by one;
//! - if no in-sync replica is alive the partition goes offline (leader -1, epoch + 1) and
//!   keeps its in-sync set, so that the first of those replicas to come back leads again.
//!   An out-of-sync replica never becomes leader: it could lack acknowledged records.

use std::collections::BTreeSet;

use crate::state::ClusterState;

/// One leadership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub topic: String,
    pub partition: i32,
    pub old_leader: i32,
    pub new_leader: i32,
    pub leader_epoch: i32,
}

/// Replica lists for a new topic: partition `p`'s replicas are `rf` consecutive brokers
/// starting at `(start + p) mod n`, so leaders (the first replica) spread evenly.
pub fn assign_replicas(
    brokers: &[i32],
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Vec<Vec<i32>> {
    assert!(
        !brokers.is_empty() && replication_factor as usize <= brokers.len(),
        "placement needs enough brokers"
    );
    let n = brokers.len();
    (0..partitions as usize)
        .map(|p| (0..replication_factor as usize).map(|j| brokers[(start + p + j) % n]).collect())
        .collect()
}

/// Applies the election rules to every partition. Returns the leadership changes; the state
/// changed if the list is non-empty or `isr_changed` is set.
pub fn elect_leaders(state: &mut ClusterState, live: &BTreeSet<i32>) -> (Vec<Election>, bool) {
    let mut elections = Vec::new();
    let mut isr_changed = false;
    for (topic, topic_state) in state.topics.iter_mut() {
        for (index, partition) in topic_state.partitions.iter_mut().enumerate() {
            if partition.leader >= 0 && live.contains(&partition.leader) {
                let before = partition.isr.len();
                let leader = partition.leader;
                partition.isr.retain(|r| *r == leader || live.contains(r));
                isr_changed |= partition.isr.len() != before;
                continue;
            }
            let candidate = partition
                .replicas
                .iter()
                .copied()
                .find(|r| partition.isr.contains(r) && live.contains(r));
            let old_leader = partition.leader;
            match candidate {
                Some(leader) => {
                    partition.leader = leader;
                    partition.leader_epoch += 1;
                    partition.isr.retain(|r| live.contains(r));
                }
                None if old_leader != -1 => {
                    partition.leader = -1;
                    partition.leader_epoch += 1;
                }
                None => continue,
            }
            elections.push(Election {
                topic: topic.clone(),
                partition: index as i32,
                old_leader,
                new_leader: partition.leader,
                leader_epoch: partition.leader_epoch,
            });
        }
    }
    (elections, isr_changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{PartitionState, TopicState};

    fn state(replicas: &[i32], leader: i32, isr: &[i32]) -> ClusterState {
        let mut state = ClusterState::default();
        state.topics.insert(
            "t".to_string(),
            TopicState {
                id: "00".repeat(16),
                config: Default::default(),
                partitions: vec![PartitionState {
                    replicas: replicas.to_vec(),
                    leader,
                    leader_epoch: 5,
                    isr: isr.to_vec(),
                }],
            },
        );
        state
    }

    #[test]
    fn placement_spreads_leaders_and_replicas() {
        let replicas = assign_replicas(&[0, 1, 2], 6, 3, 0);
        let leaders: Vec<i32> = replicas.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![0, 1, 2, 0, 1, 2]);
        assert!(replicas
            .iter()
            .all(|r| r.len() == 3 && r.iter().collect::<BTreeSet<_>>().len() == 3));
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() {
        let mut s = state(&[0, 1, 2], 0, &[0, 1, 2]);
        let (elections, _) = elect_leaders(&mut s, &BTreeSet::from([1, 2]));
        assert_eq!(elections.len(), 1);
        let p = &s.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (1, 6, vec![1, 2]));
    }

    #[test]
    fn out_of_sync_replicas_never_lead() {
        let mut s = state(&[0, 1, 2], 0, &[0]);
        let (elections, _) = elect_leaders(&mut s, &BTreeSet::from([1, 2]));
        assert_eq!(elections[0].new_leader, -1);
        assert_eq!(
            s.topics["t"].partitions[0].isr,
            vec![0],
            "the in-sync set remembers who may lead"
        );
        // The last in-sync replica returns and leads again.
        let (elections, _) = elect_leaders(&mut s, &BTreeSet::from([0, 1, 2]));
        assert_eq!((elections[0].new_leader, elections[0].leader_epoch), (0, 7));
    }

    #[test]
    fn dead_followers_leave_the_in_sync_set_without_an_election() {
        let mut s = state(&[0, 1, 2], 0, &[0, 1, 2]);
        let (elections, isr_changed) = elect_leaders(&mut s, &BTreeSet::from([0, 1]));
        assert!(elections.is_empty() && isr_changed);
        assert_eq!(s.topics["t"].partitions[0].isr, vec![0, 1]);
        assert_eq!(s.topics["t"].partitions[0].leader_epoch, 5);
    }
}
