//! Identifiers: random 16-byte ids (topic ids, as Kafka's UUIDs), their hex form in Fjord's
//! files, and Java's `String.hashCode`, which Kafka's placements (a group's offsets
//! partition) are defined by and Fjord's shard placement reuses.

use std::io::Read;

/// A random 16-byte id from the kernel's entropy pool.
pub(crate) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut id));
    if read.is_err() {
        // Never expected on Linux; fall back to time and pid, still unique enough for ids.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        id = seed.to_be_bytes();
    }
    id
}

/// Lowercase hex, two digits a byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 16 bytes written as 32 hex digits by [`hex`], or `None` for anything else.
pub(crate) fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Java's `String.hashCode`: 31-fold over the UTF-16 code units, wrapping.
pub(crate) fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_other_lengths() {
        let id = random_id();
        assert_eq!(parse_hex16(&hex(&id)), Some(id));
        assert_eq!(parse_hex16("abc"), None);
        assert_eq!(parse_hex16(&"zz".repeat(16)), None);
    }

    #[test]
    fn java_string_hash_matches_java() {
        // "hello".hashCode() in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
    }
}
