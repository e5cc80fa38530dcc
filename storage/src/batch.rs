//! Kafka RecordBatch v2: the unit the log stores, byte for byte as the producer sent it.
//!
//! ```text
//! position  size  field                    covered by CRC
//!  0        8     baseOffset      i64 BE   no   (stamped by the broker)
//!  8        4     batchLength     i32 BE   no   (bytes after this field)
//! 12        4     partitionLeaderEpoch     no   (stamped by the broker)
//! 16        1     magic (= 2)              no
//! 17        4     crc (CRC-32C)   u32 BE   no
//! 21        2     attributes      i16 BE   yes  (bits 0-2 codec, 3 timestamp type,
//!                                                4 transactional, 5 control)
//! 23        4     lastOffsetDelta i32 BE   yes
//! 27        8     baseTimestamp   i64 BE   yes
//! 35        8     maxTimestamp    i64 BE   yes
//! 43        8     producerId      i64 BE   yes
//! 51        2     producerEpoch   i16 BE   yes
//! 53        4     baseSequence    i32 BE   yes
//! 57        4     recordsCount    i32 BE   yes
//! 61        ...   records (compressed as a whole when codec != 0)
//! ```
//!
//! Invariants: a batch that passed [`validate`] has a consistent length, magic 2, a matching
//! CRC, and counts that agree with its header (and, when uncompressed, with its records).
//! [`stamp`] changes only bytes the CRC does not cover, so the CRC stays valid and
//! compressed batches are never decompressed.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::BatchError;

/// Bytes of the fixed v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the part that `batchLength` counts (baseOffset + batchLength).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Where the CRC-covered part begins.
const CRC_START: usize = 21;
/// The only batch format Fjord stores.
pub const MAGIC_V2: i8 = 2;
/// Kafka's "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;

/// The fixed 61-byte header, viewed in place (no copy, no alignment needs).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);

impl BatchHeader {
    /// Views the header at the start of `bytes`, if there are enough bytes.
    pub fn view(bytes: &[u8]) -> Option<&BatchHeader> {
        BatchHeader::ref_from_prefix(bytes).ok().map(|(header, _rest)| header)
    }

    /// Total bytes of the batch, header included, as its length field claims.
    pub fn size(&self) -> u64 {
        BATCH_LOG_OVERHEAD_BYTES as u64 + self.batch_length.get().max(0) as u64
    }

    /// The last offset the batch claims, saturated at `i64::MAX` (a damaged or hostile base
    /// offset must not overflow; no offset of a log reaches `i64::MAX`, as the next offset
    /// after it would not exist).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.get().saturating_add(i64::from(self.last_offset_delta.get()))
    }

    pub fn compression_codec(&self) -> u8 {
        (self.attributes.get() & 0x07) as u8
    }

    /// Whether the batch's timestamps are LogAppendTime (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes.get() & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes.get() & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes.get() & 0x20 != 0
    }
}

/// Where a batch comes from, which decides how strictly its counts are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A producer: offsets are ours to assign, the batch must be dense
    /// (`recordsCount == lastOffsetDelta + 1`, at least one record).
    Client,
    /// A leader's log copied verbatim: offsets are already assigned.
    Replica,
}

/// What the log needs to know about a validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub size: u64,
    /// The first record's timestamp (the header's base timestamp).
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: i32,
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The leader stamps this batch as LogAppendTime, `max_timestamp` being the append time
    /// (`message.timestamp.type=LogAppendTime`; set when offsets are assigned).
    pub stamp_append_time: bool,
}

impl BatchInfo {
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }
}

/// Validates the batch at the start of `bytes` (more batches may follow).
pub fn validate(
    bytes: &[u8],
    batch_bytes_max: u64,
    origin: Origin,
) -> Result<BatchInfo, BatchError> {
    let info = match validate_structure(bytes, batch_bytes_max, origin) {
        Ok(info) => info,
        Err(error) => {
            // A damaged CRC-covered field (codec, counts) is reported as the damage it is.
            if let (
                Some(header),
                BatchError::UnknownCompression { .. }
                | BatchError::InvalidRecordCount { .. }
                | BatchError::CountDeltaMismatch { .. },
            ) = (BatchHeader::view(bytes), &error)
            {
                let size = header.size() as usize;
                let actual = crc32c::crc32c(&bytes[CRC_START..size]);
                if actual != header.crc.get() {
                    return Err(BatchError::ChecksumMismatch {
                        expected: header.crc.get(),
                        actual,
                    });
                }
            }
            return Err(error);
        }
    };
    verify_contents(&bytes[..info.size as usize])?;
    Ok(info)
}

