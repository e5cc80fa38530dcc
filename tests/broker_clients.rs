//! Third-party Kafka clients against a real broker: kcat (librdkafka's CLI), confluent-kafka
//! (librdkafka from Python) and kafka-python (an independent protocol implementation).
//!
//! Each test starts its own broker, so tests run in parallel without sharing state; topic
//! names are unique per test anyway so a failure message names one test. Every check
//! compares exact content and order against what was produced, never just counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::support::{
    consume_all, create_topic, kcat, kcat_consume, kcat_metadata, kcat_ok, kcat_topics, key,
    parse_ack, parse_acks, python, python_ok, stored_batches, stored_codecs, tagged, value,
    value_index, Ack, Background, Message, TempDir, TestBroker,
};

/// Asserts the consumed messages are exactly the acknowledged ones: same count, and at each
/// acknowledged (partition, offset) the generated key and value of that message.
fn assert_matches_acks(messages: &[Message], acks: &[Ack], keys: u64, size: usize) {
    let by_position: HashMap<(i32, i64), &Message> =
        messages.iter().map(|m| ((m.partition, m.offset), m)).collect();
    assert_eq!(by_position.len(), messages.len(), "a (partition, offset) was consumed twice");
    for ack in acks {
        let Some(message) = by_position.get(&(ack.partition, ack.offset)) else {
            panic!(
                "acknowledged message {} at {}:{} was not consumed",
                ack.index, ack.partition, ack.offset
            );
        };
        assert_eq!(
            message.value.as_deref(),
            Some(value(ack.index, size).as_slice()),
            "value at {}:{}",
            ack.partition,
            ack.offset
        );
        assert_eq!(message.key, key(ack.index, keys), "key at {}:{}", ack.partition, ack.offset);
    }
    assert_eq!(
        messages.len(),
        acks.len(),
        "consumed {} messages, {} were acknowledged",
        messages.len(),
        acks.len()
    );
}

/// Asserts each partition's consumed offsets are `from, from+1, ...` with no gap.
fn assert_dense(messages: &[Message]) {
    let mut next: HashMap<i32, i64> = HashMap::new();
    for m in messages {
        if let Some(expected) = next.get(&m.partition) {
            assert_eq!(m.offset, *expected, "partition {}: offset gap or reorder", m.partition);
        }
        next.insert(m.partition, m.offset + 1);
    }
}

#[test]
fn metadata_lists_the_broker_and_created_topics() {
    let broker = TestBroker::start("metadata");
    let bootstrap = broker.bootstrap();
    let empty = kcat_metadata(&broker);
    assert!(
        empty.contains(&format!("broker 0 at {bootstrap} (controller)")),
        "broker missing from:\n{empty}"
    );
    assert!(kcat_topics(&empty).is_empty(), "a fresh broker lists topics:\n{empty}");

    create_topic(&broker, "meta-three", 3, &[]);
    create_topic(&broker, "meta-one", 1, &["retention.ms=3600000"]);
    // Auto-created by a producer's metadata request.
    kcat_ok(&["-b", &bootstrap, "-P", "-t", "meta-auto"], Some(b"hello\n"));

    let listing = kcat_metadata(&broker);
    let expected: BTreeMap<String, usize> = [("meta-auto", 1), ("meta-one", 1), ("meta-three", 3)]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    assert_eq!(kcat_topics(&listing), expected, "kcat -L:\n{listing}");
    assert!(listing.contains(" 1 brokers:"), "{listing}");
    for p in 0..3 {
        assert!(
            listing.contains(&format!("partition {p}, leader 0, replicas: 0, isrs: 0")),
            "partition {p} of meta-three:\n{listing}"
        );
    }
    // One topic only.
    let one =
        String::from_utf8(kcat_ok(&["-b", &bootstrap, "-L", "-t", "meta-three", "-m", "10"], None))
            .expect("UTF-8");
    assert_eq!(
        kcat_topics(&one).into_iter().collect::<Vec<_>>(),
        vec![("meta-three".to_string(), 3)],
        "{one}"
    );
}

