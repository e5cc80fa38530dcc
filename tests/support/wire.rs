//! A minimal hand-written Kafka wire client: request frames built byte by byte (big-endian,
//! as the protocol is), so tests can send what no real client would, and a reader for the
//! few response shapes they check. Independent of the broker's own codec on purpose.
//!
//! Only non-flexible request versions (header v1) are built, except `raw_request`, which
//! takes the header bytes as given.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read timeout of a test connection: a broker that neither answers nor closes fails here.
pub(crate) const READ_TIMEOUT_MS_MAX: u64 = 10_000;
/// Largest response frame a test reads: bounds what a broken length prefix can make us allocate.
pub(crate) const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

pub(crate) const PRODUCE: i16 = 0;
pub(crate) const FETCH: i16 = 1;
pub(crate) const LIST_OFFSETS: i16 = 2;
pub(crate) const METADATA: i16 = 3;
pub(crate) const OFFSET_COMMIT: i16 = 8;
pub(crate) const API_VERSIONS: i16 = 18;
pub(crate) const CREATE_TOPICS: i16 = 19;
pub(crate) const DELETE_RECORDS: i16 = 21;
pub(crate) const INIT_PRODUCER_ID: i16 = 22;
pub(crate) const OFFSET_FOR_LEADER_EPOCH: i16 = 23;

/// Appends big-endian fields to a request body.
#[derive(Default)]
pub(crate) struct Encoder(pub Vec<u8>);

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder(Vec::new())
    }
    pub(crate) fn i8(&mut self, v: i8) -> &mut Self {
        self.0.push(v as u8);
        self
    }
    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A (non-compact) string: i16 length, bytes.
    pub(crate) fn string(&mut self, v: &str) -> &mut Self {
        self.i16(v.len() as i16);
        self.0.extend_from_slice(v.as_bytes());
        self
    }
    pub(crate) fn null_string(&mut self) -> &mut Self {
        self.i16(-1)
    }
    /// Bytes with an i32 length.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.i32(v.len() as i32);
        self.0.extend_from_slice(v);
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads big-endian fields of a response body, panicking (a test failure) past the end.
pub(crate) struct Decoder<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.at + n <= self.bytes.len(),
            "response ends at {} but {n} more bytes were expected at {}: {:02x?}",
            self.bytes.len(),
            self.at,
            self.bytes
        );
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }
    pub(crate) fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    pub(crate) fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    pub(crate) fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    pub(crate) fn string(&mut self) -> Option<String> {
        let len = self.i16();
        if len < 0 {
            return None;
        }
        Some(String::from_utf8(self.take(len as usize).to_vec()).expect("UTF-8 string"))
    }
    /// An array length; -1 (null) reads as 0.
    pub(crate) fn array_len(&mut self) -> usize {
        let len = self.i32();
        assert!((-1..=100_000).contains(&len), "implausible array length {len}");
        len.max(0) as usize
    }
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// A request header v1 (non-flexible) followed by `body`, as one frame with its size prefix.
pub(crate) fn request_frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &[u8],
) -> Vec<u8> {
    let mut payload = Encoder::new();
    payload.i16(api_key).i16(version).i32(correlation_id).string("fjord-tests").raw(body);
    frame(&payload.0)
}

/// `bytes` with an i32 size prefix.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// How a read of one response ended.
#[derive(Debug)]
pub(crate) enum Received {
    /// A whole response frame (without its size prefix).
    Frame(Vec<u8>),
    /// The broker closed the connection (EOF or reset) before a complete frame.
    Closed { partial: Vec<u8> },
}

/// One test connection with blocking I/O and timeouts.
pub(crate) struct Conn {
    pub stream: TcpStream,
}

