//! The page-cache residency checks: `cached` tells whether a range is in the page cache, on
//! the thread that mapped it and on another (`File::share`), and `read_at` reads cached
//! ranges on the calling thread and the others through io_uring, with the same bytes.

use fjord_io::{block_on, File};

use crate::common::*;

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
    use fjord_io::{inline_reads, INLINE_READ_BYTES_MAX};
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
