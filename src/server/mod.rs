//! The network side of a broker: the listener, one task per connection, and shutdown.
//!
//! Each connection starts one size-prefixed request at a time and answers in request order.
//! It reads on past a Produce once that Produce's appends have taken their turns in the
//! connection's per-partition order (`AppendOrder`), so the next Produce appends while this
//! one's appends run on other shards or wait for fdatasync or replicas (group commit); after
//! any other request it waits until the answer is written, as Kafka does
//! (`connection.rs`), and any other request starts once every earlier append is over.
//!
//! Limits: `request_bytes_max` per frame (checked before any allocation), the shared request
//! memory budget, a read buffer of at most one frame plus one read chunk per connection
//! (`frame.rs`), about `PIPELINE_MAX` Produce requests read but unanswered per connection,
//! `connections_max` connections in the whole broker (`connections.rs`).
//!
//! From the top: `startup.rs` binds the port and starts one thread per shard; `shard.rs`
//! runs a shard (its broker, background tasks, accept loop and shutdown, with
//! `shutdown.rs`); `connections.rs` counts connections across shards and picks the shard
//! that serves each; `connection.rs` serves one; `frame.rs` reads its request frames;
//! `inbox.rs` serves other shards' requests.

mod connection;
mod connections;
mod error;
mod frame;
mod inbox;
mod shard;
mod shutdown;
mod startup;

pub use error::ServeError;
pub use frame::{FRAME_RATE_MIN_BYTES, FRAME_RATE_WINDOW_MS};
pub use shutdown::Shutdown;
pub use startup::serve;
