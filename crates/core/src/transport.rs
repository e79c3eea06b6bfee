//! The [`Transport`] trait: what the server needs from a connection-oriented transport.
//!
//! A transport hands out byte streams and nothing more: which protocol a connection speaks,
//! and how frames are framed on it, is decided per connection by the server
//! ([`crate::protocol`]). Accepting is two steps: [`Transport::accept`] hands out an
//! [`Incoming`] connection at once, whose peer the server can judge (access rules, limits)
//! before anything is read; [`Incoming::establish`] then runs the transport's handshake, if
//! it has one (TLS), in the connection's own task, so accepting never waits on one client.

use std::io;
use std::net::IpAddr;

use thiserror::Error;

use crate::codec::CodecError;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error(
        "cannot listen on {addr}; check that the address belongs to this machine and the port is free"
    )]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("accepting a connection on {addr} failed")]
    Accept {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("reading from {peer} failed")]
    Read {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("sending to {peer} failed")]
    Write {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot connect to {addr}; check that edgecam (or the legacy server) runs there and the port is open"
    )]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer} did not answer within {seconds:.1} s")]
    Timeout { peer: String, seconds: f64 },
    #[error("{peer} closed the connection in the middle of a frame")]
    Truncated { peer: String },
    #[error("the TLS handshake with {peer} failed")]
    Handshake {
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("{peer} broke the wire protocol")]
    Protocol {
        peer: String,
        #[source]
        source: CodecError,
    },
}

/// One accepted connection, split so that a peer's bytes can be read while a frame is being
/// sent.
#[derive(Debug)]
pub struct Connection<R, W> {
    pub reader: R,
    pub writer: W,
    /// The peer's address, for logs.
    pub peer: String,
    /// Whether the bytes travel encrypted (TLS).
    pub secure: bool,
}

/// The receiving half: bytes from the peer (legacy commands, or an HTTP request).
#[async_trait::async_trait]
pub trait ByteSource: Send + 'static {
    /// Reads some bytes into `buf`; `Ok(0)` means the peer closed its side. Cancel-safe: if
    /// the future is dropped before it completes, no bytes are lost.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError>;
}

/// The sending half: bytes to the peer.
#[async_trait::async_trait]
pub trait ByteSink: Send + 'static {
    /// Writes every buffer, in order, as one vectored write where the transport can (a frame's
    /// framing and its shared JPEG bytes go out without being copied together). Not
    /// cancel-safe: a frame cut off half-way leaves the stream out of step, so a caller that
    /// gives up must drop the sink.
    async fn write_all(&mut self, bufs: &[&[u8]]) -> Result<(), TransportError>;

    /// Flushes and closes the sending side; frames already handed over are delivered.
    async fn close(&mut self) -> Result<(), TransportError>;
}

/// A connection just accepted: its peer is known, nothing has been read from it.
#[async_trait::async_trait]
pub trait Incoming: Send + 'static {
    type Reader: ByteSource;
    type Writer: ByteSink;

    /// The peer's address, for logs.
    fn peer(&self) -> &str;

    /// The peer's IP address, for access rules and per-address limits; `None` where the
    /// transport's peers have none.
    fn ip(&self) -> Option<IpAddr>;

    /// Runs the transport's handshake, if it has one, and hands out the byte streams. It may
    /// wait on the peer for as long as the peer takes: the caller bounds it with a timeout.
    /// An error means the connection is unusable and is to be dropped.
    async fn establish(self) -> Result<Connection<Self::Reader, Self::Writer>, TransportError>;
}

/// A listening endpoint that hands out connections.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    type Incoming: Incoming;

    /// Waits for the next connection. Cancel-safe, and never waits on a connection's peer.
    async fn accept(&self) -> Result<Self::Incoming, TransportError>;

    /// Where clients can reach this transport, for the startup line and logs.
    fn local_addr(&self) -> String;
}
