//! A partition directory as a crash or a bad disk may leave it, opened by the real
//! `PartitionLog::open`: recovery's walk of the `.log` file (every batch checked, the log cut
//! at the first byte that is not part of one), or, after a clean shutdown, the trusted open
//! that loads `.index` and `.timeindex` and walks only the tail. Then a read, a timestamp
//! lookup, the tail walk and a close. The files are written into a scratch directory (on
//! tmpfs when there is one) and opened on an io_uring runtime made once per process.
//!
//! Input: flags u8 (bit 0: a clean-shutdown checkpoint, so the open trusts the indexes;
//! bit 1: the segment's base offset is 2^40, not 0), `.index` length u16 BE, `.timeindex`
//! length u16 BE, then the `.index`, `.timeindex` and `.log` bytes.

#![no_main]

use std::path::{Path, PathBuf};

use fjord_storage::{file_name, Checkpoint, LogConfig, PartitionLog, RealDisk};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: tokio_uring::Runtime =
        tokio_uring::Runtime::new(&tokio_uring::builder()).expect("io_uring runtime");
    static DIR: PathBuf = scratch_dir();
}

fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    root.join(format!("fjord-fuzz-segment-{}", std::process::id()))
}

/// The parts of an input.
struct Files<'a> {
    clean: bool,
    base_offset: i64,
    index: &'a [u8],
    time_index: &'a [u8],
    log: &'a [u8],
}

fn split(input: &[u8]) -> Option<Files<'_>> {
    let (&flags, rest) = input.split_first()?;
    let (lengths, rest) = rest.split_first_chunk::<4>()?;
    let index_len = usize::from(u16::from_be_bytes([lengths[0], lengths[1]]));
    let time_len = usize::from(u16::from_be_bytes([lengths[2], lengths[3]]));
    let index = rest.get(..index_len)?;
    let time_index = rest.get(index_len..index_len + time_len)?;
    let log = &rest[index_len + time_len..];
    let base_offset = if flags & 2 != 0 { 1 << 40 } else { 0 };
    Some(Files { clean: flags & 1 != 0, base_offset, index, time_index, log })
}

fuzz_target!(|input: &[u8]| {
    let Some(files) = split(input) else { return };
    DIR.with(|dir| {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("scratch dir");
        let write = |extension: &str, bytes: &[u8]| {
            std::fs::write(dir.join(file_name(files.base_offset, extension)), bytes)
                .expect("write segment file");
        };
        write("log", files.log);
        write("index", files.index);
        write("timeindex", files.time_index);
        RUNTIME.with(|runtime| runtime.block_on(open_and_read(dir, &files)));
    });
});

async fn open_and_read(dir: &Path, files: &Files<'_>) {
    if files.clean {
        let checkpoint = Checkpoint {
            clean_shutdown: true,
            recovery_offset: i64::MAX,
            log_start_offset: files.base_offset,
        };
        checkpoint.write(&RealDisk, dir).await.expect("write checkpoint");
    }
    let config = LogConfig { index_interval_bytes: 64, ..LogConfig::default() };
    let Ok(mut log) = PartitionLog::open(dir, config).await else { return };
    let start = log.log_start_offset();
    assert!(start <= log.log_end_offset(), "log start past its end");
    if let Ok(read) = log.read(start, 1 << 20).await {
        let _ = read.read_bytes().await;
    }
    let _ = log.offset_for_timestamp(0).await;
    let _ = log.offset_for_timestamp(i64::MAX).await;
    let _ = log.tail_batches(1 << 20).await;
    let _ = log.close().await;
}
