//! The legacy wire format. Client to server: one ASCII byte per command, parsed byte by byte
//! (`30` is `3` then `0`), white space skipped. Server to client: frames only, each a 4-byte
//! big-endian length and that many bytes of JPEG.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Default cap on the length a peer may announce for one frame: 32 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 32 * 1024 * 1024;

/// Length of the big-endian frame-length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// A command a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `0`: send me one frame.
    Single,
    /// `1`: I received the single frame.
    Confirm,
    /// `3`: stream frames continuously.
    Stream,
    /// `q`: stop streaming.
    Stop,
    /// `2`: end the session (and, where the server allows it, stop the server).
    Shutdown,
}

impl Command {
    pub const ALL: [Command; 5] = [
        Command::Single,
        Command::Confirm,
        Command::Stream,
        Command::Stop,
        Command::Shutdown,
    ];

    pub fn from_byte(byte: u8) -> Option<Command> {
        Some(match byte {
            b'0' => Command::Single,
            b'1' => Command::Confirm,
            b'3' => Command::Stream,
            b'q' => Command::Stop,
            b'2' => Command::Shutdown,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        match self {
            Command::Single => b'0',
            Command::Confirm => b'1',
            Command::Stream => b'3',
            Command::Stop => b'q',
            Command::Shutdown => b'2',
        }
    }
}

/// One byte of client input, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    /// A byte that is neither a command nor ASCII white space.
    Unknown(u8),
}

/// The inputs in `bytes`, in order; `\r`, `\n`, space and tab are skipped.
pub fn parse_commands(bytes: &[u8]) -> impl Iterator<Item = Input> + '_ {
    bytes
        .iter()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map(|&b| Command::from_byte(b).map_or(Input::Unknown(b), Input::Command))
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("the server announced a frame of {len} bytes, over the {max}-byte limit; {}", advice(*len))]
    FrameTooLarge { len: u32, max: u32 },
    #[error("a frame of {len} bytes does not fit the 4-byte length prefix (at most 4 GiB - 1)")]
    FrameTooLong { len: usize },
}

/// What to make of an over-long length. When its bytes are printable ASCII, the peer most
/// likely wrote text into the frame stream: the legacy server answers a command it did not
/// understand (two commands in one segment, say) with `Unknown command`.
fn advice(len: u32) -> String {
    let bytes = len.to_be_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "its length bytes read as the text {:?}: the server wrote text, not a frame \
             (a legacy server does that for commands it did not understand; try --legacy)",
            String::from_utf8_lossy(&bytes)
        )
    } else {
        "the stream cannot be trusted past this point \
         (raise --max-frame-size if the frames really are this large)"
            .to_owned()
    }
}

/// The length prefix for a frame of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN], CodecError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| CodecError::FrameTooLong { len })
}

/// Splits a byte stream from a server into frames, never trusting the announced length past
/// `max_len`. Feed it whatever arrived with [`FrameDecoder::decode`].
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    pub fn new(max_len: u32) -> Self {
        FrameDecoder { max_len }
    }

    /// The next whole frame payload in `buf`, removing it from `buf`; `Ok(None)` when more bytes
    /// are needed. An error means the stream is out of step and must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len > self.max_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        // Checked: on a 32-bit board a length near 4 GiB would overflow the sum.
        let too_large = CodecError::FrameTooLarge {
            len,
            max: self.max_len,
        };
        let payload = usize::try_from(len).map_err(|_| too_large.clone())?;
        let total = payload.checked_add(FRAME_HEADER_LEN).ok_or(too_large)?;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_HEADER_LEN);
        Ok(Some(buf.split_to(payload).freeze()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn coalesced_commands_are_separate() {
        let parsed: Vec<_> = parse_commands(b"30 \r\n1q2x").collect();
        assert_eq!(
            parsed,
            vec![
                Input::Command(Command::Stream),
                Input::Command(Command::Single),
                Input::Command(Command::Confirm),
                Input::Command(Command::Stop),
                Input::Command(Command::Shutdown),
                Input::Unknown(b'x'),
            ]
        );
    }

    #[test]
    fn command_bytes_round_trip() {
        for cmd in Command::ALL {
            assert_eq!(Command::from_byte(cmd.byte()), Some(cmd));
        }
    }

    #[test]
    fn text_in_the_frame_stream_is_a_clear_error() {
        let mut buf = BytesMut::from(&b"Unknown command"[..]);
        let err = FrameDecoder::default().decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            CodecError::FrameTooLarge {
                len: 1_433_299_822,
                max: DEFAULT_MAX_FRAME_LEN
            }
        );
        insta::assert_snapshot!(err.to_string());
    }

    proptest! {
        /// Frames survive being cut into arbitrary pieces.
        #[test]
        fn frames_round_trip_through_any_split(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let mut wire = Vec::new();
            for f in &frames {
                wire.extend_from_slice(&frame_header(f.len()).unwrap());
                wire.extend_from_slice(f);
            }
            let mut decoder = FrameDecoder::new(1000);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut rest = &wire[..];
            let mut cuts = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cuts.next().unwrap()).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = decoder.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
            }
            prop_assert_eq!(out, frames);
            prop_assert!(buf.is_empty());
        }

        /// Arbitrary bytes never panic the decoder and never make it accept a frame over the cap.
        #[test]
        fn arbitrary_bytes_never_exceed_the_cap(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut decoder = FrameDecoder::new(100);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(f)) = decoder.decode(&mut buf) {
                prop_assert!(f.len() <= 100);
            }
        }
    }
}
