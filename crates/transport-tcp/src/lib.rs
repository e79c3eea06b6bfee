//! edgecam over plain TCP: the server side of the core [`Transport`] trait on tokio sockets
//! (byte streams; the server decides each connection's protocol and framing);
//! [`FrameStream`], the client side of one legacy connection (commands out, frames in); and
//! [`http::HttpStream`], the client side of an HTTP connection to any MJPEG server.
//!
//! Nothing here knows the session rules; it moves bytes, with the legacy wire format from
//! `edgecam_core::codec` and the MJPEG reader from `edgecam_core::http::reader`.

pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use edgecam_core::codec::FrameDecoder;
use edgecam_core::transport::{ByteSink, ByteSource, Connection, Transport, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The default TCP port of the legacy protocol.
pub const DEFAULT_PORT: u16 = 6810;

/// `addr` with the legacy default port added when it names none: `board` becomes
/// `board:6810`, `::1` becomes `[::1]:6810`; anything else is returned as given.
pub fn with_default_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok() {
        addr.to_owned()
    } else if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{addr}]:{DEFAULT_PORT}")
    } else if !addr.contains(':') || (addr.starts_with('[') && addr.ends_with(']')) {
        format!("{addr}:{DEFAULT_PORT}")
    } else {
        addr.to_owned()
    }
}

/// A listening TCP socket handing out edgecam connections.
#[derive(Debug)]
pub struct TcpTransport {
    listener: TcpListener,
    local: SocketAddr,
}

impl TcpTransport {
    pub async fn bind(addr: &str) -> Result<Self, TransportError> {
        let bind_error = |source| TransportError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(TcpTransport { listener, local })
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.local
    }
}

#[async_trait]
impl Transport for TcpTransport {
    type Reader = TcpByteSource;
    type Writer = TcpByteSink;

    async fn accept(&self) -> Result<Connection<Self::Reader, Self::Writer>, TransportError> {
        let (stream, peer) =
            self.listener
                .accept()
                .await
                .map_err(|source| TransportError::Accept {
                    addr: self.local.to_string(),
                    source,
                })?;
        // Frames are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        limit_unsent(&stream);
        let (read, write) = stream.into_split();
        let peer = peer.to_string();
        Ok(Connection {
            reader: TcpByteSource {
                read,
                peer: peer.clone(),
            },
            writer: TcpByteSink {
                write,
                peer: peer.clone(),
            },
            peer,
        })
    }

    fn local_addr(&self) -> String {
        self.local.to_string()
    }
}

/// At most this many bytes wait unsent in the kernel for one client (Linux).
pub const MAX_UNSENT: u32 = 16 * 1024;

/// Keeps a slow client's frames out of the kernel: with TCP_NOTSENT_LOWAT the socket takes
/// more bytes only once fewer than [`MAX_UNSENT`] wait unsent, so a client that is behind
/// gets the newest frame next instead of megabytes of old ones, and a client that stopped
/// reading blocks the next frame at once and is dropped after the send timeout.
fn limit_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(MAX_UNSENT) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

#[derive(Debug)]
pub struct TcpByteSource {
    read: OwnedReadHalf,
    peer: String,
}

#[async_trait]
impl ByteSource for TcpByteSource {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        self.read
            .read(buf)
            .await
            .map_err(|source| TransportError::Read {
                peer: self.peer.clone(),
                source,
            })
    }
}

#[derive(Debug)]
pub struct TcpByteSink {
    write: OwnedWriteHalf,
    peer: String,
}

#[async_trait]
impl ByteSink for TcpByteSink {
    async fn write_all(&mut self, bufs: &[&[u8]]) -> Result<(), TransportError> {
        let write_error = |source| TransportError::Write {
            peer: self.peer.clone(),
            source,
        };
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut slices = &mut slices[..];
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            let n = self
                .write
                .write_vectored(slices)
                .await
                .map_err(write_error)?;
            if n == 0 {
                return Err(write_error(std::io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.write
            .shutdown()
            .await
            .map_err(|source| TransportError::Write {
                peer: self.peer.clone(),
                source,
            })
    }
}

/// The client side of one connection: commands out, frames in.
#[derive(Debug)]
pub struct FrameStream {
    stream: TcpStream,
    peer: String,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameStream {
    /// Connects to `addr` (`host:port`), giving up after `timeout`.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        decoder: FrameDecoder,
    ) -> Result<Self, TransportError> {
        let connect_error = |source| TransportError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(result) => result.map_err(connect_error)?,
            Err(_) => {
                return Err(TransportError::Timeout {
                    peer: addr.to_owned(),
                    seconds: timeout.as_secs_f64(),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(FrameStream {
            stream,
            peer: addr.to_owned(),
            buf: BytesMut::with_capacity(256 * 1024),
            decoder,
        })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Writes raw command bytes in one write.
    pub async fn send(&mut self, commands: &[u8]) -> Result<(), TransportError> {
        self.stream
            .write_all(commands)
            .await
            .map_err(|source| TransportError::Write {
                peer: self.peer.clone(),
                source,
            })
    }

    /// The next frame's payload; `None` when the server closed the connection between frames.
    /// Cancel-safe: bytes read before the future is dropped stay buffered.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            let decoded =
                self.decoder
                    .decode(&mut self.buf)
                    .map_err(|source| TransportError::Protocol {
                        peer: self.peer.clone(),
                        source,
                    })?;
            if let Some(frame) = decoded {
                return Ok(Some(frame));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| TransportError::Read {
                    peer: self.peer.clone(),
                    source,
                })?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(TransportError::Truncated {
                        peer: self.peer.clone(),
                    })
                };
            }
        }
    }

    /// Like [`FrameStream::next_frame`], but `Timeout` after `timeout`.
    pub async fn next_frame_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Bytes>, TransportError> {
        tokio::time::timeout(timeout, self.next_frame())
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Timeout {
                    peer: self.peer.clone(),
                    seconds: timeout.as_secs_f64(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_added_only_where_none_is_named() {
        assert_eq!(with_default_port("board"), "board:6810");
        assert_eq!(with_default_port("192.168.1.20"), "192.168.1.20:6810");
        assert_eq!(with_default_port("::1"), "[::1]:6810");
        assert_eq!(with_default_port("[::1]"), "[::1]:6810");
        assert_eq!(with_default_port("board:7000"), "board:7000");
        assert_eq!(with_default_port("[::1]:7000"), "[::1]:7000");
        assert_eq!(with_default_port("127.0.0.1:1"), "127.0.0.1:1");
    }
}
