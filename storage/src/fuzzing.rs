//! Entry points for the fuzz targets under `fuzz/`, compiled only with `--cfg fuzzing`
//! (cargo-fuzz sets it). They expose private decoders of on-disk bytes without making them
//! part of the crate's API; the batch and index decoders need none (`batch::validate`,
//! `OffsetIndex::decode`, `TimeIndex::decode` are public).

use crate::Checkpoint;

/// The partition checkpoint file's bytes, decoded as `Checkpoint::read` decodes them.
pub fn checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    Checkpoint::decode(bytes)
}
