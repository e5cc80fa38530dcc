//! Failures on real files. Running out of space: the active segment's `.log` is a symlink
//! to `/dev/full`, where every write fails with ENOSPC; the log becomes full (reads go on,
//! writes are refused) and resumes by itself once writes succeed again. (I/O errors that
//! poison a log are injected by the disk simulator, `simulation.rs`.) And a closed log.

use std::io::ErrorKind;

use fjord_storage::io::block_on;
use fjord_storage::{file_name, FlushPolicy, LogConfig, PartitionLog, StorageError};

use crate::common::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: Some(1000),
        flush: FlushPolicy::EveryAppend,
        ..LogConfig::default()
    }
}

#[test]
fn running_out_of_space_refuses_writes_keeps_reads_and_resumes_when_space_returns() {
    let dir = TempDir::new("poison");
    let path = dir.path();
    block_on(async {
        let first = batch(3, 50, 1_000, 1);
        let mut log = PartitionLog::open(path, config()).await.unwrap();
        log.append(buf(&first), 0).await.unwrap();
        log.roll().await.unwrap();
        let active = log.segments().last().unwrap().base_offset;
        assert_eq!(active, 3);
        log.close().await.unwrap();

        // The active segment is empty, so it loses nothing by pointing at /dev/full.
        let active_log = path.join(file_name(active, "log"));
        assert_eq!(std::fs::metadata(&active_log).unwrap().len(), 0);
        std::fs::remove_file(&active_log).unwrap();
        std::os::unix::fs::symlink("/dev/full", &active_log).unwrap();

        let mut log = PartitionLog::open(path, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 3);
        assert!(log.poisoned().is_none());
        let error = log.append(buf(&batch(2, 10, 2_000, 2)), 0).await.unwrap_err();
        assert!(
            matches!(error, StorageError::Io(_)),
            "the failing call returns the I/O error itself: {error:?}"
        );
        assert_eq!(error.io_kind(), Some(ErrorKind::StorageFull), "{error}");
        // Out of space is not a poison: the log is full, serves reads, refuses writes.
        assert!(log.is_full(), "ENOSPC makes the log full");
        assert!(log.poisoned().is_none(), "{:?}", log.poisoned());
        let stored =
            split_batches(&log.read(0, 1 << 20).await.unwrap().read_bytes().await.unwrap());
        assert_eq!(stored.len(), 1, "committed data stays readable");
        assert_eq!(log.offset_for_timestamp(0).await.unwrap().map(|(o, _)| o), Some(0));
        log.verify().await.unwrap();
        // Space comes back (a working file in place of /dev/full): the next append resumes
        // by itself, without a restart, after the first batch.
        std::fs::remove_file(&active_log).unwrap();
        std::fs::write(&active_log, b"").unwrap();
        assert_eq!(log.append(buf(&batch(2, 10, 2_000, 2)), 0).await.unwrap().base_offset, 3);
        assert!(!log.is_full());
        log.verify().await.unwrap();
        let stored =
            split_batches(&log.read(0, 1 << 20).await.unwrap().read_bytes().await.unwrap());
        assert_eq!(stored.len(), 2);
        assert_eq!(&stored[0].2[21..], &first[21..], "the first batch's CRC-covered bytes survive");
    });
}

#[test]
fn a_closed_log_refuses_every_call_as_closed_not_poisoned() {
    let dir = TempDir::new("closed");
    let path = dir.path();
    block_on(async {
        let mut log = PartitionLog::open(path, config()).await.unwrap();
        log.append(buf(&batch(3, 50, 1_000, 1)), 0).await.unwrap();
        log.close().await.unwrap();
        assert!(log.poisoned().is_none(), "closing is not an I/O failure");
        let closed = |result: Result<_, StorageError>, call: &str| match result {
            Err(StorageError::Closed { dir: closed_dir }) => assert_eq!(closed_dir, path, "{call}"),
            other => panic!("{call} on a closed log must fail with Closed, got {other:?}"),
        };
        closed(log.append(buf(&batch(1, 10, 2_000, 2)), 0).await.map(|_| ()), "append");
        closed(log.read(0, 1 << 20).await.map(|_| ()), "read");
        closed(log.flush().await.map(|_| ()), "flush");
        closed(log.close().await, "close");
        assert!(log.poisoned().is_none());
    });
    // What was appended before the close is there at the next open.
    block_on(async {
        let log = PartitionLog::open(path, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 3);
    });
}
