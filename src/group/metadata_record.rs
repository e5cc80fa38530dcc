//! The group metadata record of `__consumer_offsets`, byte for byte as Kafka writes it for a
//! classic group (`GroupMetadataKey` / `GroupMetadataValue` in Kafka's group coordinator), so
//! that a new coordinator carries on with a group's generation, leader and members, and
//! Kafka's tools read Fjord's topic.
//!
//! ```text
//! key   = version u16 (2) | group string
//! value = version u16 (0-4) | protocol type string | generation i32 | protocol string?
//!         | leader string? | [v2+] current state timestamp ms i64 | members array
//! member = member id string | [v3+] group instance id string? | client id string
//!         | client host string | [v1+] rebalance timeout ms i32 | session timeout ms i32
//!         | subscription bytes | assignment bytes
//! v0-3: strings i16-length (-1 = null), bytes and arrays i32-length; big-endian.
//! v4 (flexible): strings, bytes and arrays unsigned-varint length + 1 (0 = null), and
//!     tagged fields (unsigned-varint count, then tag, size, data) after each member and
//!     after the value; none are defined, so they are skipped.
//! a null value is a tombstone: the group is gone
//! ```
//!
//! Fjord writes value version 3, the highest non-flexible version, as Kafka 4 does
//! (`MetadataVersion.groupMetadataValueVersion`), and reads 0-4 (a field a version lacks
//! takes Kafka's default). Decoding takes untrusted bytes (a damaged log) and answers `None`,
//! never panics; what it allocates is bounded by the input's length and the limits below.

use bytes::{BufMut, Bytes};

use super::{MEMBERS_PER_GROUP_MAX, MEMBER_METADATA_BYTES_MAX};

/// The key version that marks a group metadata record (offset commits use 0 and 1).
pub(crate) const KEY_VERSION: u16 = 2;
/// The value version written: Kafka 4's for classic groups.
pub(crate) const VALUE_VERSION_WRITTEN: u16 = 3;
/// The highest value version read.
pub(crate) const VALUE_VERSION_MAX: u16 = 4;
/// Members in one record read back: no more than a group may have.
pub(crate) const RECORD_MEMBERS_MAX: usize = MEMBERS_PER_GROUP_MAX;
/// Bytes of one string field: Kafka's strings are at most `Short.MAX_VALUE` long.
pub(crate) const STRING_BYTES_MAX: usize = i16::MAX as usize;
/// Bytes of one member's subscription or assignment, as JoinGroup and SyncGroup allow.
pub(crate) const MEMBER_BYTES_MAX: usize = MEMBER_METADATA_BYTES_MAX;
/// Bytes of one encoded value: Kafka refuses a group record over the offsets topic's
/// `max.message.bytes` (1 MiB by default); Fjord allows large groups more, bounded so one
/// group's record always fits a batch the coordinator appends and replays.
pub(crate) const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A group as its metadata record stores it: what a new coordinator needs to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupMetadata {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    /// When the group entered its state (ms since the epoch); -1 when unknown (before v2).
    pub(crate) current_state_timestamp_ms: i64,
    pub(crate) members: Vec<MemberMetadata>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberMetadata {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// -1 when unknown (before v1): the session timeout stands in, as in Kafka.
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

/// Why a group's metadata cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MetadataRecordError {
    #[error("a string field of {bytes} bytes is over the {STRING_BYTES_MAX}-byte limit")]
    StringTooLong { bytes: usize },
    #[error("{members} members are over the record's limit of {RECORD_MEMBERS_MAX}")]
    TooManyMembers { members: usize },
    #[error(
        "a subscription or assignment of {bytes} bytes is over the {MEMBER_BYTES_MAX}-byte limit"
    )]
    MemberBytesTooLong { bytes: usize },
    #[error("the record would be {bytes} bytes, over the {VALUE_BYTES_MAX}-byte limit")]
    ValueTooLarge { bytes: usize },
}