/// Every check of [`validate`] that reads only the 61-byte header: length, size limits,
/// magic, codec and counts. [`verify_contents`] does the rest (CRC and records), so a large
/// append can check its bytes on another core while they are being written.
pub fn validate_structure(
    bytes: &[u8],
    batch_bytes_max: u64,
    origin: Origin,
) -> Result<BatchInfo, BatchError> {
    let available = bytes.len() as u64;
    let Some(header) = BatchHeader::view(bytes) else {
        return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES as u64, available });
    };
    let length = header.batch_length.get();
    if length < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::LengthTooSmall { length });
    }
    let size = header.size();
    if size > batch_bytes_max {
        return Err(BatchError::TooLarge { size, max: batch_bytes_max });
    }
    if size > available {
        return Err(BatchError::Truncated { needed: size, available });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::WrongMagic { magic: header.magic });
    }
    let codec = header.compression_codec();
    if codec > 4 {
        return Err(BatchError::UnknownCompression { codec });
    }
    let count = header.records_count.get();
    let last_offset_delta = header.last_offset_delta.get();
    if count < 0 || (origin == Origin::Client && count == 0) {
        return Err(BatchError::InvalidRecordCount { count });
    }
    let dense = i64::from(count) == i64::from(last_offset_delta) + 1;
    let sparse_ok = last_offset_delta >= 0 && i64::from(count) <= i64::from(last_offset_delta) + 1;
    if (origin == Origin::Client && !dense) || (origin == Origin::Replica && !sparse_ok) {
        return Err(BatchError::CountDeltaMismatch { count, last_offset_delta });
    }
    Ok(BatchInfo {
        base_offset: header.base_offset.get(),
        last_offset_delta,
        size,
        first_timestamp: header.base_timestamp.get(),
        max_timestamp: header.max_timestamp.get(),
        record_count: count,
        partition_leader_epoch: header.partition_leader_epoch.get(),
        producer_id: header.producer_id.get(),
        producer_epoch: header.producer_epoch.get(),
        base_sequence: header.base_sequence.get(),
        stamp_append_time: false,
    })
}

/// The checks of [`validate`] that read the whole batch: the CRC-32C, and for uncompressed
/// batches that the records fill the body exactly, `recordsCount` of them. `batch` is
/// exactly one batch that passed [`validate_structure`].
pub fn verify_contents(batch: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::view(batch).expect("verify_contents after validate_structure");
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    let expected = header.crc.get();
    if actual != expected {
        return Err(BatchError::ChecksumMismatch { expected, actual });
    }
    if header.compression_codec() == 0 {
        let count = header.records_count.get();
        let actual_count = count_records(&batch[BATCH_HEADER_BYTES..])?;
        if actual_count != count as u64 {
            return Err(BatchError::CountBytesMismatch { header_count: count, actual_count });
        }
    }
    Ok(())
}

/// Attribute bit 3: the batch's timestamps are LogAppendTime.
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// Marks a batch LogAppendTime with `append_time` its max timestamp, as Kafka's leader does
/// (`setMaxTimestamp(LOG_APPEND_TIME, now)`: the records keep their own timestamps, which
/// readers ignore for such a batch), and sets its CRC anew. `header` is the batch's whole
/// header (a copy, or the batch itself), `body` the bytes after it. The caller has checked
/// the old CRC: this one covers whatever the body holds.
pub fn stamp_append_time(header: &mut [u8], body: &[u8], append_time: i64) {
    let (fields, _rest) = BatchHeader::mut_from_prefix(header)
        .expect("stamp_append_time: shorter than a batch header");
    fields.attributes.set(fields.attributes.get() | LOG_APPEND_TIME_BIT);
    fields.max_timestamp.set(append_time);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_START..BATCH_HEADER_BYTES]), body);
    let (fields, _rest) = BatchHeader::mut_from_prefix(header).expect("checked above");
    fields.crc.set(crc);
}

/// Sets the length, codec (attribute bits 0-2) and CRC of `batch`, a batch header followed
/// by a new body: its records compressed with `codec` (broker-side recompression). Every
/// other header field is kept. `None` if the batch is too long for its length field.
pub fn reframe(batch: &mut [u8], codec: u8) -> Option<()> {
    let length = i32::try_from(batch.len().checked_sub(BATCH_LOG_OVERHEAD_BYTES)?).ok()?;
    let (fields, _rest) = BatchHeader::mut_from_prefix(batch).ok()?;
    fields.batch_length.set(length);
    fields.attributes.set((fields.attributes.get() & !0x07) | i16::from(codec & 0x07));
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    let (fields, _rest) = BatchHeader::mut_from_prefix(batch).ok()?;
    fields.crc.set(crc);
    Some(())
}

