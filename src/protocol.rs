//! Kafka framing and the API table: which APIs and versions Fjord advertises, how a request
//! frame becomes (header, body), and how a response becomes a frame.
//!
//! ```text
//! frame    = size i32 BE | payload (size bytes)
//! request  = api_key i16 | api_version i16 | correlation_id i32 | client_id nullable string
//!            | tagged fields (header v2, flexible versions) | body
//! response = correlation_id i32 | tagged fields (header v1, flexible versions) | body
//! ```
//! No I/O here: the connection reads frames and writes what this module encodes.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Bytes of a frame's size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// (API, lowest version, highest version) that Fjord implements completely.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // v10 answers a moved leader in tagged fields (KIP-951; left empty), v11 may answer
    // TRANSACTION_ABORTABLE, v12 adds the partition to a transaction v2 (KIP-890 part 2).
    (ApiKey::Produce, 3, 12),
    // v13 names topics by id, which clients learn from Metadata v10+.
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 8),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::OffsetDelete, 0, 0),
    // Kafka 4.4 serves v5 (a log directory's `is_cordoned`), which the codec does not know.
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // Transactions (KIP-98, KIP-447, KIP-890): the versions of transactions v2 (Produce
    // v12, EndTxn v5, TxnOffsetCommit v5, AddPartitionsToTxn v5) are advertised only while
    // `transaction.version` is 2 (`advertised_max`).
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
];

/// The highest `transaction.version` feature level Fjord serves.
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// The highest version of `key` ApiVersions advertises at `transaction_version`: below 2,
/// those that belong to transactions v2 are held back, as Kafka does (a client uses
/// transactions v2 only with the feature finalized, and must not meet their versions
/// without it).
pub fn advertised_max(key: ApiKey, max: i16, transaction_version: i16) -> i16 {
    if transaction_version >= 2 {
        return max;
    }
    let below_v2 = match key {
        ApiKey::Produce => 11,
        ApiKey::EndTxn | ApiKey::TxnOffsetCommit => 4,
        _ => return max,
    };
    max.min(below_v2)
}

/// The advertised version range of `key`, if Fjord serves it.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == key).map(|(_, min, max)| (*min, *max))
}

/// Why a request frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request of {size} bytes is too short for a request header")]
    TooShort { size: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("malformed request header for {api_key:?} v{version}: {reason}")]
    BadHeader { api_key: ApiKey, version: i16, reason: String },
}

/// A message the codecs could not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode a {api:?} v{version} {what}: {reason}")]
    Encode { api: ApiKey, version: i16, what: &'static str, reason: String },
    #[error("cannot decode a {api:?} v{version} {what}: {reason}")]
    Decode { api: ApiKey, version: i16, what: &'static str, reason: String },
    #[error("a {api:?} response with correlation id {got} answers request {expected}")]
    Unanswered { api: ApiKey, got: i32, expected: i32 },
}

impl CodecError {
    /// An encoding failure of the codec crate, for `what` of `api` v`version`.
    fn encode(api: ApiKey, version: i16, what: &'static str) -> impl Fn(anyhow::Error) -> Self {
        move |error| CodecError::Encode { api, version, what, reason: error.to_string() }
    }

    /// A decoding failure of the codec crate, for `what` of `api` v`version`.
    fn decode(api: ApiKey, version: i16, what: &'static str) -> impl Fn(anyhow::Error) -> Self {
        move |error| CodecError::Decode { api, version, what, reason: error.to_string() }
    }
}

/// A request frame split into its header and undecoded body.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
    /// The client's address, for DescribeGroups' client host.
    pub peer: Option<std::net::SocketAddr>,
    /// The whole frame payload, for forwarding to another shard.
    pub raw: Bytes,
}

/// Splits a frame payload into header and body.
pub fn parse_request(mut payload: Bytes) -> Result<Request, FrameError> {
    let raw = payload.clone();
    if payload.len() < 8 {
        return Err(FrameError::TooShort { size: payload.len() });
    }
    let raw_key = i16::from_be_bytes([payload[0], payload[1]]);
    let version = i16::from_be_bytes([payload[2], payload[3]]);
    let api_key = ApiKey::try_from(raw_key)
        .map_err(|_unknown| FrameError::UnknownApiKey { api_key: raw_key })?;
    // The header version follows the request version, also for versions Fjord does not
    // serve, so an unsupported ApiVersions request can still be answered.
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut payload, header_version)
        .map_err(|e| FrameError::BadHeader { api_key, version, reason: e.to_string() })?;
    Ok(Request { api_key, version, header, body: payload, peer: None, raw })
}

/// Encodes a response frame (size prefix, header, body) for `request`.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, CodecError> {
    // ApiVersions always answers with header v0, so clients can parse it before they know
    // which versions the broker speaks.
    let header_version =
        if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(version) };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header.compute_size(header_version).map_err(CodecError::encode(
        api_key,
        version,
        "response header",
    ))? + body
        .compute_size(version)
        .map_err(CodecError::encode(api_key, version, "response"))?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX_BYTES + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(CodecError::encode(
        api_key,
        version,
        "response header",
    ))?;
    body.encode(&mut out, version).map_err(CodecError::encode(api_key, version, "response"))?;
    debug_assert_eq!(out.len(), SIZE_PREFIX_BYTES + size);
    Ok(out.freeze())
}

