//! Compaction through the broker (`cleanup.policy=compact`): a real client writes many
//! updates over few keys with tombstones, and a consumer from the beginning ends up with
//! exactly each key's last record, the cleaner working off the shard threads while the
//! broker serves.

use std::path::Path;
use std::process::Output;

use crate::support::*;

fn fjord(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_with_timeout(120, Path::new(env!("CARGO_BIN_EXE_fjord")), &args, None)
}

#[test]
fn confluent_kafka_reads_each_keys_last_value_from_a_compacted_topic() {
    updates_leave_each_keys_last_value("none");
}

#[test]
fn compressed_batches_are_cleaned_and_compressed_again_with_their_codec() {
    // librdkafka compresses each batch of the updates: the cleaner decompresses them to
    // map and filter their records, and writes what stays in the batch's own codec.
    updates_leave_each_keys_last_value("lz4");
    updates_leave_each_keys_last_value("zstd");
}

/// 100,000 updates over 1,000 keys in `compression`, then each key's last value only.
fn updates_leave_each_keys_last_value(compression: &str) {
    // Ticks of 200 ms: rolls (segment.ms) and cleaning passes follow each other quickly.
    let broker = TestBroker::start_with("compaction", &["--retention-check-interval-ms", "200"]);
    let out = python_ok(
        "compaction.py",
        &[&broker.bootstrap(), "compacted-updates", "100000", "1000", "60", compression],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"produced\t100000"), "{compression}: {out}");
    assert!(lines.contains(&"live\t900\tdead\t100"), "{out}");
    assert_eq!(lines.last(), Some(&"clean"), "{out}");
    let log = broker.stderr();
    assert!(log.contains("compacted"), "no compaction pass was logged:\n{log}");
}

#[test]
fn a_keyless_record_is_refused_by_a_compacted_topic_and_taken_by_others() {
    let broker = TestBroker::start("compaction-keyless");
    let b = broker.bootstrap();
    let created = fjord(&[
        "topic",
        "create",
        "keyed",
        "-p",
        "1",
        "-b",
        &b,
        "--config",
        "cleanup.policy=compact",
    ]);
    assert!(created.status.success(), "topic create: {created:?}");
    let keyless = kcat(&["-P", "-b", &b, "-t", "keyed"], Some(b"no key here\n"));
    // librdkafka words INVALID_RECORD (87) "Broker failed to validate record".
    let text = String::from_utf8_lossy(&keyless.stderr).to_string();
    assert!(
        !keyless.status.success() && text.contains("Broker failed to validate record"),
        "kcat's keyless record to a compacted topic: {keyless:?}"
    );
    kcat_ok(&["-P", "-b", &b, "-t", "keyed", "-K:"], Some(b"k:with a key\n"));
    let read = kcat_ok(&["-C", "-b", &b, "-t", "keyed", "-e", "-f", "%k=%s\n"], None);
    assert_eq!(String::from_utf8_lossy(&read), "k=with a key\n", "only the keyed record is there");
}