#[test]
fn kcat_keyed_round_trip_of_1000_messages() {
    let broker = TestBroker::start("kcat-roundtrip");
    let bootstrap = broker.bootstrap();
    let topic = "kcat-roundtrip";
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..1000 {
        let k = format!("key-{}", i % 37);
        let v = format!("message {i} with some text {}", "x".repeat(i % 50));
        input.push_str(&format!("{k}:{v}\n"));
        expected.push_str(&format!("{k} {v}\n"));
    }
    kcat_ok(
        &["-b", &bootstrap, "-P", "-t", topic, "-K:", "-X", "acks=all"],
        Some(input.as_bytes()),
    );
    let consumed = kcat_consume(&broker, topic, "%k %s\n", &["-o", "beginning"]);
    if consumed != expected {
        let got: Vec<&str> = consumed.lines().collect();
        let want: Vec<&str> = expected.lines().collect();
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!("kcat round trip differs: {} lines consumed, {} produced; first difference at line {first:?}", got.len(), want.len());
    }
    let offsets = kcat_consume(&broker, topic, "%o\n", &["-o", "beginning"]);
    let expected_offsets: String = (0..1000).map(|o| format!("{o}\n")).collect();
    assert_eq!(offsets, expected_offsets, "offsets are not 0..1000 in order");
}

#[test]
fn confluent_kafka_keeps_per_key_order_across_four_partitions() {
    let broker = TestBroker::start("per-key-order");
    let bootstrap = broker.bootstrap();
    let topic = "per-key-order";
    let (count, keys) = (2000u64, 40u64);
    create_topic(&broker, topic, 4, &[]);
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            "--linger-ms",
            "20",
            &bootstrap,
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count, "acknowledged");

    let messages = consume_all(&broker, topic, &[]);
    assert_matches_acks(&messages, &acks, keys, 0);
    assert_dense(&messages);
    let mut partition_of: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut values_of: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    // Within a partition, the consumer's order is the log order.
    let mut sorted = messages.clone();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    for m in &sorted {
        let k = m.key.clone().expect("every message has a key");
        let p = *partition_of.entry(k.clone()).or_insert(m.partition);
        assert_eq!(
            p,
            m.partition,
            "key {:?} in partitions {p} and {}",
            String::from_utf8_lossy(&k),
            m.partition
        );
        values_of.entry(k).or_default().push(value_index(m.value.as_deref().expect("value")));
    }
    assert_eq!(values_of.len() as u64, keys);
    for (k, values) in &values_of {
        let kn: u64 = String::from_utf8_lossy(&k[1..]).parse().expect("key number");
        let expected: Vec<u64> = (0..count).filter(|i| i % keys == kn).collect();
        assert_eq!(
            values,
            &expected,
            "values of key {:?} out of order or missing",
            String::from_utf8_lossy(k)
        );
    }
    let used: BTreeSet<i32> = partition_of.values().copied().collect();
    assert_eq!(used, (0..4).collect(), "40 keys should spread over all 4 partitions");
}

#[test]
fn reading_from_an_explicit_offset_returns_exactly_the_rest() {
    let broker = TestBroker::start("explicit-offset");
    let bootstrap = broker.bootstrap();
    let topic = "explicit-offset";
    let input: String = (0..100).map(|i| format!("m{i}\n")).collect();
    kcat_ok(&["-b", &bootstrap, "-P", "-t", topic], Some(input.as_bytes()));

    let lines =
        |from: std::ops::Range<i32>| -> String { from.map(|o| format!("{o} m{o}\n")).collect() };
    assert_eq!(
        kcat_consume(&broker, topic, "%o %s\n", &["-p", "0", "-o", "37"]),
        lines(37..100),
        "kcat -o 37"
    );
    assert_eq!(
        kcat_consume(&broker, topic, "%o %s\n", &["-p", "0", "-o", "99"]),
        lines(99..100),
        "kcat -o 99"
    );
    assert_eq!(
        kcat_consume(&broker, topic, "%o %s\n", &["-p", "0", "-o", "-10"]),
        lines(90..100),
        "kcat -o -10 (from the end)"
    );
    assert_eq!(
        kcat_consume(&broker, topic, "%o %s\n", &["-p", "0", "-o", "100"]),
        "",
        "kcat -o 100 (the end)"
    );
    assert_eq!(
        kcat_consume(&broker, topic, "%o %s\n", &["-p", "0", "-o", "0"]),
        lines(0..100),
        "kcat -o 0"
    );

    let messages = consume_all(&broker, topic, &["--offset", "63"]);
    let got: Vec<(i64, Vec<u8>)> =
        messages.iter().map(|m| (m.offset, m.value.clone().expect("value"))).collect();
    let want: Vec<(i64, Vec<u8>)> = (63..100).map(|o| (o, format!("m{o}").into_bytes())).collect();
    assert_eq!(got, want, "confluent-kafka assign() at offset 63");
}