/// The key of `group`'s metadata record.
pub(crate) fn encode_key(group: &str) -> Result<Vec<u8>, MetadataRecordError> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.put_u16(KEY_VERSION);
    Writer { out: &mut out, flexible: false }.string(Some(group))?;
    Ok(out)
}

/// The group of a metadata record's key; `None` for any other key (or a damaged one).
pub(crate) fn decode_key(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader { bytes, flexible: false };
    if reader.u16()? != KEY_VERSION {
        return None;
    }
    let group = reader.string()??;
    reader.bytes.is_empty().then_some(group)
}

/// The value as Fjord writes it (version `VALUE_VERSION_WRITTEN`).
pub(crate) fn encode_value(group: &GroupMetadata) -> Result<Vec<u8>, MetadataRecordError> {
    encode_value_version(group, VALUE_VERSION_WRITTEN)
}

/// The value at `version` (0-4); fields the version lacks are left out.
pub(crate) fn encode_value_version(
    group: &GroupMetadata,
    version: u16,
) -> Result<Vec<u8>, MetadataRecordError> {
    assert!(version <= VALUE_VERSION_MAX, "group metadata value version {version}");
    if group.members.len() > RECORD_MEMBERS_MAX {
        return Err(MetadataRecordError::TooManyMembers { members: group.members.len() });
    }
    let mut out = Vec::new();
    out.put_u16(version);
    let mut w = Writer { out: &mut out, flexible: version >= 4 };
    w.string(Some(&group.protocol_type))?;
    w.out.put_i32(group.generation);
    w.string(group.protocol.as_deref())?;
    w.string(group.leader.as_deref())?;
    if version >= 2 {
        w.out.put_i64(group.current_state_timestamp_ms);
    }
    w.array_length(group.members.len());
    for member in &group.members {
        w.member(member, version)?;
        if w.out.len() > VALUE_BYTES_MAX {
            return Err(MetadataRecordError::ValueTooLarge { bytes: w.out.len() });
        }
    }
    w.no_tagged_fields();
    Ok(out)
}

/// A metadata record's value (any version 0-4); `None` if it is not one, or is damaged.
pub(crate) fn decode_value(bytes: &[u8]) -> Option<GroupMetadata> {
    if bytes.len() > VALUE_BYTES_MAX {
        return None;
    }
    let mut r = Reader { bytes, flexible: false };
    let version = r.u16()?;
    if version > VALUE_VERSION_MAX {
        return None;
    }
    r.flexible = version >= 4;
    let protocol_type = r.string()??;
    let generation = r.i32()?;
    let protocol = r.string()?;
    let leader = r.string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.length()??;
    // Every member takes at least MEMBER_BYTES_MIN bytes: the capacity never outgrows the input.
    if count > RECORD_MEMBERS_MAX || count > r.bytes.len() / MEMBER_BYTES_MIN {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(r.member(version)?);
    }
    r.skip_tagged_fields()?;
    let group = GroupMetadata {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    };
    r.bytes.is_empty().then_some(group)
}

/// The fewest bytes a member takes in any version: v4's, with four strings and two bytes
/// fields of one byte each (empty or null), two timeouts and no tagged fields (v0's is 18).
const MEMBER_BYTES_MIN: usize = 15;

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    flexible: bool,
}

