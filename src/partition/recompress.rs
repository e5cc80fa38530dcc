//! Broker-side recompression, as Kafka's leader does it for a topic whose `compression.type`
//! names a codec: a producer's batch in another codec (or none) has its records decompressed
//! (bounded, `decompress::DECOMPRESSED_BYTES_MAX`) and compressed again with the topic's
//! codec at the topic's level; its header keeps every field (offsets, producer id, epoch and
//! sequence, timestamps, attributes) but the codec bits, the length and the CRC. A batch
//! already in the topic's codec is kept as the producer sent it, as Kafka keeps it, and an
//! append none of whose batches changes is not copied.
//!
//! Batches are checked (structure and CRC) before anything is decompressed; a batch that
//! fails is left for the log's append to refuse with its precise error.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use fjord_storage::batch::{self, BatchHeader, Origin, BATCH_HEADER_BYTES};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use super::decompress::{decompress_bounded, DECOMPRESSED_BYTES_MAX};

/// Appends at least this large are recompressed on a blocking thread, not the shard's: a
/// megabyte of zstd or gzip takes milliseconds that every other partition of the shard
/// would wait.
pub(crate) const INLINE_BYTES_MAX: usize = 64 * 1024;

/// The xerial snappy-java framing Kafka's Java client writes, and its block size.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// A topic's codec (`compression.type` other than `producer`) and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    codec: u8,
    level: Option<i32>,
}

impl Target {
    /// The target of `compression.type` `name` (`None` for `producer`: batches are kept as
    /// sent), with `level` the value of that codec's `compression.<codec>.level`, if set.
    pub(crate) fn of(name: &str, level: impl Fn(&str) -> Option<i32>) -> Option<Target> {
        let (codec, level_config) = match name {
            "uncompressed" => (0, None),
            "gzip" => (1, Some("compression.gzip.level")),
            "snappy" => (2, None),
            "lz4" => (3, Some("compression.lz4.level")),
            "zstd" => (4, Some("compression.zstd.level")),
            _ => return None,
        };
        Some(Target { codec, level: level_config.and_then(level) })
    }
}

/// Why an append could not be recompressed: the error to answer and why.
pub(crate) type Refusal = (ResponseError, String);

/// `records` with every batch in `target`'s codec; `None` if every batch already is (or a
/// batch fails its checks, which the append then reports).
pub(crate) fn recompress(records: &[u8], target: Target) -> Result<Option<Bytes>, Refusal> {
    let mut spans = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let Ok(info) = batch::validate(&records[at..], u64::MAX, Origin::Client) else {
            return Ok(None);
        };
        let size = info.size as usize;
        let header = BatchHeader::view(&records[at..]).expect("validated");
        spans.push((at, size, header.compression_codec() != target.codec));
        at += size;
    }
    if !spans.iter().any(|(_, _, change)| *change) {
        return Ok(None);
    }
    let mut out = BytesMut::with_capacity(records.len());
    for (at, size, change) in spans {
        let batch = &records[at..at + size];
        if change {
            recompress_batch(batch, target, &mut out)?;
        } else {
            out.extend_from_slice(batch);
        }
    }
    Ok(Some(out.freeze()))
}

/// Appends `batch` (one whole, checked batch) to `out` with its records in `target`'s codec.
fn recompress_batch(batch: &[u8], target: Target, out: &mut BytesMut) -> Result<(), Refusal> {
    let header = BatchHeader::view(batch).expect("a checked batch");
    let codec = codec_of(header.compression_codec()).ok_or_else(|| {
        let codec = header.compression_codec();
        (ResponseError::CorruptMessage, format!("unknown compression codec {codec}"))
    })?;
    let mut body = Bytes::copy_from_slice(&batch[BATCH_HEADER_BYTES..]);
    let records = decompress_bounded(&mut body, codec).map_err(|error| {
        let why = format!("the batch's records do not decompress ({error:#}); at most {DECOMPRESSED_BYTES_MAX} bytes are");
        (ResponseError::CorruptMessage, why)
    })?;
    let compressed = compress(&records, target).map_err(|error| {
        (ResponseError::UnknownServerError, format!("recompressing a batch failed: {error}"))
    })?;
    let start = out.len();
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&compressed);
    batch::reframe(&mut out[start..], target.codec).ok_or_else(|| {
        (ResponseError::MessageTooLarge, "a recompressed batch passes 2 GiB".to_string())
    })
}

