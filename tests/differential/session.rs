//! One broker connection for the differential suite: requests encoded with the broker's own
//! codec (`fjord::protocol`), sent over a blocking socket, and every answer (or the closed
//! connection that replaced it) recorded as an observation for the comparison.

use std::fmt::Debug;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Longest either broker may take to answer one request (a Fetch waits at most its
/// `max_wait_ms`, which the cases keep far below this).
const ANSWER_MS_MAX: u64 = 10_000;
/// Largest response the suite accepts; its requests ask for far less.
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
pub(super) const CLIENT_ID: &str = "fjord-differential";

/// What one request got.
pub(super) enum Answer<T> {
    Response(T),
    /// The broker closed the connection instead of answering.
    Closed,
}

impl<T> Answer<T> {
    pub(super) fn response(self, what: &str) -> T {
        match self {
            Answer::Response(t) => t,
            Answer::Closed => panic!("{what}: the broker closed the connection"),
        }
    }
}

pub(super) struct Session {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    correlation_id: i32,
    /// (label, Debug text of the normalised answer, or `closed`), in request order.
    pub observations: Vec<(String, String)>,
}

impl Session {
    pub(super) fn new(addr: SocketAddr) -> Session {
        Session { addr, stream: None, correlation_id: 0, observations: Vec::new() }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stream(&mut self) -> &mut TcpStream {
        let addr = self.addr;
        self.stream.get_or_insert_with(|| {
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_millis(ANSWER_MS_MAX)))
                .expect("read timeout");
            stream.set_nodelay(true).expect("nodelay");
            stream
        })
    }

    /// Sends a request payload (header and body, no size prefix); returns the response
    /// payload, or `None` when the broker closed the connection (the next call reconnects).
    pub(super) fn raw(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        let addr = self.addr;
        let stream = self.stream();
        if stream.write_all(&frame).is_err() {
            self.stream = None;
            return None;
        }
        let mut size = [0u8; 4];
        let got = read_exact(stream, &mut size).and_then(|()| {
            let size = i32::from_be_bytes(size);
            assert!(
                size >= 0 && (size as usize) <= RESPONSE_BYTES_MAX,
                "{addr}: response size {size}"
            );
            let mut body = vec![0u8; size as usize];
            read_exact(stream, &mut body).map(|()| body)
        });
        if got.is_none() {
            self.stream = None;
        }
        got
    }

    /// Sends `request` as `key` v`version` and decodes the answer.
    pub(super) fn call<Req: Encodable + HeaderVersion, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Answer<Resp> {
        self.correlation_id += 1;
        let id = self.correlation_id;
        let frame = fjord::protocol::encode_request(key, version, id, CLIENT_ID, request)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
        match self.raw(&frame[4..]) {
            None => Answer::Closed,
            Some(payload) => Answer::Response(
                fjord::protocol::decode_response(key, version, Some(id), Bytes::from(payload))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}: cannot decode the {key:?} v{version} response: {e:#}",
                            self.addr
                        )
                    }),
            ),
        }
    }

    /// Records what a request got, after `normalise` has cleared what legitimately differs.
    pub(super) fn observe<T: Debug>(
        &mut self,
        label: impl Into<String>,
        answer: Answer<T>,
        normalise: impl FnOnce(&mut T),
    ) {
        let text = match answer {
            Answer::Response(mut response) => {
                normalise(&mut response);
                format!("{response:#?}")
            }
            Answer::Closed => CLOSED.to_string(),
        };
        self.observations.push((label.into(), text));
    }

    /// `call` and `observe` in one.
    pub(super) fn exchange<Req: Encodable + HeaderVersion, Resp: Decodable + Debug>(
        &mut self,
        label: impl Into<String>,
        key: ApiKey,
        version: i16,
        request: &Req,
        normalise: impl FnOnce(&mut Resp),
    ) {
        let answer = self.call(key, version, request);
        self.observe(label, answer, normalise);
    }
}

/// The observation of a closed connection.
pub(super) const CLOSED: &str = "closed";

fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Option<()> {
    match stream.read_exact(buf) {
        Ok(()) => Some(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            ) =>
        {
            None
        }
        Err(e) => panic!(
            "read from broker: {e} (neither an answer nor a close within {ANSWER_MS_MAX} ms)"
        ),
    }
}
