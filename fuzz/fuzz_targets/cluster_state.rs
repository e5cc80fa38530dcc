//! The replication cluster state file (`cluster-state.toml`): the version peeked from its
//! first line, and the whole file through the steps of `StateStore::read` (UTF-8, checksum
//! line, TOML). The input is used as it is, and with a correct checksum line appended, so
//! that the fuzzer reaches the TOML parse behind the checksum.

#![no_main]

use fjord_replication::fuzzing::{cluster_state, cluster_state_version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = cluster_state_version(bytes);
    let _ = cluster_state(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut body = text.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("# crc32c {crc:08x}\n"));
    if let Ok(state) = cluster_state(body.as_bytes()) {
        let _ = state.partition("", 0);
    }
});
