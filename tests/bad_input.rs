//! Bad input over a raw TCP connection: frames no client should send, requests the broker
//! does not serve, batches that fail their checksum, names Kafka refuses, and the retried or
//! out-of-sequence batches an idempotent producer sends after a failure.
//!
//! Invariant checked after every case: the broker answers or closes that one connection
//! (never hangs it, never crashes), and a normal client still works against it.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fjord::protocol::SUPPORTED_APIS;

use crate::support::hog::{open_files_limit, slow_loris, Hog, HogPace};
use crate::support::wire::{self, Conn, Encoder, Producer, Received, BATCH_CRC_AT, NO_PRODUCER};
use crate::support::{kcat_consume, kcat_metadata, kcat_ok, kcat_topics, wait_until, TestBroker};

/// Error codes (Kafka's protocol numbers).
const NONE: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_REQUEST: i16 = 42;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

/// Seed of the random garbage; `FJORD_TEST_SEED` replays a failure.
fn seed() -> u64 {
    std::env::var("FJORD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f10d)
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The broker is alive, answers ApiVersions on a new connection, and kcat -L lists it.
fn assert_clients_still_work(broker: &mut TestBroker, context: &str) {
    broker.assert_alive();
    let mut conn = Conn::connect(broker.addr());
    let body = conn.call(wire::API_VERSIONS, 0, 7, &[]);
    let (error, apis) = wire::parse_api_versions(&body, 0);
    assert_eq!((error, apis.len()), (NONE, SUPPORTED_APIS.len()), "ApiVersions after {context}");
    let listing = kcat_metadata(broker);
    assert!(
        listing.contains(&format!("broker 0 at {}", broker.bootstrap())),
        "kcat -L after {context}:\n{listing}"
    );
}

/// A successful CreateTopics result. Kafka sends a null error message on success; Fjord
/// sends an empty one, which clients treat alike.
fn assert_created((error, message): (i16, Option<String>)) {
    assert_eq!(error, NONE, "CreateTopics error code (message {message:?})");
    assert!(
        message.as_deref().is_none_or(str::is_empty),
        "CreateTopics succeeded with an error message {message:?}"
    );
}

/// A request header v2 (flexible versions): client id, then an empty tagged-field section.
fn flexible_request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut payload = Encoder::new();
    payload.i16(api_key).i16(version).i32(correlation_id).string("fjord-tests").i8(0).raw(body);
    wire::frame(&payload.0)
}

#[test]
fn garbage_frames_close_only_their_connection() {
    let mut broker = TestBroker::start("garbage");
    let seed = seed();

    // Too short for a request header.
    let mut conn = Conn::connect(broker.addr());
    conn.send(&wire::frame(b"abc")).expect("send");
    conn.expect_closed("3-byte frame");

    // Metadata v9 whose client id length runs past the frame.
    let mut conn = Conn::connect(broker.addr());
    conn.send(&wire::frame(b"\x00\x03\x00\x09\x00\x00\x00\x01\x7f\xff")).expect("send");
    conn.expect_closed("client id past the end of the frame");

    // A frame cut short: 100 bytes announced, 10 sent, then the write side closed.
    let mut conn = Conn::connect(broker.addr());
    conn.send(&100i32.to_be_bytes()).expect("send");
    conn.send(&[0u8; 10]).expect("send");
    conn.stream.shutdown(Shutdown::Write).expect("shutdown write");
    conn.expect_closed("truncated frame");

    // Random frames: each is answered or closes its connection, within the read timeout.
    eprintln!("random frames from seed {seed} (replay with FJORD_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let (mut answered, mut closed) = (0, 0);
    for case in 0..40 {
        let size = (rng.next() % 200) as usize;
        let payload = rng.bytes(size);
        let mut conn = Conn::connect(broker.addr());
        conn.send(&wire::frame(&payload))
            .unwrap_or_else(|e| panic!("seed {seed}, case {case}: send: {e}"));
        // A response is possible if the bytes happen to form a valid request; only a hang
        // (a panic in receive) or a crash fails.
        match conn.receive() {
            Received::Frame(_) => answered += 1,
            Received::Closed { .. } => closed += 1,
        }
        broker.assert_alive();
    }
    eprintln!("random frames (seed {seed}): {answered} answered, {closed} closed");
    assert_clients_still_work(&mut broker, &format!("garbage frames (seed {seed})"));
}

#[test]
fn an_array_count_beyond_the_frame_is_refused_without_allocating() {
    // A 4-byte array length of i32::MAX in a tiny request: the decoder must notice the
    // frame cannot hold that many elements before reserving room for them. Each request
    // gets its own broker, so one crash does not hide the others.
    let cases: [(&str, i16, i16, Vec<u8>); 4] = [
        ("Metadata v1 with i32::MAX topics", wire::METADATA, 1, i32::MAX.to_be_bytes().to_vec()),
        (
            "Metadata v1 with 10 million topics",
            wire::METADATA,
            1,
            10_000_000i32.to_be_bytes().to_vec(),
        ),
        ("Produce v3 with i32::MAX topics", wire::PRODUCE, 3, {
            let mut body = Encoder::new();
            body.null_string().i16(1).i32(1000).i32(i32::MAX);
            body.0
        }),
        (
            "CreateTopics v2 with i32::MAX topics",
            wire::CREATE_TOPICS,
            2,
            i32::MAX.to_be_bytes().to_vec(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, api_key, version, body) in cases {
        let mut broker = TestBroker::start("array-count");
        // Resident memory, not address space: the codec still reserves room for the announced
        // count, which the broker's allocator maps without committing (src/alloc.rs).
        let peak_before = broker.proc_status_kb("VmHWM");
        let mut conn = Conn::connect(broker.addr());
        conn.send(&wire::request_frame(api_key, version, 1, &body)).expect("send");
        let outcome = conn.receive();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let child_status = broker.exit_status();
        match (outcome, child_status) {
            (_, Some(status)) => {
                let stderr = broker.stderr();
                let why = stderr
                    .lines()
                    .find(|l| l.contains("memory allocation") || l.contains("panicked"))
                    .unwrap_or("(no reason logged)")
                    .to_string();
                failures.push(format!("{what}: the broker died ({status}): {why}"));
            }
            (Received::Frame(frame), None) => failures
                .push(format!("{what}: answered with {} bytes instead of closing", frame.len())),
            (Received::Closed { .. }, None) => {
                let grown = broker.proc_status_kb("VmHWM").saturating_sub(peak_before);
                if grown >= 64 * 1024 {
                    failures.push(format!(
                        "{what}: closed, but resident memory (VmHWM) grew by {grown} kB"
                    ));
                }
                assert_clients_still_work(&mut broker, what);
            }
        }
    }
    assert!(failures.is_empty(), "array counts beyond the frame:\n{}", failures.join("\n"));
}

#[test]
fn a_negative_length_prefix_closes_the_connection() {
    let mut broker = TestBroker::start("negative-length");
    for size in [-1i32, -4, i32::MIN] {
        let mut conn = Conn::connect(broker.addr());
        conn.send(&size.to_be_bytes()).expect("send");
        conn.send(&[0u8; 16]).expect("send");
        conn.expect_closed(&format!("length prefix {size}"));
    }
    assert_clients_still_work(&mut broker, "negative length prefixes");
}

#[test]
fn a_huge_length_prefix_closes_the_connection_without_allocating() {
    let mut broker = TestBroker::start("huge-length");
    let peak_before = broker.proc_status_kb("VmPeak");
    for size in [100 * 1024 * 1024 + 1, 1024 * 1024 * 1024, i32::MAX] {
        let started = Instant::now();
        let mut conn = Conn::connect(broker.addr());
        conn.send(&size.to_be_bytes()).expect("send");
        conn.send(b"\x00\x03\x00\x01\x00\x00\x00\x01").expect("send");
        // Closed at once, not after waiting for the announced bytes (receive panics after 10 s).
        conn.expect_closed(&format!("length prefix {size}"));
        assert!(
            started.elapsed().as_secs() < 5,
            "length prefix {size}: closed only after {:?}",
            started.elapsed()
        );
    }
    let grown = broker.proc_status_kb("VmPeak").saturating_sub(peak_before);
    assert!(
        grown < 64 * 1024,
        "VmPeak grew by {grown} kB after frames announcing > 100 MiB: the buffer was allocated"
    );
    let stderr = broker.stderr();
    assert!(
        stderr.contains("outside 0..=104857600"),
        "no log line naming the limit:\n{}",
        broker.stderr_tail()
    );
    assert_clients_still_work(&mut broker, "huge length prefixes");
}

#[test]
fn an_unknown_or_unserved_api_key_closes_the_connection() {
    let mut broker = TestBroker::start("unknown-api");
    // 32767, 1000 and -1 are no Kafka API. The others are Kafka APIs (inter-broker,
    // transactions, DeleteRecords, CreatePartitions...) that Fjord does not advertise.
    let known_unserved: Vec<i16> = [4i16, 5, 6, 7, 21, 24, 25, 26, 27, 28, 37, 57]
        .into_iter()
        .filter(|key| SUPPORTED_APIS.iter().all(|(served, _, _)| *served as i16 != *key))
        .collect();
    assert!(
        known_unserved.len() >= 3,
        "test needs unserved Kafka APIs; SUPPORTED_APIS now has {SUPPORTED_APIS:?}"
    );
    for api_key in [32767i16, 1000, -1].into_iter().chain(known_unserved) {
        let mut conn = Conn::connect(broker.addr());
        conn.send(&wire::request_frame(api_key, 0, 1, &[0u8; 8])).expect("send");
        conn.expect_closed(&format!("api key {api_key}"));
    }
    assert_clients_still_work(&mut broker, "unknown API keys");
}

#[test]
fn an_unsupported_metadata_version_closes_the_connection() {
    let mut broker = TestBroker::start("metadata-version");
    // v99 and v10 (just above Fjord's v9) use the flexible header; -1 the classic one.
    for (version, frame) in [
        (99, flexible_request(wire::METADATA, 99, 1, &[0x00, 0x01, 0x00, 0x00])),
        (10, flexible_request(wire::METADATA, 10, 1, &[0x01, 0x01, 0x00, 0x00])),
        (-1, wire::request_frame(wire::METADATA, -1, 1, &0i32.to_be_bytes())),
    ] {
        let mut conn = Conn::connect(broker.addr());
        conn.send(&frame).expect("send");
        conn.expect_closed(&format!("Metadata v{version}"));
    }
    assert_clients_still_work(&mut broker, "unsupported Metadata versions");
}

#[test]
fn an_unsupported_api_versions_version_gets_a_v0_error_response_with_the_api_list() {
    let mut broker = TestBroker::start("api-versions");
    // Produce is advertised from v0 for older librdkafka's compression check, like Kafka 4
    // (requests below the served minimum are still refused).
    let advertised: Vec<(i16, i16, i16)> = SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| {
            (
                *k as i16,
                if *k == kafka_protocol::messages::ApiKey::Produce { 0 } else { *min },
                *max,
            )
        })
        .collect();
    let mut conn = Conn::connect(broker.addr());

    // v99 in a flexible header, with a v3-style body the broker should not need to read.
    conn.send(&flexible_request(
        wire::API_VERSIONS,
        99,
        99,
        &[0x05, b'k', b'c', b'a', b't', 0x02, b'1', 0x00],
    ))
    .expect("send");
    let Received::Frame(frame) = conn.receive() else {
        panic!("ApiVersions v99: connection closed instead of a v0 error response")
    };
    assert_eq!(&frame[..4], &99i32.to_be_bytes(), "correlation id of the v99 response");
    // Response header v0: the body follows the correlation id directly.
    let (error, apis) = wire::parse_api_versions(&frame[4..], 0);
    assert_eq!(error, UNSUPPORTED_VERSION, "error code of ApiVersions v99");
    let api_versions_only: Vec<_> =
        advertised.iter().filter(|(key, _, _)| *key == wire::API_VERSIONS).cloned().collect();
    assert_eq!(
        apis, api_versions_only,
        "the v99 error response lists the versions of ApiVersions, as Kafka's (KIP-511)"
    );

    // The connection stays usable: the client retries with a version both speak.
    let (error, apis) = wire::parse_api_versions(&conn.call(wire::API_VERSIONS, 0, 100, &[]), 0);
    assert_eq!(
        (error, apis.clone()),
        (NONE, advertised.clone()),
        "ApiVersions v0 after the v99 error"
    );
    conn.send(&flexible_request(
        wire::API_VERSIONS,
        3,
        101,
        &[0x05, b'k', b'c', b'a', b't', 0x02, b'1', 0x00],
    ))
    .expect("send");
    let Received::Frame(frame) = conn.receive() else {
        panic!("ApiVersions v3: connection closed")
    };
    assert_eq!(&frame[..4], &101i32.to_be_bytes());
    let (error, apis) = wire::parse_api_versions(&frame[4..], 3);
    assert_eq!((error, apis), (NONE, advertised.clone()), "ApiVersions v3");

    // A negative version is unsupported too.
    let (error, apis) = wire::parse_api_versions(&conn.call(wire::API_VERSIONS, -1, 102, &[]), 0);
    assert_eq!((error, apis), (UNSUPPORTED_VERSION, api_versions_only), "ApiVersions v-1");

    // Pipelined requests are answered in order.
    let mut burst = Vec::new();
    for id in 200..205 {
        burst.extend(wire::request_frame(wire::API_VERSIONS, (id % 3) as i16, id, &[]));
    }
    conn.send(&burst).expect("send burst");
    for id in 200..205 {
        let Received::Frame(frame) = conn.receive() else {
            panic!("closed in the middle of pipelined requests")
        };
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().expect("4")),
            id,
            "pipelined responses out of order"
        );
    }
    assert_clients_still_work(&mut broker, "unsupported ApiVersions versions");
}

#[test]
fn a_record_batch_with_a_bad_crc_gets_corrupt_message() {
    let mut broker = TestBroker::start("bad-crc");
    let topic = "bad-crc";
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, topic, 1));

    let good = wire::record_batch(&[(Some(b"k"), b"good")], 1_700_000_000_000, NO_PRODUCER);
    let mut bad_crc = good.clone();
    bad_crc[BATCH_CRC_AT + 3] ^= 0x01;
    let mut bad_value = good.clone();
    let last = bad_value.len() - 2; // inside the value "good"
    bad_value[last] ^= 0x20;
    let truncated = good[..good.len() - 5].to_vec();

    for (what, batch) in [
        ("a flipped CRC bit", &bad_crc),
        ("a flipped value bit", &bad_value),
        ("a batch cut short", &truncated),
    ] {
        let (error, base_offset) = wire::produce(&mut conn, 2, topic, 0, batch);
        assert_eq!(
            error, CORRUPT_MESSAGE,
            "produce of {what}: error code (base offset {base_offset})"
        );
        assert_eq!(base_offset, -1, "produce of {what}: base offset");
    }
    // The same connection still works, and only the good batch is stored.
    assert_eq!(wire::produce(&mut conn, 3, topic, 0, &good), (NONE, 0), "the intact batch");
    assert_eq!(wire::list_offset(&mut conn, 4, topic, 0, -1), (NONE, 1), "high watermark");
    assert_eq!(kcat_consume(&broker, topic, "%o %k %s\n", &["-o", "beginning"]), "0 k good\n");
    // A normal producer after the corrupt ones.
    kcat_ok(&["-b", &broker.bootstrap(), "-P", "-t", topic, "-K:"], Some(b"k2:after\n"));
    assert_eq!(
        kcat_consume(&broker, topic, "%o %k %s\n", &["-o", "beginning"]),
        "0 k good\n1 k2 after\n"
    );
    assert_clients_still_work(&mut broker, "corrupt record batches");
}

