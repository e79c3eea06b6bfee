//! Which protocol a connection speaks, and how each puts a frame on its wire.
//!
//! Every connection arrives on the same port. Its first byte decides: an HTTP request starts
//! with a method, an upper-case token (`GET`, `HEAD`, `OPTIONS`; `POST` and the like are
//! answered `405`), and no upper-case letter is a legacy command (a legacy client's first byte
//! is a command digit or `q`), so the old scripts keep working beside browsers and players. Framing belongs to the protocol, not to the transport: the legacy
//! length prefix, or a part of a multipart stream, or a snapshot's response head.

use crate::codec::{CodecError, frame_header};
use crate::frame::Frame;
use crate::http::response;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Python scripts' protocol (`LEGACY-PROTOCOL.md`).
    Legacy,
    Http,
}

impl Protocol {
    /// The protocol a connection whose first byte is `first` speaks; `http` is whether HTTP is
    /// served at all (`--http off`).
    pub fn detect(first: u8, http: bool) -> Protocol {
        match first {
            b'A'..=b'Z' if http => Protocol::Http,
            _ => Protocol::Legacy,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Legacy => "legacy",
            Protocol::Http => "http",
        }
    }
}

/// How frames go out on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A 4-byte big-endian length, then the JPEG.
    Legacy,
    /// A part of a `multipart/x-mixed-replace` stream; with `advance_headers` the part's
    /// headers went out with the previous one (see `http::response::ADVANCE_PART_TAIL`).
    Multipart { advance_headers: bool },
    /// The whole response to a snapshot request; `head_only` for `HEAD`.
    Snapshot { head_only: bool },
}

/// One frame, framed: write `head`, then the JPEG when `body`, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub head: Head,
    pub body: bool,
    pub tail: &'static [u8],
}

/// What goes before a frame: the legacy length prefix stays on the stack (no allocation per
/// frame and client on the protocol the board's old clients use), HTTP heads are text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Prefix([u8; crate::codec::FRAME_HEADER_LEN]),
    Text(Vec<u8>),
}

impl Head {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Head::Prefix(prefix) => prefix,
            Head::Text(text) => text,
        }
    }
}

impl Framing {
    pub fn frame(self, frame: &Frame) -> Result<Framed, CodecError> {
        Ok(match self {
            Framing::Legacy => Framed {
                head: Head::Prefix(frame_header(frame.jpeg.len())?),
                body: true,
                tail: b"",
            },
            Framing::Multipart {
                advance_headers: false,
            } => Framed {
                head: Head::Text(response::part_head(frame)),
                body: true,
                tail: response::PART_TAIL,
            },
            Framing::Multipart {
                advance_headers: true,
            } => Framed {
                head: Head::Text(Vec::new()),
                body: true,
                tail: response::ADVANCE_PART_TAIL,
            },
            Framing::Snapshot { head_only } => Framed {
                head: Head::Text(response::snapshot_head(frame)),
                body: !head_only,
                tail: b"",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Command;

    #[test]
    fn no_legacy_command_is_taken_for_http() {
        for cmd in Command::ALL {
            assert_eq!(Protocol::detect(cmd.byte(), true), Protocol::Legacy);
        }
        for method in ["GET", "HEAD", "OPTIONS", "POST"] {
            assert_eq!(Protocol::detect(method.as_bytes()[0], true), Protocol::Http);
            assert_eq!(
                Protocol::detect(method.as_bytes()[0], false),
                Protocol::Legacy
            );
        }
    }
}
