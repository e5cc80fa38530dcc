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

/// The records of a batch, decompressed with `compression`, at most
/// `DECOMPRESSED_BYTES_MAX` bytes (the signature kafka-protocol's decoder takes).
pub(crate) fn decompress_bounded(
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
}