/// Like [`stamp`], on a copy of just the first 16 header bytes.
pub fn stamp_header(header: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    assert!(header.len() >= 16, "stamp_header needs the first 16 bytes");
    header[0..8].copy_from_slice(&base_offset.to_be_bytes());
    header[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Sets `baseOffset` and `partitionLeaderEpoch` of the batch at the start of `bytes`.
/// Neither field is covered by the CRC, so the batch stays valid.
pub fn stamp(bytes: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    let (header, _rest) =
        BatchHeader::mut_from_prefix(bytes).expect("stamp: batch shorter than its header");
    header.base_offset.set(base_offset);
    header.partition_leader_epoch.set(partition_leader_epoch);
}

/// Counts the records of an uncompressed batch body, checking that each record's length
/// stays inside the body and that they end exactly at its end.
fn count_records(body: &[u8]) -> Result<u64, BatchError> {
    let mut position = 0usize;
    let mut count = 0u64;
    while position < body.len() {
        let (length, used) =
            read_varint(&body[position..]).ok_or(BatchError::MalformedRecords {
                position: (BATCH_HEADER_BYTES + position) as u64,
                reason: "bad record length varint",
            })?;
        if length < 0 {
            return Err(BatchError::MalformedRecords {
                position: (BATCH_HEADER_BYTES + position) as u64,
                reason: "negative record length",
            });
        }
        position += used;
        let end = position as u64 + length as u64;
        if end > body.len() as u64 {
            return Err(BatchError::MalformedRecords {
                position: (BATCH_HEADER_BYTES + position) as u64,
                reason: "record runs past the batch end",
            });
        }
        position = end as usize;
        count += 1;
    }
    Ok(count)
}

/// For an uncompressed batch, the offset delta and timestamp of the first record whose
/// timestamp is at least `timestamp`. `None` when the batch is compressed, malformed, or has
/// no such record. LogAppendTime batches answer with their max timestamp for every record.
pub fn first_record_at_or_after(batch: &[u8], timestamp: i64) -> Option<(i32, i64)> {
    let header = BatchHeader::view(batch)?;
    if header.compression_codec() != 0 {
        return None;
    }
    if header.is_log_append_time() {
        return (header.max_timestamp.get() >= timestamp)
            .then_some((0, header.max_timestamp.get()));
    }
    let body = batch.get(BATCH_HEADER_BYTES..header.size() as usize)?;
    first_record_in(body, header.base_timestamp.get(), timestamp)
}

/// In a batch's records (`records`: the body after the header, decompressed if the batch
/// is compressed), the offset delta and timestamp of the first record whose timestamp is at
/// least `timestamp`. Walks the records in place, allocating nothing: `None` when they are
/// malformed or none qualifies.
pub fn first_record_in(records: &[u8], base_timestamp: i64, timestamp: i64) -> Option<(i32, i64)> {
    let body = records;
    let mut position = 0usize;
    while position < body.len() {
        let (length, used) = read_varint(&body[position..])?;
        let record_start = position + used;
        let record = body.get(record_start..record_start + usize::try_from(length).ok()?)?;
        // attributes: i8, then timestampDelta: varlong, then offsetDelta: varint.
        let (timestamp_delta, used_ts) = read_varlong(record.get(1..)?)?;
        let (offset_delta, _) = read_varint(record.get(1 + used_ts..)?)?;
        let record_timestamp = base_timestamp.wrapping_add(timestamp_delta);
        if record_timestamp >= timestamp {
            return Some((offset_delta, record_timestamp));
        }
        position = record_start + length as usize;
    }
    None
}

/// One record of an uncompressed batch body, as Kafka's record format v2 lays it out:
/// `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
/// key (varint length, -1 = null) | value (likewise) | headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record: its length varint and what follows.
    pub bytes: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Control record types (the key of a control batch's record: version i16, type i16).
pub const CONTROL_ABORT: i16 = 0;
pub const CONTROL_COMMIT: i16 = 1;

/// The type of a control batch (`CONTROL_ABORT`, `CONTROL_COMMIT`, or another Kafka
/// defines), from its first record's key; `None` if `batch` is not a whole uncompressed
/// control batch whose record parses.
pub fn control_type(batch: &[u8]) -> Option<i16> {
    let header = BatchHeader::view(batch)?;
    if !header.is_control() || header.compression_codec() != 0 {
        return None;
    }
    let body = batch.get(BATCH_HEADER_BYTES..header.size() as usize)?;
    let first = records(body)?.into_iter().next()?;
    let key = first.key?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]))
}

