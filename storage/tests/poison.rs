//! An I/O error poisons the partition: the failing call returns the error, every later call
//! fails with `Poisoned` naming it, and nothing retries. The fault is real: the active
//! segment's `.log` is a symlink to `/dev/full`, where every write fails with ENOSPC.

use std::io::ErrorKind;
use std::path::Path;

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

/// A `Poisoned` error that names the ENOSPC write.
fn assert_poisoned(result: Result<impl std::fmt::Debug, StorageError>, dir: &Path, call: &str) {
    match result {
        Err(StorageError::Poisoned { dir: poisoned_dir, kind, message }) => {
            assert_eq!(poisoned_dir, dir, "{call}");
            assert_eq!(kind, ErrorKind::StorageFull, "{call}: {message}");
            assert!(
                message.contains("write") && message.contains(".log"),
                "{call}: the poison names the failed write: {message}"
            );
        }
        other => panic!("{call} on a poisoned log must fail with Poisoned, got {other:?}"),
    }
}

#[test]
fn a_failed_write_poisons_every_later_call() {
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
        let (kind, message) = log.poisoned().expect("the log is poisoned");
        assert_eq!(kind, ErrorKind::StorageFull, "{message}");

        // Every later call fails the same way, reads of healthy segments included.
        assert_poisoned(log.append(buf(&batch(1, 10, 3_000, 3)), 0).await, path, "append");
        assert_poisoned(
            log.append_replicated(buf(&batch(1, 10, 3_000, 3))).await,
            path,
            "append_replicated",
        );
        assert_poisoned(log.read(0, 1 << 20).await, path, "read");
        assert_poisoned(log.flush().await, path, "flush");
        assert_poisoned(log.roll().await, path, "roll");
        assert_poisoned(log.offset_for_timestamp(0).await, path, "offset_for_timestamp");
        assert_poisoned(log.truncate_to(1).await, path, "truncate_to");
        assert_poisoned(log.apply_retention(i64::MAX).await, path, "apply_retention");
        assert_poisoned(log.advance_log_start(1).await, path, "advance_log_start");
        assert_poisoned(log.verify().await, path, "verify");
        assert_poisoned(log.close().await, path, "close");
        drop(log);

        // Nothing was damaged: with a working file back in place, the log reopens (unclean:
        // the append had cleared the clean flag), holds the first batch, and appends again.
        std::fs::remove_file(&active_log).unwrap();
        std::fs::write(&active_log, b"").unwrap();
        let mut log = PartitionLog::open(path, config()).await.unwrap();
        assert!(!log.open_report().clean_shutdown);
        assert_eq!(log.log_end_offset(), 3);
        let stored =
            split_batches(&log.read(0, 1 << 20).await.unwrap().read_bytes().await.unwrap());
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0].2[21..], &first[21..], "the first batch's CRC-covered bytes survive");
        assert_eq!(log.append(buf(&batch(2, 10, 2_000, 2)), 0).await.unwrap().base_offset, 3);
        log.verify().await.unwrap();
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