#[test]
fn topic_names_kafka_rejects_get_invalid_topic_exception() {
    let mut broker = TestBroker::start("bad-names");
    let mut conn = Conn::connect(broker.addr());
    let long = "a".repeat(250);
    for (i, name) in ["bad name!", "../escape", "", ".", "..", "a/b", "tab\there", long.as_str()]
        .into_iter()
        .enumerate()
    {
        let (error, message) = wire::create_topic(&mut conn, i as i32, name, 1);
        assert_eq!(
            error, INVALID_TOPIC_EXCEPTION,
            "CreateTopics {name:?}: error code (message {message:?})"
        );
        assert!(message.is_some_and(|m| !m.is_empty()), "CreateTopics {name:?}: no error message");
    }
    assert_created(wire::create_topic(&mut conn, 20, "good.name_1-x", 2));
    assert_eq!(wire::create_topic(&mut conn, 21, "good.name_1-x", 2).0, TOPIC_ALREADY_EXISTS);

    // Metadata with auto-creation allowed: the bad name is refused, a good one created.
    let (brokers, topics) = wire::metadata(&mut conn, 22, &["bad name!", "auto.valid"]);
    assert_eq!(brokers, vec![broker.bootstrap()]);
    let summary: Vec<(i16, &str, usize)> =
        topics.iter().map(|t| (t.error, t.name.as_str(), t.partitions)).collect();
    assert_eq!(
        summary,
        vec![(INVALID_TOPIC_EXCEPTION, "bad name!", 0), (NONE, "auto.valid", 1)],
        "Metadata topics"
    );

    // Nothing was created on disk for the refused names, inside or outside the data dir.
    let entries: Vec<String> = std::fs::read_dir(broker.data_dir())
        .expect("data dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().all(|e| !e.contains("bad") && !e.contains("escape")),
        "data dir entries: {entries:?}"
    );
    let parent = broker.data_dir().parent().expect("parent");
    assert!(!parent.join("escape-0").exists(), "a topic directory escaped the data dir");

    let listing = kcat_metadata(&broker);
    let topics: Vec<(String, usize)> = kcat_topics(&listing).into_iter().collect();
    assert_eq!(
        topics,
        vec![("auto.valid".to_string(), 1), ("good.name_1-x".to_string(), 2)],
        "kcat -L:\n{listing}"
    );
    kcat_ok(&["-b", &broker.bootstrap(), "-P", "-t", "auto.valid"], Some(b"still works\n"));
    assert_eq!(kcat_consume(&broker, "auto.valid", "%s\n", &["-o", "beginning"]), "still works\n");
    assert_clients_still_work(&mut broker, "invalid topic names");
}

