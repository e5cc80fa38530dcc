//! A raw Kafka connection for the bench: frames out, frames in, no negotiation beyond fixed
//! request versions. Produce requests go out as pieces with one vectored write (the records
//! from where they are), and responses come in through a buffer reused from one to the next.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::cli::error::CliError;

/// Largest response accepted.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Produce request version used: v7 is understood by every Kafka since 2.1 and by Fjord.
pub(super) const PRODUCE_VERSION: i16 = 7;
/// How long the broker may take to meet `--acks` for one Produce request.
pub(super) const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Client id of every bench request.
const CLIENT_ID: &str = "fjord-bench";

/// A raw Kafka connection for the bench: frames out, frames in, no negotiation beyond the
/// fixed versions above.
pub(super) struct Wire {
    stream: TcpStream,
    correlation_id: i32,
    address: String,
    /// Response bytes, reused: a response's records are slices of it, and once they are
    /// dropped the next response lands in the same memory (no fresh pages to fault in for
    /// every multi-megabyte fetch response).
    buf: BytesMut,
}

impl Wire {
    pub(super) fn connect(address: &str) -> Result<Wire, CliError> {
        let addr = address
            .to_socket_addrs()
            .map_err(|e| CliError::failure(format!("cannot resolve {address}: {e}")))?
            .next()
            .ok_or_else(|| CliError::failure(format!("no address for {address}")))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| CliError::failure(format!("cannot connect to {address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        Ok(Wire { stream, correlation_id: 0, address: address.to_string(), buf: BytesMut::new() })
    }

    /// A second handle on the same connection, for a thread that only receives.
    pub(super) fn reader(&self) -> Result<Wire, CliError> {
        Ok(Wire {
            stream: self.stream.try_clone().map_err(|e| CliError::failure(e.to_string()))?,
            correlation_id: 0,
            address: self.address.clone(),
            buf: BytesMut::new(),
        })
    }

    /// The broker's address, as connected to.
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    /// Ends the receiving side: a reader blocked on this connection returns an error.
    pub(super) fn shutdown_read(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
    }

    pub(super) fn send<R: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> Result<i32, CliError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame =
            crate::protocol::encode_request(key, version, self.correlation_id, CLIENT_ID, request)
                .map_err(|e| CliError::failure(format!("encode: {e}")))?;
        self.stream
            .write_all(&frame)
            .map_err(|e| CliError::failure(format!("send to {}: {e}", self.address)))?;
        Ok(self.correlation_id)
    }

    /// Sends a Produce request of `parts` (partition, records) of one topic with one
    /// vectored write: the records go to the socket from where they are, not copied into an
    /// encoded request first (the load generator shares two cores with the broker it
    /// measures).
    pub(super) fn send_produce(
        &mut self,
        acks: i16,
        timeout_ms: i32,
        topic: &str,
        parts: &[(i32, Bytes)],
    ) -> Result<i32, CliError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let pieces = produce_pieces(self.correlation_id, acks, timeout_ms, topic, parts);
        write_all_pieces(&mut self.stream, &pieces)
            .map_err(|e| CliError::failure(format!("send to {}: {e}", self.address)))?;
        Ok(self.correlation_id)
    }

    /// The next response; responses come back in request order, which the pipelining
    /// writer and this reader both rely on, so the correlation id is not checked here.
    pub(super) fn receive<T: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
    ) -> Result<T, CliError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| CliError::failure(format!("receive from {}: {e}", self.address)))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_BYTES_MAX {
            return Err(CliError::failure(format!("{} sent a {size}-byte response", self.address)));
        }
        // Reclaims the memory of the previous response if nothing refers to it any more.
        self.buf.clear();
        self.buf.reserve(size as usize);
        read_into_spare(&self.stream, &mut self.buf, size as usize)
            .map_err(|e| CliError::failure(format!("receive from {}: {e}", self.address)))?;
        let payload = self.buf.split().freeze();
        crate::protocol::decode_response(key, version, None, payload)
            .map_err(|e| CliError::failure(format!("bad {key:?} response: {e:#}")))
    }
}

