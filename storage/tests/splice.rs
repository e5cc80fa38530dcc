//! Zero-copy transfer: file regions spliced into a real TCP socket on 127.0.0.1 arrive byte
//! for byte, including regions larger than the pipe and at odd positions; a region past the
//! end of the file fails with `UnexpectedEof`, and the pipe is usable again afterwards.
//! Regions in the page cache are spliced on the calling thread and the others through
//! io_uring: both arrive intact, and a full socket never stops the thread.

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
            stream.push_bytes(&header).await.unwrap();
            stream.push_file(&file, position, len).await.unwrap();
        }
        stream.finish().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.len(), total);
        assert!(received == expected, "the bytes arrived out of order or changed");
    });
}

/// Writes `content` to a new file at `path`.
async fn file_with(path: &std::path::Path, content: &[u8]) -> File {
    let file = File::open_rw(path, true).await.unwrap();
    let (result, _) = file.write_all_at(content.to_vec(), 0).await;
    result.unwrap();
    file
}

/// Drops `file`'s pages from the page cache (written back first), so the next read of them
/// goes to the disk.
async fn evict(file: &File) {
    file.sync_data().await.unwrap();
    // SAFETY: posix_fadvise on a descriptor `file` keeps open; it touches no memory of ours.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise DONTNEED");
}

#[test]
fn cached_tells_whether_a_range_is_in_the_page_cache() {
    let dir = TempDir::on_disk("splice-cached");
    block_on(async {
        let mib = 1024 * 1024;
        let content = random_bytes(&mut Rng::new(11), 3 * mib);
        let file = file_with(&dir.path().join("data"), &content).await;
        assert!(
            file.cached(0, mib as u64) && file.cached(2 * mib as u64, mib as u64),
            "just written, so cached"
        );
        assert!(file.cached(4095, 2), "a range across a page boundary");
        assert!(!file.cached(0, 0), "an empty range is not worth an inline splice");
        assert!(!file.cached(0, 2 * mib as u64), "more pages than one check asks about");
        evict(&file).await;
        assert!(!file.cached(0, mib as u64), "evicted");
        assert!(!file.cached(12_345, 1), "evicted");
        // Reading a page brings it (and maybe readahead) back; a range reaching pages
        // beyond the file's end is never wholly cached.
        file.read_at(8192, 10).await.unwrap();
        assert!(file.cached(8192, 10), "read back");
        assert!(!file.cached(content.len() as u64 - 10, 8192), "past the end of the file");
    });
}

/// `read_at` runs a read of at most `INLINE_READ_BYTES_MAX` of cached pages on the calling
/// thread and any other through io_uring: both give the file's bytes, a short read at the
/// end and nothing past it. Only a file with a residency mapping reads inline, and a read
/// never makes one (here `cached` does).
#[test]
fn reads_of_cached_and_evicted_ranges_give_the_files_bytes() {
    use fjord_storage::io::{inline_reads, INLINE_READ_BYTES_MAX};
    let dir = TempDir::on_disk("read-inline");
    block_on(async {
        let content = random_bytes(&mut Rng::new(0x4ead), 256 * 1024 + 100);
        let size = content.len() as u64;
        let file = file_with(&dir.path().join("data"), &content).await;
        let expected = |position: u64, len: usize| {
            content
                .get(position as usize..(position as usize + len).min(content.len()))
                .unwrap_or(&[])
                .to_vec()
        };
        // No mapping yet: cached pages, but through io_uring.
        let before = inline_reads();
        assert!(file.read_at(0, 4096).await.unwrap() == expected(0, 4096));
        assert_eq!(
            inline_reads(),
            before,
            "a file without a residency mapping reads through io_uring"
        );
        let ranges = [
            (0u64, 1usize),
            (4095, 2),
            (12_345, 16 * 1024),
            (0, INLINE_READ_BYTES_MAX),
            (100_000, INLINE_READ_BYTES_MAX + 1),
            (size - 10, 10),
            (size - 10, 100),
            (size, 10),
            (size + 5000, 10),
        ];
        for (position, len) in ranges {
            let inside = position + len as u64 <= size;
            if inside {
                // Makes the mapping on first use.
                assert!(
                    file.cached(position, len as u64),
                    "({position}, {len}): just written, so cached"
                );
            }
            let before = inline_reads();
            assert!(
                file.read_at(position, len).await.unwrap() == expected(position, len),
                "({position}, {len}) read while cached"
            );
            let inline = inline_reads() > before;
            if inside {
                assert_eq!(
                    inline,
                    len <= INLINE_READ_BYTES_MAX,
                    "({position}, {len}): inline exactly up to the limit"
                );
            }
        }
        evict(&file).await;
        for (position, len) in ranges {
            assert!(!file.cached(position, len as u64), "({position}, {len}) evicted");
            let before = inline_reads();
            assert!(
                file.read_at(position, len).await.unwrap() == expected(position, len),
                "({position}, {len}) read from the disk"
            );
            assert_eq!(inline_reads(), before, "({position}, {len}): evicted, so through io_uring");
            evict(&file).await;
        }
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
            let small: libc::c_int = 256 * 1024;
            // SAFETY: setsockopt on this thread's own socket with a pointer to a live c_int.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&small as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_RCVBUF");
            std::thread::sleep(PEER_STALL);
            let mut got = Vec::with_capacity(BYTES);
            socket.read_to_end(&mut got).unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        // Small socket buffers, so 32 MiB fill them whatever the host's TCP settings.
        let small: libc::c_int = 256 * 1024;
        // SAFETY: setsockopt on the test's own socket with a pointer to a live c_int.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_SNDBUF");
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

/// A shard hands the files of its regions to the connection's shard (`File::share`); the
/// copy there answers `cached` from the same residency mapping, made once.
#[test]
fn a_shared_file_answers_cached_on_another_thread() {
    let dir = TempDir::on_disk("splice-shared");
    let path = dir.path().join("data");
    let content = random_bytes(&mut Rng::new(5), 256 * 1024);
    let shared = block_on(async {
        let file = file_with(&path, &content).await;
        assert!(file.cached(0, content.len() as u64));
        file.share().unwrap()
    });
    let len = content.len() as u64;
    std::thread::spawn(move || {
        block_on(async move {
            let file = File::from_shared(shared);
            assert!(file.cached(0, len), "written, so cached, seen from another thread");
            evict(&file).await;
            assert!(!file.cached(0, len), "evicted, seen from another thread");
            assert_eq!(file.read_at(0, len as usize).await.unwrap().len() as u64, len);
        })
    })
    .join()
    .unwrap();
}