/// Produces 10 messages with timestamps `base + i * 1000` (one batch or one batch each) and
/// checks watermarks, ListOffsets by timestamp (both clients) and the consumed timestamps.
fn check_timestamps(broker: &TestBroker, topic: &str, produce_extra: &[&str], base: i64) {
    let bootstrap = broker.bootstrap();
    let watermarks = python_ok("ck.py", &["watermarks", &bootstrap, topic]);
    assert_eq!(
        tagged(&watermarks, "watermarks"),
        vec![vec!["0", "0", "0"]],
        "{topic} before producing"
    );

    let base_text = base.to_string();
    let mut args = vec![
        "produce",
        "--count",
        "10",
        "--timestamp-base",
        &base_text,
        "--timestamp-step",
        "1000",
        "--partition",
        "0",
    ];
    args.extend_from_slice(produce_extra);
    args.extend([bootstrap.as_str(), topic]);
    assert_eq!(parse_acks(&python_ok("ck.py", &args)).len(), 10);

    let watermarks = python_ok("ck.py", &["watermarks", &bootstrap, topic]);
    assert_eq!(
        tagged(&watermarks, "watermarks"),
        vec![vec!["0", "0", "10"]],
        "{topic} low/high after 10 messages"
    );

    let messages = consume_all(broker, topic, &[]);
    let stamps: Vec<i64> = messages.iter().map(|m| m.timestamp).collect();
    assert_eq!(
        stamps,
        (0..10).map(|i| base + i * 1000).collect::<Vec<_>>(),
        "{topic} record timestamps"
    );

    // (query, expected offset): exact hits, between records, before all, after all (-1 = end).
    let cases = [
        (base - 100_000, 0),
        (base, 0),
        (base + 1, 1),
        (base + 3500, 4),
        (base + 9000, 9),
        (base + 9001, -1),
    ];
    let queries: Vec<String> = cases.iter().map(|(t, _)| t.to_string()).collect();
    let mut args = vec!["offsets-for-times", bootstrap.as_str(), topic];
    args.extend(queries.iter().map(String::as_str));
    let found = python_ok("ck.py", &args);
    let got: Vec<(i64, i64)> = tagged(&found, "time")
        .iter()
        .map(|f| (f[0].parse().expect("ts"), f[1].parse().expect("offset")))
        .collect();
    assert_eq!(got, cases.to_vec(), "{topic}: offsets_for_times (timestamp, offset)");

    // kcat -Q asks ListOffsets too (via librdkafka's offsetsForTimes).
    let query = format!("{topic}:0:{}", base + 3500);
    let out =
        String::from_utf8(kcat_ok(&["-b", &bootstrap, "-Q", "-t", &query], None)).expect("UTF-8");
    assert!(out.contains(&format!("{topic} [0] offset 4")), "{topic}: kcat -Q {query}: {out}");
}

/// A whole hour `hours` in the past: a timestamp the broker cannot have made up.
fn hours_ago(hours: i64) -> i64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    (now_ms / 3_600_000 - hours) * 3_600_000
}

#[test]
fn watermarks_and_offsets_for_times() {
    let broker = TestBroker::start("watermarks");
    let base = hours_ago(1);
    for (topic, extra) in
        [("ts-one-batch", vec!["--linger-ms", "100"]), ("ts-batch-each", vec!["--pause-ms", "1"])]
    {
        create_topic(&broker, topic, 1, &[]);
        check_timestamps(&broker, topic, &extra, base);
    }
}

