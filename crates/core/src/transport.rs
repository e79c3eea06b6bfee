//! The [`Transport`] trait: what the server needs from a connection-oriented transport.
//!
//! A transport hands out byte streams and nothing more: which protocol a connection speaks,
//! and how frames are framed on it, is decided per connection by the server
//! ([`crate::protocol`]).

use std::io;

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

/// A listening endpoint that hands out connections.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    type Reader: ByteSource;
    type Writer: ByteSink;

    /// Waits for the next connection. Cancel-safe.
    async fn accept(&self) -> Result<Connection<Self::Reader, Self::Writer>, TransportError>;

    /// Where clients can reach this transport, for the startup line and logs.
    fn local_addr(&self) -> String;
}
