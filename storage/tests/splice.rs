//! Zero-copy transfer: file regions spliced into a real TCP socket on 127.0.0.1 arrive byte
//! for byte, including regions larger than the pipe and at odd positions; a region past the
//! end of the file fails with `UnexpectedEof`, and the pipe is usable again afterwards.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::BytesMut;
use fjord_storage::batch::build::{self, Record};
use fjord_storage::io::{block_on, spawn, splice_to_socket, File, Listener, SplicePipe, Stream};
use fjord_storage::{LogConfig, PartitionLog};

use crate::common::*;

/// The test file: larger than three pipes' worth, and an odd size.
const FILE_BYTES: u64 = 4 * 1024 * 1024 + 123;
/// The large region: larger than the pipe (at most 1 MiB), so the transfer takes several
/// file -> pipe -> socket rounds.
const LARGE_REGION_BYTES: u64 = 3 * 1024 * 1024 + 7;

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
fn spliced_file_regions_arrive_byte_for_byte() {
    let dir = TempDir::new("splice-file");
    block_on(async {
        let mut rng = Rng::new(0x5911ce);
        let content = random_bytes(&mut rng, FILE_BYTES as usize);
        let file = File::open_rw(&dir.path().join("data"), true).await.unwrap();
        let (result, _) = file.write_all_at(content.clone(), 0).await;
        result.unwrap();

        let (server, client) = socket_pair().await;
        let mut pipe = SplicePipe::new().unwrap();
        let capacity = pipe.capacity() as u64;
        assert!(capacity < LARGE_REGION_BYTES, "the large region must exceed the pipe ({capacity} bytes)");
        let regions = [
            (0, 1),
            (0, 4096),
            (12_345, LARGE_REGION_BYTES), // odd position, several pipe rounds
            (1, capacity),                // exactly one pipe
            (capacity - 1, capacity + 2), // one byte either side of a pipe boundary
            (7, 0),                       // nothing
            (FILE_BYTES - 10, 10),        // up to the last byte
            (FILE_BYTES - 1, 1),
        ];
        for (position, len) in regions {
            let reader = spawn(read_exact(Rc::clone(&client), len as usize));
            splice_to_socket(&mut pipe, &file, position, len, server.as_raw_fd())
                .await
                .unwrap_or_else(|e| panic!("splice ({position}, {len}): {e}"));
            let got = reader.await.unwrap();
            let want = &content[position as usize..(position + len) as usize];
            assert!(got == want, "region ({position}, {len}) differs from the file");
        }

        // Wholly past the end: nothing to move.
        let error = splice_to_socket(&mut pipe, &file, FILE_BYTES + 5, 10, server.as_raw_fd()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        assert!(error.to_string().contains("data"), "the error names the file: {error}");
        // Running past the end: the file's last bytes go out, then the error. The caller must
        // drop such a connection; here the bytes are drained to keep using it.
        let reader = spawn(read_exact(Rc::clone(&client), 10));
        let error = splice_to_socket(&mut pipe, &file, FILE_BYTES - 10, 100, server.as_raw_fd()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        assert_eq!(reader.await.unwrap(), &content[(FILE_BYTES - 10) as usize..]);

        // The pipe is usable after a failed transfer (it is replaced first).
        let reader = spawn(read_exact(Rc::clone(&client), LARGE_REGION_BYTES as usize));
        splice_to_socket(&mut pipe, &file, 333, LARGE_REGION_BYTES, server.as_raw_fd()).await.unwrap();
        assert!(reader.await.unwrap() == content[333..(333 + LARGE_REGION_BYTES) as usize]);
    });
}

#[test]
fn read_results_splice_as_the_log_stores_them() {
    let dir = TempDir::new("splice-log");
    block_on(async {
        let config = LogConfig { segment_bytes: 64 * 1024, index_interval_bytes: 4096, retention_ms: None, ..LogConfig::default() };
        let mut log = PartitionLog::open(dir.path(), config).await.unwrap();
        let mut rng = Rng::new(0x10c5);
        for i in 0..120i64 {
            let values: Vec<Vec<u8>> = (0..1 + rng.below(4))
                .map(|_| {
                    let len = 100 + rng.below(3000) as usize;
                    random_bytes(&mut rng, len)
                })
                .collect();
            let records: Vec<Record<'_>> = values.iter().enumerate().map(|(d, v)| Record { key: None, value: Some(v), timestamp_delta: d as i64 }).collect();
            log.append(BytesMut::from(&build::batch(&records, i)[..]), 1).await.unwrap();
        }
        assert!(log.segments().len() >= 3, "reads must span segments");

        let (server, client) = socket_pair().await;
        let mut pipe = SplicePipe::new().unwrap();
        let end = log.log_end_offset();
        for (offset, max_bytes) in [(0, u64::MAX), (0, 1), (37, 100_000), (end - 1, 1 << 20), (5, 2 * 1024 * 1024)] {
            let result = log.read(offset, max_bytes).await.unwrap();
            assert!(!result.regions.is_empty());
            let reader = spawn(read_exact(Rc::clone(&client), result.bytes() as usize));
            for region in &result.regions {
                region.splice_to(&mut pipe, server.as_raw_fd()).await.unwrap();
            }
            let got = reader.await.unwrap();
            let want = result.read_bytes().await.unwrap();
            assert!(got == want, "read ({offset}, {max_bytes}) of {} regions arrives as stored", result.regions.len());
            let batches = split_batches(&got);
            assert!(batches[0].0 <= offset && offset < batches[0].0 + i64::from(batches[0].1));
        }
    });
}

/// Regression: a response of hundreds of small pieces (header bytes and tiny regions) fills
/// the pipe's buffer slots long before its byte capacity; the stream must drain instead of
/// blocking on a full pipe.
#[test]
fn a_pipe_stream_of_many_small_pieces_arrives_in_order() {
    let dir = TempDir::new("pipe-stream");
    block_on(async {
        let mut rng = Rng::new(7);
        let content = random_bytes(&mut rng, 256 * 1024);
        let path = dir.path().join("small-pieces");
        let file = File::open_rw(&path, true).await.unwrap();
        let (result, _) = file.write_all_at(content.clone(), 0).await;
        result.unwrap();
        let (sender, receiver) = socket_pair().await;
        // 1,500 pieces: 12 header bytes, then a region of 7 to 300 bytes, alternating.
        let mut expected = Vec::new();
        let mut pieces = Vec::new();
        for i in 0..1500u64 {
            let header: Vec<u8> = (0..12).map(|j| (i as u8).wrapping_add(j)).collect();
            let position = rng.below(content.len() as u64 - 300);
            let len = 7 + rng.below(294);
            expected.extend_from_slice(&header);
            expected.extend_from_slice(&content[position as usize..(position + len) as usize]);
            pieces.push((header, position, len));
        }
        let total = expected.len();
        let reader = spawn(read_exact(Rc::clone(&receiver), total));
        let mut pipe = SplicePipe::new().unwrap();
        let mut stream = fjord_storage::io::PipeStream::new(&mut pipe, sender.as_raw_fd()).unwrap();
        for (header, position, len) in pieces {
            stream.push_bytes(header).await.unwrap();
            stream.push_file(&file, position, len).await.unwrap();
        }
        stream.finish().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.len(), total);
        assert!(received == expected, "the bytes arrived out of order or changed");
    });
}
