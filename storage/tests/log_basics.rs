//! Appends, reads, rolls, timestamps, truncation, retention and reopen on real files.

use fjord_storage::io::block_on;
use fjord_storage::sim::{Faults, SimClock, SimDisk};
use fjord_storage::{Checkpoint, FlushPolicy, LogConfig, PartitionLog, RealDisk, StorageError};

use crate::common::*;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: None,
        ..LogConfig::default()
    }
}

#[test]
fn append_assigns_offsets_and_reads_return_whole_batches() {
    appends_and_reads("basics");
}

/// Buffered writes run on the calling thread while the kernel is far from throttling
/// writers, and through io_uring's workers otherwise (`fjord_storage::io`, module `inline`).
/// This runs the append tests with every write of the test's thread on the io_uring path;
/// the next test pins the inline path.
#[test]
fn appends_behave_the_same_with_every_write_through_io_uring() {
    fjord_storage::io::disable_inline_writes();
    appends_and_reads("basics-uring");
    group_appends("group-uring");
}

/// The same with every write of at most 256 KiB inline, whatever the machine's dirty pages.
#[test]
fn appends_behave_the_same_with_every_small_write_inline() {
    fjord_storage::io::force_inline_writes();
    appends_and_reads("basics-inline");
    group_appends("group-inline");
}

fn appends_and_reads(name: &str) {
    let dir = TempDir::new(name);
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 0);
        let mut expected = Vec::new();
        for i in 0..50u64 {
            let count = 1 + (i % 4) as usize;
            let info = log.append(buf(&batch(count, 40, 1_000 + i as i64, i)), 3).await.unwrap();
            assert_eq!(info.last_offset - info.base_offset + 1, count as i64);
            expected.push((info.base_offset, count as i32));
        }
        assert!(log.segments().len() > 1, "4 KiB segments must roll");
        let end = log.log_end_offset();
        assert_eq!(end, expected.iter().map(|e| e.1 as i64).sum::<i64>());

        // Reading everything from each batch's middle offset starts at that batch.
        for &(base, count) in &expected {
            let target = base + i64::from(count) / 2;
            let result = log.read(target, 1 << 20).await.unwrap();
            let batches = split_batches(&result.read_bytes().await.unwrap());
            assert_eq!(batches[0].0, base);
            let offsets: Vec<i64> = batches.iter().map(|b| b.0).collect();
            let want: Vec<i64> = expected.iter().filter(|e| e.0 >= base).map(|e| e.0).collect();
            assert_eq!(offsets, want);
            assert_eq!(result.next_offset(), Some(end));
        }
        // max_bytes smaller than a batch still yields exactly one batch.
        let result = log.read(0, 1).await.unwrap();
        assert_eq!(split_batches(&result.read_bytes().await.unwrap()).len(), 1);
        // At the end: nothing. Past it or below the start: an error.
        assert!(log.read(end, 1000).await.unwrap().regions.is_empty());
        assert!(matches!(
            log.read(end + 1, 1000).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(log.read(-1, 1000).await, Err(StorageError::OffsetOutOfRange { .. })));
        log.verify().await.unwrap();
        log.close().await.unwrap();

        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert!(log.open_report().clean_shutdown);
        assert!(
            log.open_report().scanned.is_empty(),
            "a clean open scans nothing: {:?}",
            log.open_report()
        );
        assert_eq!(log.log_end_offset(), end);
        log.verify().await.unwrap();
        let info = log.append(buf(&batch(2, 10, 5_000, 99)), 3).await.unwrap();
        assert_eq!(info.base_offset, end);
        log.verify().await.unwrap();
    });
}

