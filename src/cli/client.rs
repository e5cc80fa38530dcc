//! A small blocking Kafka client for the CLI: one TCP connection per broker, requests sent
//! one at a time, versions negotiated with ApiVersions. It speaks only the Kafka protocol,
//! so every command works against any Kafka-compatible broker.
//!
//! Plain blocking sockets (not io_uring): a command-line tool sends a handful of requests
//! and its latency is the network's; the broker is where io_uring matters.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::Request;

use super::error::CliError;

/// Largest response the CLI accepts: bounds memory against a confused or hostile peer.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// How long one request may take before the command gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a bootstrap broker may take to answer ApiVersions when more addresses are left
/// to try: one that accepts connections but never answers (frozen, overloaded) is passed
/// over this soon instead of waited out for `REQUEST_TIMEOUT`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The newest version of each request whose fields the CLI fills: later versions move a
/// field the CLI sets (topics named by id, groups in a batch), so a broker that speaks them
/// (Kafka 4.4 does) must still be asked in these.
pub const PRODUCE_VERSION_MAX: i16 = 12; // v13 names topics by id
pub const FETCH_VERSION_MAX: i16 = 12; // v13 names topics by id
pub const OFFSET_FETCH_VERSION_MAX: i16 = 7; // v8 asks for a batch of groups
pub const OFFSET_COMMIT_VERSION_MAX: i16 = 9; // v10 names topics by id
pub const DELETE_TOPICS_VERSION_MAX: i16 = 5; // v6 names topics in `topics`, not `topic_names`

struct Connection {
    stream: TcpStream,
    versions: HashMap<i16, (i16, i16)>,
}

/// A client for one cluster.
pub struct Client {
    bootstrap: String,
    connections: HashMap<i32, Connection>,
    brokers: HashMap<i32, String>,
    correlation_id: i32,
}

fn connect(address: &str) -> Result<TcpStream, CliError> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| {
            CliError::usage(format!("cannot resolve {address:?}: {e}"))
                .with_hint("give --bootstrap as HOST:PORT, e.g. 127.0.0.1:9092")
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
                let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(CliError::failure(format!(
        "cannot connect to {address}: {}",
        last.map_or("no address".to_string(), |e| e.to_string())
    ))
    .with_hint("is a broker running there? start one with `fjord serve`"))
}