/// Records `first..first+count` of an idempotent producer's stream.
fn sequenced_batch(producer_id: i64, epoch: i16, first: i32, count: i32) -> Vec<u8> {
    let values: Vec<Vec<u8>> =
        (first..first + count).map(|i| format!("seq {i}").into_bytes()).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|v| (None, v.as_slice())).collect();
    wire::record_batch(
        &records,
        1_700_000_000_000,
        Producer { id: producer_id, epoch, base_sequence: first },
    )
}

#[test]
fn a_retried_idempotent_batch_is_stored_once_and_a_sequence_gap_is_refused() {
    let mut broker = TestBroker::start("idempotent-wire");
    let topic = "idempotent-wire";
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, topic, 1));
    let (error, producer_id, epoch) = wire::init_producer_id(&mut conn, 2);
    assert_eq!((error, epoch), (NONE, 0), "InitProducerId");
    assert!(producer_id >= 0, "producer id {producer_id}");
    // Only a null transactional id means "idempotent, no transactions" (as in Kafka): an
    // empty one is a bad request, a named one gets its id and epoch from the transaction
    // coordinator (which answers COORDINATOR_LOAD_IN_PROGRESS while it starts).
    assert_eq!(
        wire::init_producer_id_for(&mut conn, 20, Some("")).0,
        INVALID_REQUEST,
        "empty transactional id"
    );
    let transactional = loop {
        let answer = wire::init_producer_id_for(&mut conn, 21, Some("tx-1"));
        if answer.0 != COORDINATOR_LOAD_IN_PROGRESS {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!((transactional.0, transactional.2), (NONE, 0), "transactional id");
    assert_ne!(transactional.1, producer_id, "a transactional id has its own producer id");

    let first = sequenced_batch(producer_id, epoch, 0, 3);
    assert_eq!(wire::produce(&mut conn, 3, topic, 0, &first), (NONE, 0), "first batch");
    assert_eq!(
        wire::produce(&mut conn, 4, topic, 0, &first),
        (NONE, 0),
        "the retried first batch: acknowledged with its offset"
    );
    assert_eq!(
        wire::produce(&mut conn, 5, topic, 0, &sequenced_batch(producer_id, epoch, 3, 2)),
        (NONE, 3),
        "next batch"
    );
    let (error, _) =
        wire::produce(&mut conn, 6, topic, 0, &sequenced_batch(producer_id, epoch, 10, 1));
    assert_eq!(error, OUT_OF_ORDER_SEQUENCE_NUMBER, "a batch after a sequence gap");
    assert_eq!(
        wire::list_offset(&mut conn, 7, topic, 0, -1),
        (NONE, 5),
        "high watermark: 3 + 2 records, the retry not appended"
    );
    let expected: String = (0..5).map(|i| format!("{i} seq {i}\n")).collect();
    assert_eq!(kcat_consume(&broker, topic, "%o %s\n", &["-o", "beginning"]), expected);
    assert_clients_still_work(&mut broker, "idempotent retries");
}

#[test]
fn a_batch_retried_after_a_broker_crash_is_stored_once() {
    // The crash lands after the append was made durable but before the producer saw the
    // acknowledgement; the producer retries the same batch against the restarted broker.
    let mut broker = TestBroker::start("idempotent-crash");
    let topic = "idempotent-crash";
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, topic, 1));
    let (error, producer_id, epoch) = wire::init_producer_id(&mut conn, 2);
    assert_eq!(error, NONE);
    let first = sequenced_batch(producer_id, epoch, 0, 3);
    assert_eq!(wire::produce(&mut conn, 3, topic, 0, &first), (NONE, 0), "first batch (acks=all)");
    drop(conn);
    broker.kill9();
    broker.restart();

    let mut conn = Conn::connect(broker.addr());
    let retried = wire::produce(&mut conn, 4, topic, 0, &first);
    let high = wire::list_offset(&mut conn, 5, topic, 0, -1);
    assert_eq!(
        (retried, high),
        ((NONE, 0), (NONE, 3)),
        "retry after restart: (produce (error, base offset), high watermark); a duplicate append shows as base offset 3 and high watermark 6"
    );
    assert_eq!(
        wire::produce(&mut conn, 6, topic, 0, &sequenced_batch(producer_id, epoch, 3, 1)),
        (NONE, 3),
        "the next sequence after the restart"
    );
    // A producer id handed out before the crash is never handed out again.
    let (error, next_id, _) = wire::init_producer_id(&mut conn, 7);
    assert_eq!(error, NONE);
    assert!(
        next_id > producer_id,
        "InitProducerId after a crash returned {next_id}, not above the earlier {producer_id}"
    );
    assert_clients_still_work(&mut broker, "a retry after a crash");
}

