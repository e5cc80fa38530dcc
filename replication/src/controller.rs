//! Placement and election, as pure functions of the cluster state and the set of live
//! brokers. The active controller (the broker the state names, with its controller epoch)
//! runs `elect_leaders` on every tick and writes the state if anything changed.
//!
//! Rules (Kafka's):
//! - a partition whose leader is alive keeps it; dead followers leave its in-sync set;
//! - a partition whose leader is dead gets the first live in-sync replica, in replica order,
//!   as leader, and its leader epoch grows by one;
//! - if no in-sync replica is alive the partition goes offline (leader -1, epoch + 1) and
//!   keeps its in-sync set, so that the first of those replicas to come back leads again.
//!   An out-of-sync replica never becomes leader (it could lack acknowledged records),
//!   unless the topic sets `unclean.leader.election.enable=true` (or the cluster-wide
//!   dynamic default does): then the first live replica leads and becomes the whole in-sync
//!   set, trading what only the lost replicas had for availability, as Kafka does.
//!
//! Elections an operator asks for (Kafka's ElectLeaders), and the periodic preferred-leader
//! rebalance (Kafka's `auto.leader.rebalance.enable`):
//! - preferred: the first replica leads again if it is alive and in sync (it is what
//!   placement spread the leaders by); not needed if it leads already;
//! - unclean: only for a partition without a leader, the first live in-sync replica, else
//!   the first live replica, which becomes the whole in-sync set: records only the lost
//!   replicas had are gone, which is why only an explicit request does it.

use std::collections::BTreeSet;

use crate::state::{ClusterState, PartitionState};

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
    let unclean_default =
        state.broker_configs.cluster_default.get(UNCLEAN_CONFIG).is_some_and(|v| is_true(v));
    for (topic, topic_state) in state.topics.iter_mut() {
        let unclean =
            topic_state.config.get(UNCLEAN_CONFIG).map_or(unclean_default, |v| is_true(v));
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
            let out_of_sync = if unclean { first_live(partition, live) } else { None };
            match candidate {
                Some(leader) => {
                    partition.leader = leader;
                    partition.leader_epoch += 1;
                    partition.isr.retain(|r| live.contains(r));
                }
                None if out_of_sync.is_some() => {
                    let leader = out_of_sync.expect("matched");
                    partition.leader = leader;
                    partition.leader_epoch += 1;
                    partition.isr = vec![leader];
                    isr_changed = true;
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

/// The topic config that lets the controller elect an out-of-sync replica by itself; the
/// broker config that defaults it cluster-wide has the same name.
const UNCLEAN_CONFIG: &str = "unclean.leader.election.enable";

/// The first live replica, in replica order, in sync or not: an unclean election's choice.
fn first_live(partition: &PartitionState, live: &BTreeSet<i32>) -> Option<i32> {
    partition.replicas.iter().copied().find(|r| live.contains(r))
}

/// A boolean config's value as Kafka parses it (case-insensitive `true`).
fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// The kinds of election an operator may ask for (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionKind {
    Preferred,
    Unclean,
}

/// Why an election an operator asked for changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElectionRefusal {
    /// The partition already has the leader asked for (Kafka's ELECTION_NOT_NEEDED).
    #[error("the partition already has the leader this election would give it")]
    NotNeeded,
    /// The preferred replica is dead or out of sync (PREFERRED_LEADER_NOT_AVAILABLE).
    #[error("the preferred replica is not alive and in sync")]
    PreferredNotAvailable,
    /// No replica of a leaderless partition is alive (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    #[error("no replica of the partition is alive")]
    NoLiveReplica,
}

/// Runs one election of `kind` on a partition; the new leader, or why none was chosen.
pub fn elect_one(
    partition: &mut PartitionState,
    live: &BTreeSet<i32>,
    kind: ElectionKind,
) -> Result<i32, ElectionRefusal> {
    let leader = match kind {
        ElectionKind::Preferred => {
            let preferred = *partition.replicas.first().ok_or(ElectionRefusal::NotNeeded)?;
            if partition.leader == preferred {
                return Err(ElectionRefusal::NotNeeded);
            }
            if !(live.contains(&preferred) && partition.isr.contains(&preferred)) {
                return Err(ElectionRefusal::PreferredNotAvailable);
            }
            preferred
        }
        ElectionKind::Unclean => {
            if partition.leader >= 0 {
                return Err(ElectionRefusal::NotNeeded);
            }
            let clean = partition
                .replicas
                .iter()
                .copied()
                .find(|r| partition.isr.contains(r) && live.contains(r));
            match clean {
                Some(leader) => leader,
                None => {
                    let leader =
                        first_live(partition, live).ok_or(ElectionRefusal::NoLiveReplica)?;
                    partition.isr = vec![leader];
                    leader
                }
            }
        }
    };
    partition.leader = leader;
    partition.leader_epoch += 1;
    Ok(leader)
}

/// The periodic rebalance: every partition whose preferred replica is alive and in sync
/// but does not lead gets it back as leader.
pub fn elect_preferred_leaders(state: &mut ClusterState, live: &BTreeSet<i32>) -> Vec<Election> {
    let mut elections = Vec::new();
    for (topic, topic_state) in state.topics.iter_mut() {
        for (index, partition) in topic_state.partitions.iter_mut().enumerate() {
            let old_leader = partition.leader;
            if let Ok(new_leader) = elect_one(partition, live, ElectionKind::Preferred) {
                elections.push(Election {
                    topic: topic.clone(),
                    partition: index as i32,
                    old_leader,
                    new_leader,
                    leader_epoch: partition.leader_epoch,
                });
            }
        }
    }
    elections
}

/// Why a reassignment request was refused for a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassignmentRefusal {
    /// The target is not a valid replica list (INVALID_REPLICA_ASSIGNMENT).
    #[error("{0}")]
    InvalidAssignment(String),
    /// A cancel of a partition that is not being reassigned (NO_REASSIGNMENT_IN_PROGRESS).
    #[error("no reassignment is in progress")]
    NoneInProgress,
}

