//! Streams over one loopback TCP connection for the baseline: a sender (plain writes,
//! `sendfile(2)` from a file, or pread + write) and a reader thread that hands each chunk to
//! a consumer, timed from before the connect to the last byte read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use crate::cli::error::CliError;

/// Streams `total` bytes over one loopback TCP connection: `send` writes them into the
/// connected stream, and a second thread hands each chunk it reads (up to 1 MiB) to `take`.
/// Bytes per second, from before the connect to the last byte taken; `what` names the case
/// in errors.
pub(super) fn loopback_stream(
    what: &str,
    total: u64,
    send: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
    mut take: impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static,
) -> Result<f64, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| CliError::failure(format!("{what}: bind: {e}")))?;
    let address = listener.local_addr().map_err(|e| CliError::failure(format!("{what}: {e}")))?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < total {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            take(&buf[..n])?;
            got += n as u64;
        }
        Ok(got)
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(address)
        .map_err(|e| CliError::failure(format!("{what}: connect: {e}")))?;
    let sent = send(&mut stream);
    drop(stream);
    // The reader's own failure (a full disk, say) explains a failed send, so it comes first.
    let got = reader
        .join()
        .map_err(|_| CliError::failure(format!("{what}: the reader panicked")))?
        .map_err(|e| CliError::failure(format!("{what}: read: {e}")))?;
    sent.map_err(|e| CliError::failure(format!("{what}: send: {e}")))?;
    if got < total {
        return Err(CliError::failure(format!("{what}: {got} of {total} bytes arrived")));
    }
    Ok(got as f64 / started.elapsed().as_secs_f64())
}

/// Sends the first `total` bytes of `file` into `stream` with `sendfile(2)`, at most
/// `chunk_bytes` per call.
// The bench client sends a batch file with `sendfile`, as a fast producer would.
pub(super) fn send_file(
    stream: &mut TcpStream,
    file: &std::fs::File,
    total: u64,
    chunk_bytes: usize,
) -> std::io::Result<()> {
    let mut position = 0u64;
    while position < total {
        let want = (total - position).min(chunk_bytes as u64) as usize;
        match fjord_storage::io::send_file(stream, file, position, want)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            sent => position += sent as u64,
        }
    }
    Ok(())
}

/// Sends the first `total` bytes of `file` into `stream` through a buffer of `chunk_bytes`
/// (pread, then write).
pub(super) fn copy_file(
    stream: &mut TcpStream,
    file: &std::fs::File,
    total: u64,
    chunk_bytes: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; chunk_bytes];
    let mut position = 0u64;
    while position < total {
        let want = (total - position).min(chunk_bytes as u64) as usize;
        file.read_exact_at(&mut buf[..want], position)?;
        stream.write_all(&buf[..want])?;
        position += want as u64;
    }
    Ok(())
}
