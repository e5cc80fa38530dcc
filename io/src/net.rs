//! TCP sockets on io_uring: a listener and a stream, for the broker's connections and for
//! tests. Like files, sockets are reached only through this module.
//!
//! Two blocking calls on plain std sockets serve the bench's load generator, which runs
//! outside any runtime: [`send_file`] (`sendfile(2)`, file to socket in the kernel) and
//! [`recv_into_spare`] (`recv(2)` straight into a `BytesMut`'s spare capacity, not zeroed
//! first).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// A `sockaddr_storage` for `address`, and its length.
fn socket_address(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
            };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
            };
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

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

    /// Stops listening (`shutdown(SHUT_RD)` of the listening socket): connections waiting to
    /// be accepted are reset, an accept in flight fails, and the socket leaves its
    /// SO_REUSEPORT group, so new connections go to the other listeners of the port.
    pub fn stop_listening(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on a descriptor this listener owns.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::shutdown(self.inner.as_raw_fd(), libc::SHUT_RD) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (inner, peer) = self.inner.accept().await?;
        Ok((Stream { inner }, peer))
    }
}

/// Binds and listens on `address` with SO_REUSEADDR and SO_REUSEPORT, outside any runtime
/// (a shard thread wraps it with `Listener::from_std`).
pub fn bind_reuseport_std(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    {
        let domain = if address.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        // SAFETY: plain socket(2); the descriptor is owned by `socket` from here on.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        #[allow(unsafe_code)]
        let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            set_socket_option(&socket, option, 1)?;
        }
        let (storage, len) = socket_address(address);
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::bind(socket.as_raw_fd(), (&storage as *const libc::sockaddr_storage).cast(), len)
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return Err(io::Error::new(error.kind(), format!("bind {address}: {error}")));
        }
        // SAFETY: listen on a bound socket we own.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::listen(socket.as_raw_fd(), 1024) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::net::TcpListener::from(socket))
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

    /// A stream of this thread's runtime for a connected socket, for instance one that
    /// another thread accepted and handed over (`into_std`).
    pub fn from_std(stream: std::net::TcpStream) -> Stream {
        Stream { inner: tokio_uring::net::TcpStream::from_std(stream) }
    }

    /// The socket as a plain std stream, to hand it to another thread's runtime. The std
    /// stream holds a duplicate of the descriptor (tokio-uring gives its own up only by
    /// closing it); both name the same socket, so its options and flags stay as they are.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(std::net::TcpStream::from(super::duplicate(self.inner.as_raw_fd())?))
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

    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown(std::net::Shutdown::Both)
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// Sends up to `len` bytes of `file` from byte `position` into `socket` with one
/// `sendfile(2)` (blocking, retried when interrupted), without copying them through user
/// space. Returns the bytes sent, fewer than `len` when the socket took fewer; 0 when
/// `position` is at or past the end of the file. The file's own position does not move.
pub fn send_file(
    socket: &std::net::TcpStream,
    file: &std::fs::File,
    position: u64,
    len: usize,
) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(position).map_err(|error| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("position {position}: {error}"))
    })?;
    loop {
        // SAFETY: both descriptors are borrowed, so open, for the call; the kernel writes
        // only `offset`, a live local.
        #[allow(unsafe_code)]
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Receives up to `max_bytes` from `socket` with one `recv(2)` (blocking, retried when
/// interrupted) into the spare capacity of `buf`, after its initialized bytes, without
/// zeroing that memory first, and grows `buf` by the bytes received. Returns that count; 0
/// means the peer closed. Fails with `InvalidInput` when there is nothing to receive into:
/// no spare capacity (the caller reserves first, within its own limits) or `max_bytes` 0.
pub fn recv_into_spare(
    socket: &std::net::TcpStream,
    buf: &mut bytes::BytesMut,
    max_bytes: usize,
) -> io::Result<usize> {
    use bytes::BufMut;
    let spare = buf.spare_capacity_mut();
    let want = max_bytes.min(spare.len());
    if want == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "receive buffer has no room"));
    }
    let got = loop {
        // SAFETY: `recv` writes at most `want` bytes, which `spare` holds: allocated and
        // unaliased (borrowed mutably from `buf`) for the call.
        #[allow(unsafe_code)]
        let got = unsafe { libc::recv(socket.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
        if got >= 0 {
            break got as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    assert!(got <= want, "recv returned {got} of at most {want} bytes");
    // SAFETY: the kernel initialized exactly the first `got` bytes of the spare capacity.
    #[allow(unsafe_code)]
    unsafe {
        buf.advance_mut(got)
    };
    Ok(got)
}

/// Sets a `SOL_SOCKET` option of integer value (`SO_REUSEADDR`, `SO_SNDBUF`, ...) on a socket
/// the caller keeps open.
pub fn set_socket_option(
    socket: &impl AsRawFd,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on an open descriptor, with a pointer to a live c_int and its size.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A connected pair of blocking std sockets on 127.0.0.1.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn send_file_sends_the_region_and_nothing_past_the_end() {
        let path = std::env::temp_dir().join(format!("fjord-send-file-{}", std::process::id()));
        let content: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (sender, mut receiver) = pair();
        let mut position = 1_000u64;
        while position < 61_000 {
            let want = (61_000 - position).min(7_000) as usize;
            let sent = send_file(&sender, &file, position, want).unwrap();
            assert!(sent > 0 && sent <= want, "{sent} of {want}");
            position += sent as u64;
        }
        assert_eq!(send_file(&sender, &file, content.len() as u64, 10).unwrap(), 0, "at the end");
        assert_eq!(send_file(&sender, &file, content.len() as u64 + 5, 10).unwrap(), 0, "past");
        let error = send_file(&sender, &file, u64::MAX, 10).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        drop(sender);
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).unwrap();
        assert!(got == content[1_000..61_000], "the region arrives as in the file");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn recv_into_spare_appends_at_most_what_is_asked() {
        let (mut sender, receiver) = pair();
        sender.write_all(b"hello, world").unwrap();
        let mut buf = bytes::BytesMut::with_capacity(64);
        buf.extend_from_slice(b">");
        // A short read is allowed, so loop until the first five bytes are in.
        while buf.len() < 6 {
            let missing = 6 - buf.len();
            let got = recv_into_spare(&receiver, &mut buf, missing).unwrap();
            assert!(got > 0 && got <= missing, "{got} of at most {missing}");
        }
        assert_eq!(&buf[..], b">hello", "only what was asked, after what was there");
        drop(sender);
        while recv_into_spare(&receiver, &mut buf, 64).unwrap() > 0 {}
        assert_eq!(&buf[..], b">hello, world", "the rest, then 0 once the peer closed");
        let mut full = bytes::BytesMut::new();
        let error = recv_into_spare(&receiver, &mut full, 1).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    }
}
