//! A leader's view of its followers: how far each has fetched, when each was last caught
//! up, and from that the high watermark and the in-sync set.
//!
//! A follower's fetch offset says it holds every record below it. It is caught up when it
//! fetched from the leader's log end. The high watermark is the smallest log end offset in
//! the in-sync set (the leader's own included) and never moves back; consumers read below
//! it only, and acks=all producers are answered once it passes their records. A follower
//! not caught up for `replica_lag_time_max_ms` leaves the in-sync set; one that reaches the
//! high watermark joins it again.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// -1 until the follower's first fetch in this leadership.
    pub log_end_offset: i64,
    pub last_caught_up_ms: i64,
    /// When the follower last fetched, and the leader's log end then.
    pub last_fetch_ms: i64,
    pub leader_end_at_last_fetch: i64,
    /// The follower's log start as its last fetch gave it; -1 until then.
    pub log_start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct ReplicaTracker {
    leader: i32,
    followers: BTreeMap<i32, FollowerProgress>,
}

impl ReplicaTracker {
    /// A fresh view at the start of a leadership: followers get one lag period of grace.
    pub fn new(leader: i32, replicas: &[i32], now_ms: i64) -> ReplicaTracker {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader)
            .map(|r| {
                (
                    *r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: now_ms,
                        leader_end_at_last_fetch: i64::MAX,
                        log_start_offset: -1,
                    },
                )
            })
            .collect();
        ReplicaTracker { leader, followers }
    }

    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// The replica set changed within the same leadership (a reassignment added or removed
    /// replicas): new followers are tracked from `now_ms` as at the start of a leadership,
    /// followers that are no longer replicas are forgotten, the others keep their progress.
    pub fn set_replicas(&mut self, replicas: &[i32], now_ms: i64) {
        let fresh = ReplicaTracker::new(self.leader, replicas, now_ms);
        self.followers.retain(|id, _| fresh.followers.contains_key(id));
        for (id, progress) in fresh.followers {
            self.followers.entry(id).or_insert(progress);
        }
    }

    /// Records a fetch by `follower` at `fetch_offset` while the leader's log ends at
    /// `leader_log_end`. Returns false for a broker that is not a replica.
    pub fn on_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(progress) = self.followers.get_mut(&follower) else { return false };
        progress.log_end_offset = fetch_offset;
        // Kafka's rule: caught up now if it fetched from the log end; caught up as of its
        // previous fetch if it now holds everything the leader had then (under steady load a
        // follower is never exactly at the end, yet it keeps up).
        if fetch_offset >= leader_log_end {
            progress.last_caught_up_ms = now_ms;
        } else if fetch_offset >= progress.leader_end_at_last_fetch {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.last_fetch_ms = now_ms;
        progress.leader_end_at_last_fetch = leader_log_end;
        true
    }

    /// Records the log start `follower` gave in its fetch (Fetch v5+; -1 from older ones).
    pub fn on_log_start(&mut self, follower: i32, log_start_offset: i64) {
        if let Some(progress) = self.followers.get_mut(&follower) {
            progress.log_start_offset = log_start_offset;
        }
    }

    /// The smallest log start among the leader (`leader_log_start`) and the followers in
    /// `isr` (Kafka's `lowWatermarkIfLeader`, over the in-sync replicas): where DeleteRecords
    /// has reached every replica that counts. A follower not heard from counts as -1.
    pub fn low_watermark(&self, isr: &[i32], leader_log_start: i64) -> i64 {
        isr.iter()
            .filter(|r| **r != self.leader)
            .map(|r| self.followers.get(r).map_or(-1, |p| p.log_start_offset))
            .fold(leader_log_start, i64::min)
    }

    pub fn progress(&self, follower: i32) -> Option<FollowerProgress> {
        self.followers.get(&follower).copied()
    }

    /// The smallest log end offset in `isr` (the leader's is `leader_log_end`).
    pub fn high_watermark(&self, isr: &[i32], leader_log_end: i64) -> i64 {
        isr.iter()
            .map(|r| {
                if *r == self.leader {
                    leader_log_end
                } else {
                    self.followers.get(r).map_or(-1, |p| p.log_end_offset)
                }
            })
            .min()
            .unwrap_or(leader_log_end)
    }

    /// The in-sync set this leader wants now, if it differs from `isr`.
    pub fn wanted_isr(
        &self,
        isr: &[i32],
        high_watermark: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<Vec<i32>> {
        let mut wanted: Vec<i32> = vec![self.leader];
        for (id, progress) in &self.followers {
            let in_sync = isr.contains(id);
            let lagging = now_ms - progress.last_caught_up_ms > lag_max_ms;
            let caught_up =
                progress.log_end_offset >= high_watermark && progress.log_end_offset >= 0;
            if !lagging && (in_sync || caught_up) {
                wanted.push(*id);
            }
        }
        wanted.sort_unstable();
        let mut current = isr.to_vec();
        current.sort_unstable();
        (wanted != current).then_some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermark_and_isr() {
        let mut tracker = ReplicaTracker::new(0, &[0, 1, 2], 1_000);
        assert_eq!(
            tracker.high_watermark(&[0, 1, 2], 10),
            -1,
            "followers not heard from hold the watermark"
        );
        tracker.on_fetch(1, 10, 10, 1_100);
        tracker.on_fetch(2, 7, 10, 1_100);
        assert_eq!(tracker.high_watermark(&[0, 1, 2], 10), 7);
        assert_eq!(tracker.high_watermark(&[0, 1], 10), 10);
        // Follower 2 never catches up: it leaves after the lag limit, not before.
        assert_eq!(tracker.wanted_isr(&[0, 1, 2], 7, 5_000, 10_000), None);
        tracker.on_fetch(1, 10, 10, 11_900);
        assert_eq!(tracker.wanted_isr(&[0, 1, 2], 7, 12_000, 10_000), Some(vec![0, 1]));
        // It catches up and rejoins.
        tracker.on_fetch(2, 10, 10, 12_500);
        assert_eq!(tracker.wanted_isr(&[0, 1], 10, 12_600, 10_000), Some(vec![0, 1, 2]));
        assert!(!tracker.on_fetch(9, 1, 10, 0), "not a replica");
        // Under steady load: never at the end when it fetches, but always past where the end
        // was at its previous fetch, so it stays caught up.
        let mut busy = ReplicaTracker::new(0, &[0, 1], 0);
        let mut leader_end = 100;
        let mut follower_at = 90;
        for step in 1..=50 {
            busy.on_fetch(1, follower_at, leader_end, step * 1_000);
            follower_at = leader_end;
            leader_end += 10;
        }
        assert!(busy.progress(1).unwrap().last_caught_up_ms >= 48_000);
        assert_eq!(busy.wanted_isr(&[0, 1], 90, 50_000, 10_000), None);
    }

    #[test]
    fn the_low_watermark_is_the_smallest_log_start_in_sync() {
        let mut tracker = ReplicaTracker::new(0, &[0, 1, 2], 1_000);
        assert_eq!(tracker.low_watermark(&[0, 1, 2], 5), -1, "followers not heard from");
        tracker.on_log_start(1, 5);
        tracker.on_log_start(2, 3);
        assert_eq!(tracker.low_watermark(&[0, 1, 2], 5), 3);
        assert_eq!(tracker.low_watermark(&[0, 1], 5), 5, "out-of-sync followers do not count");
        assert_eq!(tracker.low_watermark(&[0], 4), 4, "a lone leader's own");
        tracker.on_log_start(9, 0);
        assert_eq!(tracker.low_watermark(&[0, 1], 5), 5, "not a replica: ignored");
    }

    #[test]
    fn a_replica_added_to_a_leadership_is_tracked_and_can_join() {
        let mut tracker = ReplicaTracker::new(0, &[0, 1], 1_000);
        tracker.on_fetch(1, 10, 10, 1_100);
        assert!(!tracker.on_fetch(2, 10, 10, 1_100), "not a replica yet");
        tracker.set_replicas(&[2, 0, 1], 1_200);
        assert_eq!(tracker.progress(1).unwrap().log_end_offset, 10, "progress kept");
        assert!(tracker.on_fetch(2, 10, 10, 1_300));
        assert_eq!(tracker.wanted_isr(&[0, 1], 10, 1_400, 10_000), Some(vec![0, 1, 2]));
        tracker.set_replicas(&[2, 0], 1_500);
        assert!(tracker.progress(1).is_none(), "a removed replica is forgotten");
    }
}
