//! A partition's `leader-epoch-checkpoint` file (Kafka's text format), loaded by the real
//! reader, `LeaderEpochCache::load`, which reads the file itself (no pure step) on an
//! io_uring runtime made once per process; then the lookups a leader answers
//! OffsetForLeaderEpoch with.

#![no_main]

use std::path::PathBuf;

use fjord_replication::LeaderEpochCache;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: tokio_uring::Runtime =
        tokio_uring::Runtime::new(&tokio_uring::builder()).expect("io_uring runtime");
    static DIR: PathBuf = scratch_dir();
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fjord-fuzz-leader-epochs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fuzz_target!(|bytes: &[u8]| {
    DIR.with(|dir| {
        std::fs::write(dir.join("leader-epoch-checkpoint"), bytes).expect("write");
        let loaded = RUNTIME.with(|runtime| runtime.block_on(LeaderEpochCache::load(dir)));
        let Ok(cache) = loaded else { return };
        for &(epoch, start) in cache.entries() {
            let _ = cache.epoch_for_offset(start);
            let _ = cache.end_offset_for(epoch, i64::MAX);
            let _ = cache.end_offset_for(epoch.saturating_add(1), 0);
        }
        let _ = cache.latest_epoch();
    });
});
