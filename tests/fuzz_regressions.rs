//! Inputs the fuzz targets under `fuzz/` found, kept in `fuzz/regressions/<target>/` and
//! replayed here against a real broker (whose allocator and limits are the ones that
//! matter): each test is named after the bug its input found.

use std::path::Path;

use crate::support::wire::{self, Conn};
use crate::support::TestBroker;

/// Error codes (Kafka's protocol numbers).
const NONE: i16 = 0;

/// A saved input of `target`, as the fuzz target received it.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A topic created, written and read back: the broker still serves normal requests.
fn assert_still_serving(broker: &TestBroker, topic: &str) {
    let mut conn = Conn::connect(broker.addr());
    assert_eq!(wire::create_topic(&mut conn, 1, topic, 1).0, NONE, "create {topic}");
    let batch = wire::record_batch(&[(Some(b"k"), b"v")], 1_700_000_000_000, wire::NO_PRODUCER);
    assert_eq!(wire::produce(&mut conn, 2, topic, 0, &batch), (NONE, 0), "produce to {topic}");
    assert_eq!(wire::list_offset(&mut conn, 3, topic, 0, -1), (NONE, 1), "end of {topic}");
}

/// The `request` target decodes the body of every API the broker serves: one it left out
/// (DescribeTopicPartitions) made it panic "served but not fuzzed" the first time the
/// fuzzer named that API, a run in some, not every, CI. Checked here on the target's source,
/// so a newly served API without its decode fails at once.
#[test]
fn the_request_fuzz_target_decodes_every_served_api() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets/request.rs");
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let missing: Vec<String> = fjord::protocol::SUPPORTED_APIS
        .iter()
        .map(|(key, _, _)| format!("ApiKey::{key:?}"))
        .filter(|arm| !source.contains(&format!("{arm} ")))
        .collect();
    assert!(missing.is_empty(), "served, but without an arm in {}: {missing:?}", path.display());
}

/// The input that found that gap: a DescribeTopicPartitions v0 whose body the fuzzer made
/// from a JoinGroup's. The broker answers it or closes only its connection.
#[test]
fn a_describe_topic_partitions_made_of_another_requests_bytes_is_answered_or_refused_cleanly() {
    let broker = TestBroker::start("fuzz-describe-partitions");
    let payload = regression("request", "describe-topic-partitions-v0-served-but-not-fuzzed");
    let mut conn = Conn::connect(broker.addr());
    conn.send(&wire::frame(&payload)).expect("send");
    match conn.receive() {
        wire::Received::Frame(body) => assert!(body.len() >= 4, "a response frame: {body:?}"),
        wire::Received::Closed { partial } => assert!(partial.is_empty(), "half an answer"),
    }
    assert_still_serving(&broker, "after-describe-partitions");
}

/// `fuzz/fuzz_targets/request.rs`, run with the system allocator, aborted on this 49-byte
/// OffsetForLeaderEpoch v2: its partition count makes `kafka-protocol` reserve ~77 GB before
/// it reads a partition. The broker's allocator maps such a block without committing it
/// (src/alloc.rs), so the decode fails on the missing bytes and only this connection closes;
/// the target now runs with that allocator too.
#[test]
fn an_offset_for_leader_epoch_partition_count_beyond_the_frame_closes_only_its_connection() {
    let broker = TestBroker::start("fuzz-epoch-count");
    let payload = regression("request", "offset-for-leader-epoch-v2-partition-count-beyond-frame");
    let resident_before = broker.proc_status_kb("VmHWM");
    let mut conn = Conn::connect(broker.addr());
    conn.send(&wire::frame(&payload)).expect("send");
    conn.expect_closed("an OffsetForLeaderEpoch announcing more partitions than its bytes");
    let grown = broker.proc_status_kb("VmHWM").saturating_sub(resident_before);
    assert!(grown < 64 * 1024, "peak resident memory grew by {grown} kB");
    assert!(
        broker.stderr().contains("OffsetForLeaderEpoch v2"),
        "no log line naming the refused request:\n{}",
        broker.stderr_tail()
    );
    assert_still_serving(&broker, "after-epoch-count");
}

/// `fuzz/fuzz_targets/batch.rs` ran out of memory on a snappy batch whose stream announces
/// 2^31 - 1 decompressed bytes: a producer may store it (its CRC is right, and compressed
/// records are not opened on append), and a ListOffsets by timestamp that lands on it has
/// `kafka-protocol` allocate and zero that many bytes before the stream turns out short:
/// about 2 GiB of resident memory per lookup, from a 114-byte batch.
#[test]
fn a_compressed_batch_announcing_gigabytes_does_not_take_memory_on_a_timestamp_lookup() {
    let broker = TestBroker::start("fuzz-snappy-length");
    let topic = "snappy-length";
    let batch = regression("batch", "snappy-announcing-2gib-decompressed-for-a-timestamp-lookup");
    let mut conn = Conn::connect(broker.addr());
    assert_eq!(wire::create_topic(&mut conn, 1, topic, 1).0, NONE);
    assert_eq!(wire::produce(&mut conn, 2, topic, 0, &batch), (NONE, 0), "stored as sent");
    let resident_before = broker.proc_status_kb("VmHWM");
    let (error, offset) = wire::list_offset(&mut conn, 3, topic, 0, 0);
    assert_eq!((error, offset), (NONE, 0), "the batch's first offset answers the lookup");
    let grown = broker.proc_status_kb("VmHWM").saturating_sub(resident_before);
    assert!(grown < 256 * 1024, "peak resident memory grew by {grown} kB for one lookup");
    assert_still_serving(&broker, "after-snappy-length");
}
