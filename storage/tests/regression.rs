//! Regression tests, each named after the bug it pins. The first three were found by the
//! simulator (`simulation.rs`).

use std::path::Path;

use bytes::BytesMut;
use fjord_storage::batch::build;
use fjord_storage::io::block_on;
use fjord_storage::sim::{Faults, SimClock, SimDisk};
use fjord_storage::{FlushPolicy, LogConfig, PartitionLog};

type SimLog = PartitionLog<SimDisk, SimClock>;

const DIR: &str = "/sim/regression-0";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: None,
        flush: FlushPolicy::EveryAppend,
        ..LogConfig::default()
    }
}

async fn open(disk: &SimDisk) -> SimLog {
    SimLog::open_on(disk.clone(), SimClock::new(1_000_000), Path::new(DIR), config())
        .await
        .expect("open on a quiet disk")
}

fn records(count: usize, seed: u64) -> BytesMut {
    BytesMut::from(&build::batch_of(count, 100, 1_000_000, seed)[..])
}

/// `tail_batches` returned a read error without poisoning the log, so the next call on it
/// went ahead as if nothing had failed.
#[test]
fn tail_batches_read_failure_poisons_the_log() {
    block_on(async {
        let disk = SimDisk::new(1, Faults::none());
        let mut log = open(&disk).await;
        log.append(records(3, 1), 0).await.unwrap();
        disk.power_off_at_call(0);
        assert!(log.tail_batches(4096).await.is_err());
        assert!(log.poisoned().is_some(), "a failed tail read must latch");
        assert!(log.read(0, 1).await.is_err());
    });
}

/// `truncate_to` an offset inside the batch that also holds the log start removed the batch
/// and left the log start above the new log end (reads then refused every offset, and the
/// next append got offsets below the log start).
#[test]
fn truncation_inside_the_batch_holding_the_log_start_brings_the_start_down() {
    block_on(async {
        let disk = SimDisk::new(2, Faults::none());
        let mut log = open(&disk).await;
        log.append(records(4, 2), 0).await.unwrap();
        log.advance_log_start(2).await.unwrap();
        let end = log.truncate_to(3).await.unwrap();
        assert_eq!(end, 0);
        assert!(log.log_start_offset() <= log.log_end_offset());
        assert_eq!(log.append(records(1, 3), 0).await.unwrap().base_offset, 0);
        assert_eq!(log.read(0, u64::MAX).await.unwrap().next_offset(), Some(1));
    });
}

/// A crash after `truncate_to` had cut (and synced) the segment holding the cut point but
/// before the directory sync made the removal of the later segments durable brought those
/// segments back behind a gap in the offsets, and the open accepted the gap (it only
/// refused overlaps). Now the removal is synced before the cut, and an open refuses a
/// segment that does not start where its predecessor ends.
#[test]
fn crash_during_truncation_brings_back_no_segment_behind_a_gap() {
    block_on(async {
        // Power off at every sync of the truncation in turn.
        for k in 0.. {
            let disk = SimDisk::new(3 + k, Faults::none());
            let mut log = open(&disk).await;
            for i in 0..12 {
                log.append(records(3, i), 0).await.unwrap();
            }
            assert!(log.segments().len() >= 3, "{:?}", log.segments());
            let cut = log.segments()[1].base_offset + 1;
            let syncs = disk.stats().syncs;
            disk.power_off_at_sync(k);
            let truncated = log.truncate_to(cut).await;
            drop(log);
            if truncated.is_ok() && disk.stats().syncs - syncs <= k {
                break;
            }
            disk.crash();
            let mut log = open(&disk).await;
            let segments = log.segments();
            for pair in segments.windows(2) {
                assert_eq!(pair[1].base_offset, pair[0].next_offset, "k {k}: {segments:?}");
            }
            log.verify().await.unwrap();
            // Read everything: contiguous whole batches up to the end.
            let read = log.read(log.log_start_offset(), u64::MAX).await.unwrap();
            assert_eq!(read.next_offset(), Some(log.log_end_offset()), "k {k}");
        }
    });
}