#[test]
fn the_request_memory_budget_holds_back_reads_and_recovers() {
    // A 2 MiB budget, 1 MiB requests at most: two half-sent 1 MiB frames spend the budget.
    let mut broker = TestBroker::start_with(
        "memory-budget",
        &["--request-bytes-max", "1048576", "--request-memory-max", "2097152"],
    );
    let announce = |conn: &mut Conn| {
        let mut head = (1_048_000i32).to_be_bytes().to_vec();
        head.extend_from_slice(&[0u8; 100]);
        conn.send(&head).expect("send a partial frame");
    };
    let mut first = Conn::connect(broker.addr());
    let mut second = Conn::connect(broker.addr());
    announce(&mut first);
    announce(&mut second);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A small request now waits for budget: no answer while the big frames hold it.
    let mut probe = Conn::connect(broker.addr());
    probe.stream.set_read_timeout(Some(std::time::Duration::from_millis(700))).expect("timeout");
    probe.send(&wire::request_frame(wire::API_VERSIONS, 0, 7, &[])).expect("send");
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut probe.stream, &mut byte);
    assert!(early.is_err(), "a request was read while the memory budget was spent: {early:?}");
    // One big frame's client gives up: its budget returns and the waiting request is served.
    drop(first);
    probe.stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut rest = [0u8; 3];
    std::io::Read::read_exact(&mut probe.stream, &mut rest)
        .expect("the waiting request is answered once budget returns");
    drop(second);
    assert_clients_still_work(&mut broker, "after the memory budget was spent");
}

/// Runs `work` on a thread of its own and returns its result, or panics if it takes longer
/// than `bound` (a correctness bound: the work must not wait on other clients, not a speed
/// measurement).
fn within<T: Send + 'static>(
    bound: std::time::Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, outcome) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match outcome.recv_timeout(bound) {
        Ok(result) => {
            worker.join().expect("worker thread");
            result
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().expect_err("the worker ended without a result"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not done within {bound:?}")
        }
    }
}

/// A normal client's round: Metadata, CreateTopics, then an acks=all Produce to `topic`.
fn normal_client_round(addr: std::net::SocketAddr, topic: &str) {
    let mut conn = Conn::connect(addr);
    let (brokers, _) = wire::metadata(&mut conn, 1, &[]);
    assert_eq!(brokers.len(), 1, "brokers in Metadata");
    assert_created(wire::create_topic(&mut conn, 2, topic, 1));
    let batch = wire::record_batch(&[(None, b"served")], 1_700_000_000_000, NO_PRODUCER);
    let (error, base_offset) = wire::produce(&mut conn, 3, topic, 0, &batch);
    assert_eq!((error, base_offset), (NONE, 0), "produce to {topic}");
}

