//! The latched I/O failure. After any I/O error the log is poisoned: every later call
//! fails with that error, and nothing retries a failed write or fsync (the page cache may
//! have dropped the data). A closed log refuses every call too (`Closed`, not a poison), so
//! nothing writes after the clean checkpoint. Errors that are not I/O (a bad batch, an
//! offset out of range) do not latch.

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

    /// Fails when the log is closed or poisoned.
    pub(super) fn check_usable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed { dir: self.dir.clone() });
        }
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
            if crate::error::out_of_space(io_error.kind()) {
                self.fill(io_error);
                return error;
            }
        }
        let latched = match &error {
            StorageError::Io(io_error) => Some((io_error.kind(), io_error.to_string())),
            StorageError::CheckFailed { .. } | StorageError::Lost { .. } => {
                Some((io::ErrorKind::Other, error.to_string()))
            }
            _ => None,
        };
        if let (Some(latched), None) = (latched, &self.poison) {
            warn!(dir = %self.dir.display(), error = %latched.1, "I/O error: partition poisoned");
            self.poison = Some(latched);
        }
        error
    }

    /// Runs the result of a data sync through poisoning: any failure latches, running out of
    /// space included. After a failed fdatasync the kernel may have dropped the pages it
    /// could not write and a later sync would report success without them, so no sync is
    /// ever retried, and the log is not reopened as after a failed write (`space.rs`).
    pub(super) fn guard_sync<T>(&mut self, result: Result<T>) -> Result<T> {
        result.map_err(|error| match error {
            StorageError::Io(io_error) if crate::error::out_of_space(io_error.kind()) => {
                let kind = io_error.kind();
                if self.poison.is_none() {
                    warn!(dir = %self.dir.display(), error = %io_error, "a sync failed: partition poisoned");
                    self.poison = Some((kind, io_error.to_string()));
                }
                StorageError::Io(io_error)
            }
            error => self.poison_with(error),
        })
    }

    /// Runs `result` through poisoning.
    pub(super) fn guard<T>(&mut self, result: Result<T>) -> Result<T> {
        result.map_err(|error| self.poison_with(error))
    }
}
