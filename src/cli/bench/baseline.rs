//! `fjord bench baseline`: what this machine does without a broker, measured in the same
//! run as the broker rows so they can be read as ratios: a loopback TCP stream, sequential
//! file writes through Fjord's file layer (first pass, page cache, fdatasync per chunk), the
//! stream written into a file (the least a produce does) and a cached file sent to the stream
//! with sendfile and copied (the least a consume does).

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
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

pub(super) fn run(args: BaselineArgs) -> Result<(), CliError> {
    if args.chunk_bytes == 0 || args.chunk_bytes > 64 << 20 || args.bytes == 0 {
        return Err(CliError::usage(
            "--chunk-bytes must be between 1 and 64 MiB and --bytes at least 1",
        ));
    }
    // Loopback TCP: one stream, large writes, a reader that only counts.
    let total = args.bytes;
    let chunk = vec![0x5au8; args.chunk_bytes];
    let send_chunks = |stream: &mut TcpStream| -> std::io::Result<()> {
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            sent += n as u64;
        }
        Ok(())
    };
    let loopback = loopback_stream("loopback", total, send_chunks, |_| Ok(()))?;

    // Sequential file writes through Fjord's file layer, without and with fdatasync per chunk.
    // Chunks larger than 256 KiB (the default is 1 MiB) go through io_uring; smaller ones may
    // run inline, as the log's appends do (storage/src/io/inline.rs).
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("fjord-baseline-{}", std::process::id()));
    // The file goes however the baseline ends, an error included.
    let _remove = RemoveOnDrop(path.clone());
    let write = |sync: bool| -> Result<f64, CliError> {
        fjord_storage::io::block_on(async {
            let file = fjord_storage::io::File::open_rw(&path, true)
                .await
                .map_err(|e| CliError::failure(e.to_string()))?;
            file.set_len(0).map_err(|e| CliError::failure(e.to_string()))?;
            let started = Instant::now();
            let mut position = 0u64;
            let mut buf = vec![0x5au8; args.chunk_bytes];
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
    };
    // The first pass fills page-cache pages the machine may not have used for a while; on a
    // VM that returns free memory to its host (free page reporting), each of those costs a
    // host fault, several times the copy itself. It is reported apart: a broker that keeps
    // taking in new data pays it. The second pass, into the pages the first one just freed,
    // is the file write baseline.
    let file_write_first = write(false)?;
    let file_write = write(false)?;
    let file_sync = write(true)?;
    let _ = std::fs::remove_file(&path);

    // The least a broker's produce does with each byte: the same stream, with the reader
    // writing every chunk it reads at the next position of a file (plain pwrite, into the
    // pages the passes above just freed), and nothing else (no request parsing, no CRC).
    let into = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    let mut position = 0u64;
    let into_file = loopback_stream("loopback into a file", total, send_chunks, move |bytes| {
        use std::os::unix::fs::FileExt;
        into.write_all_at(bytes, position)?;
        position += bytes.len() as u64;
        Ok(())
    })?;
    // The least a consume from the page cache does: that file, now cached, sent to the
    // stream with sendfile (no copy on the sending side), to a reader that only counts.
    let from = std::fs::File::open(&path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", path.display())))?;
    // Written back first, so the flusher does not share the measured seconds.
    from.sync_data()
        .map_err(|e| CliError::failure(format!("cannot sync {}: {e}", path.display())))?;
    let chunk_bytes = args.chunk_bytes;
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
    drop(from);
    if args.json {
        println!(
            "{{\"mode\":\"baseline\",\"bytes\":{total},\"chunk_bytes\":{},\"loopback_bytes_per_sec\":{loopback:.0},\"file_write_first_bytes_per_sec\":{file_write_first:.0},\"file_write_bytes_per_sec\":{file_write:.0},\"file_write_fdatasync_bytes_per_sec\":{file_sync:.0},\"loopback_into_file_bytes_per_sec\":{into_file:.0},\"file_to_loopback_bytes_per_sec\":{from_file:.0},\"file_copied_to_loopback_bytes_per_sec\":{copied_file:.0}}}",
            args.chunk_bytes
        );
    } else {
        println!("baseline, {} MiB in {} KiB chunks:", total >> 20, args.chunk_bytes >> 10);
        println!("  loopback TCP stream:          {:>8.1} MB/s", loopback / 1e6);
        println!("  loopback into a file:         {:>8.1} MB/s", into_file / 1e6);
        println!("  cached file to loopback:      {:>8.1} MB/s (sendfile)", from_file / 1e6);
        println!("  the same, copied:             {:>8.1} MB/s (pread + write)", copied_file / 1e6);
        println!("  file write, first pass:       {:>8.1} MB/s", file_write_first / 1e6);
        println!("  file write (page cache):      {:>8.1} MB/s", file_write / 1e6);
        println!("  file write + fdatasync/chunk: {:>8.1} MB/s", file_sync / 1e6);
    }
    Ok(())
}
