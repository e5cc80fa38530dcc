//! Compaction through the broker (`cleanup.policy=compact`): a real client writes many
//! updates over few keys with tombstones, and a consumer from the beginning ends up with
//! exactly each key's last record, the cleaner working off the shard threads while the
//! broker serves.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

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

/// The records of `__consumer_offsets` whose key names `group` (keys are Kafka's binary
/// layout; the group id appears in them as plain bytes).
fn offsets_records_of(broker: &TestBroker, group: &str) -> usize {
    let keys = kcat_ok(
        &["-C", "-b", &broker.bootstrap(), "-t", "__consumer_offsets", "-e", "-f", "%k\n"],
        None,
    );
    String::from_utf8_lossy(&keys).lines().filter(|key| key.contains(group)).count()
}

#[test]
fn consumer_offsets_keeps_each_groups_last_commit_and_forgets_a_deleted_group() {
    const COMMITS: u64 = 300;
    let mut broker =
        TestBroker::start_with("compaction-offsets", &["--retention-check-interval-ms", "200"]);
    let b = broker.bootstrap();
    let configs = fjord(&["topic", "describe", "__consumer_offsets", "-b", &b]);
    let text = String::from_utf8_lossy(&configs.stdout).to_string();
    assert!(text.contains("cleanup.policy=compact"), "the offsets topic is compacted: {configs:?}");
    create_topic(&broker, "committed", 1, &[]);
    let many = (COMMITS * 2).to_string();
    python_ok("offsets_log.py", &["commit", &b, "kept", "committed", "1", &many]);
    python_ok("offsets_log.py", &["commit", &b, "deleted", "committed", "1", &many]);
    assert!(offsets_records_of(&broker, "kept") >= COMMITS as usize);
    // Segments roll every 100 ms from now on: the commits above become cleanable.
    let altered = fjord(&[
        "topic",
        "alter",
        "__consumer_offsets",
        "-b",
        &b,
        "--config",
        "segment.ms=100",
        "--config",
        "min.cleanable.dirty.ratio=0.01",
        "--config",
        "delete.retention.ms=0",
    ]);
    assert!(altered.status.success(), "alter __consumer_offsets: {altered:?}");
    python_ok("offsets_log.py", &["delete", &b, "deleted"]);
    // Commits of another group keep rolling and dirtying the log, so cleaning passes follow.
    let mut next = 1;
    wait_until(
        "the cleaner to leave each key of the offsets log once",
        Duration::from_secs(60),
        || {
            std::thread::sleep(Duration::from_millis(300));
            let last = next.to_string();
            python_ok("offsets_log.py", &["commit", &b, "busy", "committed", &last, &last]);
            next += 1;
            let (kept, deleted) =
                (offsets_records_of(&broker, "kept"), offsets_records_of(&broker, "deleted"));
            // The kept group: its one commit (a standalone group stores no metadata record).
            (kept == 1 && deleted == 0).then_some(())
        },
    );
    // `fjord topic describe` shows the pass: a partition cleaned some seconds ago.
    let described = fjord(&["topic", "describe", "__consumer_offsets", "-b", &b]);
    let text = String::from_utf8_lossy(&described.stdout).to_string();
    let after_table = text.split("cleaning:").nth(1).unwrap_or_default();
    assert!(after_table.contains(" s ago"), "no partition shows a pass:\n{text}");
    let log = broker.stderr();
    assert!(
        log.lines().any(|line| line.contains("compacted") && line.contains("__consumer_offsets")),
        "no pass over __consumer_offsets was logged:\n{log}"
    );

    // The coordinator replays the cleaned log: the last commit is there, the deleted group
    // is not.
    broker.restart();
    let b = broker.bootstrap();
    let kept = fjord(&["group", "describe", "kept", "-b", &b]);
    let text = String::from_utf8_lossy(&kept.stdout).to_string();
    assert!(kept.status.success(), "{kept:?}");
    assert!(
        text.lines()
            .any(|line| line.contains("committed") && line.split_whitespace().any(|w| w == many)),
        "the kept group's last commit ({many}) after a restart:\n{text}"
    );
    let listed = fjord(&["group", "list", "-b", &b]);
    let groups = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        groups.contains("kept") && !groups.contains("deleted"),
        "groups after a restart:\n{groups}"
    );
}