impl Client {
    /// Connects to the bootstrap broker.
    /// Connects to the first reachable broker of `bootstrap` (HOST:PORT, or several
    /// separated by commas).
    pub fn connect(bootstrap: &str) -> Result<Client, CliError> {
        let mut last = None;
        let addresses: Vec<&str> =
            bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        for (n, address) in addresses.iter().enumerate() {
            let mut client = Client {
                bootstrap: address.to_string(),
                connections: HashMap::new(),
                brokers: HashMap::new(),
                correlation_id: 0,
            };
            let handshake =
                if n + 1 < addresses.len() { HANDSHAKE_TIMEOUT } else { REQUEST_TIMEOUT };
            match client.open(-1, address, handshake) {
                Ok(()) => return Ok(client),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            CliError::usage("--bootstrap is empty").with_hint("give HOST:PORT, e.g. 127.0.0.1:9092")
        }))
    }

    fn open(&mut self, node: i32, address: &str, handshake: Duration) -> Result<(), CliError> {
        let stream = connect(address)?;
        let _ = stream.set_read_timeout(Some(handshake));
        let mut connection = Connection { stream, versions: HashMap::new() };
        let response: ApiVersionsResponse = exchange(
            &mut connection,
            &mut self.correlation_id,
            &ApiVersionsRequest::default(),
            0,
            address,
        )?;
        let _ = connection.stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        if response.error_code != 0 {
            return Err(CliError::failure(format!(
                "{address} refused ApiVersions with error {}",
                response.error_code
            )));
        }
        connection.versions =
            response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        self.connections.insert(node, connection);
        Ok(())
    }

    /// Sends `request` to broker `node` (-1: the bootstrap broker) at the highest version
    /// both sides speak, and returns the response.
    pub fn send<R: Request>(&mut self, node: i32, request: &R) -> Result<R::Response, CliError> {
        self.send_at_most(node, request, i16::MAX)
    }

    /// Like `send`, but at version `version_max` at most (for requests whose fields are
    /// filled for a known range of versions).
    pub fn send_at_most<R: Request>(
        &mut self,
        node: i32,
        request: &R,
        version_max: i16,
    ) -> Result<R::Response, CliError> {
        if !self.connections.contains_key(&node) {
            let address =
                self.brokers.get(&node).cloned().ok_or_else(|| {
                    CliError::failure(format!("no address known for broker {node}"))
                })?;
            self.open(node, &address, REQUEST_TIMEOUT)?;
        }
        let address = self.brokers.get(&node).cloned().unwrap_or_else(|| self.bootstrap.clone());
        let connection = self.connections.get_mut(&node).expect("opened above");
        let key = ApiKey::try_from(R::KEY).expect("a known request type");
        let (broker_min, broker_max) = *connection
            .versions
            .get(&R::KEY)
            .ok_or_else(|| CliError::failure(format!("broker {address} does not serve {key:?}")))?;
        let version = broker_max.min(R::VERSIONS.max).min(version_max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(CliError::failure(format!(
                "broker {address} and fjord share no version of {key:?}"
            )));
        }
        let result = exchange(connection, &mut self.correlation_id, request, version, &address);
        if result.is_err() {
            self.connections.remove(&node);
        }
        result
    }

    /// Sends a request that gets no response (Produce with acks=0), at `version_max` at most.
    pub fn send_without_response<R: Request>(
        &mut self,
        node: i32,
        request: &R,
        version_max: i16,
    ) -> Result<(), CliError> {
        if !self.connections.contains_key(&node) {
            let address =
                self.brokers.get(&node).cloned().ok_or_else(|| {
                    CliError::failure(format!("no address known for broker {node}"))
                })?;
            self.open(node, &address, REQUEST_TIMEOUT)?;
        }
        let connection = self.connections.get_mut(&node).expect("opened above");
        let (_, broker_max) = *connection
            .versions
            .get(&R::KEY)
            .ok_or_else(|| CliError::failure("broker does not serve this request"))?;
        let version = broker_max.min(R::VERSIONS.max).min(version_max);
        let frame = encode_request(&mut self.correlation_id, request, version)?;
        connection
            .stream
            .write_all(&frame)
            .map_err(|e| CliError::failure(format!("cannot send: {e}")))
    }

    /// The addresses of the brokers learned from Metadata (node id -> HOST:PORT), with the
    /// bootstrap address standing in for any broker not yet seen.
    pub fn broker_addresses(&self) -> std::collections::BTreeMap<i32, String> {
        self.brokers.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Makes broker `node` reachable at `address` (e.g. a coordinator).
    pub fn add_broker(&mut self, node: i32, address: String) {
        self.brokers.insert(node, address);
    }

    /// Fetches metadata (all topics when `topics` is `None`) and learns broker addresses.
    pub fn metadata(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, CliError> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t =
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
                    t.name = Some(TopicName(n.clone().into()));
                    t
                })
                .collect()
        });
        request.allow_auto_topic_creation = allow_auto_create;
        let response = self.send(-1, &request)?;
        for broker in &response.brokers {
            self.brokers
                .insert(broker.node_id.0, format!("{}:{}", broker.host.as_str(), broker.port));
        }
        Ok(response)
    }

    /// Partition -> leader of `topic` from Metadata (created first if `allow_auto_create` and
    /// the broker creates topics on metadata); a topic error fails with `hint`.
    pub fn partition_leaders(
        &mut self,
        topic: &str,
        allow_auto_create: bool,
        hint: &str,
    ) -> Result<std::collections::BTreeMap<i32, i32>, CliError> {
        let metadata = self.metadata(Some(&[topic.to_string()]), allow_auto_create)?;
        let answer =
            metadata.topics.first().ok_or_else(|| CliError::failure("empty Metadata response"))?;
        if answer.error_code != 0 {
            return Err(CliError::failure(format!(
                "topic {topic}: {}",
                super::error::error_name(answer.error_code)
            ))
            .with_hint(hint));
        }
        Ok(answer.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
    }
}