#[test]
fn offsets_for_times_inside_a_compressed_batch() {
    // Kafka answers with the first record at or after the timestamp, also inside a
    // compressed batch (it decompresses to find it), not with the batch's base offset.
    let broker = TestBroker::start("watermarks-gzip");
    let bootstrap = broker.bootstrap();
    let base = hours_ago(2);
    let base_text = base.to_string();
    // The test needs a gzip batch holding the records the later queries land inside
    // (offsets 4 to 9). How librdkafka batches is its own decision: now and then it sends the
    // first records one by one, uncompressed, before the rest. A fresh topic is tried again
    // then (at most `ATTEMPTS` times); the broker's answers are checked only on a topic with
    // such a batch.
    const ATTEMPTS: usize = 5;
    let mut layouts = Vec::new();
    let (topic, batches) = loop {
        let topic = format!("ts-gzip-batch-{}", layouts.len());
        create_topic(&broker, &topic, 1, &[]);
        let out = python_ok(
            "ck.py",
            &[
                "produce",
                "--count",
                "10",
                "--timestamp-base",
                &base_text,
                "--timestamp-step",
                "1000",
                "--partition",
                "0",
                "--compression",
                "gzip",
                "--linger-ms",
                "500",
                &bootstrap,
                &topic,
            ],
        );
        assert_eq!(parse_acks(&out).len(), 10);
        let batches = stored_batches(&broker, &topic, 0);
        let compressed_holds_4_to_9 = batches.iter().enumerate().any(|(i, (first, codec))| {
            *codec == 1 && *first <= 4 && batches.get(i + 1).is_none_or(|(next, _)| *next > 9)
        });
        if compressed_holds_4_to_9 {
            break (topic, batches);
        }
        layouts.push(batches);
        assert!(layouts.len() < ATTEMPTS, "librdkafka never sent offsets 4 to 9 in one gzip batch; stored (base offset, codec) per attempt: {layouts:?}");
    };
    let topic = topic.as_str();
    let cases = [(base, 0), (base + 1, 1), (base + 3500, 4), (base + 9000, 9), (base + 9001, -1)];
    let queries: Vec<String> = cases.iter().map(|(t, _)| t.to_string()).collect();
    let mut args = vec!["offsets-for-times", bootstrap.as_str(), topic];
    args.extend(queries.iter().map(String::as_str));
    let found = python_ok("ck.py", &args);
    let got: Vec<(i64, i64)> = tagged(&found, "time")
        .iter()
        .map(|f| (f[0].parse().expect("ts"), f[1].parse().expect("offset")))
        .collect();
    assert_eq!(got, cases.to_vec(), "offsets_for_times (timestamp, offset) with gzip batches at (base offset, codec) {batches:?}");
}

#[test]
fn retention_advances_the_low_watermark() {
    let broker = TestBroker::start_with("retention", &["--retention-check-interval-ms", "100"]);
    let bootstrap = broker.bootstrap();
    let topic = "retention-bytes";
    // segment.bytes 4096, not less: see a_segment_bytes_below_the_index_interval_is_accepted_or_refused_as_invalid_config.
    create_topic(&broker, topic, 1, &["segment.bytes=4096", "retention.bytes=8192"]);
    // One message per batch, about 170 bytes each: about 24 batches per segment.
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            "150",
            "--size",
            "100",
            "--acks",
            "1",
            "--pause-ms",
            "1",
            &bootstrap,
            topic,
        ],
    );
    assert_eq!(parse_acks(&out).len(), 150);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (low, high) = loop {
        let out = python_ok("ck.py", &["watermarks", &bootstrap, topic]);
        let w = tagged(&out, "watermarks");
        let (low, high): (i64, i64) =
            (w[0][1].parse().expect("low"), w[0][2].parse().expect("high"));
        if low > 0 {
            break (low, high);
        }
        assert!(
            Instant::now() < deadline,
            "low watermark still 0 after 15 s with retention.bytes=8192 (high {high})"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(high, 150, "retention must not change the high watermark");
    assert!(low < 150, "retention removed the active segment: low watermark {low}");

    // Reading from the beginning starts at the new low watermark and returns the rest intact.
    let messages = consume_all(&broker, topic, &[]);
    let first = messages.first().expect("messages after retention").offset;
    assert!(first >= low, "consumed offset {first} below the low watermark {low}");
    let got: Vec<(i64, u64)> = messages
        .iter()
        .map(|m| (m.offset, value_index(m.value.as_deref().expect("value"))))
        .collect();
    let want: Vec<(i64, u64)> = (first..150).map(|o| (o, o as u64)).collect();
    assert_eq!(got, want, "messages left after retention");
    let earliest =
        String::from_utf8(kcat_ok(&["-b", &bootstrap, "-Q", "-t", &format!("{topic}:0:-2")], None))
            .expect("UTF-8");
    assert!(
        earliest.contains(&format!("offset {first}")),
        "ListOffsets earliest: {earliest} (first consumed {first})"
    );
}

#[test]
fn a_segment_bytes_below_the_index_interval_is_accepted_or_refused_as_invalid_config() {
    // segment.bytes=1024 passes the topic config check (the minimum is 1024), but the log
    // config it makes has index.interval.bytes 4096 > segment.bytes.
    let broker = TestBroker::start("segment-bytes");
    let bootstrap = broker.bootstrap();
    let output = python(
        "ck.py",
        &["create-topic", "--config", "segment.bytes=1024", &bootstrap, "segment-1k"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        kcat_ok(&["-b", &bootstrap, "-P", "-t", "segment-1k"], Some(b"one\ntwo\n"));
        assert_eq!(kcat_consume(&broker, "segment-1k", "%s\n", &["-o", "beginning"]), "one\ntwo\n");
    } else {
        assert!(stderr.contains("INVALID_CONFIG"), "CreateTopics segment.bytes=1024 must succeed or fail with INVALID_CONFIG (40), got:\n{stderr}");
    }
}

/// (codec name, attributes codec id).
const CODECS: [(&str, u8); 4] = [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)];

#[test]
fn confluent_kafka_compression_codecs_round_trip() {
    let broker = TestBroker::start("compression-ck");
    let bootstrap = broker.bootstrap();
    let (count, size) = (300u64, 200usize);
    for (codec, id) in CODECS {
        // compression.type in confluent-kafka: read back with confluent-kafka and with kcat.
        let topic = format!("comp-ck-{codec}");
        let out = python_ok(
            "ck.py",
            &[
                "produce",
                "--count",
                &count.to_string(),
                "--keys",
                "7",
                "--size",
                &size.to_string(),
                "--compression",
                codec,
                "--linger-ms",
                "50",
                &bootstrap,
                &topic,
            ],
        );
        let acks = parse_acks(&out);
        let messages = consume_all(&broker, &topic, &[]);
        assert_matches_acks(&messages, &acks, 7, size);
        let expected: String = (0..count)
            .map(|i| format!("{}\n", String::from_utf8(value(i, size)).expect("ASCII")))
            .collect();
        assert_eq!(
            kcat_consume(&broker, &topic, "%s\n", &["-o", "beginning"]),
            expected,
            "compression.type={codec} read back by kcat"
        );
        // Stored as sent: compressed batches, never decoded and re-encoded.
        let codecs = stored_codecs(&broker, &topic, 0);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == id),
            "compression.type={codec}: codecs of the stored batches {codecs:?}, expected all {id}"
        );
    }
}

