//! Regression tests, each named after the bug it pins, with who found it.

use std::path::Path;

use fjord_replication::{ClusterState, LeaderEpochCache, ReplicationError, StateStore};
use fjord_storage::io::block_on;
use fjord_storage::sim::{Faults, SimDisk};
use fjord_storage::Disk;

const CONTROL_DIR: &str = "/sim/cluster";

/// Disks (seeds) tried: each crash keeps its own prefix of the unsynced name changes, and
/// some of them drop the rename the test is about.
const DISK_SEEDS: u64 = 64;

fn store(disk: &SimDisk) -> StateStore<SimDisk> {
    StateStore::new_on(disk.clone(), Path::new(CONTROL_DIR))
}

/// Found by the simulator (`simulation.rs`). An update whose directory sync failed after its rename left its state readable but not
/// durable; an update that then changed nothing (or refused) read that state and returned
/// it as acknowledged without syncing, and a crash took it back (version 1 acknowledged,
/// version 0 after the crash). A leader asking again for an in-sync set its failed request
/// had already written acted on a set that a crash could undo.
#[test]
fn an_update_that_changes_nothing_makes_the_state_it_returns_durable() {
    block_on(async {
        for seed in 0..DISK_SEEDS {
            for refuse in [false, true] {
                let disk = SimDisk::new(seed, Faults::none());
                disk.create_dir_all(Path::new(CONTROL_DIR)).unwrap();
                let writer = store(&disk);
                // Syncs of a write: the temporary file's, then the directory's.
                disk.fail_at_sync(1);
                let failed = writer
                    .update(|state: &mut ClusterState| {
                        state.controller = 7;
                        Ok::<bool, ()>(true)
                    })
                    .await;
                assert!(failed.is_err(), "seed {seed}: the directory sync was to fail");
                let acked = writer
                    .update(|state| if refuse { Err(state.version) } else { Ok(false) })
                    .await
                    .expect("a quiet disk");
                assert_eq!(
                    acked.map_or_else(|version| version, |state| state.version),
                    1,
                    "seed {seed}"
                );
                disk.crash();
                let after = store(&disk).read().await.unwrap();
                assert_eq!(
                    (after.version, after.controller),
                    (1, 7),
                    "seed {seed}, refuse {refuse}: the returned state did not survive a crash"
                );
            }
        }
    });
}

/// Found reading the loader while moving it onto the disk trait. A leader-epoch checkpoint
/// cut after a whole line loaded as a shorter history (`take(count)` stops quietly), and
/// a follower would then truncate at the wrong epoch's end. Kafka refuses such a file; so
/// does Fjord now, naming it.
#[test]
fn a_leader_epoch_checkpoint_shorter_than_its_count_is_refused() {
    block_on(async {
        let disk = SimDisk::new(0, Faults::none());
        let dir = Path::new("/sim/data/topic-0");
        disk.create_dir_all(dir).unwrap();
        let path = dir.join("leader-epoch-checkpoint");
        disk.write_file_atomic(&path, b"0\n3\n0 0\n2 10\n".to_vec()).await.unwrap();
        match LeaderEpochCache::load_on(disk.clone(), dir).await {
            Err(ReplicationError::StateFile { path: named, reason }) => {
                assert_eq!(named, path.display().to_string());
                assert!(reason.contains("3 entries expected, 2 found"), "{reason}");
            }
            other => panic!("a short checkpoint loaded: {other:?}"),
        }
        disk.write_file_atomic(&path, b"0\n2\n0 0\n2 10\n".to_vec()).await.unwrap();
        let whole = LeaderEpochCache::load_on(disk, dir).await.unwrap();
        assert_eq!(whole.entries(), &[(0, 0), (2, 10)]);
    });
}
