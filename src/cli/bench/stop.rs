//! When a load run ends: after `--records` records, or once `--duration` seconds have passed
//! since the run's clock started, whichever comes first. Without `--records`, a timed run has
//! no record limit and an untimed one stops at `RECORDS_DEFAULT`.

use std::time::{Duration, Instant};

use super::args::LoadArgs;

/// Records of a run given neither `--records` nor `--duration`.
const RECORDS_DEFAULT: u64 = 1_000_000;

/// The end of a run (or of one worker's share of it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Stop {
    records: u64,
    /// (when the run started, when it ends).
    window: Option<(Instant, Instant)>,
}

impl Stop {
    /// The stop rule of `load`, timed from `epoch`.
    pub(super) fn new(load: &LoadArgs, epoch: Instant) -> Stop {
        Stop::of(load.records, load.duration.map(Duration::from_secs), epoch)
    }

    fn of(records: Option<u64>, duration: Option<Duration>, epoch: Instant) -> Stop {
        let records = match (records, duration) {
            (Some(records), _) => records,
            (None, Some(_)) => u64::MAX,
            (None, None) => RECORDS_DEFAULT,
        };
        assert!(records > 0, "a run of no records (args::validate refuses it)");
        Stop { records, window: duration.map(|d| (epoch, epoch + d)) }
    }

    /// Connection `c`'s share of `connections`: its records (the remainder dealt to the
    /// first ones), and the same deadline.
    pub(super) fn share(&self, c: usize, connections: usize) -> Stop {
        assert!(c < connections, "connection {c} of {connections}");
        let n = connections as u64;
        let records = self.records / n + u64::from((c as u64) < self.records % n);
        Stop { records, ..*self }
    }

    /// The same record limit with no deadline (e2e consumers drain what was produced).
    pub(super) fn untimed(&self) -> Stop {
        Stop { window: None, ..*self }
    }

    /// Records at most.
    pub(super) fn records(&self) -> u64 {
        self.records
    }

    /// Whether a run that has done `records` records by `now` is over.
    pub(super) fn reached(&self, records: u64, now: Instant) -> bool {
        records >= self.records || self.window.is_some_and(|(_, end)| now >= end)
    }

    /// How far along the run is, 0 to 1: by records or by time, whichever is further.
    pub(super) fn fraction(&self, records: u64, now: Instant) -> f64 {
        let by_records = records as f64 / self.records as f64;
        let by_time = self.window.map_or(0.0, |(start, end)| {
            now.saturating_duration_since(start).as_secs_f64()
                / end.duration_since(start).as_secs_f64()
        });
        by_records.max(by_time).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_alone_stop_at_the_count_and_never_by_time() {
        let epoch = Instant::now();
        let stop = Stop::of(Some(10), None, epoch);
        assert!(!stop.reached(9, epoch + Duration::from_secs(1_000_000)));
        assert!(stop.reached(10, epoch));
    }

    #[test]
    fn neither_flag_stops_at_the_default_count() {
        let stop = Stop::of(None, None, Instant::now());
        assert_eq!(stop.records(), RECORDS_DEFAULT);
    }

    #[test]
    fn duration_alone_has_no_record_limit_and_stops_at_the_deadline() {
        let epoch = Instant::now();
        let stop = Stop::of(None, Some(Duration::from_secs(2)), epoch);
        assert!(!stop.reached(u64::MAX - 1, epoch + Duration::from_millis(1999)));
        assert!(stop.reached(0, epoch + Duration::from_secs(2)));
        assert!((stop.fraction(5, epoch + Duration::from_secs(1)) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn both_flags_stop_at_whichever_comes_first() {
        let epoch = Instant::now();
        let stop = Stop::of(Some(100), Some(Duration::from_secs(10)), epoch);
        assert!(stop.reached(100, epoch + Duration::from_secs(1)), "records first");
        assert!(stop.reached(1, epoch + Duration::from_secs(10)), "time first");
        assert!(!stop.reached(99, epoch + Duration::from_secs(9)));
        assert!((stop.fraction(90, epoch + Duration::from_secs(1)) - 0.9).abs() < 1e-9);
    }

    #[test]
    fn shares_add_up_to_the_whole_and_keep_the_deadline() {
        let epoch = Instant::now();
        let stop = Stop::of(Some(10), Some(Duration::from_secs(5)), epoch);
        let shares: Vec<u64> = (0..3).map(|c| stop.share(c, 3).records()).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert!(stop.share(2, 3).reached(0, epoch + Duration::from_secs(5)));
        assert!(!stop.untimed().reached(9, epoch + Duration::from_secs(5)));
        let unlimited = Stop::of(None, Some(Duration::from_secs(5)), epoch);
        assert!(unlimited.share(0, 7).records() > u64::MAX / 8);
    }
}
