//! Helpers shared by the storage tests: temp dirs, a seeded RNG, batch builders.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use fjord_storage::batch::build;

/// A directory removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("fjord-storage-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulator's seeded generator, shared by every seeded test.
pub(crate) use fjord_storage::sim::Rng;

/// A batch of `count` records of `value_bytes` each, timestamps from `timestamp`.
pub(crate) fn batch(count: usize, value_bytes: usize, timestamp: i64, seed: u64) -> Vec<u8> {
    build::batch_of(count, value_bytes, timestamp, seed)
}

pub(crate) fn buf(bytes: &[u8]) -> BytesMut {
    BytesMut::from(bytes)
}

/// Splits concatenated batches into (base offset, record count, bytes) triples.
pub(crate) fn split_batches(mut bytes: &[u8]) -> Vec<(i64, i32, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = fjord_storage::batch::BatchHeader::view(bytes).expect("whole header");
        let size = header.size() as usize;
        out.push((header.base_offset.get(), header.records_count.get(), bytes[..size].to_vec()));
        bytes = &bytes[size..];
    }
    out
}
