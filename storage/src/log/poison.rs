//! The latched I/O failure. After any I/O error the log is poisoned: every later call
//! fails with that error, and nothing retries a failed write or fsync (the page cache may
//! have dropped the data). Closing the log latches too, so nothing writes after the clean
//! checkpoint. Errors that are not I/O (a bad batch, an offset out of range) do not latch.

use std::io;

use tracing::warn;

use crate::clock::Clock;
use crate::disk::Disk;
use crate::error::{Result, StorageError};

use super::PartitionLog;

impl<D: Disk, C: Clock> PartitionLog<D, C> {
    /// The error that poisoned this log, if any.
    pub fn poisoned(&self) -> Option<(io::ErrorKind, &str)> {
        self.poison.as_ref().map(|(kind, message)| (*kind, message.as_str()))
    }

    pub(super) fn check_poison(&self) -> Result<()> {
        match &self.poison {
            None => Ok(()),
            Some((kind, message)) => Err(StorageError::Poisoned {
                dir: self.dir.clone(),
                kind: *kind,
                message: message.clone(),
            }),
        }
    }

    /// Records an I/O failure: from now on every call fails.
    pub(super) fn poison_with(&mut self, error: StorageError) -> StorageError {
        if let StorageError::Io(io_error) = &error {
            if self.poison.is_none() {
                warn!(dir = %self.dir.display(), error = %io_error, "I/O error: partition poisoned");
                self.poison = Some((io_error.kind(), io_error.to_string()));
            }
        }
        error
    }

    /// Runs `result` through poisoning.
    pub(super) fn guard<T>(&mut self, result: Result<T>) -> Result<T> {
        result.map_err(|error| self.poison_with(error))
    }
}