#[test]
fn invalid_batches_leave_the_log_unchanged() {
    let dir = TempDir::new("invalid");
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        log.append(buf(&batch(3, 10, 1, 1)), 0).await.unwrap();
        let good = batch(2, 10, 2, 2);
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut two = good.clone();
        two.extend_from_slice(&bad_crc);
        for bytes in [bad_crc.clone(), two, good[..good.len() - 1].to_vec()] {
            let error = log.append(buf(&bytes), 0).await.unwrap_err();
            assert!(matches!(error, StorageError::InvalidBatch { .. }), "{error}");
        }
        assert_eq!(log.log_end_offset(), 3);
        let too_big = batch(1, 2 << 20, 3, 3);
        let error = log.append(buf(&too_big), 0).await.unwrap_err();
        assert!(error.to_string().contains("batch_bytes_max"), "{error}");
        assert_eq!(log.log_end_offset(), 3);
        log.verify().await.unwrap();
    });
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    let dir = TempDir::new("timestamps");
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        // Batch i has 3 records at timestamps 100i, 100i+1, 100i+2.
        for i in 0..40i64 {
            log.append(buf(&batch(3, 30, 100 * i, i as u64)), 0).await.unwrap();
        }
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(101).await.unwrap(), Some((4, 101)));
        assert_eq!(log.offset_for_timestamp(103).await.unwrap(), Some((6, 200)));
        assert_eq!(log.offset_for_timestamp(3_902).await.unwrap(), Some((119, 3_902)));
        assert_eq!(log.offset_for_timestamp(3_903).await.unwrap(), None);
        log.close().await.unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert_eq!(log.offset_for_timestamp(2_550).await.unwrap(), Some((78, 2_600)));
    });
}

#[test]
fn truncation_removes_the_tail_durably() {
    let dir = TempDir::new("truncate");
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        for i in 0..60i64 {
            log.append(buf(&batch(2, 50, i, i as u64)), 1).await.unwrap();
        }
        let segments_before = log.segments().len();
        // Offset 51 is inside the batch [50, 51]: the whole batch goes.
        assert_eq!(log.truncate_to(51).await.unwrap(), 50);
        assert!(log.segments().len() <= segments_before);
        log.verify().await.unwrap();
        let info = log.append(buf(&batch(1, 5, 7, 7)), 2).await.unwrap();
        assert_eq!(info.base_offset, 50);
        // Truncating below the start empties the log.
        assert_eq!(log.truncate_to(0).await.unwrap(), 0);
        assert_eq!(log.log_end_offset(), 0);
        drop(log);
        // Unclean reopen: the truncation is durable.
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 0);
        log.verify().await.unwrap();
    });
}

#[test]
fn retention_deletes_old_and_excess_segments_but_never_the_active_one() {
    let dir = TempDir::new("retention");
    block_on(async {
        let config =
            LogConfig { retention_ms: Some(1_000), retention_bytes: None, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        for i in 0..100i64 {
            log.append(buf(&batch(1, 100, 10 * i, i as u64)), 0).await.unwrap();
        }
        let segments = log.segments();
        assert!(segments.len() >= 3);
        // Everything older than now - 1000 = 0: nothing, the newest timestamps are >= 0.
        let outcome = log.apply_retention(0).await.unwrap();
        assert!(outcome.deleted_segments.is_empty());
        // At now = 1e12, every closed segment is old; the active one stays.
        let outcome = log.apply_retention(1_000_000_000_000).await.unwrap();
        assert_eq!(outcome.deleted_segments.len(), segments.len() - 1);
        assert_eq!(log.segments().len(), 1);
        let start = log.log_start_offset();
        assert_eq!(start, segments.last().unwrap().base_offset);
        assert!(
            matches!(log.read(0, 100).await, Err(StorageError::OffsetOutOfRange { log_start_offset, .. }) if log_start_offset == start)
        );
        assert!(!log.read(start, 100).await.unwrap().regions.is_empty());
        drop(log);
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.log_start_offset(), start);

        let dir = TempDir::new("retention-bytes");
        let config =
            LogConfig { retention_ms: None, retention_bytes: Some(8192), ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        for i in 0..200i64 {
            log.append(buf(&batch(1, 100, i, i as u64)), 0).await.unwrap();
        }
        log.apply_retention(0).await.unwrap();
        let size = log.size_bytes();
        let active = log.segments().last().unwrap().size;
        assert!(size <= 8192 + active, "size {size} after retention");
        assert!(size > 8192 - 4096, "retention deleted too much: {size}");
        log.verify().await.unwrap();
    });
}

#[test]
fn a_moved_log_start_deletes_the_segments_wholly_below_it_durably() {
    let dir = TempDir::new("delete-records");
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        for i in 0..100i64 {
            log.append(buf(&batch(1, 100, i, i as u64)), 0).await.unwrap();
        }
        let segments = log.segments();
        assert!(segments.len() >= 4, "{segments:?}");
        // Inside the third segment: the two before it go, it stays (it holds the start).
        let start = segments[2].base_offset + 1;
        log.advance_log_start(start).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        let kept: Vec<i64> = log.segments().iter().map(|s| s.base_offset).collect();
        let expected: Vec<i64> = segments[2..].iter().map(|s| s.base_offset).collect();
        assert_eq!(kept, expected, "the segments wholly below the start are deleted");
        assert!(!dir.path().join(format!("{:020}.log", segments[0].base_offset)).exists());
        assert!(matches!(
            log.read(start - 1, 100).await,
            Err(StorageError::OffsetOutOfRange { log_start_offset, .. }) if log_start_offset == start
        ));
        // Past the log end is refused, and a lower start changes nothing.
        let end = log.log_end_offset();
        assert!(log.advance_log_start(end + 1).await.is_err());
        log.advance_log_start(start - 1).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        drop(log);
        // Not closed cleanly: the start comes from the checkpoint written when it moved.
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        log.verify().await.unwrap();
    });
}