impl Conn {
    pub(crate) fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS_MAX)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS_MAX)))
            .expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn { stream }
    }

    /// Writes bytes; a broker that already closed may make this fail, which is returned.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame, or notices the connection closing. Panics on a read timeout:
    /// the broker must either answer or close.
    pub(crate) fn receive(&mut self) -> Received {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if buf.len() >= 4 {
                let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                assert!(
                    size >= 0 && (size as usize) <= RESPONSE_BYTES_MAX,
                    "response size prefix {size} is implausible"
                );
                if buf.len() >= 4 + size as usize {
                    assert_eq!(
                        buf.len(),
                        4 + size as usize,
                        "more bytes than one response: a response nobody asked for?"
                    );
                    return Received::Frame(buf.split_off(4));
                }
            }
            let want = if buf.len() >= 4 {
                (4 + i32::from_be_bytes(buf[..4].try_into().expect("4")) as usize - buf.len())
                    .min(chunk.len())
            } else {
                4 - buf.len()
            };
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => return Received::Closed { partial: buf },
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Received::Closed { partial: buf }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("broker neither answered nor closed the connection within {READ_TIMEOUT_MS_MAX} ms ({} bytes received)", buf.len())
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Sends a request and returns the response body after the correlation id, which it
    /// checks. Panics if the connection closes instead.
    pub(crate) fn call(
        &mut self,
        api_key: i16,
        version: i16,
        correlation_id: i32,
        body: &[u8],
    ) -> Vec<u8> {
        self.send(&request_frame(api_key, version, correlation_id, body)).expect("send request");
        match self.receive() {
            Received::Frame(mut frame) => {
                assert!(
                    frame.len() >= 4,
                    "response of {} bytes has no correlation id",
                    frame.len()
                );
                let got = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
                assert_eq!(got, correlation_id, "correlation id of the response");
                frame.split_off(4)
            }
            Received::Closed { partial } => panic!(
                "api {api_key} v{version}: connection closed instead of a response ({} bytes)",
                partial.len()
            ),
        }
    }

    /// Asserts the broker closes the connection without sending a response.
    pub(crate) fn expect_closed(&mut self, what: &str) {
        match self.receive() {
            Received::Closed { partial } => assert!(
                partial.is_empty(),
                "{what}: {} stray bytes before the close",
                partial.len()
            ),
            Received::Frame(frame) => panic!(
                "{what}: expected the connection to close, got a {}-byte response: {:02x?}",
                frame.len(),
                &frame[..frame.len().min(64)]
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Record batches (magic 2).

/// CRC-32C (Castagnoli), bitwise; the record batch checksum.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64; // zigzag
    loop {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

/// Idempotence fields of a batch header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

pub(crate) const NO_PRODUCER: Producer = Producer { id: -1, epoch: -1, base_sequence: -1 };

/// Offset of the CRC field in a batch, and of the first byte it covers (attributes).
pub(crate) const BATCH_CRC_AT: usize = 17;
pub(crate) const BATCH_CRC_FROM: usize = 21;

/// An uncompressed record batch of `(key, value)` records, all with `timestamp_ms`, with a
/// correct CRC-32C.
pub(crate) fn record_batch(
    records: &[(Option<&[u8]>, &[u8])],
    timestamp_ms: i64,
    producer: Producer,
) -> Vec<u8> {
    assert!(!records.is_empty());
    let mut body = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut record = vec![0u8]; // attributes
        varint(&mut record, 0); // timestamp delta
        varint(&mut record, i as i64); // offset delta
        match key {
            Some(key) => {
                varint(&mut record, key.len() as i64);
                record.extend_from_slice(key);
            }
            None => varint(&mut record, -1),
        }
        varint(&mut record, value.len() as i64);
        record.extend_from_slice(value);
        varint(&mut record, 0); // headers
        varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let mut after_crc = Encoder::new();
    after_crc
        .i16(0) // attributes: no compression, create time
        .i32(records.len() as i32 - 1) // last offset delta
        .i64(timestamp_ms)
        .i64(timestamp_ms)
        .i64(producer.id)
        .i16(producer.epoch)
        .i32(producer.base_sequence)
        .i32(records.len() as i32)
        .raw(&body);
    let crc = crc32c(&after_crc.0);
    let mut batch = Encoder::new();
    batch
        .i64(0) // base offset: the broker assigns it
        .i32((4 + 1 + 4 + after_crc.0.len()) as i32) // batch length: from leader epoch on
        .i32(-1) // partition leader epoch
        .i8(2) // magic
        .raw(&crc.to_be_bytes())
        .raw(&after_crc.0);
    assert_eq!(batch.0.len(), BATCH_CRC_FROM + after_crc.0.len());
    batch.0
}

// ---------------------------------------------------------------------------------------
// Requests and responses the tests use.

/// Produce v3 of `records` to one partition, acks=all. Returns (error code, base offset).
pub(crate) fn produce(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> (i16, i64) {
    let request = produce_request(correlation_id, topic, partition, records, -1);
    conn.send(&request).expect("send produce");
    produce_answer(conn, correlation_id, topic, partition)
}

/// The frame of a Produce v3 of `records` to one partition with `acks`.
pub(crate) fn produce_request(
    correlation_id: i32,
    topic: &str,
    partition: i32,
    records: &[u8],
    acks: i16,
) -> Vec<u8> {
    let mut body = Encoder::new();
    body.null_string().i16(acks).i32(10_000); // transactional id, acks, timeout
    body.i32(1).string(topic).i32(1).i32(partition).bytes(records);
    request_frame(PRODUCE, 3, correlation_id, &body.0)
}

/// The answer to a `produce_request` sent on `conn`: (error code, base offset).
pub(crate) fn produce_answer(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> (i16, i64) {
    let response = match conn.receive() {
        Received::Frame(mut frame) => {
            let got = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            assert_eq!(got, correlation_id, "correlation id of the produce response");
            frame.split_off(4)
        }
        Received::Closed { partial } => {
            panic!("produce: connection closed instead of a response ({} bytes)", partial.len())
        }
    };
    let answers = parse_produce(&response, topic);
    assert_eq!(answers.len(), 1, "partitions in the produce response");
    let (index, error, base_offset) = answers[0];
    assert_eq!(index, partition);
    (error, base_offset)
}

/// A Produce v3 response body (after the correlation id) of one topic: per partition
/// (index, error code, base offset).
pub(crate) fn parse_produce(body: &[u8], topic: &str) -> Vec<(i32, i16, i64)> {
    let mut d = Decoder::new(body);
    assert_eq!(d.array_len(), 1, "topics in the produce response");
    assert_eq!(d.string().as_deref(), Some(topic));
    let count = d.array_len();
    let answers = (0..count)
        .map(|_| {
            let (index, error, base_offset) = (d.i32(), d.i16(), d.i64());
            let _log_append_time = d.i64();
            (index, error, base_offset)
        })
        .collect();
    let _throttle = d.i32();
    assert_eq!(d.remaining(), 0, "trailing bytes in the produce v3 response");
    answers
}

/// One partition's answer to OffsetForLeaderEpoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEnd {
    pub partition: i32,
    pub error: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// OffsetForLeaderEpoch v3, as a follower asks it (replica id `replica`), for `partitions`
/// of one topic, each (partition, current leader epoch, epoch asked about).
pub(crate) fn offset_for_leader_epoch(
    conn: &mut Conn,
    correlation_id: i32,
    replica: i32,
    topic: &str,
    partitions: &[(i32, i32, i32)],
) -> Vec<EpochEnd> {
    let mut body = Encoder::new();
    body.i32(replica).i32(1).string(topic).i32(partitions.len() as i32);
    for (partition, current, epoch) in partitions {
        body.i32(*partition).i32(*current).i32(*epoch);
    }
    let response = conn.call(OFFSET_FOR_LEADER_EPOCH, 3, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle = d.i32();
    assert_eq!(d.array_len(), 1, "topics in the OffsetForLeaderEpoch response");
    assert_eq!(d.string().as_deref(), Some(topic));
    let count = d.array_len();
    let answers = (0..count)
        .map(|_| {
            let error = d.i16();
            let partition = d.i32();
            EpochEnd { partition, error, leader_epoch: d.i32(), end_offset: d.i64() }
        })
        .collect();
    assert_eq!(d.remaining(), 0, "trailing bytes in the OffsetForLeaderEpoch v3 response");
    answers
}

/// CreateTopics v2 of one topic. Returns (error code, error message).
pub(crate) fn create_topic(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partitions: i32,
) -> (i16, Option<String>) {
    let mut body = Encoder::new();
    body.i32(1).string(topic).i32(partitions).i16(1).i32(0).i32(0); // no assignments, no configs
    body.i32(10_000).i8(0); // timeout, validate_only=false
    let response = conn.call(CREATE_TOPICS, 2, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle = d.i32();
    assert_eq!(d.array_len(), 1, "topics in the CreateTopics response");
    assert_eq!(d.string().as_deref(), Some(topic));
    let error = d.i16();
    let message = d.string();
    assert_eq!(d.remaining(), 0, "trailing bytes in the CreateTopics v2 response");
    (error, message)
}

/// A topic in a Metadata response: (error code, name, partition count).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MetadataTopic {
    pub error: i16,
    pub name: String,
    pub partitions: usize,
}

/// Metadata v4 for `topics` (allowing auto-creation). Returns the brokers' `host:port` and
/// the topics.
pub(crate) fn metadata(
    conn: &mut Conn,
    correlation_id: i32,
    topics: &[&str],
) -> (Vec<String>, Vec<MetadataTopic>) {
    let view = metadata_view(conn, correlation_id, topics);
    let brokers = view.brokers.into_iter().map(|(_, address)| address).collect();
    let mut described: Vec<MetadataTopic> = Vec::new();
    for (error, name) in view.topics {
        let partitions = view.partitions.iter().filter(|p| p.topic == name).count();
        described.push(MetadataTopic { error, name, partitions });
    }
    (brokers, described)
}

/// One partition of a Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetadataPartition {
    pub topic: String,
    pub index: i32,
    pub error: i16,
    pub leader: i32,
}

/// A whole Metadata v4 answer: brokers as (node id, `host:port`), topics as (error, name),
/// and every partition.
#[derive(Debug)]
pub(crate) struct MetadataView {
    pub brokers: Vec<(i32, String)>,
    pub topics: Vec<(i16, String)>,
    pub partitions: Vec<MetadataPartition>,
}

/// Metadata v4 for `topics` (allowing auto-creation), decoded whole.
pub(crate) fn metadata_view(conn: &mut Conn, correlation_id: i32, topics: &[&str]) -> MetadataView {
    let mut body = Encoder::new();
    body.i32(topics.len() as i32);
    for topic in topics {
        body.string(topic);
    }
    body.i8(1); // allow_auto_topic_creation
    let response = conn.call(METADATA, 4, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle = d.i32();
    let mut view = MetadataView { brokers: Vec::new(), topics: Vec::new(), partitions: Vec::new() };
    for _ in 0..d.array_len() {
        let node = d.i32();
        let host = d.string().expect("broker host");
        let port = d.i32();
        let _rack = d.string();
        view.brokers.push((node, format!("{host}:{port}")));
    }
    let _cluster_id = d.string();
    let _controller = d.i32();
    for _ in 0..d.array_len() {
        let error = d.i16();
        let name = d.string().expect("topic name");
        let _internal = d.i8();
        for _ in 0..d.array_len() {
            let error = d.i16();
            let index = d.i32();
            let leader = d.i32();
            for _ in 0..d.array_len() {
                d.i32();
            }
            for _ in 0..d.array_len() {
                d.i32();
            }
            view.partitions.push(MetadataPartition { topic: name.clone(), index, error, leader });
        }
        view.topics.push((error, name));
    }
    assert_eq!(d.remaining(), 0, "trailing bytes in the Metadata v4 response");
    view
}

/// ListOffsets v1 of one partition at `timestamp` (-1 latest, -2 earliest): (error, offset).
pub(crate) fn list_offset(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> (i16, i64) {
    let (error, offset, _) = list_offset_at(conn, 1, correlation_id, topic, partition, timestamp);
    (error, offset)
}

/// ListOffsets v4 (the first with leader epochs) for one partition: (error, offset, epoch).
pub(crate) fn list_offset_with_epoch(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> (i16, i64, i32) {
    list_offset_at(conn, 4, correlation_id, topic, partition, timestamp)
}

/// ListOffsets v1 or v4 for one partition: (error, offset, epoch; -1 in v1).
fn list_offset_at(
    conn: &mut Conn,
    version: i16,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> (i16, i64, i32) {
    let v4 = version >= 4;
    let mut body = Encoder::new();
    body.i32(-1); // replica id
    if v4 {
        body.i8(0); // isolation level
    }
    body.i32(1).string(topic).i32(1).i32(partition);
    if v4 {
        body.i32(-1); // current leader epoch
    }
    body.i64(timestamp);
    let response = conn.call(LIST_OFFSETS, version, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    if v4 {
        d.i32(); // throttle time
    }
    assert_eq!(d.array_len(), 1);
    assert_eq!(d.string().as_deref(), Some(topic));
    assert_eq!(d.array_len(), 1);
    assert_eq!(d.i32(), partition);
    let error = d.i16();
    let _timestamp = d.i64();
    let offset = d.i64();
    let epoch = if v4 { d.i32() } else { -1 };
    assert_eq!(d.remaining(), 0, "trailing bytes in the ListOffsets v{version} response");
    (error, offset, epoch)
}

/// InitProducerId v0 for an idempotent (non-transactional) producer: (error, id, epoch).
pub(crate) fn init_producer_id(conn: &mut Conn, correlation_id: i32) -> (i16, i64, i16) {
    init_producer_id_for(conn, correlation_id, None)
}

/// InitProducerId v0 with a transactional id (`None`: null, an idempotent producer).
pub(crate) fn init_producer_id_for(
    conn: &mut Conn,
    correlation_id: i32,
    transactional_id: Option<&str>,
) -> (i16, i64, i16) {
    let mut body = Encoder::new();
    match transactional_id {
        Some(id) => body.string(id),
        None => body.null_string(),
    };
    body.i32(60_000);
    let response = conn.call(INIT_PRODUCER_ID, 0, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle = d.i32();
    let result = (d.i16(), d.i64(), d.i16());
    assert_eq!(d.remaining(), 0, "trailing bytes in the InitProducerId v0 response");
    result
}

/// OffsetCommit v2 of one offset by a simple (memberless) committer: generation -1, member
/// "", the broker's retention, null metadata. Returns the partition's error code.
pub(crate) fn offset_commit(
    conn: &mut Conn,
    correlation_id: i32,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    let mut body = Encoder::new();
    body.string(group).i32(-1).string("").i64(-1);
    body.i32(1).string(topic).i32(1).i32(partition).i64(offset).null_string();
    let response = conn.call(OFFSET_COMMIT, 2, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    assert_eq!(d.array_len(), 1, "topics in the OffsetCommit v2 response");
    assert_eq!(d.string().as_deref(), Some(topic), "topic of the OffsetCommit v2 response");
    assert_eq!(d.array_len(), 1, "partitions in the OffsetCommit v2 response");
    assert_eq!(d.i32(), partition, "partition of the OffsetCommit v2 response");
    let error = d.i16();
    assert_eq!(d.remaining(), 0, "trailing bytes in the OffsetCommit v2 response");
    error
}

/// DeleteRecords v0 of one partition before `offset`: (error, low watermark).
pub(crate) fn delete_records(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64) {
    delete_records_within(conn, correlation_id, topic, partition, offset, 30_000)
}

/// DeleteRecords v0 of several partitions of `topic` (partition, offset) in one request:
/// (partition, error, low watermark) of each, in the answer's order.
pub(crate) fn delete_records_of(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partitions: &[(i32, i64)],
    timeout_ms: i32,
) -> Vec<(i32, i16, i64)> {
    let mut body = Encoder::new();
    body.i32(1).string(topic).i32(partitions.len() as i32);
    for (partition, offset) in partitions {
        body.i32(*partition).i64(*offset);
    }
    body.i32(timeout_ms);
    let response = conn.call(DELETE_RECORDS, 0, correlation_id, &body.0);
    let mut d = Decoder::new(&response);
    let _throttle = d.i32();
    assert_eq!(d.array_len(), 1, "topics in the DeleteRecords v0 response");
    assert_eq!(d.string().as_deref(), Some(topic), "topic of the DeleteRecords v0 response");
    let count = d.array_len();
    let answers = (0..count)
        .map(|_| {
            let partition = d.i32();
            let low_watermark = d.i64();
            (partition, d.i16(), low_watermark)
        })
        .collect();
    assert_eq!(d.remaining(), 0, "trailing bytes in the DeleteRecords v0 response");
    answers
}

/// `delete_records` with the request's `timeout_ms`.
pub(crate) fn delete_records_within(
    conn: &mut Conn,
    correlation_id: i32,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout_ms: i32,
) -> (i16, i64) {
    let answers =
        delete_records_of(conn, correlation_id, topic, &[(partition, offset)], timeout_ms);
    let [(answered, error, low_watermark)] = answers[..] else {
        panic!("one partition in the DeleteRecords v0 response, not {answers:?}");
    };
    assert_eq!(answered, partition, "partition of the DeleteRecords v0 response");
    (error, low_watermark)
}

/// An ApiVersions response body (header v0), any version: (error, [(key, min, max)]).
pub(crate) fn parse_api_versions(body: &[u8], version: i16) -> (i16, Vec<(i16, i16, i16)>) {
    let mut d = Decoder::new(body);
    let error = d.i16();
    let mut apis = Vec::new();
    if version >= 3 {
        // Compact array: unsigned varint length + 1, then tagged fields per entry.
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = d.i8() as u8;
            n |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        for _ in 0..n.saturating_sub(1) {
            apis.push((d.i16(), d.i16(), d.i16()));
            assert_eq!(d.i8(), 0, "tagged fields of an api entry");
        }
    } else {
        for _ in 0..d.array_len() {
            apis.push((d.i16(), d.i16(), d.i16()));
        }
        if version >= 1 {
            let _throttle = d.i32();
        }
        assert_eq!(d.remaining(), 0, "trailing bytes in the ApiVersions v{version} response");
    }
    (error, apis)
}

/// Sends `request` as `key` v`version` through Fjord's codecs and decodes the answer.
/// Panics if the connection closes instead.
pub(crate) fn codec_call<Req, Resp>(
    conn: &mut Conn,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Resp
where
    Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
    Resp: kafka_protocol::protocol::Decodable,
{
    let frame =
        fjord::protocol::encode_request(key, version, correlation_id, "fjord-tests", request)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
    conn.send(&frame).expect("send request");
    match conn.receive() {
        Received::Frame(payload) => fjord::protocol::decode_response(
            key,
            version,
            Some(correlation_id),
            bytes::Bytes::from(payload),
        )
        .unwrap_or_else(|e| panic!("decode the {key:?} v{version} answer: {e:#}")),
        Received::Closed { partial } => panic!(
            "{key:?} v{version}: connection closed instead of a response ({} bytes)",
            partial.len()
        ),
    }
}
