//! Replication throttles, as Kafka's: a byte rate per broker for what a leader sends to
//! followers (`leader.replication.throttled.rate`) and for what a follower fetches
//! (`follower.replication.throttled.rate`), both dynamic broker configs, applied only to the
//! replicas a topic lists (`leader.replication.throttled.replicas` and
//! `follower.replication.throttled.replicas`: `*`, or `partition:broker` pairs naming the
//! broker that throttles) and only while that replica is out of sync, so a throttle slows a
//! reassignment's copy or a returning replica's catch-up, never the in-sync set that acks=all
//! waits on. `kafka-reassign-partitions --throttle` sets all four and `--verify` removes them.
//!
//! Kafka measures the rate over eleven one-second windows and leaves a throttled partition
//! out of a fetch while the rate is above the bound; here one token bucket per direction,
//! shared by the broker's shards, fills at the rate and holds at most one second of it: a
//! throttled partition is left out while the bucket is empty, reads at most what the
//! bucket holds otherwise (one batch at least), and what is sent is taken from it, so the
//! long-run rate is the bound even for fetches larger than a second of it.

use std::sync::Mutex;
use std::time::Instant;

use super::topic_configs;

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";
/// The rates' default: no bound (Kafka's `Long.MAX_VALUE`).
pub const RATE_UNBOUNDED: &str = "9223372036854775807";

/// Whether a topic's throttled-replicas `list` names partition `index` on broker `broker`.
pub fn lists(list: &str, index: i32, broker: i32) -> bool {
    let items = topic_configs::list_items(list);
    if items == ["*"] {
        return true;
    }
    items.iter().any(|item| {
        item.split_once(':')
            .is_some_and(|(p, b)| p.trim().parse() == Ok(index) && b.trim().parse() == Ok(broker))
    })
}

/// A rate config's value as a bound in bytes per second; `None`: unbounded.
pub fn rate(value: Option<&str>) -> Option<u64> {
    let rate: i64 = value?.trim().parse().ok()?;
    (rate >= 0 && rate != i64::MAX).then_some(rate as u64)
}

/// The two buckets of a broker, shared by its shards.
#[derive(Debug, Default)]
pub struct ReplicationQuotas {
    pub leader: RateQuota,
    pub follower: RateQuota,
}

/// A token bucket of bytes: it fills at the rate it is asked with, up to one second's worth.
#[derive(Debug, Default)]
pub struct RateQuota {
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes that may go now; negative after a send larger than what was left.
    tokens: f64,
    at: Instant,
}

impl RateQuota {
    /// How many bytes may go now under `rate` bytes per second; 0 while what was sent is
    /// over it.
    pub fn available(&self, rate: u64) -> u64 {
        self.update(rate, 0).max(0.0) as u64
    }

    /// Takes `bytes`, sent under `rate`, from the bucket.
    pub fn record(&self, rate: u64, bytes: u64) {
        self.update(rate, bytes);
    }

    /// Fills the bucket for the time since it was last looked at, takes `bytes`, and
    /// returns what is left.
    fn update(&self, rate: u64, bytes: u64) -> f64 {
        let now = Instant::now();
        let capacity = rate as f64;
        // A poisoned lock means a panic elsewhere mid-update of two numbers: they are
        // still numbers, so go on with them.
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = bucket.get_or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_duration_since(current.at).as_secs_f64();
        current.tokens = (current.tokens + elapsed * capacity).min(capacity) - bytes as f64;
        current.at = now;
        current.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_partitions_of_this_broker_or_all() {
        assert!(lists("*", 3, 7));
        assert!(lists("0:1, 3:7", 3, 7));
        assert!(!lists("0:1,3:7", 3, 1), "partition 3 is throttled on broker 7 only");
        assert!(!lists("", 0, 0));
        assert!(!lists("x", 0, 0));
    }

    #[test]
    fn rates_bound_unless_unbounded() {
        assert_eq!(rate(Some("1000")), Some(1000));
        assert_eq!(rate(Some(RATE_UNBOUNDED)), None);
        assert_eq!(rate(None), None);
        assert_eq!(rate(Some("-1")), None);
    }

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_the_rate() {
        let quota = RateQuota::default();
        assert_eq!(quota.available(1_000_000), 1_000_000, "a full bucket at first");
        quota.record(1_000_000, 1_500_000);
        assert_eq!(quota.available(1_000_000), 0, "half a second over");
        std::thread::sleep(std::time::Duration::from_millis(700));
        let refilled = quota.available(1_000_000);
        assert!(
            refilled > 0 && refilled <= 1_000_000,
            "refilled, at most one second's: {refilled}"
        );
    }
}
