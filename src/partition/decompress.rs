//! Decompression of a stored batch's records with a bound on the output: a producer may
//! store any compressed batch whose CRC is right (records are not opened on append, as in
//! Kafka), so its stream may announce or expand to gigabytes. Every codec here stops at
//! `DECOMPRESSED_BYTES_MAX` and fails instead; the caller then answers from the batch
//! header, as for any batch it cannot decompress.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

/// Decompressed bytes of one batch at most: far above any batch a client builds (Kafka's
/// `message.max.bytes` defaults to 1 MiB compressed, and codecs rarely exceed 10:1 on
/// records), and small enough that a lookup never takes a large share of memory.
pub(crate) const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// xerial snappy-java framing, which Kafka's Java client writes; raw snappy otherwise.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// In a compressed batch (header and body), the offset delta and timestamp of the first
/// record whose timestamp is at least `timestamp`: the body decompressed with the bound, then
/// walked in place (no allocation per record, so a batch of millions of tiny records costs
/// no more than its decompressed bytes).
pub(crate) fn first_compressed_record_at_or_after(
    batch: &[u8],
    timestamp: i64,
) -> anyhow::Result<Option<(i32, i64)>> {
    let header = fjord_storage::batch::BatchHeader::view(batch)
        .ok_or_else(|| anyhow::anyhow!("no batch header"))?;
    let compression = match header.compression_codec() {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        codec => anyhow::bail!("unknown compression codec {codec}"),
    };
    let body = batch
        .get(fjord_storage::batch::BATCH_HEADER_BYTES..header.size() as usize)
        .ok_or_else(|| anyhow::anyhow!("the batch is shorter than its length field"))?;
    let records = decompress_bounded(&mut Bytes::copy_from_slice(body), compression)?;
    Ok(fjord_storage::batch::first_record_in(&records, header.base_timestamp.get(), timestamp))
}

/// The records of a batch, decompressed with `compression`, at most
/// `DECOMPRESSED_BYTES_MAX` bytes.
pub(super) fn decompress_bounded(
    compressed: &mut Bytes,
    compression: Compression,
) -> anyhow::Result<Bytes> {
    let input = compressed.copy_to_bytes(compressed.remaining());
    let output = match compression {
        Compression::None => return Ok(input),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(&input[..]))?,
        Compression::Lz4 => read_bounded(lz4::Decoder::new(&input[..])?)?,
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(&input[..])?)?,
        Compression::Snappy => snappy(&input)?,
    };
    Ok(Bytes::from(output))
}

fn read_bounded(reader: impl Read) -> anyhow::Result<Vec<u8>> {
    let mut output = Vec::new();
    reader.take(DECOMPRESSED_BYTES_MAX as u64 + 1).read_to_end(&mut output)?;
    if output.len() > DECOMPRESSED_BYTES_MAX {
        anyhow::bail!("decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes");
    }
    Ok(output)
}

fn snappy(input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let Some(mut blocks) = input.strip_prefix(&XERIAL_MAGIC[..]) else {
        return snappy_block(input, 0);
    };
    let mut output = Vec::new();
    while !blocks.is_empty() {
        let (length, rest) = blocks
            .split_first_chunk::<4>()
            .ok_or_else(|| anyhow::anyhow!("a snappy block length is cut short"))?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = rest
            .get(..length)
            .ok_or_else(|| anyhow::anyhow!("a snappy block of {length} bytes is cut short"))?;
        output.extend_from_slice(&snappy_block(block, output.len())?);
        blocks = &rest[length..];
    }
    Ok(output)
}

/// One raw snappy block, refused before any allocation if the length it announces would
/// take the output (already `so_far` bytes) past the bound.
fn snappy_block(block: &[u8], so_far: usize) -> anyhow::Result<Vec<u8>> {
    let length = snap::raw::decompress_len(block)?;
    if so_far.saturating_add(length) > DECOMPRESSED_BYTES_MAX {
        anyhow::bail!("snappy announces {length} more bytes, past {DECOMPRESSED_BYTES_MAX}");
    }
    Ok(snap::raw::Decoder::new().decompress_vec(block)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of three records, 10 ms apart from `base`, encoded with `compression` by
    /// kafka-protocol, as a client would send it.
    fn batch_of_three(compression: Compression, base: i64) -> Vec<u8> {
        use kafka_protocol::records::{
            Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32 - 1,
                timestamp: base + 10 * i,
                key: None,
                value: Some(Bytes::from(vec![b'v'; 200])),
                headers: Default::default(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions { version: 2, compression },
        )
        .unwrap();
        out.to_vec()
    }

    #[test]
    fn a_timestamp_lookup_finds_the_record_inside_a_batch_of_every_codec() {
        let base = 1_700_000_000_000;
        for compression in
            [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let batch = batch_of_three(compression, base);
            let header = fjord_storage::batch::BatchHeader::view(&batch).unwrap();
            assert_ne!(header.compression_codec(), 0, "{compression:?}");
            let find = |timestamp| first_compressed_record_at_or_after(&batch, timestamp).unwrap();
            assert_eq!(find(base), Some((0, base)), "{compression:?}");
            assert_eq!(find(base + 5), Some((1, base + 10)), "{compression:?}");
            assert_eq!(find(base + 20), Some((2, base + 20)), "{compression:?}");
            assert_eq!(find(base + 21), None, "{compression:?}");
        }
    }

    #[test]
    fn every_codec_round_trips_and_stops_at_the_bound() {
        use std::io::Write;
        let records = vec![7u8; 100_000];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&records).unwrap();
        let gzip = gzip.finish().unwrap();
        let zstd = zstd::encode_all(&records[..], 1).unwrap();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&records).unwrap();
        for (compression, bytes) in [
            (Compression::Gzip, gzip),
            (Compression::Zstd, zstd),
            (Compression::Snappy, raw_snappy),
        ] {
            let out = decompress_bounded(&mut Bytes::from(bytes), compression).unwrap();
            assert_eq!(&out[..], &records[..], "{compression:?}");
        }
        // A zstd stream of zeros past the bound is refused, not decompressed whole.
        let bomb = zstd::encode_all(&vec![0u8; DECOMPRESSED_BYTES_MAX + 1][..], 19).unwrap();
        assert!(decompress_bounded(&mut Bytes::from(bomb), Compression::Zstd).is_err());
        // A raw snappy header announcing 2^31 - 1 bytes is refused before allocating.
        let announced = [0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
        assert!(decompress_bounded(&mut Bytes::copy_from_slice(&announced), Compression::Snappy)
            .is_err());
    }

    /// `fuzz/fuzz_targets/batch.rs` ran out of memory (2 GiB) on this input: a snappy batch
    /// whose records, once decompressed, were turned into one allocation each by the codec's
    /// decoder. The lookup now walks them in place; each batch of the input is searched.
    #[test]
    fn many_tiny_records_in_a_compressed_batch_are_walked_in_place() {
        let input = include_bytes!(
            "../../fuzz/regressions/batch/snappy-of-many-tiny-records-materialized-by-a-timestamp-lookup"
        );
        let mut rest = &input[..];
        let mut searched = 0;
        while let Some(header) = fjord_storage::batch::BatchHeader::view(rest) {
            let size = (header.size() as usize).min(rest.len());
            if header.compression_codec() != 0 {
                let _ = first_compressed_record_at_or_after(rest, header.base_timestamp.get());
                searched += 1;
            }
            if size == 0 {
                break;
            }
            rest = &rest[size..];
        }
        assert!(searched > 0, "the input holds a compressed batch");
    }
}