impl Writer<'_> {
    /// A string's length, or null: i16 (-1 = null), or in flexible versions an unsigned
    /// varint of one more (0 = null).
    fn length(&mut self, length: usize, null: bool) {
        match (self.flexible, null) {
            (true, true) => put_uvarint(self.out, 0),
            (true, false) => put_uvarint(self.out, length as u64 + 1),
            (false, true) => self.out.put_i16(-1),
            (false, false) => self.out.put_i16(length as i16),
        }
    }

    fn string(&mut self, text: Option<&str>) -> Result<(), MetadataRecordError> {
        let Some(text) = text else {
            self.length(0, true);
            return Ok(());
        };
        if text.len() > STRING_BYTES_MAX {
            return Err(MetadataRecordError::StringTooLong { bytes: text.len() });
        }
        self.length(text.len(), false);
        self.out.put_slice(text.as_bytes());
        Ok(())
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), MetadataRecordError> {
        if bytes.len() > MEMBER_BYTES_MAX {
            return Err(MetadataRecordError::MemberBytesTooLong { bytes: bytes.len() });
        }
        if self.flexible {
            put_uvarint(self.out, bytes.len() as u64 + 1);
        } else {
            self.out.put_i32(bytes.len() as i32);
        }
        self.out.put_slice(bytes);
        Ok(())
    }

    fn member(&mut self, member: &MemberMetadata, version: u16) -> Result<(), MetadataRecordError> {
        self.string(Some(&member.member_id))?;
        if version >= 3 {
            self.string(member.group_instance_id.as_deref())?;
        }
        self.string(Some(&member.client_id))?;
        self.string(Some(&member.client_host))?;
        if version >= 1 {
            self.out.put_i32(member.rebalance_timeout_ms);
        }
        self.out.put_i32(member.session_timeout_ms);
        self.bytes(&member.subscription)?;
        self.bytes(&member.assignment)?;
        self.no_tagged_fields();
        Ok(())
    }

    /// An array's count: i32, or in flexible versions an unsigned varint of one more.
    fn array_length(&mut self, count: usize) {
        if self.flexible {
            put_uvarint(self.out, count as u64 + 1);
        } else {
            self.out.put_i32(count as i32);
        }
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            put_uvarint(self.out, 0);
        }
    }
}

