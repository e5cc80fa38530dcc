//! The partition's checkpoint file: recovery point, log start offset, clean-shutdown flag.
//!
//! ```text
//! position size field
//!  0       4    magic "FJCP"
//!  4       2    version u16 BE (= 1)
//!  6       2    flags u16 BE (bit 0: clean shutdown)
//!  8       8    recovery offset i64 BE: every batch below it is durable and was checked
//! 16       8    log start offset i64 BE
//! 24       4    CRC-32C u32 BE of bytes 0..24
//! ```
//! Written atomically (`Disk::write_file_atomic`): `checkpoint.tmp`, fdatasync, rename over
//! `checkpoint`, fsync of the directory. A crash at any point leaves the old or the new file,
//! never a torn one; a file that fails its checks is treated as absent (full recovery scan,
//! which is always safe).

use std::path::Path;

use tracing::warn;

use crate::disk::{Disk, DiskFile};

const FILE_NAME: &str = "checkpoint";
const MAGIC: &[u8; 4] = b"FJCP";
const VERSION: u16 = 1;
const FLAG_CLEAN: u16 = 1;
const BYTES: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub clean_shutdown: bool,
    pub recovery_offset: i64,
    pub log_start_offset: i64,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(if self.clean_shutdown { FLAG_CLEAN } else { 0 }).to_be_bytes());
        out.extend_from_slice(&self.recovery_offset.to_be_bytes());
        out.extend_from_slice(&self.log_start_offset.to_be_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        if bytes.len() != BYTES {
            return Err(format!("length {} instead of {BYTES}", bytes.len()));
        }
        let expected = u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(&bytes[..24]);
        if expected != actual {
            return Err(format!("CRC mismatch: stored {expected:#010x}, computed {actual:#010x}"));
        }
        if &bytes[0..4] != MAGIC || u16::from_be_bytes([bytes[4], bytes[5]]) != VERSION {
            return Err("unknown magic or version".to_string());
        }
        let flags = u16::from_be_bytes([bytes[6], bytes[7]]);
        Ok(Checkpoint {
            clean_shutdown: flags & FLAG_CLEAN != 0,
            recovery_offset: i64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
            log_start_offset: i64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes")),
        })
    }

    /// Reads the checkpoint of `dir`; a missing or damaged one is `None`.
    pub async fn read<D: Disk>(disk: &D, dir: &Path) -> std::io::Result<Option<Checkpoint>> {
        let path = dir.join(FILE_NAME);
        let file = match disk.open_read(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let bytes = file.read_at(0, BYTES + 1).await?;
        file.close().await?;
        match Checkpoint::decode(&bytes) {
            Ok(checkpoint) => Ok(Some(checkpoint)),
            Err(reason) => {
                warn!(path = %path.display(), %reason, "ignoring damaged checkpoint; recovering the whole log");
                Ok(None)
            }
        }
    }

    /// Replaces the checkpoint of `dir` atomically and durably.
    pub async fn write<D: Disk>(&self, disk: &D, dir: &Path) -> std::io::Result<()> {
        disk.write_file_atomic(&dir.join(FILE_NAME), self.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let checkpoint =
            Checkpoint { clean_shutdown: true, recovery_offset: 42, log_start_offset: 7 };
        let bytes = checkpoint.encode();
        assert_eq!(Checkpoint::decode(&bytes), Ok(checkpoint));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(Checkpoint::decode(&damaged).is_err(), "flip at {i} went unnoticed");
        }
        assert!(Checkpoint::decode(&bytes[..27]).is_err());
    }
}