#[test]
fn flush_policy_controls_the_durable_offset() {
    let dir = TempDir::new("flush");
    block_on(async {
        let config = LogConfig { flush: FlushPolicy::Never, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(buf(&batch(5, 10, 0, 0)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 0);
        log.flush().await.unwrap();
        assert_eq!(log.durable_offset(), 5);
        drop(log);
        let dir = TempDir::new("flush-every");
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        log.append(buf(&batch(5, 10, 0, 0)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 5);
    });
}

#[test]
fn replicated_appends_keep_the_leaders_offsets() {
    let leader_dir = TempDir::new("leader");
    let follower_dir = TempDir::new("follower");
    block_on(async {
        let mut leader = PartitionLog::open(leader_dir.path(), small_config()).await.unwrap();
        let mut follower = PartitionLog::open(follower_dir.path(), small_config()).await.unwrap();
        for i in 0..30i64 {
            leader.append(buf(&batch(3, 20, i, i as u64)), 4).await.unwrap();
        }
        let mut offset = 0;
        while offset < leader.log_end_offset() {
            let result = leader.read(offset, 1000).await.unwrap();
            let bytes = result.read_bytes().await.unwrap();
            follower.append_replicated(buf(&bytes)).await.unwrap();
            offset = result.next_offset().unwrap();
        }
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        let a = leader.read(0, 1 << 20).await.unwrap().read_bytes().await.unwrap();
        let b = follower.read(0, 1 << 20).await.unwrap().read_bytes().await.unwrap();
        assert_eq!(a, b, "the follower's bytes are the leader's");
        // A batch that does not start at the log end is refused.
        let stale = leader.read(0, 1).await.unwrap().read_bytes().await.unwrap();
        assert!(follower.append_replicated(buf(&stale)).await.is_err());
        // A follower copies a batch above its own size limit (lowered after the leader took
        // the batch): only producers are held to it, as in Kafka.
        let big = batch(1, 500, 99, 99);
        let end = leader.log_end_offset();
        leader.append(buf(&big), 4).await.unwrap();
        let small_limit = LogConfig { batch_bytes_max: big.len() as u64 - 1, ..small_config() };
        follower.set_config(small_limit).unwrap();
        assert!(follower.append(buf(&big), 4).await.is_err(), "a producer's batch is held to it");
        let copied = leader.read(end, 1 << 20).await.unwrap().read_bytes().await.unwrap();
        follower.append_replicated(buf(&copied)).await.unwrap();
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    });
}

#[test]
fn group_commit_flush_covers_appends_made_before_it_started() {
    let dir = TempDir::new("group-commit");
    block_on(async {
        let config = LogConfig { flush: FlushPolicy::Never, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert!(log.flush_target().unwrap().is_none(), "nothing to flush in an empty log");
        log.append(buf(&batch(3, 10, 0, 0)), 0).await.unwrap();
        let target = log.flush_target().unwrap().expect("unflushed data");
        assert_eq!(target.end(), 3);
        // An append while the sync runs is not covered by it.
        log.append(buf(&batch(2, 10, 0, 1)), 0).await.unwrap();
        let result = target.sync().await;
        log.complete_flush(&target, result).unwrap();
        assert_eq!(log.durable_offset(), 3);
        let target = log.flush_target().unwrap().expect("the second append is not durable yet");
        assert_eq!(target.end(), 5);
        // A failed sync poisons the log.
        log.complete_flush(&target, Err(std::io::Error::other("injected EIO"))).unwrap_err();
        assert!(matches!(
            log.append(buf(&batch(1, 10, 0, 2)), 0).await,
            Err(StorageError::Poisoned { .. })
        ));
    });
}

/// Issue 25: an append that rolls must not wait for the closed segment's fdatasync (a
/// gigabyte of dirty pages took 1.16 s on this VM, stalling every partition of the request).
/// The roll syncs nothing of the closed segment; the next flush covers it, log and index
/// files, and only then does the checkpoint's recovery offset move past it.
#[test]
fn a_roll_leaves_the_closed_segments_sync_to_the_next_flush() {
    let dir = TempDir::new("roll-sync-later");
    block_on(async {
        let config = LogConfig { flush: FlushPolicy::Never, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(buf(&batch(3, 10, 0, 0)), 0).await.unwrap();
        log.roll().await.unwrap();
        assert_eq!(log.durable_offset(), 0, "the roll synced nothing");
        assert_eq!(log.sealed_not_durable(), Some(3));
        log.append(buf(&batch(2, 10, 0, 1)), 0).await.unwrap();
        log.checkpoint_recovery_offset().await.unwrap();
        let recovery = |dir| async move {
            Checkpoint::read(&RealDisk, dir).await.unwrap().map(|c| c.recovery_offset)
        };
        assert!(
            recovery(dir.path()).await.unwrap_or(0) < 3,
            "the recovery offset stays below the closed segment until a flush covered it"
        );
        let target = log.flush_target().unwrap().expect("the closed segment is not durable");
        let result = target.sync().await;
        log.complete_flush(&target, result).unwrap();
        assert_eq!((log.durable_offset(), log.sealed_not_durable()), (5, None));
        log.checkpoint_recovery_offset().await.unwrap();
        assert_eq!(recovery(dir.path()).await, Some(5), "then it moves past it");
    });
}

#[test]
fn reads_below_an_end_offset_stop_at_the_batch_boundary() {
    let dir = TempDir::new("read-below");
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        let mut bases = Vec::new();
        for i in 0..40i64 {
            bases.push(log.append(buf(&batch(2, 30, i, i as u64)), 0).await.unwrap().base_offset);
        }
        let end = log.log_end_offset();
        for &limit in &[0i64, 2, 10, 40, 62, end] {
            for &from in bases.iter().filter(|b| **b <= limit) {
                let result = log.read_below(from, u64::MAX, limit).await.unwrap();
                let got: Vec<i64> = split_batches(&result.read_bytes().await.unwrap())
                    .iter()
                    .map(|b| b.0)
                    .collect();
                let want: Vec<i64> =
                    bases.iter().copied().filter(|b| *b >= from && *b < limit).collect();
                assert_eq!(got, want, "read_below({from}, {limit})");
                if let Some(next) = result.next_offset() {
                    assert_eq!(next, limit.min(end), "next offset of read_below({from}, {limit})");
                }
            }
        }
    });
}

#[test]
fn a_large_append_with_one_bad_batch_leaves_the_log_and_file_unchanged() {
    let dir = TempDir::new("overlapped-check");
    block_on(async {
        let config = LogConfig { segment_bytes: 64 << 20, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(buf(&batch(3, 100, 0, 0)), 0).await.unwrap();
        let size_before = log.size_bytes();
        // Large enough for the overlapped check: 40 batches of ~10 KiB, the 30th damaged.
        let mut bytes = Vec::new();
        for i in 0..40u64 {
            let mut b = batch(10, 1000, i as i64, i);
            if i == 29 {
                let last = b.len() - 1;
                b[last] ^= 0x01;
            }
            bytes.extend_from_slice(&b);
        }
        assert!(bytes.len() as u64 >= fjord_storage::OVERLAPPED_CHECK_BYTES_MIN);
        let error = log.append(buf(&bytes), 0).await.unwrap_err();
        assert!(
            matches!(
                error,
                StorageError::InvalidBatch {
                    index: 29,
                    source: fjord_storage::BatchError::ChecksumMismatch { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.size_bytes(), size_before);
        let file_len =
            std::fs::metadata(dir.path().join("00000000000000000000.log")).unwrap().len();
        assert_eq!(file_len, size_before, "the written bytes were cut off again");
        // Without the damage the same append goes through, and survives a reopen.
        let mut good = Vec::new();
        for i in 0..40u64 {
            good.extend_from_slice(&batch(10, 1000, i as i64, i));
        }
        let info = log.append(buf(&good), 0).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (3, 402));
        log.verify().await.unwrap();
        drop(log);
        let mut log = PartitionLog::open(dir.path(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 403);
        log.verify().await.unwrap();
    });
}

#[test]
fn segments_roll_by_age_and_interval_flushes_come_due() {
    let dir = TempDir::new("time-roll");
    block_on(async {
        let config =
            LogConfig { segment_ms: 50, flush: FlushPolicy::IntervalMs(50), ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(buf(&batch(2, 10, 0, 0)), 0).await.unwrap();
        assert_eq!(log.segments().len(), 1);
        // Not yet old: nothing rolls, and an empty active segment never rolls.
        log.roll_if_due().await.unwrap();
        assert_eq!(log.segments().len(), 1);
        std::thread::sleep(std::time::Duration::from_millis(80));
        log.flush_if_due().await.unwrap();
        assert_eq!(log.durable_offset(), 2, "the interval passed, so the flush came due");
        log.roll_if_due().await.unwrap();
        assert_eq!(log.segments().len(), 2, "the segment is older than segment_ms");
        assert_eq!(log.segments()[1].base_offset, 2);
        log.roll_if_due().await.unwrap();
        assert_eq!(log.segments().len(), 2, "an empty active segment does not roll");
        // An append into an old segment rolls first.
        log.append(buf(&batch(1, 10, 0, 1)), 0).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(80));
        log.append(buf(&batch(1, 10, 0, 2)), 0).await.unwrap();
        assert_eq!(log.segments().len(), 3);
        log.verify().await.unwrap();
    });
}

/// `flush.messages`: appends are synced once that many offsets are not durable, whatever
/// the time-based policy says (here: never).
#[test]
fn a_flush_comes_once_flush_messages_offsets_are_not_durable() {
    let dir = TempDir::new("flush-messages");
    block_on(async {
        let config =
            LogConfig { flush: FlushPolicy::Never, flush_messages: Some(3), ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        log.append(buf(&batch(1, 10, 0, 0)), 0).await.unwrap();
        log.append(buf(&batch(1, 10, 0, 1)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 0, "two offsets are below the count");
        log.append(buf(&batch(1, 10, 0, 2)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 3, "the third offset made the flush");
        log.append(buf(&batch(5, 10, 0, 3)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 8, "one batch past the count flushes at once");
        log.append(buf(&batch(2, 10, 0, 4)), 0).await.unwrap();
        assert_eq!(log.durable_offset(), 8);
    });
}

/// `segment.jitter.ms`: each segment rolls somewhere in `(segment_ms - jitter, segment_ms]`
/// of age, at a point that differs between partitions made at the same moment; without
/// jitter every one rolls at `segment_ms` exactly.
#[test]
fn segment_jitter_spreads_the_time_rolls_of_partitions_made_together() {
    const SEGMENT_MS: u64 = 1_000;
    const PARTITIONS: usize = 16;
    let roll_ages = |jitter_ms: u64| {
        block_on(async move {
            let clock = SimClock::new(1_000_000);
            let disk = SimDisk::new(7, Faults::none());
            let config = LogConfig {
                segment_ms: SEGMENT_MS,
                segment_jitter_ms: jitter_ms,
                ..small_config()
            };
            let mut logs = Vec::new();
            for p in 0..PARTITIONS {
                let dir = std::path::PathBuf::from(format!("/sim/jitter/topic-{p}"));
                let mut log =
                    PartitionLog::open_on(disk.clone(), clock.clone(), &dir, config.clone())
                        .await
                        .unwrap();
                log.append(buf(&batch(1, 10, 0, p as u64)), 0).await.unwrap();
                logs.push(log);
            }
            let mut ages = vec![None; PARTITIONS];
            for age in 1..=SEGMENT_MS + 1 {
                clock.advance(1);
                for (log, rolled_at) in logs.iter_mut().zip(ages.iter_mut()) {
                    log.roll_if_due().await.unwrap();
                    if rolled_at.is_none() && log.segments().len() == 2 {
                        *rolled_at = Some(age);
                    }
                }
            }
            ages.into_iter().map(|age| age.expect("every segment rolls by segment_ms")).collect()
        })
    };
    let exact: Vec<u64> = roll_ages(0);
    assert!(exact.iter().all(|age| *age == SEGMENT_MS), "{exact:?}");
    let jittered: Vec<u64> = roll_ages(600);
    assert!(
        jittered.iter().all(|age| (SEGMENT_MS - 599..=SEGMENT_MS).contains(age)),
        "{jittered:?}"
    );
    let distinct = jittered.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct > PARTITIONS / 2, "the rolls spread: {jittered:?}");
    // A jitter above segment_ms is capped by it, as in Kafka.
    let capped: Vec<u64> = roll_ages(10 * SEGMENT_MS);
    assert!(capped.iter().all(|age| (1..=SEGMENT_MS).contains(age)), "{capped:?}");
}

#[test]
fn shared_appends_write_the_same_bytes_as_owned_ones_without_copying() {
    let owned_dir = TempDir::new("append-owned");
    let shared_dir = TempDir::new("append-shared");
    block_on(async {
        let mut shared = PartitionLog::open(
            shared_dir.path(),
            LogConfig { segment_bytes: 64 << 20, ..small_config() },
        )
        .await
        .unwrap();
        let mut owned_big = PartitionLog::open(
            owned_dir.path(),
            LogConfig { segment_bytes: 64 << 20, ..small_config() },
        )
        .await
        .unwrap();
        for round in 0..20u64 {
            // Small appends of several batches, and every fifth a large one (the overlapped check).
            let count = if round % 5 == 4 { 60 } else { 3 };
            let mut bytes = Vec::new();
            for i in 0..count {
                bytes.extend_from_slice(&batch(
                    1 + (i % 4) as usize,
                    900,
                    round as i64,
                    round * 100 + i,
                ));
            }
            let a = owned_big.append(buf(&bytes), 7).await.unwrap();
            let b = shared.append_shared(bytes::Bytes::from(bytes.clone()), 7).await.unwrap();
            assert_eq!(a, b);
        }
        let a = owned_big.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        let b = shared.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        assert!(a == b, "a shared append stores exactly what an owned one does");
        shared.verify().await.unwrap();
        // A damaged batch in a large shared append: refused, nothing kept.
        let end = shared.log_end_offset();
        let size = shared.size_bytes();
        let mut bytes = Vec::new();
        for i in 0..60u64 {
            let mut b = batch(2, 900, 0, i);
            if i == 41 {
                let last = b.len() - 1;
                b[last] ^= 0x10;
            }
            bytes.extend_from_slice(&b);
        }
        let error = shared.append_shared(bytes::Bytes::from(bytes), 7).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidBatch { index: 41, .. }), "{error}");
        assert_eq!((shared.log_end_offset(), shared.size_bytes()), (end, size));
        shared.verify().await.unwrap();
    });
}

#[test]
fn a_group_append_writes_every_good_admitted_set_once_in_order_and_refuses_a_bad_one_alone() {
    group_appends("append-group");
}

fn group_appends(name: &str) {
    let group_dir = TempDir::new(name);
    let single_dir = TempDir::new("append-single");
    block_on(async {
        let config = LogConfig { segment_bytes: 64 << 20, ..small_config() };
        let mut group = PartitionLog::open(group_dir.path(), config.clone()).await.unwrap();
        let mut single = PartitionLog::open(single_dir.path(), config).await.unwrap();
        let mut expected_end = 0;
        for round in 0..10u64 {
            // Five producers' sets of one to three batches; in odd rounds the third is damaged,
            // every third round the caller turns the fourth down.
            let mut sets = Vec::new();
            for producer in 0..5u64 {
                let mut bytes = Vec::new();
                for i in 0..=(producer % 3) {
                    bytes.extend_from_slice(&batch(
                        1 + (i % 4) as usize,
                        300,
                        round as i64,
                        round * 100 + producer * 10 + i,
                    ));
                }
                if round % 2 == 1 && producer == 2 {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x01;
                }
                sets.push(bytes::Bytes::from(bytes));
            }
            let mut asked = Vec::new();
            let results = group
                .append_shared_group(sets.clone(), 4, |n, base_offset, last_offset| {
                    asked.push((n, base_offset, last_offset));
                    !(round % 3 == 0 && n == 3)
                })
                .await;
            assert_eq!(results.len(), 5);
            let damaged = |producer: usize| round % 2 == 1 && producer == 2;
            let asked_about: Vec<usize> = asked.iter().map(|(n, _, _)| *n).collect();
            assert_eq!(
                asked_about,
                (0..5).filter(|p| !damaged(*p)).collect::<Vec<_>>(),
                "round {round}: admit is asked about each good set, in order"
            );
            for (producer, (set, result)) in sets.into_iter().zip(results).enumerate() {
                if damaged(producer) {
                    assert!(
                        matches!(result, Some(Err(StorageError::InvalidBatch { .. }))),
                        "round {round}: the damaged set is refused: {result:?}"
                    );
                    continue;
                }
                let Some(result) = result else {
                    assert!(
                        round % 3 == 0 && producer == 3,
                        "round {round}: producer {producer}'s set was not written"
                    );
                    continue;
                };
                let promised = asked
                    .iter()
                    .find(|(n, _, _)| *n == producer)
                    .map(|(_, base, last)| (*base, *last));
                assert_eq!(
                    result.as_ref().ok().map(|info| (info.base_offset, info.last_offset)),
                    promised,
                    "round {round}: admit was told the offsets the set got"
                );
                // The same set appended on its own elsewhere gets the same offsets.
                let alone = single.append_shared(set, 4).await.unwrap();
                let together =
                    result.unwrap_or_else(|e| panic!("round {round} producer {producer}: {e}"));
                assert_eq!(together, alone, "round {round} producer {producer}");
                assert_eq!(together.base_offset, expected_end, "consecutive offsets");
                expected_end = together.last_offset + 1;
            }
        }
        assert_eq!(group.log_end_offset(), expected_end);
        let a = group.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        let b = single.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        assert!(a == b, "a group append stores exactly what appends one by one do");
        group.verify().await.unwrap();
        group.close().await.unwrap();
        let reopened = PartitionLog::open(group_dir.path(), small_config()).await.unwrap();
        assert_eq!(reopened.log_end_offset(), expected_end);
    });
}

/// Bytes of disk blocks a file holds (`st_blocks`, in 512-byte units; on ext4 this counts
/// blocks reserved past the end and delayed allocations too).
fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).blocks()
        * 512
}

#[test]
fn the_active_segment_reserves_blocks_ahead_and_gives_them_back_when_sealed() {
    const RESERVED_MIN: u64 = 64 * 1024;
    let dir = TempDir::new("prealloc");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: None,
        preallocate: true,
        ..LogConfig::default()
    };
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        let first = dir.path().join("00000000000000000000.log");
        for i in 0..20u64 {
            log.append(buf(&batch(10, 1000, 1_000 + i as i64, i)), 0).await.unwrap();
        }
        let size = std::fs::metadata(&first).unwrap().len();
        assert!(size > 200_000, "the records are in the file ({size} bytes)");
        let held = allocated_bytes(&first);
        assert!(
            held >= size + RESERVED_MIN,
            "blocks are reserved ahead of the end: {held} bytes held for {size}"
        );
        // The reservation is invisible: the file's size is its data, a reopen reads it back.
        let end = log.log_end_offset();
        log.close().await.unwrap();
        assert!(
            allocated_bytes(&first) < size + RESERVED_MIN,
            "a clean close gives the reservation back: {} bytes held for {size}",
            allocated_bytes(&first)
        );
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        log.verify().await.unwrap();
        // Written again, reserved again; sealed by a roll, given back again.
        log.append(buf(&batch(10, 1000, 5_000, 99)), 0).await.unwrap();
        let size = std::fs::metadata(&first).unwrap().len();
        assert!(
            allocated_bytes(&first) >= size + RESERVED_MIN,
            "{} bytes held for {size}",
            allocated_bytes(&first)
        );
        log.roll().await.unwrap();
        assert!(
            allocated_bytes(&first) < size + RESERVED_MIN,
            "a sealed segment holds no reservation: {} bytes held for {size}",
            allocated_bytes(&first)
        );
        log.verify().await.unwrap();
        let result = log.read(0, 64 << 20).await.unwrap();
        assert_eq!(split_batches(&result.read_bytes().await.unwrap()).len(), 21);
    });
}

/// Without `preallocate` (the default, as in Kafka) an append reserves nothing ahead: an
/// append must not wait for ext4 to allocate blocks (issue 25).
#[test]
fn by_default_the_active_segment_reserves_nothing_ahead() {
    const RESERVED_MIN: u64 = 64 * 1024;
    let dir = TempDir::new("no-prealloc");
    let config = LogConfig { segment_bytes: 64 << 20, retention_ms: None, ..LogConfig::default() };
    assert!(!config.preallocate);
    block_on(async {
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        let first = dir.path().join("00000000000000000000.log");
        for i in 0..20u64 {
            log.append(buf(&batch(10, 1000, 1_000 + i as i64, i)), 0).await.unwrap();
        }
        let size = std::fs::metadata(&first).unwrap().len();
        assert!(
            allocated_bytes(&first) < size + RESERVED_MIN,
            "{} bytes held for {size}",
            allocated_bytes(&first)
        );
    });
}

/// Batches of `count` batches of two records, `value_bytes` each, timestamped far in the past.
fn old_batches(count: u64, value_bytes: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..count {
        bytes.extend_from_slice(&batch(2, value_bytes, 1_000, seed * 1_000 + i));
    }
    bytes
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("a clock after 1970").as_millis()).expect("ms fit in i64")
}

/// `message.timestamp.type=LogAppendTime`: every way a producer's batches are appended
/// (owned, shared, large with the overlapped check, a group) marks them LogAppendTime with
/// the append time as their max timestamp and a CRC that checks; the append reports that
/// time; a damaged batch is still refused (its CRC is checked before it is restamped); the
/// time index finds the records by the append time; a replica copies the stamped batches
/// unchanged.
#[test]
fn log_append_time_stamps_every_producer_append_with_the_broker_clock() {
    let dir = TempDir::new("append-time");
    let replica_dir = TempDir::new("append-time-replica");
    block_on(async {
        let config = LogConfig { segment_bytes: 64 << 20, log_append_time: true, ..small_config() };
        let mut log = PartitionLog::open(dir.path(), config.clone()).await.unwrap();
        let before = now_ms();
        let mut stamps = Vec::new();
        stamps.push(log.append(buf(&old_batches(3, 100, 1)), 5).await.unwrap().log_append_time);
        let shared = bytes::Bytes::from(old_batches(3, 100, 2));
        stamps.push(log.append_shared(shared, 5).await.unwrap().log_append_time);
        // Large enough for the overlapped check, which a restamped append does not use.
        let large = old_batches(200, 1_000, 3);
        assert!(large.len() as u64 >= fjord_storage::OVERLAPPED_CHECK_BYTES_MIN);
        stamps.push(log.append(buf(&large), 5).await.unwrap().log_append_time);
        let sets = vec![
            bytes::Bytes::from(old_batches(2, 50, 4)),
            bytes::Bytes::from(old_batches(1, 50, 5)),
        ];
        for result in log.append_shared_group(sets, 5, |_, _, _| true).await {
            stamps.push(result.expect("admitted").expect("appended").log_append_time);
        }
        let after = now_ms();
        for stamp in &stamps {
            assert!((before..=after).contains(stamp), "append time {stamp} in {before}..={after}");
        }

        let mut damaged = old_batches(200, 1_000, 6);
        let last = damaged.len() - 1;
        damaged[last] ^= 0x04;
        let end = log.log_end_offset();
        let error = log.append(buf(&damaged), 5).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidBatch { index: 199, .. }), "{error}");
        assert_eq!(log.log_end_offset(), end, "a damaged batch leaves the log unchanged");

        let stored = log.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        let batches = split_batches(&stored);
        assert_eq!(batches.len(), 3 + 3 + 200 + 3);
        for (base_offset, _, bytes) in &batches {
            let header = fjord_storage::batch::BatchHeader::view(bytes).unwrap();
            assert!(header.is_log_append_time(), "batch at {base_offset} marked LogAppendTime");
            let stamped = header.max_timestamp.get();
            assert!(
                stamps.contains(&stamped),
                "batch at {base_offset}: {stamped} not an append time"
            );
            assert_eq!(header.base_timestamp.get(), 1_000, "the producer's first timestamp stays");
            fjord_storage::batch::verify_contents(bytes)
                .unwrap_or_else(|e| panic!("batch at {base_offset}: {e}"));
        }
        log.verify().await.unwrap();
        assert_eq!(log.offset_for_timestamp(1_000).await.unwrap().map(|(o, _)| o), Some(0));
        assert_eq!(log.offset_for_timestamp(after + 1).await.unwrap(), None);

        // A replica takes the stamped batches as they are.
        let mut replica = PartitionLog::open(replica_dir.path(), config).await.unwrap();
        replica.append_replicated(buf(&stored)).await.unwrap();
        let copied = replica.read(0, u64::MAX).await.unwrap().read_bytes().await.unwrap();
        assert!(copied == stored, "a replica stores the leader's stamped bytes unchanged");
    });
}
