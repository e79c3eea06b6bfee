//! edgecam over TCP: the server side of the core [`Transport`] trait on tokio sockets (byte
//! streams, plain or TLS on the same port; the server decides each connection's protocol and
//! framing);
//! [`FrameStream`], the client side of one legacy connection (commands out, frames in); and
//! [`http::HttpStream`], the client side of an HTTP connection to any MJPEG server.
//!
//! Nothing here knows the session rules; it moves bytes, with the legacy wire format from
//! `edgecam_core::codec` and the MJPEG reader from `edgecam_core::http::reader`.

pub mod http;
pub mod tls;

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use edgecam_core::codec::FrameDecoder;
use edgecam_core::transport::{
    ByteSink, ByteSource, Connection, Incoming, Transport, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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
pub struct TcpTransport {
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl TcpTransport {
    pub async fn bind(addr: &str) -> Result<Self, TransportError> {
        let bind_error = |source| TransportError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(TcpTransport {
            listener,
            local,
            tls: None,
        })
    }

    /// Serves TLS too, on the same port: a connection whose first byte is
    /// [`TLS_HANDSHAKE`] gets a TLS handshake; any other stays plain (legacy, HTTP).
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.local
    }
}

/// The first byte of a TLS connection: a handshake record's content type. No legacy command
/// and no HTTP method starts with it.
pub const TLS_HANDSHAKE: u8 = 0x16;

#[async_trait]
impl Transport for TcpTransport {
    type Incoming = TcpIncoming;

    async fn accept(&self) -> Result<TcpIncoming, TransportError> {
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
        Ok(TcpIncoming {
            stream,
            // A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; access rules are
            // written for a.b.c.d.
            ip: peer.ip().to_canonical(),
            peer: peer.to_string(),
            tls: self.tls.clone(),
        })
    }

    fn local_addr(&self) -> String {
        self.local.to_string()
    }
}

/// An accepted TCP connection, not yet read from.
pub struct TcpIncoming {
    stream: TcpStream,
    peer: String,
    ip: IpAddr,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TcpIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpIncoming")
            .field("peer", &self.peer)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[async_trait]
impl Incoming for TcpIncoming {
    type Reader = TcpByteSource;
    type Writer = TcpByteSink;

    fn peer(&self) -> &str {
        &self.peer
    }

    fn ip(&self) -> Option<IpAddr> {
        Some(self.ip)
    }

    /// Plain at once without TLS; with TLS, waits for the peer's first byte and shakes hands
    /// when it opens a TLS handshake.
    async fn establish(self) -> Result<Connection<TcpByteSource, TcpByteSink>, TransportError> {
        let TcpIncoming {
            stream, peer, tls, ..
        } = self;
        let Some(acceptor) = tls else {
            return Ok(plain(stream, peer));
        };
        let mut first = [0u8; 1];
        let peeked = stream
            .peek(&mut first)
            .await
            .map_err(|source| TransportError::Read {
                peer: peer.clone(),
                source,
            })?;
        if peeked == 0 || first[0] != TLS_HANDSHAKE {
            return Ok(plain(stream, peer));
        }
        let tls = acceptor
            .accept(stream)
            .await
            .map_err(|source| TransportError::Handshake {
                peer: peer.clone(),
                source,
            })?;
        let (read, write) = tokio::io::split(tls);
        Ok(Connection {
            reader: TcpByteSource {
                read: ReadHalf::Tls(read),
                peer: peer.clone(),
            },
            writer: TcpByteSink {
                write: WriteHalf::Tls(write),
                peer: peer.clone(),
            },
            peer,
            secure: true,
        })
    }
}

fn plain(stream: TcpStream, peer: String) -> Connection<TcpByteSource, TcpByteSink> {
    let (read, write) = stream.into_split();
    Connection {
        reader: TcpByteSource {
            read: ReadHalf::Plain(read),
            peer: peer.clone(),
        },
        writer: TcpByteSink {
            write: WriteHalf::Plain(write),
            peer: peer.clone(),
        },
        peer,
        secure: false,
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

/// The receiving half of a plain or TLS connection.
#[derive(Debug)]
enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The sending half of a plain or TLS connection.
#[derive(Debug)]
enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

#[derive(Debug)]
pub struct TcpByteSource {
    read: ReadHalf,
    peer: String,
}

#[async_trait]
impl ByteSource for TcpByteSource {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        let read = match &mut self.read {
            ReadHalf::Plain(read) => read.read(buf).await,
            ReadHalf::Tls(read) => read.read(buf).await,
        };
        read.map_err(|source| TransportError::Read {
            peer: self.peer.clone(),
            source,
        })
    }
}

#[derive(Debug)]
pub struct TcpByteSink {
    write: WriteHalf,
    peer: String,
}

#[async_trait]
impl ByteSink for TcpByteSink {
    async fn write_all(&mut self, bufs: &[&[u8]]) -> Result<(), TransportError> {
        let written = match &mut self.write {
            WriteHalf::Plain(write) => write_all_vectored(write, bufs).await,
            // TLS holds records back until flushed.
            WriteHalf::Tls(write) => match write_all_vectored(write, bufs).await {
                Ok(()) => write.flush().await,
                Err(e) => Err(e),
            },
        };
        written.map_err(|source| TransportError::Write {
            peer: self.peer.clone(),
            source,
        })
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        let closed = match &mut self.write {
            WriteHalf::Plain(write) => write.shutdown().await,
            WriteHalf::Tls(write) => write.shutdown().await,
        };
        closed.map_err(|source| TransportError::Write {
            peer: self.peer.clone(),
            source,
        })
    }
}

/// Writes every buffer, in order, with as few vectored writes as the stream allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    write: &mut W,
    bufs: &[&[u8]],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = write.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
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
