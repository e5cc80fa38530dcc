//! Compaction through the broker (`cleanup.policy=compact`): a real client writes many
//! updates over few keys with tombstones, and a consumer from the beginning ends up with
//! exactly each key's last record, the cleaner working off the shard threads while the
//! broker serves.

use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::apps::{free_port, http, run_app, JavaApp};
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
    // A roll every 200 ms left dozens of segments; cleaned, they are merged into one (a
    // few KiB, far below segment.bytes) beside the active one.
    let dir = broker.data_dir().join("compacted-updates-0");
    wait_until("the cleaned segments to be merged", Duration::from_secs(30), || {
        (segment_logs(&dir).len() <= 3).then_some(())
    });
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

#[test]
fn the_java_producer_reads_each_keys_last_value_from_a_compacted_topic() {
    let broker =
        TestBroker::start_with("compaction-java", &["--retention-check-interval-ms", "200"]);
    let b = broker.bootstrap();
    let out = run_app("CompactedUpdates", &[&b, "java-updates", "100000", "1000", "60"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "CompactedUpdates: {out:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"produced\t100000"), "{text}");
    assert!(lines.contains(&"live\t900\tdead\t100"), "{text}");
    assert_eq!(lines.last(), Some(&"clean"), "{text}");
}

/// Whether `fjord topic describe` shows `topic` with `cleanup.policy=compact` set on it.
fn described_compacted(b: &str, topic: &str) -> bool {
    let out = fjord(&["topic", "describe", topic, "-b", b]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines().any(|l| l.starts_with("configs:") && l.contains("cleanup.policy=compact"))
}

/// The lines of a file, or none while it does not exist.
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn kafka_connect_copies_a_file_through_fjord_and_a_restarted_worker_keeps_its_offsets_and_configs()
{
    const LINES: usize = 100;
    let broker = TestBroker::start("compaction-connect");
    let b = broker.bootstrap();
    let dir = TempDir::new("connect");
    let (input, output) = (dir.path().join("input.txt"), dir.path().join("output.txt"));
    let lines = |range: std::ops::Range<usize>| -> String {
        range.map(|i| format!("line {i}\n")).collect()
    };
    std::fs::write(&input, lines(0..LINES)).expect("write the input file");
    let port = free_port();
    let rest = format!("http://127.0.0.1:{port}");
    // A distributed worker as Kafka's quick start configures one, on Fjord; its internal
    // topics are created compacted by the worker itself, which then checks them (with
    // DescribeConfigs) and refuses to start if they are not.
    let worker = dir.path().join("worker.properties");
    std::fs::write(
        &worker,
        format!(
            "bootstrap.servers={b}\n\
             group.id=fjord-connect\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             config.storage.topic=connect-configs\n\
             offset.storage.topic=connect-offsets\n\
             status.storage.topic=connect-status\n\
             config.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\n\
             status.storage.replication.factor=1\n\
             offset.flush.interval.ms=1000\n\
             listeners={rest}\n"
        ),
    )
    .expect("write the worker config");
    let worker_path = worker.display().to_string();
    let start = || {
        let app = JavaApp::spawn(
            dir.path(),
            "connect",
            "INFO",
            "org.apache.kafka.connect.cli.ConnectDistributed",
            &[&worker_path],
        );
        wait_until("the Connect worker's REST API", Duration::from_secs(120), || {
            http("GET", &format!("{rest}/connectors"), None).filter(|(code, _)| *code == 200)
        });
        app
    };
    let mut app = start();
    let source = format!(
        r#"{{"connector.class":"FileStreamSource","file":"{}","topic":"connect-lines","tasks.max":"1"}}"#,
        input.display()
    );
    let sink = format!(
        r#"{{"connector.class":"FileStreamSink","file":"{}","topics":"connect-lines","tasks.max":"1"}}"#,
        output.display()
    );
    for (name, config) in [("file-source", &source), ("file-sink", &sink)] {
        let put = http("PUT", &format!("{rest}/connectors/{name}/config"), Some(config));
        assert!(matches!(put, Some((201, _))), "creating {name}: {put:?}\n{}", app.log_tail());
    }
    let expected: Vec<String> = lines(0..LINES).lines().map(str::to_string).collect();
    wait_until("the sink to write every line", Duration::from_secs(90), || {
        (file_lines(&output).len() >= LINES).then_some(())
    });
    assert_eq!(file_lines(&output), expected, "the sink's file");
    for topic in ["connect-configs", "connect-offsets", "connect-status"] {
        assert!(described_compacted(&b, topic), "{topic} is not compacted");
    }

    // Stopped and started again, the worker reads its connectors from the config topic and
    // the source's position from the offsets topic: new lines only are copied.
    app.stop();
    let mut more = std::fs::OpenOptions::new().append(true).open(&input).expect("open the input");
    more.write_all(lines(LINES..2 * LINES).as_bytes()).expect("append to the input");
    drop(more);
    let _app = start();
    let listed = http("GET", &format!("{rest}/connectors"), None).expect("the connectors");
    assert!(
        listed.1.contains("file-source") && listed.1.contains("file-sink"),
        "connectors after a restart: {listed:?}"
    );
    let expected: Vec<String> = lines(0..2 * LINES).lines().map(str::to_string).collect();
    wait_until("the sink to write the new lines", Duration::from_secs(90), || {
        (file_lines(&output).len() >= 2 * LINES).then_some(())
    });
    // Settled: a source that lost its position would copy the first lines again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(file_lines(&output), expected, "each line once, in order, after the restart");
}

/// The word counts on the word count's output topic: each word's last count.
fn word_counts(b: &str) -> std::collections::BTreeMap<String, u64> {
    let out = kcat_ok(
        &["-C", "-b", b, "-t", "streams-wordcount-output", "-e", "-s", "value=Q", "-f", "%k=%s\n"],
        None,
    );
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        if let Some((word, count)) = line.split_once('=') {
            counts.insert(word.to_string(), count.parse().unwrap_or(0));
        }
    }
    counts
}

#[test]
fn the_kafka_streams_word_count_restores_its_counts_from_a_compacted_changelog() {
    const CHANGELOG: &str = "streams-wordcount-KSTREAM-AGGREGATE-STATE-STORE-0000000003-changelog";
    let broker =
        TestBroker::start_with("compaction-streams", &["--retention-check-interval-ms", "200"]);
    let b = broker.bootstrap();
    create_topic(&broker, "streams-plaintext-input", 1, &[]);
    create_topic(&broker, "streams-wordcount-output", 1, &[]);
    let dir = TempDir::new("streams");
    let state = dir.path().join("state");
    let props = dir.path().join("streams.properties");
    // Kafka's WordCountDemo reads this file. Its internal topics roll every 100 ms and clean
    // at 1% dirty, so the changelog is compacted before it is restored from; a short session
    // lets the restarted instance take over without waiting 45 s for the old member
    // (Streams does not leave its group on close).
    std::fs::write(
        &props,
        format!(
            "bootstrap.servers={b}\n\
             state.dir={}\n\
             commit.interval.ms=500\n\
             session.timeout.ms=6000\n\
             topic.segment.ms=100\n\
             topic.min.cleanable.dirty.ratio=0.01\n",
            state.display()
        ),
    )
    .expect("write the streams config");
    let props_path = props.display().to_string();
    let main = "org.apache.kafka.streams.examples.wordcount.WordCountDemo";
    let produce = |text: &str| {
        kcat_ok(&["-P", "-b", &b, "-t", "streams-plaintext-input"], Some(text.as_bytes()))
    };
    let mut app = JavaApp::spawn(dir.path(), "wordcount", "INFO", main, &[&props_path]);
    // Two bursts some time apart: the changelog rolls between them, so its first segment
    // becomes cleanable.
    produce(&"hello fjord\n".repeat(150));
    wait_until("counts of the first burst", Duration::from_secs(120), || {
        (word_counts(&b).get("hello") == Some(&150)).then_some(())
    });
    produce(&"hello kafka streams\n".repeat(50));
    wait_until("counts of the second burst", Duration::from_secs(60), || {
        (word_counts(&b).get("hello") == Some(&200)).then_some(())
    });
    assert!(described_compacted(&b, CHANGELOG), "the changelog is not compacted");
    wait_until("a cleaning pass of the changelog", Duration::from_secs(60), || {
        let out = fjord(&["topic", "describe", CHANGELOG, "-b", &b]);
        String::from_utf8_lossy(&out.stdout).contains(" s ago").then_some(())
    });

    // Stopped, its local state gone: the restarted instance rebuilds the store from the
    // changelog, and counts on from there.
    app.stop();
    std::fs::remove_dir_all(&state).expect("remove the local state");
    produce("hello again\n");
    let app = JavaApp::spawn(dir.path(), "wordcount", "INFO", main, &[&props_path]);
    wait_until("counts after the restore", Duration::from_secs(120), || {
        (word_counts(&b).get("again") == Some(&1)).then_some(())
    });
    let counts = word_counts(&b);
    let expected = [("again", 1), ("fjord", 150), ("hello", 201), ("kafka", 50), ("streams", 50)];
    for (word, count) in expected {
        assert_eq!(counts.get(word), Some(&count), "{word}: {counts:?}");
    }
    assert!(
        app.log().contains(&format!("Finished restoring changelog {CHANGELOG}")),
        "no restore from the changelog was logged"
    );
}

#[test]
fn an_expired_tombstone_goes_without_new_writes() {
    let broker =
        TestBroker::start_with("compaction-tombstone", &["--retention-check-interval-ms", "200"]);
    let b = broker.bootstrap();
    let configs = [
        "cleanup.policy=compact",
        "segment.ms=100",
        "min.cleanable.dirty.ratio=0.01",
        "delete.retention.ms=1000",
    ];
    create_topic(&broker, "expiring", 1, &configs);
    let produce =
        |lines: &[u8]| kcat_ok(&["-P", "-b", &b, "-t", "expiring", "-K:", "-Z"], Some(lines));
    let read = || {
        let out = kcat_ok(&["-C", "-b", &b, "-t", "expiring", "-e", "-Z", "-f", "%k=%s\n"], None);
        String::from_utf8_lossy(&out).to_string()
    };
    produce(b"a:1\nb:2\n");
    std::thread::sleep(Duration::from_millis(300));
    // kcat -Z sends an empty value as null: a tombstone for a.
    produce(b"a:\n");
    std::thread::sleep(Duration::from_millis(300));
    // Rolls the tombstone's segment: it becomes cleanable. Nothing is written after this.
    produce(b"c:3\n");
    wait_until(
        "the tombstone to go, a retention period after its pass",
        Duration::from_secs(60),
        || (read() == "b=2\nc=3\n").then_some(()),
    );
    // Offsets 0 (a:1) and 2 (the tombstone) are gone: a consumer positioned on one of them
    // gets the next record there is.
    for (from, expected) in [("0", "1 b=2\n3 c=3\n"), ("2", "3 c=3\n")] {
        let out = kcat_ok(
            &["-C", "-b", &b, "-t", "expiring", "-p", "0", "-o", from, "-e", "-f", "%o %k=%s\n"],
            None,
        );
        assert_eq!(String::from_utf8_lossy(&out), expected, "read from offset {from}");
    }
}

#[test]
fn expired_offsets_leave_tombstones_and_their_group_goes() {
    // Kafka's smallest retention, one minute, checked every half second.
    let args = ["--offsets-retention-minutes", "1", "--offsets-retention-check-interval-ms", "500"];
    let mut broker = TestBroker::start_with("compaction-expiry", &args);
    let b = broker.bootstrap();
    create_topic(&broker, "read-once", 1, &[]);
    // A standalone consumer's commit (no group membership): it expires a minute after.
    python_ok("offsets_log.py", &["commit", &b, "forgotten", "read-once", "1", "7"]);
    let listed = |b: &str| {
        let out = fjord(&["group", "list", "-b", b]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(listed(&b).contains("forgotten"), "{}", listed(&b));
    wait_until("the expired group to go", Duration::from_secs(120), || {
        (!listed(&b).contains("forgotten")).then_some(())
    });
    // Each commit and then the expiry's tombstone, in the log (the topic is not cleaned:
    // its segments do not roll in this test).
    assert_eq!(offsets_records_of(&broker, "forgotten"), 8, "7 commits and 1 tombstone");
    broker.restart();
    let b = broker.bootstrap();
    assert!(!listed(&b).contains("forgotten"), "the replay brings the group back: {}", listed(&b));
    let log = broker.stderr();
    assert!(log.contains("committed offsets expired"), "{log}");
}
