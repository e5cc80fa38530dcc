//! What a read returns: byte ranges of whole batches in segment files, served by splice
//! (or copied, for tests and tools).
//!
//! Invariants: a region starts and ends on batch boundaries within one segment file, and
//! holds that file open, so the bytes stay readable even if retention deletes the segment.

use std::io;
use std::rc::Rc;

use crate::disk::DiskFile;
use crate::error::{Result, StorageError};
use crate::io::{File, SplicePipe};

/// A byte range of whole batches in one segment file. Holding it keeps the file open, so the
/// bytes stay readable even if retention deletes the segment meanwhile.
#[derive(Debug)]
pub struct FileRegion<F = File> {
    pub file: Rc<F>,
    pub segment_base_offset: i64,
    pub position: u64,
    pub len: u64,
    /// Base offset of the first batch in the region.
    pub first_offset: i64,
    /// One past the last offset in the region.
    pub next_offset: i64,
}

impl<F> Clone for FileRegion<F> {
    fn clone(&self) -> Self {
        FileRegion { file: Rc::clone(&self.file), ..*self }
    }
}

impl<F: DiskFile> FileRegion<F> {
    /// Copies the region into memory (for replication tests and tools; fetches use splice).
    pub async fn read_bytes(&self) -> Result<Vec<u8>> {
        let bytes = self.file.read_at(self.position, self.len as usize).await?;
        if bytes.len() as u64 != self.len {
            return Err(StorageError::Corrupt {
                path: self.file.path().to_path_buf(),
                position: self.position + bytes.len() as u64,
                reason: format!("file ends inside a region of {} bytes", self.len),
            });
        }
        Ok(bytes)
    }
}

impl FileRegion<File> {
    /// Sends the region to `socket` without copying it through user space
    /// (`io::splice_to_socket`, which may make the socket non-blocking).
    pub async fn splice_to(
        &self,
        pipe: &mut SplicePipe,
        socket: std::os::fd::RawFd,
    ) -> io::Result<()> {
        crate::io::splice_to_socket(pipe, &self.file, self.position, self.len, socket).await
    }
}

/// The answer to a read: whole batches, in offset order, across one or more segments.
#[derive(Debug, Clone)]
pub struct ReadResult<F = File> {
    pub regions: Vec<FileRegion<F>>,
}

impl<F> Default for ReadResult<F> {
    fn default() -> Self {
        ReadResult { regions: Vec::new() }
    }
}

impl<F: DiskFile> ReadResult<F> {
    pub fn bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// One past the last offset returned (the offset to read next), if anything was returned.
    pub fn next_offset(&self) -> Option<i64> {
        self.regions.last().map(|r| r.next_offset)
    }

    /// All region bytes concatenated (see [`FileRegion::read_bytes`]).
    pub async fn read_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.bytes() as usize);
        for region in &self.regions {
            out.extend_from_slice(&region.read_bytes().await?);
        }
        Ok(out)
    }
}