#[test]
fn kcat_compression_codecs_round_trip() {
    let broker = TestBroker::start("compression-kcat");
    let bootstrap = broker.bootstrap();
    let mut not_compressed = Vec::new();
    for (codec, id) in CODECS {
        // kcat -z: read back with kcat and with confluent-kafka.
        let topic = format!("comp-kcat-{codec}");
        let mut input = String::new();
        let mut expected = String::new();
        for i in 0..300 {
            let v = format!("{codec} message {i} {}", "compressible ".repeat(10));
            input.push_str(&format!("key{}:{v}\n", i % 5));
            expected.push_str(&format!("key{} {v}\n", i % 5));
        }
        kcat_ok(
            &["-b", &bootstrap, "-P", "-t", &topic, "-K:", "-z", codec, "-X", "linger.ms=50"],
            Some(input.as_bytes()),
        );
        assert_eq!(
            kcat_consume(&broker, &topic, "%k %s\n", &["-o", "beginning"]),
            expected,
            "kcat -z {codec} read back by kcat"
        );
        let read_by_python: String = consume_all(&broker, &topic, &[])
            .iter()
            .map(|m| {
                format!(
                    "{} {}\n",
                    String::from_utf8_lossy(m.key.as_deref().expect("key")),
                    String::from_utf8_lossy(m.value.as_deref().expect("value"))
                )
            })
            .collect();
        assert_eq!(read_by_python, expected, "kcat -z {codec} read back by confluent-kafka");
        let codecs = stored_codecs(&broker, &topic, 0);
        if codecs.is_empty() || codecs.iter().any(|c| *c != id) {
            not_compressed.push(format!(
                "kcat -z {codec}: stored batch codecs {codecs:?}, expected all {id}"
            ));
        }
    }
    // librdkafka before 2.8 (kcat 1.7.1 links 2.0.2) compresses with gzip, snappy or lz4 only
    // if the broker advertises Produce v0 (librdkafka issue #4956); Kafka 4 advertises
    // Produce v0-v2 for that reason while refusing them (KAFKA-18659).
    assert!(
        not_compressed.is_empty(),
        "kcat silently sent uncompressed batches (librdkafka logs \"Broker does not support compression type ...: not compressing batch\" \
         because ApiVersions advertises Produce v3+, not v0):\n{}",
        not_compressed.join("\n")
    );
}