/// Regression (issue: slow senders holding the memory budget): clients that announce large
/// requests and then send a byte at a time held the whole request memory budget for as long
/// as they kept trickling, and every other client waited. A frame must now arrive at
/// `FRAME_RATE_MIN_BYTES` per `FRAME_RATE_WINDOW_MS`: the tricklers are dropped within a
/// window, their budget returns, and the waiting request is served.
#[test]
fn clients_trickling_large_frames_are_dropped_within_one_rate_window() {
    use fjord::server::{FRAME_RATE_MIN_BYTES, FRAME_RATE_WINDOW_MS};
    /// How long past the window the drop may take on a loaded machine.
    const SLACK_MS: u64 = 5_000;
    let mut broker = TestBroker::start_with(
        "trickle",
        &["--request-bytes-max", "1048576", "--request-memory-max", "2097152"],
    );
    // One byte a second each: far below the minimum rate, never silent long.
    let pace = HogPace {
        announced: 1_048_000,
        burst: 100,
        per_tick: 1,
        tick: std::time::Duration::from_secs(1),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<Hog> = (0..2).map(|_| Hog::start(broker.addr(), pace, &stop)).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = Instant::now();
    let mut probe = Conn::connect(broker.addr());
    probe
        .stream
        .set_read_timeout(Some(std::time::Duration::from_millis(FRAME_RATE_WINDOW_MS + SLACK_MS)))
        .expect("timeout");
    probe.send(&wire::request_frame(wire::API_VERSIONS, 0, 7, &[])).expect("send");
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut probe.stream, &mut head)
        .expect("the waiting request is answered once the tricklers are dropped");
    let waited = started.elapsed();
    assert_eq!(&head[4..], &7i32.to_be_bytes(), "correlation id");
    assert!(
        waited.as_millis() as u64 <= FRAME_RATE_WINDOW_MS + SLACK_MS,
        "answered after {waited:?}"
    );
    // The tricklers were disconnected, not merely passed over.
    for trickler in &tricklers {
        let mut conn = Conn { stream: trickler.conn.stream.try_clone().expect("clone") };
        conn.stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        match conn.receive() {
            Received::Closed { .. } => {}
            Received::Frame(frame) => panic!("a trickler got a {}-byte answer", frame.len()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        let sent = trickler.join();
        assert!(sent < FRAME_RATE_MIN_BYTES, "a trickler sent {sent} bytes");
    }
    assert!(
        broker.stderr().contains("inside a frame of 1048004"),
        "the drop is logged with its reason"
    );
    assert_clients_still_work(&mut broker, "after the tricklers were dropped");
}

/// Issue 23 ("no client can hold the server hostage"): sixteen clients announce maximal
/// requests (`request-bytes-max`, 100 MiB by default) and send them slowly but above the
/// minimum rate, so they are never dropped. A frame holds only the budget its bytes have
/// earned (its first step), not its announced size, so a normal client's Metadata, CreateTopics
/// and Produce are served at once while every hog stays connected. Before, five hogs took the
/// whole 512 MiB budget, the sixth waited for its 100 MiB at the head of the budget's queue, and
/// every other request waited behind it for as long as the hogs kept sending.
#[test]
fn maximal_frames_sent_slowly_do_not_hold_up_other_clients() {
    use fjord::server::FRAME_RATE_MIN_BYTES;
    const HOGS: usize = 16;
    let mut broker = TestBroker::start("hogs");
    // 2.5 times the minimum rate: never dropped.
    let pace = HogPace {
        announced: fjord::config::REQUEST_BYTES_MAX_DEFAULT as i32,
        burst: 1024,
        per_tick: FRAME_RATE_MIN_BYTES / 4,
        tick: std::time::Duration::from_secs(1),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<Hog> = (0..HOGS).map(|_| Hog::start(broker.addr(), pace, &stop)).collect();
    // Every hog's frame is under way before the normal client comes.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let addr = broker.addr();
    within(PROMPT, "a normal client beside 16 hogs", move || {
        normal_client_round(addr, "beside-hogs")
    });
    for (i, hog) in hogs.iter().enumerate() {
        assert!(hog.still_connected(), "hog {i} was dropped; it sent above the minimum rate");
    }
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join();
    }
    assert_clients_still_work(&mut broker, "16 hogs announcing maximal frames");
}

/// How long a normal client may take beside misbehaving ones: a generous correctness bound
/// (it must not wait for them at all), not a speed measurement.
const PROMPT: std::time::Duration = std::time::Duration::from_secs(5);

/// Slow loris: hundreds of connections that open and send part of a request header (some
/// not even a whole size prefix, some a prefix and a few bytes of a small or a maximal frame)
/// and then nothing. None of them may keep a normal client from being served promptly.
#[test]
fn hundreds_of_half_sent_headers_do_not_hold_up_other_clients() {
    let mut broker = TestBroker::start("slow-loris");
    // Within the test process's open-file limit (tests run side by side in one process).
    // The thousand where the limit allows.
    let connections = (open_files_limit() / 4).clamp(200, 1000);
    let loris = slow_loris(&[broker.addr()], connections);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let addr = broker.addr();
    within(
        PROMPT,
        &format!("a normal client beside {connections} slow-loris connections"),
        move || normal_client_round(addr, "beside-loris"),
    );
    broker.assert_alive();
    drop(loris);
    assert_clients_still_work(&mut broker, "hundreds of half-sent headers");
}

/// The broker's memory stays within its request memory budget while clients send large
/// frames fast and then stall: sixteen hogs announce 16 MiB frames (256 MiB in all) against a
/// 64 MiB budget and each sends 12 MiB at once (192 MiB), then a trickle above the minimum
/// rate. Frames are read only as far as the budget they hold, so the broker's peak resident
/// memory grows by about the budget, not by what the hogs sent or announced; and a normal
/// client is still served promptly (small frames keep a slice of the budget).
#[test]
fn memory_stays_within_the_budget_while_frames_are_sent_fast_and_stall() {
    use fjord::server::FRAME_RATE_MIN_BYTES;
    const HOGS: usize = 16;
    const MIB: u64 = 1024 * 1024;
    const FRAME_BYTES: u64 = 16 * MIB;
    const BUDGET_BYTES: u64 = 64 * MIB;
    /// Room above the budget for the read buffers, allocator overhead, a buffer being copied
    /// as it grows, and the normal client's requests.
    const SLACK_BYTES: u64 = 48 * MIB;
    let mut broker = TestBroker::start_with(
        "hogs-memory",
        &[
            "--request-bytes-max",
            &FRAME_BYTES.to_string(),
            "--request-memory-max",
            &BUDGET_BYTES.to_string(),
        ],
    );
    let resident_before = broker.proc_status_kb("VmRSS") * 1024;
    let pace = HogPace {
        announced: FRAME_BYTES as i32,
        burst: 12 * MIB as usize,
        per_tick: FRAME_RATE_MIN_BYTES / 4,
        tick: std::time::Duration::from_secs(1),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<Hog> = (0..HOGS).map(|_| Hog::start(broker.addr(), pace, &stop)).collect();
    // Long enough for every burst the broker reads to arrive.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let addr = broker.addr();
    within(PROMPT, "a normal client beside 16 fast-then-stalled hogs", move || {
        normal_client_round(addr, "beside-memory-hogs")
    });
    let peak = broker.proc_status_kb("VmHWM") * 1024;
    let announced = HOGS as u64 * FRAME_BYTES;
    assert!(
        peak <= resident_before + BUDGET_BYTES + SLACK_BYTES,
        "peak resident memory {} MiB: from {} MiB before the hogs, more than the {} MiB budget and {} MiB of slack (the hogs announced {} MiB)",
        peak / MIB,
        resident_before / MIB,
        BUDGET_BYTES / MIB,
        SLACK_BYTES / MIB,
        announced / MIB
    );
    for (i, hog) in hogs.iter().enumerate() {
        assert!(hog.still_connected(), "hog {i} was dropped; it sent above the minimum rate");
    }
    stop.store(true, Ordering::Relaxed);
    let sent: usize = hogs.into_iter().map(Hog::join).sum();
    // The broker reads up to its budget less the small frames' slice (56 MiB) of them.
    assert!(
        sent as u64 > BUDGET_BYTES / 2,
        "the hogs sent only {} MiB: the check proves nothing",
        sent as u64 / MIB
    );
    assert_clients_still_work(&mut broker, "hogs sending fast then stalling");
}

/// Large requests are read in steps (2 MiB, then twice the last) and still arrive whole:
/// three 12 MiB Produce requests at once against a 24 MiB budget, which holds one of them
/// beside the slice large frames leave to small ones and the finisher's reserve, not three.
/// Their first steps fit; their next ones do not, so one becomes the finisher and completes
/// from the reserve, and the others follow as budget comes back (no two wait for each other
/// for good). Each is followed in the same write by an ApiVersions request, which must be
/// read from the bytes after the large frame. The batch's CRC, checked by the broker, would
/// catch a frame put together wrong.
#[test]
fn large_requests_read_in_steps_arrive_whole_even_when_the_budget_holds_one() {
    const MIB: usize = 1024 * 1024;
    let mut broker = TestBroker::start_with(
        "large-steps",
        &[
            "--request-bytes-max",
            &(16 * MIB).to_string(),
            "--request-memory-max",
            &(24 * MIB).to_string(),
            "--message-max-bytes",
            &(16 * MIB).to_string(),
        ],
    );
    let mut admin = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut admin, 1, "large", 3));
    let value = Rng(seed()).bytes(12 * MIB);
    let batch = wire::record_batch(&[(None, &value)], 1_700_000_000_000, NO_PRODUCER);
    let addr = broker.addr();
    let producers: Vec<_> = (0..3)
        .map(|partition| {
            let mut burst = wire::request_frame(
                wire::PRODUCE,
                3,
                10,
                &produce_body("large", partition, 1, &batch),
            );
            burst.extend(wire::request_frame(wire::API_VERSIONS, 0, 11, &[]));
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr);
                conn.send(&burst).expect("send a large produce and an ApiVersions");
                let Received::Frame(produced) = conn.receive() else {
                    panic!("partition {partition}: closed instead of a produce answer")
                };
                let (correlation_id, answers) = produce_answer(&produced, "large");
                assert_eq!(correlation_id, 10);
                assert_eq!(answers, [(partition, NONE, 0)], "partition {partition}");
                let Received::Frame(versions) = conn.receive() else {
                    panic!("partition {partition}: closed instead of the ApiVersions answer")
                };
                assert_eq!(&versions[..4], &11i32.to_be_bytes(), "the request after the frame");
            })
        })
        .collect();
    for producer in producers {
        producer.join().expect("a large produce");
    }
    assert_clients_still_work(&mut broker, "large requests read in steps");
}

