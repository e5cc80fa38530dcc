//! `fjord bench baseline`: what this machine does without a broker, measured in the same
//! run as the broker rows so they can be read as ratios: a loopback TCP stream, sequential
//! file writes through Fjord's file layer (first pass, page cache, fdatasync per chunk), the
//! stream written into a file (the least a produce does) and a cached file sent to the stream
//! with sendfile and copied (the least a consume does).

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::loopback::{copy_file, loopback_stream, send_file};
use crate::cli::error::CliError;

#[derive(Debug, Clone, clap::Args)]
pub(super) struct BaselineArgs {
    /// Bytes to stream and to write.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Bytes per write (and per fdatasync in the synced run).
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Directory for the file test [default: the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Removes a file when dropped (the baseline's scratch file, whichever way it ends).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Largest `--chunk-bytes`: one write of it is one buffer in memory.
const CHUNK_BYTES_MAX: usize = 64 << 20;

/// Rates measured, bytes per second.
struct Rates {
    loopback: f64,
    file_write_first: f64,
    file_write: f64,
    file_sync: f64,
    into_file: f64,
    from_file: f64,
    copied_file: f64,
}

pub(super) fn run(args: BaselineArgs) -> Result<(), CliError> {
    if args.chunk_bytes == 0 || args.chunk_bytes > CHUNK_BYTES_MAX || args.bytes == 0 {
        return Err(CliError::usage(
            "--chunk-bytes must be between 1 and 64 MiB and --bytes at least 1",
        ));
    }
    // Loopback TCP: one stream, large writes, a reader that only counts.
    let total = args.bytes;
    let chunk = vec![0x5au8; args.chunk_bytes];
    let send_chunks = |stream: &mut TcpStream| send_chunks(stream, &chunk, total);
    let loopback = loopback_stream("loopback", total, send_chunks, |_| Ok(()))?;

    // Sequential file writes through Fjord's file layer, without and with fdatasync per chunk.
    // Chunks larger than 256 KiB (the default is 1 MiB) go through io_uring; smaller ones may
    // run inline, as the log's appends do (io/src/inline.rs).
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("fjord-baseline-{}", std::process::id()));
    // The file goes however the baseline ends, an error included.
    let _remove = RemoveOnDrop(path.clone());
    // The first pass fills page-cache pages the machine may not have used for a while; on a
    // VM that returns free memory to its host (free page reporting), each of those costs a
    // host fault, several times the copy itself. It is reported apart: a broker that keeps
    // taking in new data pays it. The second pass, into the pages the first one just freed,
    // is the file write baseline.
    let file_write_first = write_file(&path, total, args.chunk_bytes, false)?;
    let file_write = write_file(&path, total, args.chunk_bytes, false)?;
    let file_sync = write_file(&path, total, args.chunk_bytes, true)?;
    let _ = std::fs::remove_file(&path);

    let into_file = loopback_into_file(&path, total, send_chunks)?;
    let (from_file, copied_file) = file_to_loopback(&path, total, args.chunk_bytes)?;
    let rates = Rates {
        loopback,
        file_write_first,
        file_write,
        file_sync,
        into_file,
        from_file,
        copied_file,
    };
    print_rates(&rates, total, args.chunk_bytes, args.json);
    Ok(())
}

/// Writes `total` bytes of `chunk` into `stream`.
fn send_chunks(stream: &mut TcpStream, chunk: &[u8], total: u64) -> std::io::Result<()> {
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    Ok(())
}

/// Writes `total` bytes at `path` from its start in chunks of `chunk_bytes` through
/// Fjord's file layer (fdatasync after each chunk if `sync`); bytes per second.
fn write_file(path: &Path, total: u64, chunk_bytes: usize, sync: bool) -> Result<f64, CliError> {
    fjord_storage::io::block_on(async {
        let file = fjord_storage::io::File::open_rw(path, true)
            .await
            .map_err(|e| CliError::failure(e.to_string()))?;
        file.set_len(0).map_err(|e| CliError::failure(e.to_string()))?;
        let started = Instant::now();
        let mut position = 0u64;
        let mut buf = vec![0x5au8; chunk_bytes];
        while position < total {
            let n = (total - position).min(buf.len() as u64) as usize;
            buf.truncate(n);
            let (result, back) = file.write_all_at(buf, position).await;
            buf = back;
            result.map_err(|e| CliError::failure(e.to_string()))?;
            if sync {
                file.sync_data().await.map_err(|e| CliError::failure(e.to_string()))?;
            }
            position += n as u64;
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        file.close().await.map_err(|e| CliError::failure(e.to_string()))?;
        Ok(rate)
    })
}

/// The least a broker's produce does with each byte: the stream `send` writes, with the
/// reader writing every chunk it reads at the next position of the file at `path` (plain
/// pwrite, into the pages the file passes just freed), and nothing else (no request
/// parsing, no CRC). Bytes per second.
fn loopback_into_file(
    path: &Path,
    total: u64,
    send: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
) -> Result<f64, CliError> {
    let into = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    let mut position = 0u64;
    loopback_stream("loopback into a file", total, send, move |bytes| {
        use std::os::unix::fs::FileExt;
        into.write_all_at(bytes, position)?;
        position += bytes.len() as u64;
        Ok(())
    })
}

/// The least a consume from the page cache does: the file at `path`, now cached, sent to
/// the stream with sendfile (no copy on the sending side), to a reader that only counts;
/// then the same through user space. Bytes per second, (sendfile, copied).
fn file_to_loopback(path: &Path, total: u64, chunk_bytes: usize) -> Result<(f64, f64), CliError> {
    let from = std::fs::File::open(path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    // Written back first, so the flusher does not share the measured seconds.
    from.sync_data()
        .map_err(|e| CliError::failure(format!("cannot sync {}: {e}", path.display())))?;
    let from_file = loopback_stream(
        "file to loopback",
        total,
        |stream| send_file(stream, &from, total, chunk_bytes),
        |_| Ok(()),
    )?;
    // The same through user space (pread into a buffer, then write): on loopback the reader
    // copies either way, and page-cache pages reach it as one socket fragment per page, so
    // this copy can outrun sendfile; Fjord splices (no copy on its side), as it must for a
    // network card. Reported so the consume rows can be read against both.
    let copied_file = loopback_stream(
        "file copied to loopback",
        total,
        |stream| copy_file(stream, &from, total, chunk_bytes),
        |_| Ok(()),
    )?;
    Ok((from_file, copied_file))
}

/// Prints the rates for people, or as one JSON object.
fn print_rates(rates: &Rates, total: u64, chunk_bytes: usize, json: bool) {
    let Rates {
        loopback,
        file_write_first,
        file_write,
        file_sync,
        into_file,
        from_file,
        copied_file,
    } = rates;
    if json {
        println!(
            "{{\"mode\":\"baseline\",\"bytes\":{total},\"chunk_bytes\":{chunk_bytes},\"loopback_bytes_per_sec\":{loopback:.0},\"file_write_first_bytes_per_sec\":{file_write_first:.0},\"file_write_bytes_per_sec\":{file_write:.0},\"file_write_fdatasync_bytes_per_sec\":{file_sync:.0},\"loopback_into_file_bytes_per_sec\":{into_file:.0},\"file_to_loopback_bytes_per_sec\":{from_file:.0},\"file_copied_to_loopback_bytes_per_sec\":{copied_file:.0}}}",
        );
    } else {
        println!("baseline, {} MiB in {} KiB chunks:", total >> 20, chunk_bytes >> 10);
        println!("  loopback TCP stream:          {:>8.1} MB/s", loopback / 1e6);
        println!("  loopback into a file:         {:>8.1} MB/s", into_file / 1e6);
        println!("  cached file to loopback:      {:>8.1} MB/s (sendfile)", from_file / 1e6);
        println!("  the same, copied:             {:>8.1} MB/s (pread + write)", copied_file / 1e6);
        println!("  file write, first pass:       {:>8.1} MB/s", file_write_first / 1e6);
        println!("  file write (page cache):      {:>8.1} MB/s", file_write / 1e6);
        println!("  file write + fdatasync/chunk: {:>8.1} MB/s", file_sync / 1e6);
    }
}
