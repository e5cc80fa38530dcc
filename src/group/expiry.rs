//! Offset expiration, as Kafka's `offsets.retention.minutes`: committed offsets nobody
//! reads any more go, with a tombstone each in `__consumer_offsets` (which the cleaner then
//! removes after `delete.retention.ms`), and a group left empty without offsets goes with
//! them (with a tombstone for its metadata, if it has some stored).
//!
//! Which offsets expire is Kafka's rule for classic groups (`ClassicGroup
//! .offsetExpirationCondition`), checked every `offsets.retention.check.interval.ms`:
//! - a group with a protocol type that is Empty: all its offsets, once the retention has
//!   passed since it became Empty;
//! - a consumer group that is Stable and knows its members' subscriptions: the offsets of
//!   topics none of them subscribes to, once the retention has passed since their commit;
//! - a group without a protocol type (offsets committed by a standalone consumer or a tool):
//!   each offset once the retention has passed since its commit.
//!
//! When a group became Empty is known from this coordinator's own clock: after a restart or
//! a failover the retention counts from when the group was loaded, which keeps offsets
//! longer than Kafka would (Kafka reads the time from the group's metadata record), never
//! shorter.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use super::offsets_record::{encode_key, encode_value};
use super::{Committed, Coordinator, Group, GroupState};
use crate::clock::now_ms;

/// How long the expiry waits for commits that raced its tombstones (a commit waits at
/// most its replication timeout, 10 s).
const PENDING_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);
/// How often it looks whether they are done.
const PENDING_POLL_MS: u64 = 10;

/// One group's offsets to expire: each partition with the commit that expired (a newer
/// commit meanwhile keeps its partition).
type Expiring = Vec<((String, i32), Committed)>;

/// The offsets of `group` whose retention has passed at `now_ms` (module documentation).
fn expiring(group: &Group, now: Instant, now_ms: i64, retention_ms: i64) -> Expiring {
    let since = |base_ms: i64| now_ms.saturating_sub(base_ms) >= retention_ms;
    let all = |keep: &dyn Fn(&(String, i32), &Committed) -> bool| -> Expiring {
        group
            .offsets
            .iter()
            .filter(|(key, committed)| !keep(key, committed))
            .map(|(key, committed)| (key.clone(), committed.clone()))
            .collect()
    };
    match (&group.protocol_type, group.state) {
        (Some(_), GroupState::Empty) => {
            let empty_for = now.saturating_duration_since(group.changed_at).as_millis() as i64;
            if empty_for >= retention_ms {
                all(&|_, _| false)
            } else {
                Vec::new()
            }
        }
        (Some(kind), GroupState::Stable) if kind == "consumer" => match &group.subscribed {
            Some(topics) => {
                all(&|(topic, _), c| topics.contains(topic) || !since(c.commit_time_ms))
            }
            None => Vec::new(),
        },
        (Some(_), _) => Vec::new(),
        (None, _) => all(&|_, c| !since(c.commit_time_ms)),
    }
}

impl Coordinator {
    /// Expires the offsets of every group this broker coordinates whose retention has
    /// passed: their tombstones are appended in the background, and each partition is
    /// forgotten once its tombstone is stored, unless it was committed again meanwhile.
    pub(super) fn expire_offsets(&self) {
        let retention_ms = i64::try_from(self.config.offsets_retention_ms).unwrap_or(i64::MAX);
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut due: HashMap<String, Expiring> = HashMap::new();
        let pending = self.pending_commits.borrow();
        for (group_id, group) in self.groups.borrow().iter() {
            if !self.owns(group_id) || self.expiring_groups.borrow().contains(group_id) {
                continue;
            }
            let mut expiring = expiring(group, now, now_ms, retention_ms);
            // A partition with a commit on its way is not expired (Kafka's rule too).
            expiring.retain(|((topic, partition), _)| {
                !pending.contains_key(&(group_id.clone(), topic.clone(), *partition))
            });
            if !expiring.is_empty() {
                due.insert(group_id.clone(), expiring);
            }
        }
        drop(pending);
        let Some(coordinator) = self.me.upgrade() else { return };
        for (group_id, expiring) in due {
            let coordinator = coordinator.clone();
            self.expiring_groups.borrow_mut().insert(group_id.clone());
            fjord_storage::io::spawn(async move {
                coordinator.expire(&group_id, expiring).await;
                coordinator.expiring_groups.borrow_mut().remove(&group_id);
            });
        }
    }

