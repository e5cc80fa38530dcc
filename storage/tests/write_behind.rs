//! Write-behind (issue 25): as appends go on, the active segment's writeback is started in
//! steps and waited for a bounded distance behind the log end, so one partition never piles
//! up gigabytes of dirty pages for the kernel's throttling or a flusher's burst to stall it.

use std::path::Path;

use fjord_storage::io::block_on;
use fjord_storage::sim::{Faults, SimClock, SimDisk};
use fjord_storage::{FlushPolicy, LogConfig, PartitionLog};

use crate::common::*;

const MIB: u64 = 1024 * 1024;

#[test]
fn appends_start_writeback_in_steps_and_wait_for_it_a_bounded_distance_behind() {
    block_on(async {
        let disk = SimDisk::new(7, Faults::none());
        let config = LogConfig { flush: FlushPolicy::Never, ..LogConfig::default() };
        let mut log = PartitionLog::open_on(
            disk.clone(),
            SimClock::new(1_000_000),
            Path::new("/sim/wb-0"),
            config,
        )
        .await
        .expect("open the log");
        // 160 batches of about 1 MiB: 160 MiB into one segment.
        let mut written = 0u64;
        for i in 0..160u64 {
            let info = log.append(buf(&batch(100, 10_000, 1_000 + i as i64, i)), 0).await.unwrap();
            written += info.bytes;
            // The starts run as tasks of their own: let them.
            tokio::task::yield_now().await;
        }
        let stats = disk.stats();
        assert!(
            stats.write_back_started_bytes + 4 * MIB >= written,
            "writeback started for all but the last step: {} of {written} bytes",
            stats.write_back_started_bytes
        );
        assert!(
            stats.write_back_waited_bytes + 64 * MIB >= written,
            "writeback waited for up to 64 MiB behind the end: {} of {written} bytes",
            stats.write_back_waited_bytes
        );
        assert!(
            stats.write_back_waited_bytes + 32 * MIB <= written,
            "and no closer than 32 MiB: appends do not wait for their own bytes ({} of {written})",
            stats.write_back_waited_bytes
        );
    });
}

/// The broker-wide budget (`WRITE_BEHIND_BROKER_MAX_BYTES`, 512 MiB in the engine).
const BROKER_BUDGET: u64 = 512 * MIB;

#[test]
fn partitions_under_their_own_bound_wait_once_the_broker_budget_is_spent() {
    block_on(async {
        let disk = SimDisk::new(8, Faults::none());
        let config = LogConfig { flush: FlushPolicy::Never, ..LogConfig::default() };
        let mut logs = Vec::new();
        for p in 0..12 {
            let dir = format!("/sim/wb-broker-{p}");
            let log = PartitionLog::open_on(
                disk.clone(),
                SimClock::new(1_000_000),
                Path::new(&dir),
                config.clone(),
            )
            .await
            .expect("open a log");
            logs.push(log);
        }
        // 48 MiB into each of 12 logs, round robin: each stays under its own 64 MiB, the
        // 576 MiB together pass the broker's budget.
        let mut written = 0u64;
        for i in 0..48u64 {
            for log in &mut logs {
                let info =
                    log.append(buf(&batch(100, 10_000, 1_000 + i as i64, i)), 0).await.unwrap();
                written += info.bytes;
            }
            tokio::task::yield_now().await;
        }
        let waited = disk.stats().write_back_waited_bytes;
        // Other tests of this process may hold some of the budget too: that only adds waits.
        assert!(
            waited > 0 && waited + BROKER_BUDGET + 12 * 8 * MIB >= written,
            "the broker's budget held the writes behind to about {BROKER_BUDGET} bytes: \
             waited for {waited} of {written} bytes"
        );
        // Idle logs settle: the first upkeep after an append sees it, the next one waits for
        // the rest and leaves the budget.
        for log in &mut logs {
            log.settle_write_behind().await;
            log.settle_write_behind().await;
        }
        assert_eq!(
            disk.stats().write_back_waited_bytes,
            written,
            "everything written back once the logs were idle"
        );
    });
}