/// A Produce v3 body of one partition, with `acks`.
fn produce_body(topic: &str, partition: i32, acks: i16, records: &[u8]) -> Vec<u8> {
    let mut body = Encoder::new();
    body.null_string().i16(acks).i32(10_000);
    body.i32(1).string(topic).i32(1).i32(partition).bytes(records);
    body.0
}

/// A Produce v3 answer of one topic: (correlation id, per partition (index, error code,
/// base offset)).
fn produce_answer(frame: &[u8], topic: &str) -> (i32, Vec<(i32, i16, i64)>) {
    assert!(frame.len() >= 4, "a {}-byte answer has no correlation id", frame.len());
    (
        i32::from_be_bytes(frame[..4].try_into().expect("4 bytes")),
        wire::parse_produce(&frame[4..], topic),
    )
}

#[test]
fn pipelined_produce_requests_append_and_answer_in_request_order() {
    // One connection sends 20 acks=all requests to one partition before reading anything:
    // later requests append while earlier ones wait for their fdatasync, yet every append
    // lands in request order and every answer comes back in request order.
    let mut broker = TestBroker::start("pipelined");
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, "pipe", 1));
    const REQUESTS: i32 = 20;
    let mut burst = Vec::new();
    for i in 0..REQUESTS {
        let value = format!("request-{i}");
        let batch = wire::record_batch(
            &[(None, value.as_bytes()), (None, b"second"), (None, b"third")],
            1_700_000_000_000,
            NO_PRODUCER,
        );
        burst.extend(wire::request_frame(
            wire::PRODUCE,
            3,
            100 + i,
            &produce_body("pipe", 0, -1, &batch),
        ));
    }
    conn.send(&burst).expect("send the burst");
    for i in 0..REQUESTS {
        let Received::Frame(frame) = conn.receive() else {
            panic!("connection closed before answer {i}")
        };
        let (correlation_id, answers) = produce_answer(&frame, "pipe");
        assert_eq!(correlation_id, 100 + i, "answers come in request order");
        assert_eq!(
            answers,
            [(0, NONE, i64::from(i) * 3)],
            "request {i}: refused or appended out of order"
        );
    }
    let values = kcat_consume(&broker, "pipe", "%o %s\n", &["-o", "beginning"]);
    let expected: String = (0..REQUESTS)
        .map(|i| format!("{} request-{i}\n{} second\n{} third\n", i * 3, i * 3 + 1, i * 3 + 2))
        .collect();
    assert_eq!(values, expected, "records in the log in request order");
    assert_clients_still_work(&mut broker, "after a pipelined burst");
}

#[test]
fn a_refused_acks_0_produce_closes_before_the_next_request_takes_effect() {
    // An acks=0 producer hears of a refusal only by the connection closing; a request it sent
    // right behind the refused one must not be appended (it would land after a gap the client
    // never learns about).
    let mut broker = TestBroker::start("acks0-pipelined");
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, "gate", 1));
    let batch = wire::record_batch(&[(None, b"must-not-land")], 1_700_000_000_000, NO_PRODUCER);
    let mut burst = wire::request_frame(wire::PRODUCE, 3, 2, &produce_body("gate", 7, 0, &batch)); // no partition 7
    burst.extend(wire::request_frame(wire::PRODUCE, 3, 3, &produce_body("gate", 0, 0, &batch)));
    conn.send(&burst).expect("send the burst");
    conn.expect_closed("a refused acks=0 produce");
    let mut check = Conn::connect(broker.addr());
    assert_eq!(
        wire::list_offset(&mut check, 4, "gate", 0, -1),
        (NONE, 0),
        "the request behind the refused one was appended"
    );
    assert_clients_still_work(&mut broker, "after a refused acks=0 burst");
}

#[test]
fn a_refused_acks_0_produce_behind_a_running_acks_1_one_still_closes_first() {
    // An acks=1 Produce lets the connection go on once its appends have taken their turns,
    // not once they are done; an acks=0 Produce behind it that is refused must still close
    // the connection before the request after it takes effect, after the acks=1 answer.
    let mut broker = TestBroker::start_with("acks0-behind-acks1", &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, "gate", 2));
    // Over 256 KiB: written through io_uring, so its append takes a while.
    let big = vec![b'x'; 300 * 1024];
    let first = wire::record_batch(&[(None, big.as_slice())], 1_700_000_000_000, NO_PRODUCER);
    let batch = wire::record_batch(&[(None, b"must-not-land")], 1_700_000_000_000, NO_PRODUCER);
    let mut burst = Vec::new();
    for p in 0..2 {
        burst.extend(wire::request_frame(
            wire::PRODUCE,
            3,
            10 + p,
            &produce_body("gate", p, 1, &first),
        ));
    }
    burst.extend(wire::request_frame(wire::PRODUCE, 3, 20, &produce_body("gate", 7, 0, &batch))); // no partition 7
    for p in 0..2 {
        burst.extend(wire::request_frame(
            wire::PRODUCE,
            3,
            30 + p,
            &produce_body("gate", p, 0, &batch),
        ));
    }
    conn.send(&burst).expect("send the burst");
    for p in 0..2 {
        let Received::Frame(frame) = conn.receive() else {
            panic!("closed before the acks=1 answer for partition {p}")
        };
        let (correlation_id, answers) = produce_answer(&frame, "gate");
        assert_eq!(correlation_id, 10 + p, "the acks=1 answers come first");
        assert_eq!(answers, [(p, NONE, 0)], "the acks=1 produce to partition {p}");
    }
    conn.expect_closed("a refused acks=0 produce behind acks=1 ones");
    let mut check = Conn::connect(broker.addr());
    for p in 0..2 {
        assert_eq!(
            wire::list_offset(&mut check, 40 + p, "gate", p, -1),
            (NONE, 1),
            "partition {p}: only the acks=1 batch landed"
        );
    }
    assert_clients_still_work(&mut broker, "after a refused acks=0 produce behind acks=1 ones");
}