/// Kafka's unsigned varint: 7 bits a byte, least significant first.
fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    /// An unsigned varint of at most 5 bytes (a u32), as Kafka's `readUnsignedVarint`.
    fn uvarint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for index in 0..5 {
            let byte = *self.take(1)?.first()?;
            value |= u32::from(byte & 0x7f).checked_shl(7 * index)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A string or bytes length: `Some(None)` for null.
    fn nullable_length(&mut self) -> Option<Option<usize>> {
        if self.flexible {
            let n = self.uvarint()?;
            Some(n.checked_sub(1).map(|n| n as usize))
        } else {
            let n = i16::from_be_bytes(self.array()?);
            match n {
                -1 => Some(None),
                n if n >= 0 => Some(Some(n as usize)),
                _ => None,
            }
        }
    }

    /// An array's count (i32 in non-flexible versions): `Some(None)` for null.
    fn length(&mut self) -> Option<Option<usize>> {
        if self.flexible {
            return Some(self.uvarint()?.checked_sub(1).map(|n| n as usize));
        }
        match self.i32()? {
            -1 => Some(None),
            n if n >= 0 => Some(Some(n as usize)),
            _ => None,
        }
    }

    /// A nullable string; invalid UTF-8 is a damaged record.
    fn string(&mut self) -> Option<Option<String>> {
        let Some(n) = self.nullable_length()? else { return Some(None) };
        if n > STRING_BYTES_MAX {
            return None;
        }
        let text = std::str::from_utf8(self.take(n)?).ok()?;
        Some(Some(text.to_string()))
    }

    /// Bytes (not nullable here: Kafka's schema has none that are).
    fn bytes(&mut self) -> Option<Bytes> {
        let n = if self.flexible {
            (self.uvarint()?.checked_sub(1)?) as usize
        } else {
            usize::try_from(self.i32()?).ok()?
        };
        if n > MEMBER_BYTES_MAX {
            return None;
        }
        Some(Bytes::copy_from_slice(self.take(n)?))
    }

    fn member(&mut self, version: u16) -> Option<MemberMetadata> {
        let member_id = self.string()??;
        let group_instance_id = if version >= 3 { self.string()? } else { None };
        let client_id = self.string()??;
        let client_host = self.string()??;
        let rebalance_timeout_ms = if version >= 1 { self.i32()? } else { -1 };
        let session_timeout_ms = self.i32()?;
        let subscription = self.bytes()?;
        let assignment = self.bytes()?;
        self.skip_tagged_fields()?;
        Some(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        })
    }

    /// Skips the tagged fields of a flexible struct (none are defined for these records):
    /// every field takes at least two bytes, so the loop ends with the input.
    fn skip_tagged_fields(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, instance: Option<&str>) -> MemberMetadata {
        MemberMetadata {
            member_id: id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "c".to_string(),
            client_host: "/h".to_string(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(&[1, 2]),
            assignment: Bytes::from_static(&[3]),
        }
    }

    fn group(members: Vec<MemberMetadata>) -> GroupMetadata {
        GroupMetadata {
            protocol_type: "consumer".to_string(),
            generation: 5,
            protocol: Some("range".to_string()),
            leader: Some("m1".to_string()),
            current_state_timestamp_ms: 1000,
            members,
        }
    }

    /// Kafka's bytes for version 3, laid out by hand from `GroupMetadataValue.json`.
    const V3: &[u8] = b"\x00\x03\x00\x08consumer\x00\x00\x00\x05\x00\x05range\x00\x02m1\
        \x00\x00\x00\x00\x00\x00\x03\xe8\x00\x00\x00\x01\
        \x00\x02m1\xff\xff\x00\x01c\x00\x02/h\x00\x04\x93\xe0\x00\x00\x27\x10\
        \x00\x00\x00\x02\x01\x02\x00\x00\x00\x01\x03";
    /// The same group at version 4 (flexible: compact lengths, tagged fields).
    const V4: &[u8] = b"\x00\x04\x09consumer\x00\x00\x00\x05\x06range\x03m1\
        \x00\x00\x00\x00\x00\x00\x03\xe8\x02\
        \x03m1\x00\x02c\x03/h\x00\x04\x93\xe0\x00\x00\x27\x10\x03\x01\x02\x02\x03\x00\x00";

    #[test]
    fn key_is_version_2_and_the_group() {
        let key = encode_key("group-a").unwrap();
        assert_eq!(key, b"\x00\x02\x00\x07group-a");
        assert_eq!(decode_key(&key), Some("group-a".to_string()));
        // An offset commit key (version 1) is not a group metadata key.
        assert_eq!(decode_key(b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x00"), None);
    }

    #[test]
    fn values_match_kafkas_bytes_at_versions_3_and_4() {
        let stored = group(vec![member("m1", None)]);
        assert_eq!(encode_value(&stored).unwrap(), V3);
        assert_eq!(encode_value_version(&stored, 4).unwrap(), V4);
        assert_eq!(decode_value(V3), Some(stored.clone()));
        assert_eq!(decode_value(V4), Some(stored));
    }

    #[test]
    fn every_version_round_trips_what_it_holds() {
        let stored = group(vec![member("m1", Some("i1")), member("m2", None)]);
        for version in 0..=VALUE_VERSION_MAX {
            let read = decode_value(&encode_value_version(&stored, version).unwrap()).unwrap();
            let mut expected = stored.clone();
            for m in &mut expected.members {
                if version < 3 {
                    m.group_instance_id = None;
                }
                if version < 1 {
                    m.rebalance_timeout_ms = -1;
                }
            }
            if version < 2 {
                expected.current_state_timestamp_ms = -1;
            }
            assert_eq!(read, expected, "version {version}");
        }
        let empty = GroupMetadata {
            protocol_type: String::new(),
            generation: 0,
            protocol: None,
            leader: None,
            current_state_timestamp_ms: -1,
            members: Vec::new(),
        };
        for version in 0..=VALUE_VERSION_MAX {
            assert_eq!(
                decode_value(&encode_value_version(&empty, version).unwrap()),
                Some(empty.clone())
            );
        }
    }

    /// The seeds of the `group_metadata` fuzz target come from a second, independent encoder
    /// (`fuzz/examples/seeds.rs`): every version decodes to the same group.
    #[test]
    fn the_fuzz_seeds_of_every_version_decode_alike() {
        let seed = |name: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            std::fs::read(dir.join("fuzz/corpus/group_metadata").join(name)).expect("a seed")
        };
        assert_eq!(decode_key(&seed("key")), Some("group-a".to_string()));
        let v4 = decode_value(&seed("value-v4")).expect("v4 decodes");
        assert_eq!(v4.generation, 7);
        assert_eq!(v4.members.len(), 2);
        assert_eq!(v4.members[1].group_instance_id.as_deref(), Some("instance-2"));
        assert_eq!(v4.members[0].assignment, Bytes::from_static(b"\x00\x01"));
        assert_eq!(decode_value(&seed("value-v3")), Some(v4.clone()));
        let v0 = decode_value(&seed("value-v0")).expect("v0 decodes");
        assert_eq!(v0.members[1].group_instance_id, None);
        assert_eq!(v0.members[0].rebalance_timeout_ms, -1);
        assert_eq!(v0.current_state_timestamp_ms, -1);
        let empty = decode_value(&seed("value-empty-v3")).expect("an empty group decodes");
        assert!(empty.members.is_empty() && empty.protocol.is_none() && empty.leader.is_none());
    }

    #[test]
    fn tagged_fields_of_version_4_are_skipped() {
        let mut tagged = V4.to_vec();
        // The value's tagged fields: one, tag 7, three bytes.
        tagged.truncate(tagged.len() - 1);
        tagged.extend_from_slice(b"\x01\x07\x03abc");
        assert_eq!(decode_value(&tagged), decode_value(V4));
    }

    #[test]
    fn damaged_values_are_refused_without_panicking() {
        for cut in 0..V3.len() {
            assert_eq!(decode_value(&V3[..cut]), None, "V3 cut at {cut}");
        }
        for cut in 0..V4.len() {
            assert_eq!(decode_value(&V4[..cut]), None, "V4 cut at {cut}");
        }
        let mut trailing = V3.to_vec();
        trailing.push(0);
        assert_eq!(decode_value(&trailing), None);
        let mut newer = V3.to_vec();
        newer[1] = 5;
        assert_eq!(decode_value(&newer), None);
        // A member count far beyond the bytes that follow is refused before allocating.
        let mut huge = V3[..V3.len() - 32].to_vec();
        assert_eq!(&huge[huge.len() - 4..], b"\x00\x00\x00\x01");
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(&huge), None);
        for (at, byte) in (0..V3.len()).flat_map(|at| [0x00, 0x7f, 0x80, 0xff].map(|b| (at, b))) {
            let mut mutated = V3.to_vec();
            mutated[at] = byte;
            let _ = decode_value(&mutated);
            let mut mutated = V4.to_vec();
            if at < mutated.len() {
                mutated[at] = byte;
                let _ = decode_value(&mutated);
            }
        }
    }

    #[test]
    fn what_kafka_could_not_store_is_refused_when_encoding() {
        let mut long = group(vec![member("m1", None)]);
        long.members[0].client_id = "x".repeat(STRING_BYTES_MAX + 1);
        assert_eq!(
            encode_value(&long),
            Err(MetadataRecordError::StringTooLong { bytes: STRING_BYTES_MAX + 1 })
        );
        let crowd =
            group((0..=RECORD_MEMBERS_MAX).map(|n| member(&format!("m{n}"), None)).collect());
        assert_eq!(
            encode_value(&crowd),
            Err(MetadataRecordError::TooManyMembers { members: RECORD_MEMBERS_MAX + 1 })
        );
    }
}