    /// Marks (or unmarks) commits on their way to the log.
    pub(super) fn set_pending(&self, keys: &[(String, String, i32)], pending: bool) {
        let mut map = self.pending_commits.borrow_mut();
        for key in keys {
            if pending {
                *map.entry(key.clone()).or_insert(0) += 1;
            } else if let Some(count) = map.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(key);
                }
            }
        }
    }

    /// Whether a commit to one of `expiring`'s partitions of `group_id` is on its way.
    fn any_pending(&self, group_id: &str, expiring: &Expiring) -> bool {
        let map = self.pending_commits.borrow();
        expiring.iter().any(|((topic, partition), _)| {
            map.contains_key(&(group_id.to_string(), topic.clone(), *partition))
        })
    }

    async fn expire(&self, group_id: &str, expiring: Expiring) {
        let tombstones: Vec<(Vec<u8>, Option<Vec<u8>>)> = expiring
            .iter()
            .map(|((topic, partition), _)| (encode_key(group_id, topic, *partition), None))
            .collect();
        if let Err(error) = self.append_records(group_id, &tombstones).await {
            warn!(group = group_id, ?error, "cannot store the tombstones of expired offsets");
            return;
        }
        // A commit that started after the selection may have its record before or after
        // the tombstones: let it finish, then what memory holds is stored after them.
        let deadline = Instant::now() + PENDING_WAIT_MAX;
        while self.any_pending(group_id, &expiring) && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(PENDING_POLL_MS)).await;
        }
        // A commit that came in meanwhile stays; its record may precede the tombstones in
        // the log, so it is stored again after them (a replay must end with it too).
        let recommitted: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else { return };
            let mut recommitted = Vec::new();
            for ((topic, partition), committed) in &expiring {
                let key = (topic.clone(), *partition);
                match group.offsets.get(&key) {
                    Some(current) if current == committed => {
                        group.offsets.remove(&key);
                    }
                    Some(current) => recommitted.push((
                        encode_key(group_id, topic, *partition),
                        Some(encode_value(current)),
                    )),
                    None => {}
                }
            }
            // Empty and without offsets now, the group goes, as Kafka deletes it then.
            let gone = group.state == GroupState::Empty
                && group.members.is_empty()
                && group.pending.is_empty()
                && group.offsets.is_empty();
            if gone {
                if group.metadata_stored {
                    // Its metadata record would bring it back after a failover.
                    self.store_in_background(group_id, None);
                }
                groups.remove(group_id);
                info!(group = group_id, "group removed: its offsets expired and it has no members");
            }
            recommitted
        };
        let removed = expiring.len() - recommitted.len();
        if !recommitted.is_empty() {
            if let Err(error) = self.append_records(group_id, &recommitted).await {
                // Memory keeps them; the log ends with their tombstones until the next
                // commit of these partitions: a failover before then loses them.
                warn!(
                    group = group_id,
                    ?error,
                    partitions = recommitted.len(),
                    "cannot store again the offsets committed while others expired"
                );
            }
        }
        info!(
            group = group_id,
            partitions = removed,
            "committed offsets expired (offsets.retention.minutes)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RETENTION_MS: i64 = 60_000;

    fn committed(commit_time_ms: i64) -> Committed {
        Committed { offset: 1, leader_epoch: -1, metadata: None, commit_time_ms }
    }

    fn group_with(protocol_type: Option<&str>, state: GroupState) -> Group {
        let mut group = Group::new();
        group.protocol_type = protocol_type.map(str::to_string);
        group.state = state;
        group.offsets.insert(("read".to_string(), 0), committed(1_000));
        group.offsets.insert(("dropped".to_string(), 0), committed(1_000));
        group.offsets.insert(("recent".to_string(), 0), committed(100_000));
        group
    }

    fn topics(expiring: &Expiring) -> Vec<String> {
        let mut topics: Vec<String> = expiring.iter().map(|((t, _), _)| t.clone()).collect();
        topics.sort();
        topics
    }

    #[test]
    fn offsets_expire_by_kafkas_rule_for_each_kind_of_group() {
        let now = Instant::now();
        let now_ms = 100_000;
        // Standalone commits: each one by its commit time.
        let standalone = group_with(None, GroupState::Empty);
        assert_eq!(topics(&expiring(&standalone, now, now_ms, RETENTION_MS)), ["dropped", "read"]);
        // An empty group: all of them, once it has been empty for the retention.
        let mut empty = group_with(Some("consumer"), GroupState::Empty);
        empty.changed_at = now;
        assert!(expiring(&empty, now, now_ms, RETENTION_MS).is_empty(), "just emptied");
        let later = now + Duration::from_millis(RETENTION_MS as u64);
        assert_eq!(topics(&expiring(&empty, later, now_ms, RETENTION_MS)).len(), 3);
        // A stable consumer group: old offsets of topics it no longer subscribes to.
        let mut stable = group_with(Some("consumer"), GroupState::Stable);
        stable.subscribed = Some(["read".to_string()].into_iter().collect());
        assert_eq!(topics(&expiring(&stable, now, now_ms, RETENTION_MS)), ["dropped"]);
        stable.subscribed = None;
        assert!(expiring(&stable, now, now_ms, RETENTION_MS).is_empty(), "subscriptions unknown");
        // Another protocol (Connect's workers) while not empty: nothing.
        let connect = group_with(Some("connect"), GroupState::Stable);
        assert!(expiring(&connect, now, now_ms, RETENTION_MS).is_empty());
    }
}