/// Checks a replica list an operator gave: not empty, no broker twice, every broker `known`;
/// Kafka's messages.
pub fn check_replica_list(
    replicas: &[i32],
    known: impl Fn(i32) -> bool,
) -> Result<(), ReassignmentRefusal> {
    let refuse = |reason: String| Err(ReassignmentRefusal::InvalidAssignment(reason));
    if replicas.is_empty() {
        return refuse("The manual partition assignment includes an empty replica list.".into());
    }
    if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
        return refuse(format!(
            "The manual partition assignment {replicas:?} contains duplicate replicas."
        ));
    }
    if let Some(unknown) = replicas.iter().find(|id| !known(**id)) {
        return refuse(format!(
            "The manual partition assignment includes broker {unknown}, but no such broker is registered."
        ));
    }
    Ok(())
}

/// The replicas a partition had before its reassignment (all of them if there is none).
fn original_replicas(partition: &PartitionState) -> Vec<i32> {
    partition.replicas.iter().copied().filter(|r| !partition.adding.contains(r)).collect()
}

/// Starts a reassignment of `partition` to `target` (checked with `check_replica_list`), or
/// replaces the one in progress (counted from the replicas before it). A target with the
/// same replicas only reorders them, at once. Returns whether the state changed.
pub fn start_reassignment(partition: &mut PartitionState, target: &[i32]) -> bool {
    let original = original_replicas(partition);
    let adding: Vec<i32> = target.iter().copied().filter(|r| !original.contains(r)).collect();
    let removing: Vec<i32> = original.iter().copied().filter(|r| !target.contains(r)).collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    let before = partition.clone();
    partition.isr.retain(|r| replicas.contains(r));
    partition.replicas = replicas;
    partition.adding = adding;
    partition.removing = removing;
    if !partition.replicas.contains(&partition.leader) && partition.leader >= 0 {
        // It led as an added replica of the reassignment this one replaces.
        partition.leader = partition.isr.first().copied().unwrap_or(-1);
        partition.leader_epoch += 1;
    }
    *partition != before
}