#[test]
fn a_900_kib_message_round_trips() {
    let broker = TestBroker::start("large");
    let bootstrap = broker.bootstrap();
    let size = 900 * 1024;

    // confluent-kafka, three of them, with room in the client's limits.
    let topic = "large-ck";
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--count",
            "3",
            "--size",
            &size.to_string(),
            "--message-max-bytes",
            "2000000",
            &bootstrap,
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len(), 3);
    let messages = consume_all(&broker, topic, &["--fetch-max-bytes", "2097152"]);
    assert_matches_acks(&messages, &acks, 0, size);

    // kcat: one file is one message; read back with default fetch sizes.
    let dir = TempDir::new("large-kcat");
    let payload: Vec<u8> = (0..size).map(|i| b'A' + ((i * 7 + i / 1000) % 26) as u8).collect();
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write payload");
    let file = file.display().to_string();
    kcat_ok(
        &["-b", &bootstrap, "-P", "-t", "large-kcat", "-X", "message.max.bytes=2000000", &file],
        None,
    );
    let bytes =
        kcat_ok(&["-b", &bootstrap, "-C", "-t", "large-kcat", "-e", "-q", "-f", "%S:%s"], None);
    let mut expected = format!("{size}:").into_bytes();
    expected.extend_from_slice(&payload);
    assert!(
        bytes == expected,
        "kcat read back {} bytes, expected {} (first difference at {:?})",
        bytes.len(),
        expected.len(),
        bytes.iter().zip(&expected).position(|(a, b)| a != b)
    );

    // Over the broker's message.max.bytes (1048588): refused with MESSAGE_TOO_LARGE, not stored.
    let output = python(
        "ck.py",
        &[
            "produce",
            "--count",
            "1",
            "--size",
            &(1200 * 1024).to_string(),
            "--message-max-bytes",
            "3000000",
            "--allow-errors",
            "--message-timeout-ms",
            "10000",
            &bootstrap,
            "large-refused",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    let errors = tagged(&text, "err");
    assert_eq!(errors.len(), 1, "a 1.2 MiB message must be refused: {text}");
    assert!(errors[0][1].contains("too large"), "refusal reason: {:?}", errors[0]);
    let watermarks = python_ok("ck.py", &["watermarks", &bootstrap, "large-refused"]);
    assert_eq!(
        tagged(&watermarks, "watermarks"),
        vec![vec!["0", "0", "0"]],
        "nothing stored for the refused message"
    );
}

#[test]
fn idempotent_confluent_producer_writes_exactly_once() {
    let broker = TestBroker::start("idempotent-ck");
    let bootstrap = broker.bootstrap();
    let topic = "idempotent-ck";
    let (count, keys) = (3000u64, 30u64);
    create_topic(&broker, topic, 3, &[]);
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--idempotent",
            "--acks",
            "all",
            "--count",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            &bootstrap,
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count);
    let messages = consume_all(&broker, topic, &[]);
    let mut indexes: Vec<u64> =
        messages.iter().map(|m| value_index(m.value.as_deref().expect("value"))).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..count).collect::<Vec<_>>(), "every message exactly once");
    assert_matches_acks(&messages, &acks, keys, 0);
    assert!(
        !broker.stderr().contains("produce refused"),
        "refused batches:\n{}",
        broker.stderr_tail()
    );
}

#[test]
fn idempotent_producer_retrying_across_a_broker_crash_writes_exactly_once() {
    // kill -9 while batches are in flight: librdkafka retries them, with the same producer
    // id and sequence numbers, against the restarted broker, which must recognise the ones
    // it had already appended.
    let mut broker = TestBroker::start("idempotent-crash-ck");
    let topic = "idempotent-crash-ck";
    let (count, keys, size) = (20_000u64, 8u64, 100usize);
    create_topic(&broker, topic, 2, &[]);
    let producer = Background::spawn(
        "ck.py",
        &[
            "produce",
            "--idempotent",
            "--acks",
            "all",
            "--count",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            "--size",
            &size.to_string(),
            "--batch-size",
            "4096",
            "--linger-ms",
            "1",
            "--message-timeout-ms",
            "60000",
            "--flush-timeout-s",
            "90",
            &broker.bootstrap(),
            topic,
        ],
    );
    let mut acks = Vec::new();
    while acks.len() < 2000 {
        let Some(line) = producer.next_line(Duration::from_secs(30)) else {
            panic!("producer stopped after {} acknowledgements", acks.len())
        };
        acks.extend(parse_ack(&line));
    }
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    broker.restart_on_same_port();
    let (status, rest, stderr) = producer.finish();
    acks.extend(rest.iter().filter_map(|l| parse_ack(l)));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("err\t")).take(5).collect();
    assert!(
        status.success(),
        "producer: {status}, first errors {errors:?}\n{}",
        tail_lines(&stderr, 20)
    );
    assert_eq!(acks.len() as u64, count, "acknowledged");

    let messages = consume_all(&broker, topic, &[]);
    let mut indexes: Vec<u64> =
        messages.iter().map(|m| value_index(m.value.as_deref().expect("value"))).collect();
    indexes.sort_unstable();
    let duplicates: Vec<u64> =
        indexes.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(10).collect();
    assert!(
        duplicates.is_empty(),
        "{} messages stored for {count} sent; first duplicated: {duplicates:?}",
        messages.len()
    );
    assert_eq!(indexes, (0..count).collect::<Vec<_>>(), "every message exactly once");
    assert_matches_acks(&messages, &acks, keys, size);
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn idempotent_kafka_python_producer_writes_exactly_once() {
    let broker = TestBroker::start("idempotent-kp");
    let bootstrap = broker.bootstrap();
    let topic = "idempotent-kp";
    let (count, keys) = (1000u64, 10u64);
    create_topic(&broker, topic, 2, &[]);
    let out = python_ok(
        "kp.py",
        &[
            "produce",
            "--idempotent",
            "--acks",
            "all",
            "--count",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            &bootstrap,
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count);
    let messages = consume_all(&broker, topic, &[]);
    let mut indexes: Vec<u64> =
        messages.iter().map(|m| value_index(m.value.as_deref().expect("value"))).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..count).collect::<Vec<_>>(), "every message exactly once");
    assert_matches_acks(&messages, &acks, keys, 0);
    assert!(
        !broker.stderr().contains("produce refused"),
        "refused batches:\n{}",
        broker.stderr_tail()
    );
}

