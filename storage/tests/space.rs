//! Running out of space, on the simulated disk: a write that fails with ENOSPC makes the
//! log full, not poisoned; a full log serves reads of everything committed and refuses
//! writes; once space returns it reopens (recovery checks the tail the failed write left)
//! and takes writes again; a producer append is refused before it fails while free space is
//! under `free_bytes_min`; and a log opens on a full file system. The last test runs
//! seeded schedules of appends, rolls, space coming and going, and crashes.

use std::path::Path;

use fjord_storage::io::block_on;
use fjord_storage::sim::{schedules, seed, Faults, Rng, SimClock, SimDisk};
use fjord_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};

use crate::common::*;

type SimLog = PartitionLog<SimDisk, SimClock>;

const DIR: &str = "/sim/space-0";

fn config(free_bytes_min: u64) -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 256,
        flush: FlushPolicy::EveryAppend,
        free_bytes_min,
        ..LogConfig::default()
    }
}

async fn open(disk: &SimDisk, clock: &SimClock, free_bytes_min: u64) -> SimLog {
    PartitionLog::open_on(disk.clone(), clock.clone(), Path::new(DIR), config(free_bytes_min))
        .await
        .expect("open the log")
}

/// Every batch in the log, as (base offset, record count, bytes with the stamped header).
async fn batches(log: &mut SimLog) -> Vec<(i64, i32, Vec<u8>)> {
    if log.log_start_offset() == log.log_end_offset() {
        return Vec::new();
    }
    let read = log.read(log.log_start_offset(), u64::MAX).await.expect("read the whole log");
    split_batches(&read.read_bytes().await.expect("read the bytes"))
}

/// Appends producer batches until one fails; returns the error and the batches appended.
async fn append_until_refused(log: &mut SimLog, seed: u64) -> (StorageError, usize) {
    for n in 0.. {
        let records = batch(3, 200, 1_000 + n as i64, seed + n as u64);
        if let Err(error) = log.append(buf(&records), 0).await {
            return (error, n);
        }
    }
    unreachable!("the loop ends with a refusal")
}

#[test]
fn a_full_file_system_stops_writes_not_reads_and_writes_resume_when_space_returns() {
    block_on(async {
        let disk = SimDisk::new(seed("space"), Faults::none());
        let clock = SimClock::new(1_000_000);
        let mut log = open(&disk, &clock, 0).await;
        for n in 0..5 {
            log.append(buf(&batch(3, 200, 1_000, n)), 0).await.expect("append with space");
        }
        disk.set_free_bytes(Some(2_000));
        let (error, fitted) = append_until_refused(&mut log, 100).await;
        assert_eq!(error.io_kind(), Some(std::io::ErrorKind::StorageFull), "{error}");
        assert!(log.is_full(), "out of space: the log is full");
        assert!(log.poisoned().is_none(), "out of space is not a poison: {:?}", log.poisoned());
        let committed = log.log_end_offset();
        assert_eq!(committed, 3 * (5 + fitted as i64));
        // The last sectors went to the failed write's prefix; none are left.
        disk.set_free_bytes(Some(0));

        // Everything committed is readable; writes are refused while there is no space.
        let before = batches(&mut log).await;
        assert_eq!(before.len(), 5 + fitted);
        for _ in 0..3 {
            match log.append(buf(&batch(1, 10, 2_000, 7)), 0).await {
                Err(StorageError::Full { dir, .. }) => assert_eq!(dir, Path::new(DIR)),
                other => panic!("a full log must refuse writes with Full, got {other:?}"),
            }
        }
        assert_eq!(log.log_end_offset(), committed);

        // Space returns: the next write reopens the log, cuts what the failed write left and
        // goes on from the committed end.
        disk.set_free_bytes(None);
        let info = log.append(buf(&batch(2, 10, 3_000, 8)), 0).await.expect("space returned");
        assert_eq!(info.base_offset, committed);
        assert!(!log.is_full());
        log.verify().await.expect("the log checks out after the resume");
        let after = batches(&mut log).await;
        assert_eq!(&after[..before.len()], &before[..], "committed batches unchanged");
        assert_eq!(after.len(), before.len() + 1);

        log.close().await.expect("close");
        let mut reopened = open(&disk, &clock, 0).await;
        assert_eq!(batches(&mut reopened).await, after, "a reopen finds the same log");
    });
}

#[test]
fn producer_appends_are_refused_under_the_free_space_floor_before_anything_fails() {
    block_on(async {
        let disk = SimDisk::new(seed("space-floor"), Faults::none());
        let clock = SimClock::new(1_000_000);
        let floor = 64 * 1024;
        let mut log = open(&disk, &clock, floor).await;
        disk.set_free_bytes(Some(floor + 5_000));
        let (error, fitted) = append_until_refused(&mut log, 0).await;
        assert!(
            matches!(&error, StorageError::Full { reason, .. } if reason.contains("kept free")),
            "refused by the floor: {error}"
        );
        assert!(fitted > 0, "appends that leave the floor free are taken");
        assert!(!log.is_full(), "nothing failed: the log is not full");
        // The floor refused before writing: the free space left is at least the floor.
        let committed = log.log_end_offset();
        log.verify().await.expect("verify");
        // More space: produce goes on at once, no reopen needed.
        disk.set_free_bytes(Some(floor + 100_000));
        clock.advance(2_000);
        let info = log.append(buf(&batch(1, 10, 5_000, 9)), 0).await.expect("above the floor");
        assert_eq!(info.base_offset, committed);
    });
}