/// The records of an uncompressed batch body (the bytes after the batch header, or a
/// compressed batch's once decompressed); `None` if any of them is malformed.
pub fn records(body: &[u8]) -> Option<Vec<RecordView<'_>>> {
    // A negative length is a null field, as Kafka's `DefaultRecord.readFrom` reads it.
    fn field(record: &[u8], at: &mut usize) -> Option<Option<(usize, usize)>> {
        let (length, used) = read_varint(record.get(*at..)?)?;
        *at += used;
        if length < 0 {
            return Some(None);
        }
        let start = *at;
        *at = start.checked_add(usize::try_from(length).ok()?)?;
        record.get(start..*at)?;
        Some(Some((start, *at)))
    }
    let mut out = Vec::new();
    let mut position = 0usize;
    while position < body.len() {
        let (length, used) = read_varint(&body[position..])?;
        let start = position + used;
        let end = start.checked_add(usize::try_from(length).ok()?)?;
        let record = body.get(start..end)?;
        let mut at = 1usize; // attributes
        let (timestamp_delta, used) = read_varlong(record.get(at..)?)?;
        at += used;
        let (offset_delta, used) = read_varint(record.get(at..)?)?;
        at += used;
        let key = field(record, &mut at)?.map(|(from, to)| &record[from..to]);
        let value = field(record, &mut at)?.map(|(from, to)| &record[from..to]);
        // The headers: each a key and a value; with them the record must end exactly.
        let (headers, used) = read_varint(record.get(at..)?)?;
        at += used;
        for _ in 0..headers.max(0) {
            field(record, &mut at)?;
            field(record, &mut at)?;
            if at > record.len() {
                return None;
            }
        }
        if at != record.len() {
            return None;
        }
        out.push(RecordView {
            bytes: &body[position..end],
            timestamp_delta,
            offset_delta,
            key,
            value,
        });
        position = end;
    }
    Some(out)
}

/// Decodes a zig-zag LEB128 varint (at most 5 bytes) -> (value, bytes used).
pub fn read_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (value, used) = read_unsigned(bytes, 5)?;
    let value = value as u32;
    Some((((value >> 1) as i32) ^ -((value & 1) as i32), used))
}

/// Decodes a zig-zag LEB128 varlong (at most 10 bytes) -> (value, bytes used).
pub fn read_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let (value, used) = read_unsigned(bytes, 10)?;
    Some((((value >> 1) as i64) ^ -((value & 1) as i64), used))
}

