//! Zero-copy fetch: the regions a log read returns, spliced into a real TCP socket on
//! 127.0.0.1, arrive as the log stores them. (The splice itself, in and out of the page
//! cache, is tested where it lives, in fjord-io's tests.)

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::BytesMut;
use fjord_storage::batch::build::{self, Record};
use fjord_storage::io::{block_on, spawn, Listener, SplicePipe, Stream};
use fjord_storage::{LogConfig, PartitionLog};

use crate::common::*;

/// Reads exactly `len` bytes from `stream`.
async fn read_exact(stream: Rc<Stream>, len: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::with_capacity(len.max(1));
    while buf.len() < len {
        let (result, returned) = stream.read(buf).await;
        buf = returned;
        let read = result.expect("socket read");
        assert!(read > 0, "peer closed after {} of {len} bytes", buf.len());
    }
    buf
}

/// A connected pair on 127.0.0.1: (the side splice writes to, the side the test reads).
async fn socket_pair() -> (Stream, Rc<Stream>) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    // The kernel completes the handshake from the backlog, so connect, then accept.
    let client = Stream::connect(address).await.unwrap();
    let (server, _peer) = listener.accept().await.unwrap();
    (server, Rc::new(client))
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn read_results_splice_as_the_log_stores_them() {
    let dir = TempDir::new("splice-log");
    block_on(async {
        let config = LogConfig {
            segment_bytes: 64 * 1024,
            index_interval_bytes: 4096,
            retention_ms: None,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        let mut rng = Rng::new(0x10c5);
        for i in 0..120i64 {
            let values: Vec<Vec<u8>> = (0..1 + rng.below(4))
                .map(|_| {
                    let len = 100 + rng.below(3000) as usize;
                    random_bytes(&mut rng, len)
                })
                .collect();
            let records: Vec<Record<'_>> = values
                .iter()
                .enumerate()
                .map(|(d, v)| Record { key: None, value: Some(v), timestamp_delta: d as i64 })
                .collect();
            log.append(BytesMut::from(&build::batch(&records, i)[..]), 1).await.unwrap();
        }
        assert!(log.segments().len() >= 3, "reads must span segments");

        let (server, client) = socket_pair().await;
        let mut pipe = SplicePipe::new().unwrap();
        let end = log.log_end_offset();
        for (offset, max_bytes) in
            [(0, u64::MAX), (0, 1), (37, 100_000), (end - 1, 1 << 20), (5, 2 * 1024 * 1024)]
        {
            let result = log.read(offset, max_bytes).await.unwrap();
            assert!(!result.regions.is_empty());
            let reader = spawn(read_exact(Rc::clone(&client), result.bytes() as usize));
            for region in &result.regions {
                region.splice_to(&mut pipe, server.as_raw_fd()).await.unwrap();
            }
            let got = reader.await.unwrap();
            let want = result.read_bytes().await.unwrap();
            assert!(
                got == want,
                "read ({offset}, {max_bytes}) of {} regions arrives as stored",
                result.regions.len()
            );
            let batches = split_batches(&got);
            assert!(batches[0].0 <= offset && offset < batches[0].0 + i64::from(batches[0].1));
        }
    });
}
