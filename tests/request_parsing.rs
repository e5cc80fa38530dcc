//! Requests parsed the way Apache Kafka parses them, replayed byte for byte from real
//! clients: bytes after a request body are ignored (Kafka's generated readers stop at the
//! last field of the version), unknown tagged fields are skipped, and the connection stays
//! open for the next request.
//!
//! The frames below were captured on the wire from confluent-kafka 2.14.2 (librdkafka
//! 2.14.2) and 2.16.1 (librdkafka 2.16.0) listing all topics with `AdminClient.list_topics()`:
//! ApiVersions v3, a brokers-only Metadata v9, then the all-topics Metadata v9 whose body
//! (`00 00 00 00 01 00 00 00`) decodes as topics=null, three false flags, one empty tagged
//! field (tag 0) and one byte to spare.

use crate::support::wire::{Conn, Decoder, Received};
use crate::support::{create_topic, TestBroker};

/// ApiVersions v3 of librdkafka 2.14.2 (client software name and version in the body).
const RDKAFKA_2_14_API_VERSIONS: &str =
    "001200030000000100036361700017636f6e666c75656e742d6b61666b612d707974686f6e16322e31342e322d72646b61666b612d322e31342e3200";
/// ApiVersions v3 of librdkafka 2.16.0.
const RDKAFKA_2_16_API_VERSIONS: &str =
    "001200030000000100036361700017636f6e666c75656e742d6b61666b612d707974686f6e16322e31362e312d72646b61666b612d322e31362e3000";
/// Metadata v9 for no topics (brokers only), the same from both releases.
const RDKAFKA_BROKERS_METADATA_V9: &str = "00030009000000020003636170000100000000";
/// Metadata v9 for all topics, the same from both releases: one byte after the body.
const RDKAFKA_ALL_TOPICS_METADATA_V9: &str = "00030009000000030003636170000000000001000000";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn frame(payload_hex: &str) -> Vec<u8> {
    crate::support::wire::frame(&hex(payload_hex))
}

/// Sends one captured request and returns the response after its header (correlation id,
/// and the empty tagged fields of response header v1 when `flexible`).
fn replay(conn: &mut Conn, payload_hex: &str, correlation_id: i32, flexible: bool) -> Vec<u8> {
    conn.send(&frame(payload_hex)).expect("send");
    match conn.receive() {
        Received::Frame(frame) => {
            assert_eq!(i32::from_be_bytes(frame[..4].try_into().expect("4 bytes")), correlation_id);
            let header = if flexible { 5 } else { 4 };
            assert!(!flexible || frame[4] == 0, "response header tagged fields: {:02x}", frame[4]);
            frame[header..].to_vec()
        }
        Received::Closed { .. } => panic!("the broker closed the connection on {payload_hex}"),
    }
}

/// Reads an unsigned varint (the compact lengths of flexible versions).
fn uvarint(d: &mut Decoder) -> u64 {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let byte = d.i8() as u8;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 5 bytes");
}

fn compact_string(d: &mut Decoder) -> Option<String> {
    let len = uvarint(d);
    if len == 0 {
        return None;
    }
    let bytes: Vec<u8> = (0..len - 1).map(|_| d.i8() as u8).collect();
    Some(String::from_utf8(bytes).expect("UTF-8 name"))
}

fn skip_tags(d: &mut Decoder) {
    for _ in 0..uvarint(d) {
        uvarint(d);
        let size = uvarint(d);
        for _ in 0..size {
            d.i8();
        }
    }
}

/// The (name, error code, partition count) of each topic in a Metadata v9 response body.
fn metadata_v9_topics(body: &[u8]) -> Vec<(String, i16, usize)> {
    let mut d = Decoder::new(body);
    d.i32(); // throttle time
    for _ in 1..uvarint(&mut d) {
        d.i32(); // node id
        compact_string(&mut d);
        d.i32(); // port
        compact_string(&mut d); // rack
        skip_tags(&mut d);
    }
    compact_string(&mut d); // cluster id
    d.i32(); // controller id
    let mut topics = Vec::new();
    for _ in 1..uvarint(&mut d) {
        let error = d.i16();
        let name = compact_string(&mut d).expect("topic name");
        d.i8(); // is internal
        let partitions = uvarint(&mut d).saturating_sub(1) as usize;
        for _ in 0..partitions {
            d.i16();
            d.i32();
            d.i32();
            d.i32();
            for _ in 0..3 {
                for _ in 1..uvarint(&mut d) {
                    d.i32();
                }
            }
            skip_tags(&mut d);
        }
        d.i32(); // topic authorized operations
        skip_tags(&mut d);
        topics.push((name, error, partitions));
    }
    topics
}

fn replays_the_all_topics_listing_of(api_versions: &str, label: &str) {
    let broker = TestBroker::start(label);
    create_topic(&broker, "listed-a", 2, &[]);
    create_topic(&broker, "listed-b", 1, &[]);
    let mut conn = Conn::connect(broker.addr());
    let versions = replay(&mut conn, api_versions, 1, false);
    assert_eq!(&versions[..2], &[0, 0], "ApiVersions error code");
    let brokers_only = replay(&mut conn, RDKAFKA_BROKERS_METADATA_V9, 2, true);
    assert!(metadata_v9_topics(&brokers_only).is_empty(), "a brokers-only request lists no topics");
    let all = replay(&mut conn, RDKAFKA_ALL_TOPICS_METADATA_V9, 3, true);
    // Fjord's internal `__consumer_offsets` is listed as Kafka lists it; only ours matter here.
    let mut topics: Vec<_> = metadata_v9_topics(&all)
        .into_iter()
        .filter(|(name, _, _)| !name.starts_with("__"))
        .collect();
    topics.sort();
    assert_eq!(topics, vec![("listed-a".to_string(), 0, 2), ("listed-b".to_string(), 0, 1)]);
    // The connection is still open and serves the next request.
    let again = replay(&mut conn, RDKAFKA_ALL_TOPICS_METADATA_V9, 3, true);
    assert!(metadata_v9_topics(&again).iter().any(|(name, _, _)| name == "listed-b"));
}

#[test]
fn librdkafka_2_14_all_topics_metadata_is_answered() {
    replays_the_all_topics_listing_of(RDKAFKA_2_14_API_VERSIONS, "rdkafka-2-14");
}

#[test]
fn librdkafka_2_16_all_topics_metadata_is_answered() {
    replays_the_all_topics_listing_of(RDKAFKA_2_16_API_VERSIONS, "rdkafka-2-16");
}

/// Every served request of a non-flexible version with junk appended is still answered,
/// as Kafka answers it.
#[test]
fn bytes_after_a_body_are_ignored_for_a_non_flexible_request() {
    let broker = TestBroker::start("trailing-v1");
    create_topic(&broker, "trailing", 1, &[]);
    let mut conn = Conn::connect(broker.addr());
    // Metadata v1: topics array of one, then four bytes no schema has.
    let mut body = crate::support::wire::Encoder::new();
    body.i32(1).string("trailing").raw(&[0xde, 0xad, 0xbe, 0xef]);
    let answer = conn.call(3, 1, 9, &body.0);
    let mut d = Decoder::new(&answer);
    for _ in 0..d.array_len() {
        d.i32();
        d.string();
        d.i32();
        d.string();
    }
    d.i32(); // controller id
    assert_eq!(d.array_len(), 1, "one topic");
    assert_eq!(d.i16(), 0, "no error for the topic");
    assert_eq!(d.string().as_deref(), Some("trailing"));
}