fn read_unsigned(bytes: &[u8], bytes_max: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(bytes_max).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// Builds valid v2 batches: for tests, benchmarks and tools that produce data.
pub mod build {
    use super::*;

    /// Appends a zig-zag varint.
    pub fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// One record as the producer gives it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Record<'a> {
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub timestamp_delta: i64,
    }

    /// An uncompressed batch with base offset 0 and the given records.
    pub fn batch(records: &[Record<'_>], base_timestamp: i64) -> Vec<u8> {
        let mut body = Vec::new();
        let mut max_timestamp = base_timestamp;
        for (delta, record) in records.iter().enumerate() {
            let mut r = Vec::new();
            r.push(0u8); // attributes
            put_varint(&mut r, record.timestamp_delta);
            put_varint(&mut r, delta as i64);
            match record.key {
                Some(key) => {
                    put_varint(&mut r, key.len() as i64);
                    r.extend_from_slice(key);
                }
                None => put_varint(&mut r, -1),
            }
            match record.value {
                Some(value) => {
                    put_varint(&mut r, value.len() as i64);
                    r.extend_from_slice(value);
                }
                None => put_varint(&mut r, -1),
            }
            put_varint(&mut r, 0); // headers
            put_varint(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
            max_timestamp = max_timestamp.max(base_timestamp + record.timestamp_delta);
        }
        let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
        out.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
        out.extend_from_slice(
            &((BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes(),
        );
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes
        out.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// A transaction marker as Kafka's `MemoryRecords.withEndTransactionMarker` writes it:
    /// a control batch (transactional and control attribute bits) of one record whose key is
    /// (version 0, `control_type`) and value (version 0, the coordinator's epoch), with the
    /// producer's id and epoch and no sequence; base offset 0, stamped on append.
    pub fn control_batch(
        producer_id: i64,
        producer_epoch: i16,
        control_type: i16,
        coordinator_epoch: i32,
        timestamp: i64,
    ) -> Vec<u8> {
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&control_type.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&0i16.to_be_bytes());
        value.extend_from_slice(&coordinator_epoch.to_be_bytes());
        let record = Record { key: Some(&key), value: Some(&value), timestamp_delta: 0 };
        let mut out = batch(&[record], timestamp);
        let (header, _rest) = BatchHeader::mut_from_prefix(&mut out[..]).expect("a whole batch");
        header.attributes.set(0x30);
        header.producer_id.set(producer_id);
        header.producer_epoch.set(producer_epoch);
        reseal(&mut out);
        out
    }

    /// Makes the batch at the start of `bytes` part of `producer_id`'s transaction (the
    /// transactional attribute bit, the producer's id and epoch, no sequence), as Kafka's
    /// group coordinator writes a TxnOffsetCommit's records.
    pub fn set_transactional(bytes: &mut [u8], producer_id: i64, producer_epoch: i16) {
        let (header, _rest) = BatchHeader::mut_from_prefix(bytes)
            .expect("set_transactional: batch shorter than its header");
        header.attributes.set(header.attributes.get() | 0x10);
        header.producer_id.set(producer_id);
        header.producer_epoch.set(producer_epoch);
        header.base_sequence.set(-1);
        reseal(bytes);
    }

    /// Makes the batch at the start of `bytes` an idempotent producer's: sets its producer
    /// id, epoch and first sequence number, and recomputes the CRC they are covered by.
    pub fn set_producer(
        bytes: &mut [u8],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) {
        let (header, _rest) = BatchHeader::mut_from_prefix(bytes)
            .expect("set_producer: batch shorter than its header");
        header.producer_id.set(producer_id);
        header.producer_epoch.set(producer_epoch);
        header.base_sequence.set(base_sequence);
        reseal(bytes);
    }

    /// Sets the base and max timestamps of the batch at the start of `bytes`; `reseal` it
    /// after this and any other change.
    ///
    /// # Panics
    /// If `bytes` is shorter than a batch header.
    pub fn set_timestamps(bytes: &mut [u8], base_timestamp: i64, max_timestamp: i64) {
        let (header, _rest) = BatchHeader::mut_from_prefix(bytes)
            .expect("set_timestamps: batch shorter than its header");
        header.base_timestamp.set(base_timestamp);
        header.max_timestamp.set(max_timestamp);
    }

    /// Recomputes the CRC of the batch at the start of `bytes` after its fields or records
    /// were changed in place.
    ///
    /// # Panics
    /// If `bytes` is shorter than a batch header or than the batch its length field claims.
    pub fn reseal(bytes: &mut [u8]) {
        let size = BatchHeader::view(bytes).expect("reseal: batch shorter than its header").size()
            as usize;
        let crc = crc32c::crc32c(&bytes[CRC_START..size]);
        let (header, _rest) = BatchHeader::mut_from_prefix(bytes).expect("checked above");
        header.crc.set(crc);
    }

    /// A batch of `count` records whose values are `value_bytes` bytes derived from `seed`.
    pub fn batch_of(count: usize, value_bytes: usize, base_timestamp: i64, seed: u64) -> Vec<u8> {
        let values: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                (0..value_bytes)
                    .map(|j| (seed as usize).wrapping_mul(31).wrapping_add(i * 7 + j) as u8)
                    .collect()
            })
            .collect();
        let records: Vec<Record<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, value)| Record { key: None, value: Some(value), timestamp_delta: i as i64 })
            .collect();
        batch(&records, base_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn records_are_read_back_as_built_and_a_cut_record_is_malformed() {
        let built = [
            Record { key: Some(b"k"), value: Some(b"value"), timestamp_delta: 0 },
            Record { key: None, value: Some(b""), timestamp_delta: 7 },
            Record { key: Some(b""), value: None, timestamp_delta: 9 },
        ];
        let bytes = batch(&built, 1_000);
        let body = &bytes[BATCH_HEADER_BYTES..];
        let read = records(body).expect("well formed");
        assert_eq!(read.len(), 3);
        for (i, (record, built)) in read.iter().zip(&built).enumerate() {
            assert_eq!(record.offset_delta, i as i32);
            assert_eq!(record.timestamp_delta, built.timestamp_delta);
            assert_eq!((record.key, record.value), (built.key, built.value), "record {i}");
        }
        let whole: usize = read.iter().map(|r| r.bytes.len()).sum();
        assert_eq!(whole, body.len(), "the records' bytes cover the body");
        assert_eq!(records(&body[..body.len() - 1]), None, "the last record cut short");
    }

    const MAX: u64 = 1 << 20;

    fn sample() -> Vec<u8> {
        batch(
            &[
                Record { key: Some(b"k1"), value: Some(b"hello"), timestamp_delta: 0 },
                Record { key: None, value: Some(b"world"), timestamp_delta: 5 },
                Record { key: Some(b"k3"), value: None, timestamp_delta: 9 },
            ],
            1_000,
        )
    }

    #[test]
    fn valid_batch_passes_and_reports_its_fields() {
        let bytes = sample();
        let info = validate(&bytes, MAX, Origin::Client).unwrap();
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.record_count, 3);
        assert_eq!(info.last_offset_delta, 2);
        assert_eq!(info.max_timestamp, 1_009);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut bytes = sample();
        stamp(&mut bytes, 123_456, 7);
        let info = validate(&bytes, MAX, Origin::Client).unwrap();
        assert_eq!(info.base_offset, 123_456);
        assert_eq!(info.partition_leader_epoch, 7);
    }

    #[test]
    fn setting_the_producer_keeps_the_crc_valid() {
        let mut bytes = sample();
        set_producer(&mut bytes, 42, 3, 1_000);
        validate(&bytes, MAX, Origin::Client).unwrap();
        let header = BatchHeader::view(&bytes).unwrap();
        assert_eq!(
            (header.producer_id.get(), header.producer_epoch.get(), header.base_sequence.get()),
            (42, 3, 1_000)
        );
        // The CRC covers these fields: changing one without recomputing it is caught.
        bytes[BATCH_HEADER_BYTES - 5] ^= 1;
        assert!(validate(&bytes, MAX, Origin::Client).is_err());
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let error = validate(&bytes[..len], MAX, Origin::Client).unwrap_err();
            assert!(matches!(error, BatchError::Truncated { .. }), "len {len}: {error}");
        }
    }

    #[test]
    fn wrong_crc_magic_length_and_counts_are_named() {
        let good = sample();
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(
            validate(&b, MAX, Origin::Client),
            Err(BatchError::ChecksumMismatch { .. })
        ));

        let mut b = good.clone();
        b[16] = 1;
        assert_eq!(validate(&b, MAX, Origin::Client), Err(BatchError::WrongMagic { magic: 1 }));

        assert!(matches!(
            validate(&good, 64, Origin::Client),
            Err(BatchError::TooLarge { max: 64, .. })
        ));

        let mut b = good.clone();
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            validate(&b, MAX, Origin::Client),
            Err(BatchError::LengthTooSmall { length: 10 })
        );

        // Header says 4 records, delta 3: consistent with each other, not with the bytes.
        let mut b = good.clone();
        b[23..27].copy_from_slice(&3i32.to_be_bytes());
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&b, MAX, Origin::Client),
            Err(BatchError::CountBytesMismatch { header_count: 4, actual_count: 3 })
        );

        // Count and delta disagree.
        let mut b = good.clone();
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate(&b, MAX, Origin::Client),
            Err(BatchError::CountDeltaMismatch { count: 3, last_offset_delta: 5 })
        );
        // A replica may carry a sparse (compacted) batch.
        assert!(validate(&b, MAX, Origin::Replica).is_ok());
    }

    #[test]
    fn timestamp_search_inside_a_batch() {
        let bytes = sample();
        assert_eq!(first_record_at_or_after(&bytes, 0), Some((0, 1_000)));
        assert_eq!(first_record_at_or_after(&bytes, 1_001), Some((1, 1_005)));
        assert_eq!(first_record_at_or_after(&bytes, 1_009), Some((2, 1_009)));
        assert_eq!(first_record_at_or_after(&bytes, 1_010), None);
    }

    #[test]
    fn varints_round_trip() {
        for value in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64] {
            let mut out = Vec::new();
            build::put_varint(&mut out, value);
            assert_eq!(read_varlong(&out), Some((value, out.len())));
            assert_eq!(read_varint(&out), Some((value as i32, out.len())));
        }
    }
}
