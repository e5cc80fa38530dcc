//! A full disk, for real: each test makes an ext4 file system on a loop device (an image
//! file, `mkfs.ext4`, `mount -o loop`; this needs root, as CI has), so that fallocate, write
//! and fsync run out of space as they do on a disk (tmpfs would not). A broker on it fills
//! it through Produce, and then: produce is refused with KAFKA_STORAGE_ERROR, committed data
//! stays readable, deleting a topic through the API frees space and produce resumes without
//! a restart; and a broker restarted on the full disk starts and serves reads.

use std::path::Path;
use std::time::Duration;

use crate::support::loop_fs::LoopFs;
use crate::support::wire::{self, Conn, NO_PRODUCER};
use crate::support::{kcat_ok, run_with_timeout, wait_until, TestBroker};

/// Kafka's KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;
/// The test file systems' size: a few segments' worth.
const FS_MIB: u64 = 40;
/// Record bytes per filling batch.
const FILL_RECORD_BYTES: usize = 256 * 1024;
/// Filling batches before the test gives up on the disk ever filling.
const FILL_BATCHES_MAX: usize = 4 * FS_MIB as usize * 1024 * 1024 / FILL_RECORD_BYTES;
/// How long produce may take to resume once space is back (free space is measured again at
/// least every second).
const RESUME_WAIT: Duration = Duration::from_secs(20);

fn fjord_ok(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = run_with_timeout(60, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, None);
    assert!(output.status.success(), "fjord {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn batch(value: &[u8]) -> Vec<u8> {
    wire::record_batch(&[(None, value)], 1_700_000_000_000, NO_PRODUCER)
}

/// Produces filling batches to `topic` until one is refused; returns how many were taken
/// and the refusal's error code.
fn fill(conn: &mut Conn, topic: &str) -> (usize, i16) {
    let big = batch(&vec![7u8; FILL_RECORD_BYTES]);
    for n in 0..FILL_BATCHES_MAX {
        let (error, _) = wire::produce(conn, 100 + n as i32, topic, 0, &big);
        if error != 0 {
            return (n, error);
        }
    }
    panic!("{FILL_BATCHES_MAX} batches of {FILL_RECORD_BYTES} bytes fit on a {FS_MIB} MiB disk");
}

/// The values of `topic`'s partition 0, read with kcat.
fn values(bootstrap: &str, topic: &str) -> String {
    let out = kcat_ok(
        &[
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ],
        None,
    );
    String::from_utf8_lossy(&out).into_owned()
}

fn set_up(broker: &TestBroker) -> Conn {
    let mut conn = Conn::connect(broker.addr());
    for (n, topic) in ["keep", "fill"].into_iter().enumerate() {
        assert_eq!(wire::create_topic(&mut conn, 1 + n as i32, topic, 1).0, 0, "create {topic}");
    }
    assert_eq!(wire::produce(&mut conn, 3, "keep", 0, &batch(b"kept")), (0, 0));
    conn
}

/// After `fill` was deleted: produce to `keep` resumes by itself.
fn wait_for_produce(broker: &TestBroker, what: &str) {
    let mut conn = Conn::connect(broker.addr());
    let mut attempt = 1000;
    wait_until(what, RESUME_WAIT, || {
        attempt += 1;
        let (error, offset) = wire::produce(&mut conn, attempt, "keep", 0, &batch(b"again"));
        (error == 0).then_some(offset)
    });
}

#[test]
fn a_full_disk_refuses_produce_keeps_reads_and_recovers_through_delete_topics() {
    let fs = LoopFs::new("disk-floor", FS_MIB * 1024 * 1024);
    let floor = (4 * 1024 * 1024).to_string();
    let broker = TestBroker::start_on(
        "disk-floor",
        fs.data_dir(),
        &["--log-dir-free-bytes-min", &floor, "--segment-bytes", "2097152"],
    );
    let mut conn = set_up(&broker);
    let (taken, error) = fill(&mut conn, "fill");
    assert!(taken > 0, "the disk took nothing");
    assert_eq!(error, KAFKA_STORAGE_ERROR, "a full disk refuses produce with Kafka's error");
    // The floor applies to every producer on the file system (each log measures the free
    // space at least every second, so another topic may take a little before it sees the
    // floor), and committed data stays readable.
    let (_, error) = fill(&mut conn, "keep");
    assert_eq!(error, KAFKA_STORAGE_ERROR, "produce to another topic on the same full disk");
    assert!(values(&broker.bootstrap(), "keep").contains("kept\n"));
    // An operator frees space through the API; produce resumes without a restart.
    fjord_ok(&["topic", "delete", "--bootstrap", &broker.bootstrap(), "fill"]);
    // (What `keep` holds now is up to retention: filling it rolled segments.)
    wait_for_produce(&broker, "produce after deleting the filling topic");
}

#[test]
fn a_broker_that_ran_out_of_space_restarts_on_the_full_disk_serves_reads_and_recovers() {
    let fs = LoopFs::new("disk-enospc", FS_MIB * 1024 * 1024);
    // No floor: the disk really runs out (ENOSPC on the writes).
    let mut broker = TestBroker::start_on(
        "disk-enospc",
        fs.data_dir(),
        &["--log-dir-free-bytes-min", "0", "--segment-bytes", "2097152"],
    );
    let mut conn = set_up(&broker);
    let (_, error) = fill(&mut conn, "fill");
    assert_eq!(error, KAFKA_STORAGE_ERROR, "ENOSPC is answered with Kafka's error");
    assert_eq!(values(&broker.bootstrap(), "keep"), "kept\n", "reads on a full disk");
    broker.assert_alive();

    // A crash and a restart while the disk is still full: the broker starts and serves.
    broker.kill9();
    broker.restart();
    assert_eq!(
        values(&broker.bootstrap(), "keep"),
        "kept\n",
        "reads after a restart on a full disk"
    );
    fjord_ok(&["topic", "delete", "--bootstrap", &broker.bootstrap(), "fill"]);
    wait_for_produce(&broker, "produce after deleting the filling topic on the restarted broker");
    assert_eq!(values(&broker.bootstrap(), "keep"), "kept\nagain\n");
}