/// Reads from `stream` until `buf` holds `len` bytes, into its spare capacity (which the
/// caller reserved), without zeroing it first.
// The load generator's own receive path: raw `recv` into spare capacity, no copy.
fn read_into_spare(stream: &TcpStream, buf: &mut BytesMut, len: usize) -> std::io::Result<()> {
    while buf.len() < len {
        if fjord_storage::io::recv_into_spare(stream, buf, len - buf.len())? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// A Produce request (`PRODUCE_VERSION`, request header v1) of `parts` (partition, records)
/// of one topic, framed, as pieces to write one after the other: small encoded parts, and
/// each partition's records as given. Byte for byte what the codec encodes
/// (`produce_pieces_match_the_codec`).
fn produce_pieces(
    correlation_id: i32,
    acks: i16,
    timeout_ms: i32,
    topic: &str,
    parts: &[(i32, Bytes)],
) -> Vec<Bytes> {
    use bytes::BufMut;
    let put_string = |out: &mut BytesMut, text: &str| {
        out.put_i16(text.len() as i16);
        out.put_slice(text.as_bytes());
    };
    let mut head = BytesMut::with_capacity(64 + topic.len());
    head.put_i32(0); // the frame size, set below
    head.put_i16(ApiKey::Produce as i16);
    head.put_i16(PRODUCE_VERSION);
    head.put_i32(correlation_id);
    put_string(&mut head, CLIENT_ID);
    head.put_i16(-1); // transactional id: null
    head.put_i16(acks);
    head.put_i32(timeout_ms);
    head.put_i32(1); // topics
    put_string(&mut head, topic);
    head.put_i32(parts.len() as i32);
    let mut pieces = Vec::with_capacity(1 + 2 * parts.len());
    let mut prefix = head;
    let mut size = 0usize;
    for (index, records) in parts {
        prefix.put_i32(*index);
        prefix.put_i32(records.len() as i32);
        size += prefix.len() + records.len();
        pieces.push(std::mem::take(&mut prefix).freeze());
        pieces.push(records.clone());
        prefix = BytesMut::with_capacity(8);
    }
    if parts.is_empty() {
        size += prefix.len();
        pieces.push(prefix.freeze());
    }
    let mut first = BytesMut::from(&pieces[0][..]);
    first[..4].copy_from_slice(&((size - 4) as i32).to_be_bytes());
    pieces[0] = first.freeze();
    pieces
}

/// Writes every piece, in order, with vectored writes.
fn write_all_pieces(stream: &mut TcpStream, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        pieces.iter().filter(|p| !p.is_empty()).map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};

    #[test]
    fn produce_pieces_match_the_codec() {
        let parts = [
            (3, Bytes::from_static(b"first records")),
            (7, Bytes::new()),
            (0, Bytes::from(vec![0x5a; 1000])),
        ];
        for (acks, parts) in [(1, &parts[..]), (-1, &parts[..1]), (0, &parts[..0])] {
            let mut topic = TopicProduceData::default();
            topic.name = TopicName("bench-topic".to_string().into());
            for (index, records) in parts {
                let mut data = PartitionProduceData::default();
                data.index = *index;
                data.records = Some(records.clone());
                topic.partition_data.push(data);
            }
            let mut request = ProduceRequest::default();
            request.acks = acks;
            request.timeout_ms = PRODUCE_TIMEOUT_MS;
            request.topic_data = vec![topic];
            let encoded = crate::protocol::encode_request(
                ApiKey::Produce,
                PRODUCE_VERSION,
                42,
                CLIENT_ID,
                &request,
            )
            .expect("encode");
            let pieces: Vec<u8> =
                produce_pieces(42, acks, PRODUCE_TIMEOUT_MS, "bench-topic", parts).concat();
            assert_eq!(pieces, encoded.to_vec(), "acks {acks}, {} partitions", parts.len());
        }
    }
}