fn exchange<R: Request>(
    connection: &mut Connection,
    correlation_id: &mut i32,
    request: &R,
    version: i16,
    address: &str,
) -> Result<R::Response, CliError> {
    let io_error =
        |what: &str, e: std::io::Error| CliError::failure(format!("{what} {address}: {e}"));
    let frame = encode_request(correlation_id, request, version)?;
    connection.stream.write_all(&frame).map_err(|e| io_error("cannot send to", e))?;

    let mut size = [0u8; 4];
    connection.stream.read_exact(&mut size).map_err(|e| io_error("no response from", e))?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > RESPONSE_BYTES_MAX {
        return Err(CliError::failure(format!("{address} sent a response of {size} bytes")));
    }
    let mut payload = vec![0u8; size as usize];
    connection
        .stream
        .read_exact(&mut payload)
        .map_err(|e| io_error("truncated response from", e))?;
    let key = ApiKey::try_from(R::KEY).expect("a known request type");
    crate::protocol::decode_response(key, version, Some(*correlation_id), Bytes::from(payload))
        .map_err(|e| CliError::failure(format!("bad response from {address}: {e:#}")))
}

fn encode_request<R: Request>(
    correlation_id: &mut i32,
    request: &R,
    version: i16,
) -> Result<BytesMut, CliError> {
    *correlation_id = correlation_id.wrapping_add(1);
    let key = ApiKey::try_from(R::KEY).expect("a known request type");
    crate::protocol::encode_request(key, version, *correlation_id, "fjord-cli", request)
        .map_err(|e| CliError::failure(format!("cannot encode request: {e}")))
}

/// ListOffsets (-1 latest, -2 earliest) for one partition from its leader.
pub fn list_offset(
    client: &mut Client,
    leader: i32,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<i64, CliError> {
    Ok(list_offsets(client, leader, topic, &[partition], timestamp)?[&partition])
}

/// ListOffsets for partitions of `topic` given as (partition, leader): one request per
/// leader; the offset of each partition (see `list_offset` for `timestamp`).
pub fn list_offsets_by_leader(
    client: &mut Client,
    topic: &str,
    partitions: impl IntoIterator<Item = (i32, i32)>,
    timestamp: i64,
) -> Result<std::collections::BTreeMap<i32, i64>, CliError> {
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> =
        std::collections::BTreeMap::new();
    for (partition, leader) in partitions {
        by_leader.entry(leader).or_default().push(partition);
    }
    let mut offsets = std::collections::BTreeMap::new();
    for (leader, partitions) in by_leader {
        offsets.extend(list_offsets(client, leader, topic, &partitions, timestamp)?);
    }
    Ok(offsets)
}

/// ListOffsets for several partitions of `topic` led by `leader`, in one request: the
/// offset of each (see `list_offset` for `timestamp`).
pub fn list_offsets(
    client: &mut Client,
    leader: i32,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<std::collections::BTreeMap<i32, i64>, CliError> {
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(topic.to_string().into());
    t.partitions = partitions
        .iter()
        .map(|&partition| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = partition;
            p.timestamp = timestamp;
            p
        })
        .collect();
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![t];
    let response = client.send(leader, &request)?;
    let mut offsets = std::collections::BTreeMap::new();
    for answer in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        if answer.error_code != 0 {
            return Err(CliError::failure(format!(
                "ListOffsets {topic}-{}: {}",
                answer.partition_index,
                super::error::error_name(answer.error_code)
            )));
        }
        offsets.insert(answer.partition_index, answer.offset);
    }
    if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
        return Err(CliError::failure(format!(
            "ListOffsets answered nothing for {topic}-{missing}"
        )));
    }
    Ok(offsets)
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), used to map keys to partitions.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record, as the Java client's default partitioner picks it.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Kafka's own UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
