//! Entry points for the fuzz targets under `fuzz/`, compiled only with `--cfg fuzzing`
//! (cargo-fuzz sets it). They expose the pure steps of reading the cluster state file
//! without making them part of the crate's API. The leader-epoch checkpoint has no pure
//! step (`LeaderEpochCache::load` reads its file); its target calls `load` on a file.

use crate::state::{leading_version, verify_checksum};
use crate::ClusterState;

/// The state file's bytes, through the steps of `StateStore::read`: UTF-8, the checksum
/// line, then the TOML body.
pub fn cluster_state(bytes: &[u8]) -> Result<ClusterState, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let body = verify_checksum(text)?;
    toml::from_str(body).map_err(|e| e.to_string())
}

/// The version on the state file's first line, as `StateStore::version` peeks at it.
pub fn cluster_state_version(head: &[u8]) -> Option<u64> {
    leading_version(head)
}