#[test]
fn kill_9_after_acks_all_loses_nothing_acknowledged() {
    let mut broker = TestBroker::start("kill9-acked");
    let topic = "kill9-acked";
    let (count, keys, size) = (2000u64, 16u64, 64usize);
    create_topic(&broker, topic, 2, &[]);
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--acks",
            "all",
            "--count",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            "--size",
            &size.to_string(),
            &broker.bootstrap(),
            topic,
        ],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count);

    broker.kill9();
    broker.restart();
    let messages = consume_all(&broker, topic, &[]);
    assert_matches_acks(&messages, &acks, keys, size);
    assert_dense(&messages);

    // The log continues where it was: new offsets follow the recovered ones.
    let high: HashMap<i32, i64> = acks.iter().fold(HashMap::new(), |mut m, a| {
        let e = m.entry(a.partition).or_insert(0);
        *e = (*e).max(a.offset + 1);
        m
    });
    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--acks",
            "all",
            "--count",
            "20",
            "--start",
            &count.to_string(),
            "--keys",
            &keys.to_string(),
            "--size",
            &size.to_string(),
            &broker.bootstrap(),
            topic,
        ],
    );
    for ack in parse_acks(&out) {
        assert!(
            ack.offset >= high[&ack.partition],
            "offset {} reused in partition {} (recovered high watermark {})",
            ack.offset,
            ack.partition,
            high[&ack.partition]
        );
    }
    assert_eq!(consume_all(&broker, topic, &[]).len() as u64, count + 20);
}