#[test]
fn a_log_opens_on_a_full_file_system_and_serves_reads() {
    block_on(async {
        let disk = SimDisk::new(seed("space-open"), Faults::none());
        let clock = SimClock::new(1_000_000);
        let mut log = open(&disk, &clock, 0).await;
        for n in 0..4 {
            log.append(buf(&batch(2, 100, 1_000, n)), 0).await.expect("append");
        }
        let written = batches(&mut log).await;
        // Not closed: the next open scans the tail and wants to write its checkpoint.
        drop(log);
        disk.set_free_bytes(Some(0));
        let mut log = open(&disk, &clock, 0).await;
        assert_eq!(batches(&mut log).await, written, "reads on a full file system");
        assert!(log.append(buf(&batch(1, 10, 2_000, 5)), 0).await.is_err());
        disk.set_free_bytes(None);
        log.append(buf(&batch(1, 10, 2_000, 5)), 0).await.expect("space returned");
        assert_eq!(log.log_end_offset(), 9);
    });
}

#[test]
fn seeded_schedules_of_space_coming_and_going_lose_no_acknowledged_batch() {
    let base = seed("space-schedules");
    let count = schedules(300);
    for n in 0..count {
        let seed = base.wrapping_add(n);
        block_on(run_schedule(seed))
            .unwrap_or_else(|problem| panic!("schedule {n} (FJORD_SEED={seed}) failed: {problem}"));
    }
    eprintln!("{count} space schedules from seed {base}");
}

/// One schedule: acknowledged batches (all synced: `EveryAppend`) must be in the log, in
/// order, after every resume and every crash; nothing else may be.
async fn run_schedule(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let disk = SimDisk::new(seed, Faults::none());
    let clock = SimClock::new(1_000_000);
    let floor = if rng.coin() { 0 } else { 4_096 };
    let mut log = open(&disk, &clock, floor).await;
    let mut acknowledged: Vec<Vec<u8>> = Vec::new();
    for op in 0..60 {
        match rng.below(10) {
            0..=5 => {
                let records =
                    batch(1 + rng.below(4) as usize, rng.below(600) as usize, 1_000, seed ^ op);
                match log.append(buf(&records), 0).await {
                    Ok(_) => acknowledged.push(records),
                    Err(error) if error.io_kind() == Some(std::io::ErrorKind::StorageFull) => {}
                    Err(error) => return Err(format!("op {op}: append failed otherwise: {error}")),
                }
            }
            6 => {
                if let Err(error) = log.roll().await {
                    if error.io_kind() != Some(std::io::ErrorKind::StorageFull) {
                        return Err(format!("op {op}: roll failed otherwise: {error}"));
                    }
                }
            }
            7 | 8 => {
                let free = if rng.coin() { None } else { Some(rng.below(3_000)) };
                disk.set_free_bytes(free);
                clock.advance(1_500);
            }
            _ => {
                // A crash (power stays on for the reopen) on a disk with space.
                drop(log);
                disk.crash();
                disk.set_free_bytes(None);
                log = open(&disk, &clock, floor).await;
            }
        }
        if log.poisoned().is_some() {
            return Err(format!("op {op}: poisoned by running out of space: {:?}", log.poisoned()));
        }
        check(&mut log, &acknowledged).await.map_err(|e| format!("op {op}: {e}"))?;
    }
    disk.set_free_bytes(None);
    clock.advance(1_500);
    let last = batch(1, 10, 9_000, seed);
    log.append(buf(&last), 0).await.map_err(|e| format!("append once space is back: {e}"))?;
    acknowledged.push(last);
    check(&mut log, &acknowledged).await?;
    log.verify().await.map_err(|e| format!("verify: {e}"))
}

/// The log holds exactly the acknowledged batches (compared without the stamped header).
async fn check(log: &mut SimLog, acknowledged: &[Vec<u8>]) -> Result<(), String> {
    let found = batches(log).await;
    if found.len() != acknowledged.len() {
        return Err(format!(
            "{} batches in the log, {} acknowledged",
            found.len(),
            acknowledged.len()
        ));
    }
    for (n, ((_, _, stored), sent)) in found.iter().zip(acknowledged).enumerate() {
        // The header's first 12 bytes (base offset, length) and the leader epoch are stamped.
        if stored.len() != sent.len() || stored[16..] != sent[16..] {
            return Err(format!("batch {n} differs from the one acknowledged"));
        }
    }
    Ok(())
}
