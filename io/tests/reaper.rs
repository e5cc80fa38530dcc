//! The reaper: a deleted file marked with `close_last_in_reaper` is closed for the last time
//! by the reaper thread, after the shard's handle is gone and the grace period has passed,
//! so the shard never runs the file's eviction (its blocks and pages freed).

use std::path::Path;
use std::time::{Duration, Instant};

use fjord_io::{block_on, File, REAP_GRACE_MS};

use crate::common::*;

/// How many descriptors of this process name `path` (a deleted file shows as
/// "<path> (deleted)" in `/proc/self/fd`).
fn descriptors_of(path: &Path) -> usize {
    let deleted = format!("{} (deleted)", path.display());
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == deleted)
        .count()
}

#[test]
fn the_last_close_of_a_deleted_file_happens_in_the_reaper_after_the_grace_period() {
    let dir = TempDir::new("reaper");
    let path = dir.path().join("segment.log");
    block_on(async {
        let file = File::open_rw(&path, true).await.unwrap();
        let (written, _) = file.write_all_at(vec![7u8; 64 * 1024], 0).await;
        written.unwrap();
        file.close_last_in_reaper().unwrap();
        fjord_io::remove_file(&path).await.unwrap();
        assert_eq!(descriptors_of(&path), 2, "the shard's descriptor and the reaper's copy");
        let closed = Instant::now();
        file.close().await.unwrap();
        assert_eq!(descriptors_of(&path), 1, "the reaper's copy outlives the shard's close");
        let deadline = closed + Duration::from_millis(REAP_GRACE_MS) + Duration::from_secs(10);
        while descriptors_of(&path) > 0 {
            assert!(Instant::now() < deadline, "the reaper never closed its copy");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            closed.elapsed() >= Duration::from_millis(REAP_GRACE_MS),
            "closed after {:?}, before the grace period",
            closed.elapsed()
        );
    });
}
