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
                // The first update copies an empty state in as version 0.
                writer.update(|_| Ok::<bool, ()>(false)).await.unwrap().unwrap();
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

/// A cluster directory on the machine's disk for one test, removed when dropped.
struct RealDir(std::path::PathBuf);

impl RealDir {
    fn new(name: &str) -> RealDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("fjord-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        RealDir(dir)
    }

    /// The names in the directory of versions.
    fn versions(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join("cluster-state"))
            .expect("the directory of versions")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }
}

impl Drop for RealDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Found by the nemesis (issue 23). State writers took an `flock` around read, change,
/// write and rename; a broker stopped (SIGSTOP, a VM pause) while it held it stopped every
/// state write in the cluster, failover included, until it resumed: other writers waited
/// 10 s and failed. Here a writer is held up inside its change (between its read and its
/// write) while another writes twenty versions, more than are kept, so the held-up writer's
/// next version name has come and gone. The other writer must not wait for it, the held-up
/// one must not win with that reused name, and no increment may be lost.
#[test]
fn a_writer_held_up_mid_write_blocks_no_other_writer_and_cannot_win_with_a_reused_name() {
    use std::sync::mpsc;
    use std::time::Duration;
    const OTHER_WRITES: u64 = 20;
    let dir = RealDir::new("held-up-writer");
    let (inside_tx, inside_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let held_dir = dir.0.clone();
    let held = std::thread::spawn(move || {
        block_on(async {
            let mut changes = 0u32;
            let state = StateStore::new(&held_dir)
                .update(|state| {
                    changes += 1;
                    if changes == 1 {
                        inside_tx.send(()).expect("tell the test");
                        release_rx.recv_timeout(Duration::from_secs(60)).expect("released");
                    }
                    state.controller_epoch += 1;
                    Ok::<bool, ()>(true)
                })
                .await;
            (state.expect("the held-up writer's update").expect("never refused"), changes)
        })
    });
    inside_rx.recv_timeout(Duration::from_secs(30)).expect("the writer reached its change");
    block_on(async {
        let store = StateStore::new(&dir.0);
        for i in 0..OTHER_WRITES {
            let result = store
                .update(|state| {
                    state.controller_epoch += 1;
                    Ok::<bool, ()>(true)
                })
                .await;
            result
                .unwrap_or_else(|e| panic!("write {i} while another writer is held up: {e}"))
                .expect("never refused");
        }
    });
    release_tx.send(()).expect("release the held-up writer");
    let (written, changes) = held.join().expect("the held-up writer");
    assert!(changes >= 2, "the held-up writer's first change must lose and run again");
    let after = block_on(async { StateStore::new(&dir.0).read().await.expect("read") });
    assert_eq!(after.controller_epoch, OTHER_WRITES + 1, "an increment was lost: {after:?}");
    assert_eq!(after, written, "the held-up writer's version is the newest");
    let names = dir.versions();
    assert!(
        names.len() as u64 <= fjord_replication::VERSIONS_KEPT,
        "more than the kept versions (or leftover temporary files) on disk: {names:?}"
    );
    assert!(names.last().is_some_and(|n| n == &format!("{:020}.toml", after.version)), "{names:?}");
}

/// Writers on two threads race for every version: each loss is read again and reapplied,
/// so every change lands exactly once.
#[test]
fn racing_writers_lose_no_update() {
    const WRITES_EACH: u64 = 150;
    let dir = RealDir::new("racing-writers");
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.0.clone();
            std::thread::spawn(move || {
                block_on(async {
                    let store = StateStore::new(&dir);
                    for _ in 0..WRITES_EACH {
                        store
                            .update(|state| {
                                state.controller_epoch += 1;
                                Ok::<bool, ()>(true)
                            })
                            .await
                            .expect("an update")
                            .expect("never refused");
                    }
                })
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer");
    }
    let after = block_on(async { StateStore::new(&dir.0).read().await.expect("read") });
    assert_eq!(after.controller_epoch, 2 * WRITES_EACH, "{after:?}");
    assert!(
        dir.versions().len() as u64 <= fjord_replication::VERSIONS_KEPT,
        "{:?}",
        dir.versions()
    );
}
