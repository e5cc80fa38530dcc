//! TCP sockets on io_uring: a listener and a stream, for the broker's connections and for
//! tests. Like files, sockets are reached only through this module.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

/// Bytes of a read buffer handed to the kernel per receive when the caller has no better
/// idea: a typical Kafka request fits, and the buffer is reused.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A listening TCP socket.
pub struct Listener {
    inner: tokio_uring::net::TcpListener,
}

impl Listener {
    /// Binds `address` (with SO_REUSEADDR, as std does) and listens.
    pub fn bind(address: SocketAddr) -> io::Result<Listener> {
        let std_listener = std::net::TcpListener::bind(address)
            .map_err(|error| io::Error::new(error.kind(), format!("bind {address}: {error}")))?;
        Ok(Listener { inner: tokio_uring::net::TcpListener::from_std(std_listener) })
    }

    /// Wraps an already bound std listener (e.g. one bound with SO_REUSEPORT).
    pub fn from_std(listener: std::net::TcpListener) -> Listener {
        Listener { inner: tokio_uring::net::TcpListener::from_std(listener) }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (inner, peer) = self.inner.accept().await?;
        Ok((Stream { inner }, peer))
    }
}

/// A connected TCP stream.
pub struct Stream {
    inner: tokio_uring::net::TcpStream,
}

impl Stream {
    pub async fn connect(address: SocketAddr) -> io::Result<Stream> {
        let inner = tokio_uring::net::TcpStream::connect(address)
            .await
            .map_err(|error| io::Error::new(error.kind(), format!("connect {address}: {error}")))?;
        Ok(Stream { inner })
    }

    /// Receives into the spare capacity of `buf`, after its initialized bytes; 0 means the
    /// peer closed. The caller reserves capacity first (bounded by its own limits).
    pub async fn read<B: tokio_uring::buf::IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        let start = buf.bytes_init();
        assert!(start < buf.bytes_total(), "read into a full buffer");
        let slice = tokio_uring::buf::BoundedBuf::slice(buf, start..);
        let (result, slice) = self.inner.read(slice).await;
        (result, slice.into_inner())
    }

    /// Sends all of `buf`.
    pub async fn write_all<B: tokio_uring::buf::IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        self.inner.write_all(buf).await
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// Holds back partial frames until uncorked, so a response written in several pieces
    /// (header bytes, then spliced record bytes) leaves in full packets.
    pub fn set_cork(&self, cork: bool) -> io::Result<()> {
        let value: libc::c_int = i32::from(cork);
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown(std::net::Shutdown::Both)
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}