/// For a compacted topic: the indexes (within their batch) of the records in `records`
/// (one whole, checked batch) that have no key, which Kafka's `LogValidator.validateKey`
/// refuses; decompresses a compressed batch to see them.
pub(crate) fn keyless_records(records: &[u8]) -> Result<Vec<i32>, Refusal> {
    let Some(header) = BatchHeader::view(records) else { return Ok(Vec::new()) };
    let end = (header.size() as usize).min(records.len());
    let codec = codec_of(header.compression_codec()).ok_or_else(|| {
        let codec = header.compression_codec();
        (ResponseError::CorruptMessage, format!("unknown compression codec {codec}"))
    })?;
    let mut body = Bytes::copy_from_slice(&records[BATCH_HEADER_BYTES.min(end)..end]);
    let body = decompress_bounded(&mut body, codec).map_err(|error| {
        let why = format!("the batch's records do not decompress ({error:#}); at most {DECOMPRESSED_BYTES_MAX} bytes are");
        (ResponseError::CorruptMessage, why)
    })?;
    let malformed = || (ResponseError::CorruptMessage, "malformed records".to_string());
    let keyless = batch::records(&body)
        .ok_or_else(malformed)?
        .iter()
        .enumerate()
        .filter(|(_, record)| record.key.is_none())
        .map(|(index, _)| index as i32)
        .collect();
    Ok(keyless)
}

/// The codecs the log cleaner uses to clean compressed batches (`fjord_storage::RecordsCodec`):
/// the same decompression as the leader's (at most `DECOMPRESSED_BYTES_MAX` bytes) and the
/// same framing when compressing again, at each codec's default level.
pub(crate) struct CleanerCodec;

impl fjord_storage::RecordsCodec for CleanerCodec {
    fn decompress(&self, codec: u8, records: &[u8]) -> Result<Vec<u8>, String> {
        let compression = codec_of(codec).ok_or_else(|| format!("unknown codec {codec}"))?;
        let mut body = Bytes::copy_from_slice(records);
        decompress_bounded(&mut body, compression)
            .map(|records| records.to_vec())
            .map_err(|error| format!("{error:#}"))
    }

    fn compress(&self, codec: u8, records: &[u8]) -> Result<Vec<u8>, String> {
        compress(records, Target { codec, level: None }).map_err(|error| error.to_string())
    }
}

fn codec_of(codec: u8) -> Option<Compression> {
    Some(match codec {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    })
}

