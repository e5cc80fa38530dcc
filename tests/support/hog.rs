//! Clients that hold a broker's resources without finishing a request: `Hog`s announce a
//! frame and send it slowly (never whole), and slow-loris connections send part of a
//! header and then nothing. Used by the bad-input tests against one broker and by the
//! nemesis campaign against a cluster.
//!
//! Invariant: a hog never sends its whole frame, so the broker never gets a request out of
//! it; its thread ends once `stop` is set or the broker closes the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::wire::Conn;

/// A connection inside a frame it announced and never finishes: after the size prefix, a
/// thread of its own sends `burst` bytes as fast as the broker reads them, then `per_tick`
/// bytes every `tick`, until `stop` is set or the broker closes the connection. It never
/// sends the whole frame. The thread's result is how many bytes it sent after the prefix.
pub(crate) struct Hog {
    pub(crate) conn: Conn,
    sender: std::thread::JoinHandle<usize>,
}

/// How a `Hog` sends the frame it announced.
#[derive(Clone, Copy)]
pub(crate) struct HogPace {
    /// The frame size its prefix announces.
    pub(crate) announced: i32,
    /// Bytes sent at once after the prefix.
    pub(crate) burst: usize,
    /// Then this many bytes every `tick`.
    pub(crate) per_tick: usize,
    pub(crate) tick: std::time::Duration,
}

impl Hog {
    pub(crate) fn start(addr: SocketAddr, pace: HogPace, stop: &Arc<AtomicBool>) -> Hog {
        let mut conn = Conn::connect(addr);
        conn.send(&pace.announced.to_be_bytes()).expect("send a size prefix");
        let mut stream = conn.stream.try_clone().expect("clone the hog's socket");
        // Short write timeouts: a hog the broker does not read (waiting for budget) still
        // notices `stop`.
        stream
            .set_write_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("write timeout");
        let stop = Arc::clone(stop);
        let sender = std::thread::spawn(move || {
            // Never the whole frame: the broker must not get a request out of it.
            let limit = (pace.announced as usize).saturating_sub(1);
            let chunk = vec![0u8; 64 * 1024];
            let mut sent = 0usize;
            let mut owed = pace.burst.min(limit);
            let mut next_tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if owed == 0 {
                    if Instant::now() < next_tick {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    }
                    next_tick += pace.tick;
                    owed = pace.per_tick.min(limit - sent);
                    continue;
                }
                let n = owed.min(chunk.len());
                match std::io::Write::write(&mut stream, &chunk[..n]) {
                    Ok(0) => break,
                    Ok(written) => {
                        sent += written;
                        owed -= written;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(_closed) => break,
                }
            }
            sent
        });
        Hog { conn, sender }
    }

    /// Whether the broker still holds the connection open: no answer, no close.
    pub(crate) fn still_connected(&self) -> bool {
        let stream = &self.conn.stream;
        stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let open = matches!(
            std::io::Read::read(&mut &*stream, &mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        stream.set_nonblocking(false).expect("blocking");
        open
    }

    /// Stops its thread (once `stop` is set) and says how many bytes it sent.
    pub(crate) fn join(self) -> usize {
        self.sender.join().expect("hog thread")
    }
}

/// The soft limit on open files of this process (from /proc/self/limits).
pub(crate) fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

/// The partial headers slow-loris connections send, in turn: half a size prefix (no frame
/// yet); a small frame's prefix and the start of its header; a maximal frame's prefix and
/// the start of its header.
pub(crate) fn partial_headers() -> [Vec<u8>; 3] {
    [
        vec![0, 0],
        [&64i32.to_be_bytes()[..], &[0, 3, 0, 4, 0, 0]].concat(),
        [&(fjord::config::REQUEST_BYTES_MAX_DEFAULT as i32).to_be_bytes()[..], &[0, 0, 0, 3]]
            .concat(),
    ]
}

/// Opens `count` slow-loris connections to `addrs` in turn, each with one of the
/// `partial_headers` and then nothing; they hold on until dropped.
pub(crate) fn slow_loris(addrs: &[SocketAddr], count: usize) -> Vec<Conn> {
    let headers = partial_headers();
    (0..count)
        .map(|i| {
            let mut conn = Conn::connect(addrs[i % addrs.len()]);
            conn.send(&headers[i % headers.len()]).expect("send a partial header");
            conn
        })
        .collect()
}