/// Encodes a request frame (size prefix, header, body), for Fjord's own clients: the CLI,
/// `fjord bench` and the follower fetchers.
pub fn encode_request<T: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> Result<BytesMut, CodecError> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.to_string().into());
    let mut out = BytesMut::with_capacity(64 + body.compute_size(version).unwrap_or(0));
    out.put_i32(0);
    header.encode(&mut out, T::header_version(version)).map_err(CodecError::encode(
        api_key,
        version,
        "request header",
    ))?;
    body.encode(&mut out, version).map_err(CodecError::encode(api_key, version, "request"))?;
    let size = (out.len() - SIZE_PREFIX_BYTES) as i32;
    out[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// Decodes a response frame payload (after the size prefix): its header, answering
/// `correlation_id` when one is given, then the body.
pub fn decode_response<T: Decodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: Option<i32>,
    mut payload: Bytes,
) -> Result<T, CodecError> {
    // The mirror of `encode_response`: ApiVersions answers with header v0.
    let header_version =
        if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(version) };
    let header = ResponseHeader::decode(&mut payload, header_version)
        .map_err(CodecError::decode(api_key, version, "response header"))?;
    if let Some(expected) = correlation_id {
        if header.correlation_id != expected {
            return Err(CodecError::Unanswered {
                api: api_key,
                got: header.correlation_id,
                expected,
            });
        }
    }
    let body = T::decode(&mut payload, version)
        .map_err(CodecError::decode(api_key, version, "response"))?;
    if payload.has_remaining() {
        tracing::debug!(bytes = payload.remaining(), ?api_key, "trailing bytes in response");
    }
    Ok(body)
}

/// Requests that had bytes left after their body (see `decode_body`), since the process
/// started: how often clients send more than the schema of their version holds.
static REQUESTS_WITH_TRAILING_BYTES: AtomicU64 = AtomicU64::new(0);

/// How many requests so far had bytes left after their body.
pub fn requests_with_trailing_bytes() -> u64 {
    REQUESTS_WITH_TRAILING_BYTES.load(Ordering::Relaxed)
}

/// Decodes a request body of type `T`. Bytes left after the body are ignored, as Apache
/// Kafka ignores them (its generated `read` stops at the last field of the version and the
/// request is served): librdkafka 2.x sends an all-topics Metadata v9 with one such byte.
/// Unknown tagged fields are kept by the codec and otherwise ignored, as in Kafka.
pub fn decode_body<T: Decodable>(request: &Request) -> Result<T, CodecError> {
    let mut body = request.body.clone();
    let decoded = T::decode(&mut body, request.version).map_err(CodecError::decode(
        request.api_key,
        request.version,
        "request",
    ))?;
    if body.has_remaining() {
        REQUESTS_WITH_TRAILING_BYTES.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bytes = body.remaining(),
            api = ?request.api_key,
            version = request.version,
            client_id = request.header.client_id.as_deref().unwrap_or(""),
            "ignoring bytes after the request body"
        );
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn advertised_versions_are_within_the_codecs() {
        for (key, min, max) in SUPPORTED_APIS {
            let range = key.valid_versions();
            assert!(
                range.min <= *min && *max <= range.max,
                "{key:?} {min}..{max} outside the codec's {range:?}"
            );
        }
    }

    #[test]
    fn request_round_trip() {
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Metadata as i16;
        header.request_api_version = 9;
        header.correlation_id = 42;
        header.client_id = Some("test".into());
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ApiKey::Metadata.request_header_version(9)).unwrap();
        MetadataRequest::default().encode(&mut buf, 9).unwrap();
        let request = parse_request(buf.freeze()).unwrap();
        assert_eq!(request.header.correlation_id, 42);
        let body: MetadataRequest = decode_body(&request).unwrap();
        assert!(body.topics.is_none() || body.topics.as_ref().is_some_and(|t| t.is_empty()));
    }

    /// Regression: librdkafka 2.14 and 2.16 (confluent-kafka 2.14.2, 2.16.1) list all topics
    /// with this Metadata v9 request, captured from the wire; its body decodes with one byte
    /// to spare, which Kafka ignores.
    #[test]
    fn librdkafka_all_topics_metadata_v9_decodes_with_its_trailing_byte() {
        let frame = hex("00030009000000030003636170000000000001000000");
        let request = parse_request(Bytes::from(frame)).unwrap();
        let before = requests_with_trailing_bytes();
        let body: MetadataRequest = decode_body(&request).unwrap();
        assert!(body.topics.is_none(), "all topics: {body:?}");
        assert!(requests_with_trailing_bytes() > before);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert!(matches!(
            parse_request(Bytes::from_static(b"\x00")),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            parse_request(Bytes::from_static(b"\x7f\x00\x00\x01\x00\x00\x00\x01")),
            Err(FrameError::UnknownApiKey { .. })
        ));
        // Metadata v9 with a client id length running past the frame.
        assert!(
            parse_request(Bytes::from_static(b"\x00\x03\x00\x09\x00\x00\x00\x01\x7f\xff")).is_err()
        );
    }
}