#[test]
fn kill_9_during_produce_keeps_every_acknowledged_message() {
    let mut broker = TestBroker::start("kill9-live");
    let topic = "kill9-live";
    create_topic(&broker, topic, 1, &[]);
    let producer = Background::spawn(
        "ck.py",
        &[
            "produce",
            "--acks",
            "all",
            "--count",
            "100000",
            "--size",
            "100",
            "--batch-size",
            "4096",
            "--linger-ms",
            "1",
            "--message-timeout-ms",
            "3000",
            "--flush-timeout-s",
            "30",
            "--allow-errors",
            &broker.bootstrap(),
            topic,
        ],
    );
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.len() < 1500 {
        assert!(Instant::now() < deadline, "only {} acknowledgements within 60 s", acks.len());
        match producer.next_line(Duration::from_secs(30)) {
            Some(line) => acks.extend(parse_ack(&line)),
            None => break,
        }
    }
    broker.kill9();
    let (status, rest, stderr) = producer.finish();
    assert!(status.success(), "producer: {status}\n{stderr}");
    acks.extend(rest.iter().filter_map(|l| parse_ack(l)));
    let failed = rest.iter().filter(|l| l.starts_with("err\t")).count();
    assert!(acks.len() >= 1500, "{} acknowledgements", acks.len());
    eprintln!(
        "kill -9 after {} acknowledged messages ({failed} failed after the kill)",
        acks.len()
    );

    broker.restart();
    let messages = consume_all(&broker, topic, &[]);
    // Everything acknowledged is there, byte for byte...
    let at: HashMap<i64, &Message> = messages.iter().map(|m| (m.offset, m)).collect();
    for ack in &acks {
        let m = at.get(&ack.offset).unwrap_or_else(|| {
            panic!(
                "acknowledged message {} at offset {} lost (recovered {} messages)",
                ack.index,
                ack.offset,
                messages.len()
            )
        });
        assert_eq!(
            m.value.as_deref(),
            Some(value(ack.index, 100).as_slice()),
            "offset {}",
            ack.offset
        );
    }
    // ...and the log is a prefix of what was sent: message i at offset i, no gap, no torn tail.
    for (o, m) in messages.iter().enumerate() {
        assert_eq!(m.offset, o as i64, "recovered offsets not dense");
        assert_eq!(
            value_index(m.value.as_deref().expect("value")),
            o as u64,
            "offset {o} holds another message"
        );
        assert_eq!(m.value.as_deref(), Some(value(o as u64, 100).as_slice()), "offset {o} damaged");
    }
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly_and_keep_data() {
    let mut broker = TestBroker::start("clean-shutdown");
    let topic = "clean-shutdown";
    let input: String = (0..500).map(|i| format!("k{}:clean {i}\n", i % 3)).collect();
    let expected: String = (0..500).map(|i| format!("{} k{} clean {i}\n", i, i % 3)).collect();
    // acks=1: the broker does not fsync for these; the clean shutdown must.
    kcat_ok(
        &["-b", &broker.bootstrap(), "-P", "-t", topic, "-K:", "-X", "acks=1"],
        Some(input.as_bytes()),
    );

    broker.stop();
    assert!(broker.stderr().contains("shut down cleanly"), "{}", broker.stderr_tail());
    broker.restart();
    assert_eq!(
        kcat_consume(&broker, topic, "%o %k %s\n", &["-o", "beginning"]),
        expected,
        "after SIGTERM and restart"
    );

    let out = python_ok(
        "ck.py",
        &[
            "produce",
            "--acks",
            "1",
            "--count",
            "5",
            "--start",
            "500",
            "--partition",
            "0",
            &broker.bootstrap(),
            topic,
        ],
    );
    let offsets: Vec<i64> = parse_acks(&out).iter().map(|a| a.offset).collect();
    assert_eq!(offsets, vec![500, 501, 502, 503, 504], "offsets after the restart");

    broker.stop_with_signal(libc::SIGINT);
    broker.restart();
    let messages = consume_all(&broker, topic, &[]);
    assert_eq!(messages.len(), 505, "after SIGINT and restart");
    assert_dense(&messages);
    let tail: Vec<Vec<u8>> =
        messages[500..].iter().map(|m| m.value.clone().expect("value")).collect();
    assert_eq!(tail, (500..505).map(|i| value(i, 0)).collect::<Vec<_>>());
    // A clean shutdown leaves nothing to repair.
    let stderr = broker.stderr();
    let warnings: Vec<&str> =
        stderr.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert!(warnings.is_empty(), "warnings across clean restarts:\n{}", warnings.join("\n"));
}

#[test]
fn kafka_python_round_trip() {
    let broker = TestBroker::start("kafka-python");
    let bootstrap = broker.bootstrap();
    let topic = "kafka-python";
    let (count, keys) = (500u64, 10u64);
    create_topic(&broker, topic, 2, &[]);
    let out = python_ok(
        "kp.py",
        &["produce", "--count", &count.to_string(), "--keys", &keys.to_string(), &bootstrap, topic],
    );
    let acks = parse_acks(&out);
    assert_eq!(acks.len() as u64, count);
    let consumed = python_ok("kp.py", &["consume", &bootstrap, topic]);
    let messages = crate::support::parse_messages(&consumed);
    assert_matches_acks(&messages, &acks, keys, 0);
    assert_dense(&messages);
    assert_eq!(tagged(&consumed, "end").len(), 1, "{consumed}");

    // gzip (the codec kafka-python has without extra packages), read by kcat as well.
    let topic = "kafka-python-gzip";
    let out = python_ok(
        "kp.py",
        &["produce", "--count", "200", "--size", "300", "--compression", "gzip", &bootstrap, topic],
    );
    let acks = parse_acks(&out);
    let messages =
        crate::support::parse_messages(&python_ok("kp.py", &["consume", &bootstrap, topic]));
    assert_matches_acks(&messages, &acks, 0, 300);
    let expected: String = (0..200)
        .map(|i| format!("{}\n", String::from_utf8(value(i, 300)).expect("ASCII")))
        .collect();
    assert_eq!(
        kcat_consume(&broker, topic, "%s\n", &["-o", "beginning"]),
        expected,
        "kafka-python gzip read by kcat"
    );
    assert!(kcat(&["-b", &bootstrap, "-L"], None).status.success());
}
