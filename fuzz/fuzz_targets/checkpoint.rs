//! The two checkpoint files of a partition directory: the storage checkpoint (recovery
//! point, log start offset, clean-shutdown flag), decoded as `Checkpoint::read` decodes
//! it, and the broker's saved high watermark, read by the broker's own reader from a file
//! (it has no pure step) on an io_uring runtime made once per process.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: tokio_uring::Runtime =
        tokio_uring::Runtime::new(&tokio_uring::builder()).expect("io_uring runtime");
    static DIR: PathBuf = scratch_dir();
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fjord-fuzz-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(checkpoint) = fjord_storage::fuzzing::checkpoint(bytes) {
        // Only a file whose CRC matches decodes; its fields are whatever it holds.
        assert_eq!(bytes.len(), 28, "a checkpoint is 28 bytes: {checkpoint:?}");
    }
    DIR.with(|dir| {
        std::fs::write(dir.join(fjord::fuzzing::HIGH_WATERMARK_FILE), bytes).expect("write");
        let saved = RUNTIME.with(|runtime| runtime.block_on(fjord::fuzzing::high_watermark(dir)));
        assert!(saved.is_none_or(|offset| offset >= 0), "negative high watermark {saved:?}");
    });
});