#[test]
fn concurrent_producers_to_one_partition_get_disjoint_contiguous_offsets() {
    // Sixteen connections append small batches to one partition at once, so appends queue
    // behind each other and are written in groups: every record gets exactly one offset,
    // together they cover 0..total with no gap, and all of them read back. Half of them are
    // idempotent producers, whose sets are sequence-checked inside those groups: each
    // retries every fifth batch (acknowledged with its first offset, not stored again)
    // and ends with a sequence gap (refused).
    let mut broker = TestBroker::start("group-append");
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, "fan-in", 1));
    const CONNECTIONS: usize = 16;
    const REQUESTS: usize = 40;
    let addr = broker.addr();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr);
                let idempotent = c % 2 == 0;
                let (mut producer, mut correlation_id) = (NO_PRODUCER, 0);
                if idempotent {
                    let (error, id, epoch) = wire::init_producer_id(&mut conn, correlation_id);
                    assert_eq!(error, NONE, "connection {c}: InitProducerId");
                    producer = Producer { id, epoch, base_sequence: 0 };
                }
                let mut ranges = Vec::new();
                for r in 0..REQUESTS {
                    let count = 1 + (c + r) % 3;
                    let values: Vec<String> = (0..count).map(|i| format!("c{c}-r{r}-{i}")).collect();
                    let records: Vec<(Option<&[u8]>, &[u8])> = values.iter().map(|v| (None, v.as_bytes())).collect();
                    let batch = wire::record_batch(&records, 1_700_000_000_000, producer);
                    correlation_id += 1;
                    let (error, base) = wire::produce(&mut conn, correlation_id, "fan-in", 0, &batch);
                    assert_eq!(error, NONE, "connection {c} request {r}");
                    if let Some((previous, _)) = ranges.last() {
                        assert!(base > *previous, "connection {c}: request {r} landed at {base}, before its previous request at {previous}");
                    }
                    ranges.push((base, count as i64));
                    if idempotent {
                        if r % 5 == 0 {
                            correlation_id += 1;
                            let retried = wire::produce(&mut conn, correlation_id, "fan-in", 0, &batch);
                            assert_eq!(retried, (NONE, base), "connection {c}: request {r} retried");
                        }
                        producer.base_sequence += count as i32;
                    }
                }
                if idempotent {
                    let gap = Producer { base_sequence: producer.base_sequence + 1, ..producer };
                    let batch = wire::record_batch(&[(None, b"after a gap".as_slice())], 1_700_000_000_000, gap);
                    let (error, _) = wire::produce(&mut conn, correlation_id + 1, "fan-in", 0, &batch);
                    assert_eq!(error, OUT_OF_ORDER_SEQUENCE_NUMBER, "connection {c}: a batch after a sequence gap");
                }
                ranges
            })
        })
        .collect();
    let mut ranges: Vec<(i64, i64)> =
        threads.into_iter().flat_map(|t| t.join().expect("producer thread")).collect();
    ranges.sort();
    let mut next = 0;
    for (base, count) in &ranges {
        assert_eq!(*base, next, "offsets must be disjoint and contiguous: {ranges:?}");
        next += count;
    }
    let total = next;
    let lines = kcat_consume(&broker, "fan-in", "%o\n", &["-o", "beginning"]);
    let offsets: Vec<i64> = lines.lines().map(|l| l.parse().expect("offset")).collect();
    assert_eq!(
        offsets,
        (0..total).collect::<Vec<_>>(),
        "every record reads back once, in offset order"
    );
    assert_clients_still_work(&mut broker, "after concurrent producers to one partition");
}

#[test]
fn connections_max_bounds_the_whole_broker_and_a_closed_connection_makes_room() {
    // Two shards accept on one port; the limit is the broker's, not each shard's.
    const MAX: usize = 3;
    let mut broker =
        TestBroker::start_with("connections-max", &["--shards", "2", "--connections-max", "3"]);
    let mut held: Vec<Conn> = (0..MAX)
        .map(|i| {
            let mut conn = Conn::connect(broker.addr());
            let (error, _) =
                wire::parse_api_versions(&conn.call(wire::API_VERSIONS, 0, i as i32, &[]), 0);
            assert_eq!(error, NONE, "connection {i} of {MAX}");
            conn
        })
        .collect();
    for extra in 0..3 {
        let mut conn = Conn::connect(broker.addr());
        // The broker may close before or after the request arrives; either way no answer.
        let _ = conn.send(&wire::request_frame(wire::API_VERSIONS, 0, 50 + extra, &[]));
        conn.expect_closed(&format!(
            "connection {} past connections_max {MAX}",
            MAX as i32 + 1 + extra
        ));
    }
    // The broker uncounts a connection once it sees it close: a new one is served then.
    let _ = held.pop().expect("a held connection").stream.shutdown(Shutdown::Both);
    wait_until(
        "room for a connection after one closed",
        std::time::Duration::from_secs(10),
        || {
            let mut conn = Conn::connect(broker.addr());
            let _ = conn.send(&wire::request_frame(wire::API_VERSIONS, 0, 99, &[]));
            matches!(conn.receive(), Received::Frame(_)).then_some(())
        },
    );
    for (i, conn) in held.iter_mut().enumerate() {
        let (error, _) =
            wire::parse_api_versions(&conn.call(wire::API_VERSIONS, 0, 200 + i as i32, &[]), 0);
        assert_eq!(error, NONE, "held connection {i} still served");
    }
    broker.assert_alive();
}