/// Cancels the reassignment in progress: back to the replicas from before it, keeping
/// those in sync. Refused if none of them is in sync (the partition would have no replica
/// that may lead).
pub fn cancel_reassignment(partition: &mut PartitionState) -> Result<(), ReassignmentRefusal> {
    if !partition.reassigning() {
        return Err(ReassignmentRefusal::NoneInProgress);
    }
    let original = original_replicas(partition);
    let isr: Vec<i32> = partition.isr.iter().copied().filter(|r| original.contains(r)).collect();
    if isr.is_empty() {
        return Err(ReassignmentRefusal::InvalidAssignment(
            "no replica from before the reassignment is in sync: it cannot be cancelled".into(),
        ));
    }
    if !original.contains(&partition.leader) {
        partition.leader = isr[0];
        partition.leader_epoch += 1;
    }
    partition.replicas = original;
    partition.isr = isr;
    partition.adding.clear();
    partition.removing.clear();
    Ok(())
}

/// Completes every reassignment whose target replicas are all in sync: the removed replicas
/// leave, and a leader outside the target (or dead) hands over to the first live in-sync
/// target replica. Returns the (topic, partition) completed.
pub fn complete_reassignments(
    state: &mut ClusterState,
    live: &BTreeSet<i32>,
) -> Vec<(String, i32)> {
    let mut completed = Vec::new();
    for (topic, topic_state) in state.topics.iter_mut() {
        for (index, partition) in topic_state.partitions.iter_mut().enumerate() {
            let target = partition.target_replicas();
            if !partition.reassigning() || !target.iter().all(|r| partition.isr.contains(r)) {
                continue;
            }
            partition.isr.retain(|r| target.contains(r));
            if !(target.contains(&partition.leader) && live.contains(&partition.leader)) {
                let next = target.iter().copied().find(|r| live.contains(r));
                partition.leader = next.unwrap_or(-1);
                partition.leader_epoch += 1;
            }
            partition.replicas = target;
            partition.adding.clear();
            partition.removing.clear();
            completed.push((topic.clone(), index as i32));
        }
    }
    completed
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
                    ..PartitionState::default()
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
    fn a_topic_that_allows_it_elects_an_out_of_sync_replica_by_itself() {
        // Leader 0 is dead, its only in-sync replica; 2 is alive but out of sync.
        let mut s = state(&[0, 1, 2], 0, &[0]);
        let live = BTreeSet::from([2]);
        let (elections, _) = elect_leaders(&mut s, &live);
        assert_eq!(elections[0].new_leader, -1, "offline by default");
        let (elections, _) = elect_leaders(&mut s, &live);
        assert!(elections.is_empty(), "and it stays offline");
        s.topics.get_mut("t").unwrap().config.insert(UNCLEAN_CONFIG.into(), "TRUE".into());
        let (elections, isr_changed) = elect_leaders(&mut s, &live);
        assert_eq!((elections.len(), elections[0].new_leader, isr_changed), (1, 2, true));
        let p = &s.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (2, 7, vec![2]));
        // The cluster-wide default, unless the topic says otherwise.
        let mut s = state(&[0, 1, 2], 0, &[0]);
        s.broker_configs.cluster_default.insert(UNCLEAN_CONFIG.into(), "true".into());
        assert_eq!(elect_leaders(&mut s, &BTreeSet::from([1])).0[0].new_leader, 1);
        let mut s = state(&[0, 1, 2], 0, &[0]);
        s.broker_configs.cluster_default.insert(UNCLEAN_CONFIG.into(), "true".into());
        s.topics.get_mut("t").unwrap().config.insert(UNCLEAN_CONFIG.into(), "false".into());
        assert_eq!(elect_leaders(&mut s, &BTreeSet::from([1])).0[0].new_leader, -1);
        // A live in-sync replica still wins.
        let mut s = state(&[0, 1, 2], 0, &[0, 2]);
        s.topics.get_mut("t").unwrap().config.insert(UNCLEAN_CONFIG.into(), "true".into());
        assert_eq!(elect_leaders(&mut s, &BTreeSet::from([1, 2])).0[0].new_leader, 2);
    }

    #[test]
    fn a_preferred_election_needs_the_first_replica_alive_and_in_sync() {
        let mut s = state(&[0, 1, 2], 1, &[1, 2]);
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        let all = BTreeSet::from([0, 1, 2]);
        assert_eq!(
            elect_one(p, &all, ElectionKind::Preferred),
            Err(ElectionRefusal::PreferredNotAvailable)
        );
        p.isr = vec![1, 2, 0];
        assert_eq!(
            elect_one(p, &BTreeSet::from([1, 2]), ElectionKind::Preferred),
            Err(ElectionRefusal::PreferredNotAvailable)
        );
        assert_eq!(elect_one(p, &all, ElectionKind::Preferred), Ok(0));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (0, 6, vec![1, 2, 0]));
        assert_eq!(elect_one(p, &all, ElectionKind::Preferred), Err(ElectionRefusal::NotNeeded));
        let mut s = state(&[0, 1, 2], 2, &[0, 1, 2]);
        let elections = elect_preferred_leaders(&mut s, &all);
        assert_eq!((elections.len(), elections[0].new_leader), (1, 0));
        assert!(elect_preferred_leaders(&mut s, &all).is_empty(), "balanced: nothing to do");
    }

    #[test]
    fn an_unclean_election_only_gives_a_leaderless_partition_a_live_replica() {
        let mut s = state(&[0, 1, 2], 0, &[0, 1]);
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        let live = BTreeSet::from([2]);
        assert_eq!(elect_one(p, &live, ElectionKind::Unclean), Err(ElectionRefusal::NotNeeded));
        p.leader = -1;
        assert_eq!(
            elect_one(p, &BTreeSet::new(), ElectionKind::Unclean),
            Err(ElectionRefusal::NoLiveReplica)
        );
        assert_eq!(elect_one(p, &live, ElectionKind::Unclean), Ok(2));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (2, 6, vec![2]));
        // A live in-sync replica is preferred to an out-of-sync one.
        let mut s = state(&[0, 1, 2], -1, &[1]);
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        assert_eq!(elect_one(p, &BTreeSet::from([1, 2]), ElectionKind::Unclean), Ok(1));
        assert_eq!(p.isr, vec![1]);
    }

    #[test]
    fn a_reassignment_adds_then_completes_once_the_target_is_in_sync() {
        let mut s = state(&[0, 1], 0, &[0, 1]);
        let all = BTreeSet::from([0, 1, 2]);
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        assert!(check_replica_list(&[1, 1], |_| true).is_err());
        assert!(check_replica_list(&[], |_| true).is_err());
        assert!(check_replica_list(&[1, 7], |id| id < 3).is_err());
        assert!(start_reassignment(p, &[1, 2]));
        assert_eq!(
            (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
            (vec![1, 2, 0], vec![2], vec![0])
        );
        assert_eq!(p.target_replicas(), vec![1, 2]);
        assert!(complete_reassignments(&mut s, &all).is_empty(), "2 is not in sync yet");
        s.topics.get_mut("t").unwrap().partitions[0].isr.push(2);
        assert_eq!(complete_reassignments(&mut s, &all), vec![("t".to_string(), 0)]);
        let p = &s.topics["t"].partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch),
            (vec![1, 2], vec![1, 2], 1, 6)
        );
        assert!(!p.reassigning());
    }

    #[test]
    fn a_cancel_returns_to_the_replicas_from_before() {
        let mut s = state(&[0, 1], 0, &[0, 1]);
        let p = &mut s.topics.get_mut("t").unwrap().partitions[0];
        assert_eq!(cancel_reassignment(p), Err(ReassignmentRefusal::NoneInProgress));
        start_reassignment(p, &[2, 1]);
        p.isr.push(2);
        // A new target replaces the one in progress, counted from the replicas before it.
        start_reassignment(p, &[0, 2]);
        assert_eq!((p.adding.clone(), p.removing.clone()), (vec![2], vec![1]));
        cancel_reassignment(p).unwrap();
        assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![0, 1], vec![0, 1], 0));
        assert!(!p.reassigning());
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
