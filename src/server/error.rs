//! Why a broker could not start or stopped with a failure: a port it could not bind, a shard
//! thread it could not start, a shard that could not open its share of the broker or that
//! panicked.

use std::net::SocketAddr;

use crate::broker::BrokerError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bind {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start shard thread {shard}: {source}")]
    Thread {
        shard: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {shard} cannot open: {source}")]
    Open {
        shard: usize,
        #[source]
        source: BrokerError,
    },
    /// A shard whose failure to open was reported to the starting thread already.
    #[error("shard {shard} could not open")]
    NotOpened { shard: usize },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
    #[error("every shard stopped while the broker was starting")]
    AllStopped,
}