/// Kafka's `max.connections.per.ip` and its overrides: connections from one address beyond
/// its limit are closed at once (the tests' clients all come from 127.0.0.1, so the override
/// is checked by raising that address's limit above the default).
#[test]
fn connections_max_per_ip_bounds_one_address_and_overrides_raise_it() {
    for (label, flags, allowed) in [
        ("per-ip", vec!["--shards", "2", "--connections-max-per-ip", "2"], 2usize),
        (
            "per-ip-override",
            vec![
                "--connections-max-per-ip",
                "1",
                "--connections-max-per-ip-overrides",
                "10.0.0.1:7,127.0.0.1:3",
            ],
            3,
        ),
    ] {
        let mut broker = TestBroker::start_with(label, &flags);
        let mut held: Vec<Conn> = (0..allowed)
            .map(|i| {
                let mut conn = Conn::connect(broker.addr());
                let (error, _) =
                    wire::parse_api_versions(&conn.call(wire::API_VERSIONS, 0, i as i32, &[]), 0);
                assert_eq!(error, NONE, "{label}: connection {i} of {allowed}");
                conn
            })
            .collect();
        let mut extra = Conn::connect(broker.addr());
        let _ = extra.send(&wire::request_frame(wire::API_VERSIONS, 0, 50, &[]));
        extra.expect_closed(&format!("{label}: connection {} from 127.0.0.1", allowed + 1));
        assert!(
            broker.stderr().contains("connections_max_per_ip reached"),
            "{label}: the refusal is logged"
        );
        let _ = held.pop().expect("a held connection").stream.shutdown(Shutdown::Both);
        wait_until(
            "room for a connection after one closed",
            std::time::Duration::from_secs(10),
            || {
                let mut conn = Conn::connect(broker.addr());
                let _ = conn.send(&wire::request_frame(wire::API_VERSIONS, 0, 99, &[]));
                matches!(conn.receive(), Received::Frame(_)).then_some(())
            },
        );
        broker.assert_alive();
    }
}

#[test]
fn connections_spread_over_shards_are_all_served() {
    // The accepting shard hands a connection to the shard with the fewest; every one of them
    // must be served, by whichever shard, while the others stay open.
    let mut broker = TestBroker::start_with("connections-spread", &["--shards", "3"]);
    let mut first = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut first, 1, "spread", 6));
    let mut conns: Vec<Conn> = (0..24).map(|_| Conn::connect(broker.addr())).collect();
    for round in 0..2 {
        for (i, conn) in conns.iter_mut().enumerate() {
            let value = format!("conn-{i}-round-{round}");
            let batch =
                wire::record_batch(&[(None, value.as_bytes())], 1_700_000_000_000, NO_PRODUCER);
            let (error, _) = wire::produce(conn, 1000 + i as i32, "spread", (i % 6) as i32, &batch);
            assert_eq!(error, NONE, "produce on connection {i}, round {round}");
        }
    }
    let mut values: Vec<String> = kcat_consume(&broker, "spread", "%s\n", &["-o", "beginning"])
        .lines()
        .map(str::to_string)
        .collect();
    values.sort();
    let mut expected: Vec<String> =
        (0..24).flat_map(|i| (0..2).map(move |round| format!("conn-{i}-round-{round}"))).collect();
    expected.sort();
    assert_eq!(values, expected, "one record per connection and round");
    drop(conns);
    assert_clients_still_work(&mut broker, "24 connections over 3 shards");
}

#[test]
fn a_burst_of_produces_over_shards_keeps_each_partitions_order_and_a_later_request_sees_it() {
    // One connection sends 12 Produce requests (acks=1, each to all 4 partitions, which 2
    // shards own) and then ListOffsets, before reading anything. A Produce's appends need
    // not be done before the next Produce starts; each batch is over 256 KiB, so its write
    // goes through io_uring and takes a while. An idempotent producer's sequence on each
    // partition checks that no partition saw the batches out of order (a gap is refused),
    // and the ListOffsets, a request of another kind, must see every append.
    const PARTITIONS: i32 = 4;
    const REQUESTS: i32 = 12;
    const PER_BATCH: i32 = 3;
    const VALUE_BYTES: usize = 100 * 1024;
    let mut broker = TestBroker::start_with("produce-burst-shards", &["--shards", "2"]);
    let topic = "burst";
    let mut conn = Conn::connect(broker.addr());
    assert_created(wire::create_topic(&mut conn, 1, topic, PARTITIONS));
    let (error, producer_id, epoch) = wire::init_producer_id(&mut conn, 2);
    assert_eq!(error, NONE, "InitProducerId");
    let batch = |first: i32| {
        let values: Vec<Vec<u8>> = (first..first + PER_BATCH)
            .map(|s| {
                let mut value = format!("seq {s} ").into_bytes();
                value.resize(VALUE_BYTES, b'.');
                value
            })
            .collect();
        let records: Vec<(Option<&[u8]>, &[u8])> =
            values.iter().map(|v| (None, v.as_slice())).collect();
        wire::record_batch(
            &records,
            1_700_000_000_000,
            Producer { id: producer_id, epoch, base_sequence: first },
        )
    };
    let mut burst = Vec::new();
    for i in 0..REQUESTS {
        let mut body = Encoder::new();
        body.null_string().i16(1).i32(10_000).i32(1).string(topic).i32(PARTITIONS);
        for p in 0..PARTITIONS {
            body.i32(p).bytes(&batch(i * PER_BATCH));
        }
        burst.extend(wire::request_frame(wire::PRODUCE, 3, 100 + i, &body.0));
    }
    let mut list = Encoder::new();
    list.i32(-1).i32(1).string(topic).i32(PARTITIONS);
    for p in 0..PARTITIONS {
        list.i32(p).i64(-1);
    }
    burst.extend(wire::request_frame(wire::LIST_OFFSETS, 1, 999, &list.0));
    conn.send(&burst).expect("send the burst");
    for i in 0..REQUESTS {
        let Received::Frame(frame) = conn.receive() else {
            panic!("connection closed before answer {i}")
        };
        let (correlation_id, answers) = produce_answer(&frame, topic);
        assert_eq!(correlation_id, 100 + i, "answers come in request order");
        let expected: Vec<(i32, i16, i64)> =
            (0..PARTITIONS).map(|p| (p, NONE, i64::from(i * PER_BATCH))).collect();
        assert_eq!(
            answers, expected,
            "request {i}: a partition refused (out of order?) or at another offset"
        );
    }
    let Received::Frame(frame) = conn.receive() else {
        panic!("connection closed before the ListOffsets answer")
    };
    let mut d = wire::Decoder::new(&frame);
    assert_eq!(d.i32(), 999);
    assert_eq!(d.array_len(), 1);
    assert_eq!(d.string().as_deref(), Some(topic));
    assert_eq!(d.array_len(), PARTITIONS as usize);
    for p in 0..PARTITIONS {
        assert_eq!(d.i32(), p);
        assert_eq!(d.i16(), NONE);
        let _timestamp = d.i64();
        assert_eq!(
            d.i64(),
            i64::from(REQUESTS * PER_BATCH),
            "partition {p}: ListOffsets after the burst sees every append"
        );
    }
    for p in 0..PARTITIONS {
        let values =
            kcat_consume(&broker, topic, "%s\n", &["-p", &p.to_string(), "-o", "beginning"]);
        let sequences: Vec<&str> = values.lines().map(|v| v.trim_end_matches('.')).collect();
        let expected: Vec<String> =
            (0..REQUESTS * PER_BATCH).map(|s| format!("seq {s} ")).collect();
        assert_eq!(sequences, expected, "partition {p} in sequence order");
    }
    assert_clients_still_work(&mut broker, "a burst of produces over shards");
}
