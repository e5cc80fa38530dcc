//! What a handler answers and how: a complete response frame, a Fetch response whose
//! record bytes are spliced from files, nothing (acks=0), or a reason to close the
//! connection.

use bytes::Bytes;
use fjord_storage::FileRegion;

use kafka_protocol::messages::ApiKey;

use crate::protocol::{self, CodecError, Request};

/// Why a request is answered by closing the connection (the reason is logged), as Kafka
/// closes it for a request it cannot parse or will not serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandlerError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("{count} {what} named, more than {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("API {0:?} is in the table but has no handler")]
    NoHandler(ApiKey),
}

/// Refuses a request that names more than `max` of `what` (a named limit per request),
/// before anything of it is done: the connection closes with a log line.
pub(crate) fn at_most(what: &'static str, count: usize, max: usize) -> Result<(), HandlerError> {
    if count > max {
        return Err(HandlerError::TooMany { what, count, max });
    }
    Ok(())
}

/// What the connection sends back for one request.
pub(crate) enum Reply {
    /// A complete response frame.
    Frame(Bytes),
    /// A Fetch response whose record bytes are spliced from files.
    Fetch(FetchResponse),
    /// Nothing (Produce with acks=0).
    Nothing,
    /// The request cannot be answered; close the connection after logging why.
    Close(String),
}

/// Encodes `body` as the response to `request`.
pub(crate) fn frame<T: kafka_protocol::protocol::Encodable>(
    request: &Request,
    body: &T,
) -> Result<Reply, HandlerError> {
    Ok(Reply::Frame(protocol::encode_response(
        request.api_key,
        request.version,
        request.header.correlation_id,
        body,
    )?))
}

/// One piece of a Fetch response: bytes built in memory, or a file region to splice.
pub(crate) enum Piece {
    Bytes(Vec<u8>),
    Region(FileRegion),
}

impl Piece {
    pub(crate) fn len(&self) -> usize {
        match self {
            Piece::Bytes(bytes) => bytes.len(),
            Piece::Region(region) => region.len as usize,
        }
    }
}

/// A Fetch response ready to be written: size prefix excluded from `pieces`.
pub(crate) struct FetchResponse {
    pub pieces: Vec<Piece>,
    pub size: usize,
}
