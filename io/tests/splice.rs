//! Zero-copy transfer: file regions spliced into a real TCP socket on 127.0.0.1 arrive byte
//! for byte, including regions larger than the pipe and at odd positions; a region past the
//! end of the file fails with `UnexpectedEof`, and the pipe is usable again afterwards.
//! Regions in the page cache are spliced on the calling thread and the others through
//! io_uring: both arrive intact, and a full socket never stops the thread.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use fjord_io::{block_on, spawn, splice_to_socket, File, Listener, PipeStream, SplicePipe};

use crate::common::*;

/// The test file: larger than three pipes' worth, and an odd size.
const FILE_BYTES: u64 = 4 * 1024 * 1024 + 123;
/// The large region: larger than the pipe (at most 1 MiB), so the transfer takes several
/// file -> pipe -> socket rounds.
const LARGE_REGION_BYTES: u64 = 3 * 1024 * 1024 + 7;

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
        assert!(
            capacity < LARGE_REGION_BYTES,
            "the large region must exceed the pipe ({capacity} bytes)"
        );
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
        let error = splice_to_socket(&mut pipe, &file, FILE_BYTES + 5, 10, server.as_raw_fd())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
        assert!(error.to_string().contains("data"), "the error names the file: {error}");
        // Running past the end: the error, and the file's last bytes are left in the pipe,
        // not sent (a caller must drop such a connection anyway).
        let error = splice_to_socket(&mut pipe, &file, FILE_BYTES - 10, 100, server.as_raw_fd())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");

        // The pipe is usable after a failed transfer (it is replaced first).
        let reader = spawn(read_exact(Rc::clone(&client), LARGE_REGION_BYTES as usize));
        splice_to_socket(&mut pipe, &file, 333, LARGE_REGION_BYTES, server.as_raw_fd())
            .await
            .unwrap();
        assert!(reader.await.unwrap() == content[333..(333 + LARGE_REGION_BYTES) as usize]);
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
        let mut stream = PipeStream::new(&mut pipe, sender.as_raw_fd()).unwrap();
        for (header, position, len) in pieces {
            stream.push_bytes(&header).await.unwrap();
            stream.push_file(&file, position, len).await.unwrap();
        }
        stream.finish().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.len(), total);
        assert!(received == expected, "the bytes arrived out of order or changed");
    });
}

#[test]
fn regions_not_in_the_page_cache_arrive_byte_for_byte() {
    let dir = TempDir::on_disk("splice-evicted");
    block_on(async {
        let content = random_bytes(&mut Rng::new(0xc01d), FILE_BYTES as usize);
        let file = file_with(&dir.path().join("data"), &content).await;
        let (server, client) = socket_pair().await;
        let mut pipe = SplicePipe::new().unwrap();
        for (position, len) in [(0, 1), (12_345, LARGE_REGION_BYTES), (FILE_BYTES - 10, 10)] {
            evict(&file).await;
            // (`cached` asks about at most 1 MiB at once, as the splice does.)
            assert!(
                !file.cached(position, len.min(1 << 20)),
                "({position}, {len}) must be read from the disk"
            );
            let reader = spawn(read_exact(Rc::clone(&client), len as usize));
            splice_to_socket(&mut pipe, &file, position, len, server.as_raw_fd())
                .await
                .unwrap_or_else(|e| panic!("splice ({position}, {len}): {e}"));
            let got = reader.await.unwrap();
            assert!(
                got == content[position as usize..(position + len) as usize],
                "region ({position}, {len}) differs from the file"
            );
        }
    });
}

/// A transfer into a socket whose peer reads nothing for a while fills the socket. The
/// splice runs on the calling thread, so it must answer EAGAIN and let the thread run its
/// other tasks until the peer reads, instead of sleeping in the kernel (a blocking socket
/// would stop every task of the shard).
#[test]
fn a_full_socket_never_stops_the_thread() {
    const BYTES: usize = 32 * 1024 * 1024;
    const PEER_STALL: std::time::Duration = std::time::Duration::from_millis(400);
    const SOCKET_BUFFER_BYTES: libc::c_int = 256 * 1024;
    let dir = TempDir::new("splice-full-socket");
    block_on(async {
        let content = random_bytes(&mut Rng::new(0xf011), BYTES);
        let file = file_with(&dir.path().join("data"), &content).await;
        let mib = 1024 * 1024;
        assert!(
            (0..BYTES as u64).step_by(mib).all(|at| file.cached(at, mib as u64)),
            "the transfer must take the inline path"
        );
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        // The peer is a plain thread with a blocking socket: it connects, stalls, then reads
        // everything.
        let peer = std::thread::spawn(move || {
            use std::io::Read;
            let mut socket = std::net::TcpStream::connect(address).unwrap();
            set_socket_buffer(&socket, libc::SO_RCVBUF, SOCKET_BUFFER_BYTES);
            std::thread::sleep(PEER_STALL);
            let mut got = Vec::with_capacity(BYTES);
            socket.read_to_end(&mut got).unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        // Small socket buffers, so 32 MiB fill them whatever the host's TCP settings.
        set_socket_buffer(&server, libc::SO_SNDBUF, SOCKET_BUFFER_BYTES);
        let ticks = Rc::new(std::cell::Cell::new(0u32));
        let ticker = {
            let ticks = Rc::clone(&ticks);
            spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    ticks.set(ticks.get() + 1);
                }
            })
        };
        let started = std::time::Instant::now();
        let mut pipe = SplicePipe::new().unwrap();
        splice_to_socket(&mut pipe, &file, 0, BYTES as u64, server.as_raw_fd()).await.unwrap();
        let took = started.elapsed();
        let ticked = ticks.get();
        ticker.abort();
        drop(server);
        let got = peer.join().unwrap();
        assert!(
            took >= PEER_STALL / 2,
            "the socket never filled ({took:?}): the test proves nothing"
        );
        // A thread stopped in the kernel for the stall ticks at most once or twice.
        assert!(ticked >= 20, "the thread ran only {ticked} 1 ms ticks during a {took:?} transfer");
        assert!(got == content, "the bytes arrived changed");
    });
}