/// `records` compressed with `target`'s codec and level, in the framing Kafka's clients
/// read: gzip, xerial-framed snappy (as Kafka's Java client writes it), an LZ4 frame of
/// independent 64 KiB blocks without checksums (as Kafka's `KafkaLZ4BlockOutputStream`),
/// a zstd frame.
fn compress(records: &[u8], target: Target) -> std::io::Result<Vec<u8>> {
    match target.codec {
        0 => Ok(records.to_vec()),
        1 => {
            // Kafka's gzip level -1 is the codec's default.
            let level = match target.level {
                Some(level @ 1..=9) => flate2::Compression::new(level as u32),
                _ => flate2::Compression::default(),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(records)?;
            encoder.finish()
        }
        2 => {
            let mut out = XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        3 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(target.level.unwrap_or(9).clamp(1, 17) as u32)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result.map(|()| out)
        }
        4 => zstd::bulk::compress(records, target.level.unwrap_or(3)),
        codec => Err(std::io::Error::other(format!("no codec {codec}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// An idempotent producer's batch of `count` records, encoded by kafka-protocol as a
    /// client would send it.
    fn batch_of(compression: Compression, count: i64) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 42,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: 7 + i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}-").repeat(20))),
                headers: Default::default(),
            })
            .collect();
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions { version: 2, compression },
        )
        .unwrap();
        out.to_vec()
    }

    fn target(name: &str) -> Target {
        Target::of(name, |_| None).expect("a codec")
    }

    /// The records of `bytes` as kafka-protocol decodes them, and each batch's codec.
    fn decoded(bytes: &[u8]) -> (Vec<Record>, Vec<u8>) {
        let mut codecs = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::view(&bytes[at..]).unwrap();
            codecs.push(header.compression_codec());
            batch::verify_contents(&bytes[at..at + header.size() as usize]).unwrap();
            at += header.size() as usize;
        }
        let mut buf = Bytes::copy_from_slice(bytes);
        let records = RecordBatchDecoder::decode_all(&mut buf)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
            .collect();
        (records, codecs)
    }

    #[test]
    fn every_codec_becomes_every_other_and_the_records_stay_the_same() {
        let codecs = [
            ("uncompressed", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ];
        let (expected, _) = decoded(&batch_of(Compression::None, 50));
        for (from_name, from) in codecs {
            let sent = batch_of(from, 50);
            for (to_name, _) in codecs {
                let recompressed = recompress(&sent, target(to_name)).unwrap();
                let stored = match recompressed {
                    Some(bytes) => bytes.to_vec(),
                    None => {
                        assert_eq!(from_name, to_name, "only a batch in the topic's codec is kept");
                        sent.clone()
                    }
                };
                let (records, codecs) = decoded(&stored);
                assert_eq!(codecs, vec![target(to_name).codec], "{from_name} -> {to_name}");
                assert_eq!(records, expected, "{from_name} -> {to_name}");
                let header = BatchHeader::view(&stored).unwrap();
                assert_eq!(
                    (
                        header.producer_id.get(),
                        header.producer_epoch.get(),
                        header.base_sequence.get()
                    ),
                    (42, 3, 7),
                    "{from_name} -> {to_name} keeps the producer's identity"
                );
            }
        }
    }

    #[test]
    fn only_the_batches_in_another_codec_change_and_a_damaged_one_is_left_to_the_append() {
        let mut sent = batch_of(Compression::Zstd, 3);
        sent.extend_from_slice(&batch_of(Compression::Gzip, 4));
        let stored = recompress(&sent, target("zstd")).unwrap().expect("the gzip batch changes");
        let first = BatchHeader::view(&sent).unwrap().size() as usize;
        assert_eq!(&stored[..first], &sent[..first], "the zstd batch is kept byte for byte");
        assert_eq!(decoded(&stored).1, vec![4, 4]);
        assert_eq!(decoded(&stored).0.len(), 7);

        let mut damaged = batch_of(Compression::Gzip, 4);
        let last = damaged.len() - 1;
        damaged[last] ^= 0x01;
        assert_eq!(recompress(&damaged, target("zstd")), Ok(None));
    }

    #[test]
    fn a_batch_that_does_not_decompress_is_refused_as_corrupt() {
        let mut sent = batch_of(Compression::Gzip, 4);
        // Garbage in place of the gzip stream, with a CRC that matches it.
        for byte in &mut sent[BATCH_HEADER_BYTES..] {
            *byte = 0x5a;
        }
        batch::reframe(&mut sent, 1).unwrap();
        let (code, why) = recompress(&sent, target("lz4")).unwrap_err();
        assert_eq!(code, ResponseError::CorruptMessage, "{why}");
    }

    #[test]
    fn producer_and_unknown_names_keep_batches_as_sent() {
        assert_eq!(Target::of("producer", |_| None), None);
        let levels = |name: &str| (name == "compression.zstd.level").then_some(19);
        assert_eq!(Target::of("zstd", levels), Some(Target { codec: 4, level: Some(19) }));
        assert_eq!(Target::of("snappy", levels), Some(Target { codec: 2, level: None }));
    }
}
